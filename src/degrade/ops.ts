/**
 * Image operations of the degradation recipe, on float RGB images in [0, 1] (HWC, float32, as
 * BasicSR's numpy pipeline holds them): 2-D filtering with OpenCV's default border, resizing with
 * OpenCV's half-pixel conventions (bilinear, bicubic, area), Gaussian and Poisson noise, and JPEG
 * through sharp's real codec (libjpeg-turbo inside libvips).
 */

import sharp from 'sharp';
import type { RgbImage } from '../image/io.js';
import type { Random } from './random.js';

/** RGB pixels as float32, HWC (3 values a pixel), nominally in [0, 1]. */
export interface FloatImage {
  data: Float32Array;
  width: number;
  height: number;
}

export type Interpolation = 'bilinear' | 'bicubic' | 'area';
export const INTERPOLATIONS: readonly Interpolation[] = ['bilinear', 'bicubic', 'area'];

/** 8-bit RGB to float in [0, 1] (k / 255). */
export function toFloat(img: RgbImage): FloatImage {
  const data = new Float32Array(img.data.length);
  for (let i = 0; i < data.length; i++) data[i] = img.data[i]! / 255;
  return { data, width: img.width, height: img.height };
}

/** Round half to even (numpy's / torch's round, OpenCV's cvRound). */
export function roundHalfEven(v: number): number {
  const r = Math.round(v);
  return r - v === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** Float in [0, 1] to 8-bit: clip(round(v * 255), 0, 255) with round half to even; NaN -> 0. */
export function toBytes(img: FloatImage): RgbImage {
  const data = new Uint8Array(img.data.length);
  for (let i = 0; i < data.length; i++) {
    const v = roundHalfEven(img.data[i]! * 255);
    data[i] = v > 255 ? 255 : v > 0 ? v : 0;
  }
  return { data, width: img.width, height: img.height, channels: 3 };
}

/** Index `i` mapped into [0, n) by OpenCV's BORDER_REFLECT_101 (gfedcb|abcdefgh|gfedcba). */
export function reflect101(i: number, n: number): number {
  if (n === 1) return 0;
  const period = 2 * (n - 1);
  let j = i % period;
  if (j < 0) j += period;
  return j < n ? j : period - j;
}

/**
 * Correlates each channel with the square `kernel` (side `ksize`, odd, row-major), as
 * cv2.filter2D(img, -1, kernel) does: anchor at the centre, BORDER_REFLECT_101, float32 result.
 * Rows and columns of exact zeros around the kernel's edge are skipped (they add nothing).
 */
export function filter2D(img: FloatImage, kernel: Float64Array, ksize: number): FloatImage {
  if (ksize % 2 !== 1 || kernel.length !== ksize * ksize) throw new Error(`filter2D: kernel must be an odd square, got ${kernel.length} values for side ${ksize}`);
  const half = (ksize - 1) / 2;
  // The smallest centred square holding every nonzero weight.
  let r = 0;
  for (let y = 0; y < ksize; y++) {
    for (let x = 0; x < ksize; x++) {
      if (kernel[y * ksize + x] !== 0) r = Math.max(r, Math.abs(y - half), Math.abs(x - half));
    }
  }
  const side = 2 * r + 1;
  const taps: number[] = [];
  const offsets: number[] = [];
  const { width: w, height: h, data } = img;
  const pw = w + 2 * r;
  for (let ky = 0; ky < side; ky++) {
    for (let kx = 0; kx < side; kx++) {
      const v = kernel[(ky + half - r) * ksize + (kx + half - r)]!;
      if (v === 0) continue;
      taps.push(v);
      offsets.push((ky * pw + kx) * 3);
    }
  }
  // Pad with the reflected border once, then filter without branches.
  const ph = h + 2 * r;
  const padded = new Float32Array(pw * ph * 3);
  const colMap = Int32Array.from({ length: pw }, (_, x) => reflect101(x - r, w));
  for (let y = 0; y < ph; y++) {
    const sy = reflect101(y - r, h);
    for (let x = 0; x < pw; x++) {
      const s = (sy * w + colMap[x]!) * 3;
      const d = (y * pw + x) * 3;
      padded[d] = data[s]!;
      padded[d + 1] = data[s + 1]!;
      padded[d + 2] = data[s + 2]!;
    }
  }
  const k = Float64Array.from(taps);
  const off = Int32Array.from(offsets);
  const n = k.length;
  const out = new Float32Array(w * h * 3);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const base = (y * pw + x) * 3;
      let a = 0;
      let b = 0;
      let c = 0;
      for (let t = 0; t < n; t++) {
        const p = base + off[t]!;
        const kv = k[t]!;
        a += kv * padded[p]!;
        b += kv * padded[p + 1]!;
        c += kv * padded[p + 2]!;
      }
      const o = (y * w + x) * 3;
      out[o] = a;
      out[o + 1] = b;
      out[o + 2] = c;
    }
  }
  return { data: out, width: w, height: h };
}

/** For each output index along one axis: the first source index and the weights that follow it. */
interface AxisTable {
  start: Int32Array;
  /** `taps` weights per output index; source indices start[i] .. start[i] + taps - 1, clamped. */
  weights: Float64Array;
  taps: number;
}

/** OpenCV INTER_LINEAR along one axis: half-pixel centres, no antialiasing, edge clamping. */
function linearTable(src: number, dst: number): AxisTable {
  const scale = src / dst;
  const start = new Int32Array(dst);
  const weights = new Float64Array(dst * 2);
  for (let d = 0; d < dst; d++) {
    let f = (d + 0.5) * scale - 0.5;
    let s = Math.floor(f);
    f -= s;
    if (s < 0) {
      s = 0;
      f = 0;
    }
    if (s >= src - 1) {
      s = src - 1;
      f = 0;
    }
    start[d] = s;
    weights[2 * d] = 1 - f;
    weights[2 * d + 1] = f;
  }
  return { start, weights, taps: 2 };
}

/** OpenCV INTER_CUBIC along one axis: Keys cubic with a = -0.75, half-pixel centres, edge clamping. */
function cubicTable(src: number, dst: number): AxisTable {
  const A = -0.75;
  const scale = src / dst;
  const start = new Int32Array(dst);
  const weights = new Float64Array(dst * 4);
  for (let d = 0; d < dst; d++) {
    const fx = (d + 0.5) * scale - 0.5;
    const s = Math.floor(fx);
    const x = fx - s;
    const c0 = ((A * (x + 1) - 5 * A) * (x + 1) + 8 * A) * (x + 1) - 4 * A;
    const c1 = ((A + 2) * x - (A + 3)) * x * x + 1;
    const c2 = ((A + 2) * (1 - x) - (A + 3)) * (1 - x) * (1 - x) + 1;
    start[d] = s - 1;
    weights.set([c0, c1, c2, 1 - c0 - c1 - c2], 4 * d);
  }
  return { start, weights, taps: 4 };
}

/**
 * Pixel-area averaging along one axis for shrinking (OpenCV INTER_AREA): output pixel d covers
 * source [d * scale, (d + 1) * scale) and each source pixel weighs by its overlap.
 */
function areaTable(src: number, dst: number): AxisTable {
  const scale = src / dst;
  const taps = Math.ceil(scale) + 1;
  const start = new Int32Array(dst);
  const weights = new Float64Array(dst * taps);
  for (let d = 0; d < dst; d++) {
    const x0 = d * scale;
    const x1 = Math.min(src, (d + 1) * scale);
    const s = Math.floor(x0);
    start[d] = s;
    let total = 0;
    for (let t = 0; t < taps; t++) {
      const lo = Math.max(x0, s + t);
      const hi = Math.min(x1, s + t + 1);
      const wgt = hi > lo ? hi - lo : 0;
      weights[d * taps + t] = wgt;
      total += wgt;
    }
    for (let t = 0; t < taps; t++) weights[d * taps + t]! /= total;
  }
  return { start, weights, taps };
}

function axisTable(mode: Interpolation, src: number, dst: number): AxisTable {
  if (mode === 'bicubic') return cubicTable(src, dst);
  if (mode === 'area' && dst < src) return areaTable(src, dst);
  return linearTable(src, dst); // bilinear, and area when enlarging (documented)
}

/**
 * Resizes to `width` x `height` like cv2.resize with INTER_LINEAR / INTER_CUBIC / INTER_AREA
 * (area averaging when shrinking; when enlarging, 'area' falls back to bilinear). Separable:
 * rows first, then columns, accumulating in float64. The result is float32, not clipped (bicubic
 * can overshoot [0, 1] slightly, as OpenCV's float path does).
 */
export function resize(img: FloatImage, width: number, height: number, mode: Interpolation): FloatImage {
  if (!Number.isInteger(width) || !Number.isInteger(height) || width < 1 || height < 1) {
    throw new Error(`resize: size must be positive integers, got ${width}x${height}`);
  }
  const { width: sw, height: sh, data } = img;
  if (sw === width && sh === height) return { data: Float32Array.from(data), width, height };
  // Horizontal pass: (sh, sw) -> (sh, width)
  const tx = axisTable(mode, sw, width);
  const mid = new Float64Array(sh * width * 3);
  for (let y = 0; y < sh; y++) {
    const row = y * sw;
    for (let x = 0; x < width; x++) {
      let a = 0;
      let b = 0;
      let c = 0;
      const s0 = tx.start[x]!;
      for (let t = 0; t < tx.taps; t++) {
        const wgt = tx.weights[x * tx.taps + t]!;
        if (wgt === 0) continue;
        const sx = Math.min(sw - 1, Math.max(0, s0 + t));
        const p = (row + sx) * 3;
        a += wgt * data[p]!;
        b += wgt * data[p + 1]!;
        c += wgt * data[p + 2]!;
      }
      const o = (y * width + x) * 3;
      mid[o] = a;
      mid[o + 1] = b;
      mid[o + 2] = c;
    }
  }
  // Vertical pass: (sh, width) -> (height, width)
  const ty = axisTable(mode, sh, height);
  const out = new Float32Array(height * width * 3);
  const rowLen = width * 3;
  const acc = new Float64Array(rowLen);
  for (let y = 0; y < height; y++) {
    const s0 = ty.start[y]!;
    acc.fill(0);
    for (let t = 0; t < ty.taps; t++) {
      const wgt = ty.weights[y * ty.taps + t]!;
      if (wgt === 0) continue;
      const sy = Math.min(sh - 1, Math.max(0, s0 + t));
      const p = sy * rowLen;
      for (let i = 0; i < rowLen; i++) acc[i] += wgt * mid[p + i]!;
    }
    out.set(acc, y * rowLen);
  }
  return { data: out, width, height };
}

/**
 * Adds Gaussian noise of standard deviation sigma/255 to every value (or one sample per pixel
 * shared by its three channels when `gray`) and clips to [0, 1], as BasicSR's
 * add_gaussian_noise(clip=True, rounds=False). Samples are drawn in HWC order.
 */
export function addGaussianNoise(img: FloatImage, sigma: number, rng: Random, gray = false): FloatImage {
  const out = new Float32Array(img.data.length);
  const s = sigma / 255;
  for (let i = 0; i < out.length; i += 3) {
    if (gray) {
      const n = Math.fround(rng.normal()) * s;
      for (let c = 0; c < 3; c++) out[i + c] = clip01(img.data[i + c]! + n);
    } else {
      for (let c = 0; c < 3; c++) out[i + c] = clip01(img.data[i + c]! + Math.fround(rng.normal()) * s);
    }
  }
  return { data: out, width: img.width, height: img.height };
}

/**
 * Adds Poisson (shot) noise as BasicSR's add_poisson_noise(scale, clip=True): the image rounded to
 * 8-bit levels, `vals` = the number of distinct levels rounded up to a power of two,
 * noise = Poisson(img * vals) / vals - img, out = clip(img + scale * noise, 0, 1).
 */
export function addPoissonNoise(img: FloatImage, scale: number, rng: Random): FloatImage {
  const n = img.data.length;
  const q = new Float64Array(n);
  const seen = new Uint8Array(256);
  let distinct = 0;
  for (let i = 0; i < n; i++) {
    const v = roundHalfEven(img.data[i]! * 255);
    const level = v > 255 ? 255 : v > 0 ? v : 0;
    if (!seen[level]) {
      seen[level] = 1;
      distinct++;
    }
    q[i] = level / 255;
  }
  const vals = 2 ** Math.ceil(Math.log2(distinct));
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const noisy = Math.fround(rng.poisson(q[i]! * vals) / vals);
    out[i] = clip01(img.data[i]! + (noisy - q[i]!) * scale);
  }
  return { data: out, width: img.width, height: img.height };
}

/**
 * JPEG round trip through sharp (libjpeg-turbo): the image clipped to [0, 1], scaled to 8 bits
 * (round half to even, as OpenCV converts float to uchar), encoded at `quality` (integer 1-100,
 * 4:2:0 chroma subsampling, libjpeg's standard tables) and decoded back to float.
 */
export async function jpegRoundTrip(img: FloatImage, quality: number): Promise<FloatImage> {
  if (!Number.isInteger(quality) || quality < 1 || quality > 100) throw new Error(`jpegRoundTrip: quality must be an integer 1-100, got ${quality}`);
  const bytes = toBytes(img);
  const { width, height } = img;
  const encoded = await sharp(bytes.data, { raw: { width, height, channels: 3 } })
    .jpeg({ quality, chromaSubsampling: '4:2:0', mozjpeg: false, trellisQuantisation: false, overshootDeringing: false, optimiseScans: false })
    .toBuffer();
  const decoded = await sharp(encoded).removeAlpha().toColourspace('srgb').raw().toBuffer({ resolveWithObject: true });
  if (decoded.info.width !== width || decoded.info.height !== height || decoded.info.channels !== 3) {
    throw new Error(`jpegRoundTrip: decoded ${decoded.info.width}x${decoded.info.height}x${decoded.info.channels}, expected ${width}x${height}x3`);
  }
  const data = new Float32Array(width * height * 3);
  for (let i = 0; i < data.length; i++) data[i] = decoded.data[i]! / 255;
  return { data, width, height };
}

function clip01(v: number): number {
  return v > 1 ? 1 : v > 0 ? v : 0; // NaN -> 0
}
