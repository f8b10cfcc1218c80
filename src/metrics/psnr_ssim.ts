/**
 * Full-reference metrics as BasicSR computes them (basicsr/metrics/psnr_ssim.py, the numbers face
 * restoration papers report), on 8-bit images with data range 255:
 *
 * - PSNR = 10 log10(255² / MSE), MSE over every value (all three channels, or Y); identical
 *   images give +Infinity (MSE 0), as BasicSR's `float('inf')`.
 * - SSIM: Wang et al. 2004 with an 11x11 Gaussian window (σ 1.5), C1 = (0.01·255)²,
 *   C2 = (0.03·255)², 'valid' filtering (only windows fully inside the image, so the map is
 *   (H-10)x(W-10); no downsampling step), the map's mean; for RGB, the mean of the three
 *   channels' SSIM. Images must be at least 11x11.
 * - `yChannel`: both on the luma Y of ITU-R BT.601 as MATLAB's rgb2ycbcr defines it,
 *   Y = 16 + (65.481 R + 128.553 G + 24.966 B) / 255 for R, G, B in 0-255, kept unrounded as
 *   BasicSR's to_y_channel does (MATLAB itself rounds Y for uint8 input).
 * - crop_border is 0: no border is cut off before measuring (BasicSR's scripts for super-resolution
 *   use the scale factor; face-restoration evaluations at equal sizes use 0).
 *
 * Everything is computed in float64.
 */

import type { RgbImage } from '../image/io.js';

/** A single-channel float64 image, row-major. */
export interface Plane {
  data: Float64Array;
  width: number;
  height: number;
}

export interface FullReferenceOptions {
  /** Measure on BT.601 luma (MATLAB rgb2ycbcr's Y) instead of RGB. Default false. */
  yChannel?: boolean;
}

/**
 * BT.601 luma as MATLAB rgb2ycbcr, in [16, 235], unrounded, with BasicSR's to_y_channel float
 * steps: R, G, B / 255 as float32; Y = 24.966 B + 128.553 G + 65.481 R + 16 in float64; Y / 255
 * stored as float32; times 255 in float32. (The float32 steps matter only where NIQE rounds Y:
 * they decide which way values that are exactly halfway between integers go.)
 */
export function rgbToY(img: RgbImage): Plane {
  const n = img.width * img.height;
  const data = new Float64Array(n);
  const d = img.data;
  const f = Math.fround;
  for (let i = 0; i < n; i++) {
    const y = f(d[3 * i + 2]! / 255) * 24.966 + f(d[3 * i + 1]! / 255) * 128.553 + f(d[3 * i]! / 255) * 65.481 + 16;
    data[i] = f(f(y / 255) * 255);
  }
  return { data, width: img.width, height: img.height };
}

/** One channel (0 R, 1 G, 2 B) of an RGB image as a float64 plane. */
export function channel(img: RgbImage, c: 0 | 1 | 2): Plane {
  const n = img.width * img.height;
  const data = new Float64Array(n);
  for (let i = 0; i < n; i++) data[i] = img.data[3 * i + c]!;
  return { data, width: img.width, height: img.height };
}

function checkPair(a: RgbImage, b: RgbImage, what: string): void {
  for (const [name, img] of [['first', a], ['second', b]] as const) {
    if (img.channels !== 3 || img.data.length !== img.width * img.height * 3) {
      throw new Error(`${what}: the ${name} image is not 8-bit RGB (${img.width}x${img.height}, ${img.data.length} bytes)`);
    }
  }
  if (a.width !== b.width || a.height !== b.height) {
    throw new Error(`${what}: image sizes differ: ${a.width}x${a.height} vs ${b.width}x${b.height}`);
  }
}

function planes(img: RgbImage, opts: FullReferenceOptions): Plane[] {
  return opts.yChannel ? [rgbToY(img)] : [channel(img, 0), channel(img, 1), channel(img, 2)];
}

/** PSNR in dB between two same-size 8-bit RGB images (data range 255); +Infinity when identical. */
export function psnr(a: RgbImage, b: RgbImage, opts: FullReferenceOptions = {}): number {
  checkPair(a, b, 'psnr');
  let se = 0;
  let n = 0;
  if (opts.yChannel) {
    const ya = rgbToY(a).data;
    const yb = rgbToY(b).data;
    for (let i = 0; i < ya.length; i++) se += (ya[i]! - yb[i]!) ** 2;
    n = ya.length;
  } else {
    for (let i = 0; i < a.data.length; i++) se += (a.data[i]! - b.data[i]!) ** 2;
    n = a.data.length;
  }
  const mse = se / n;
  if (mse === 0) return Infinity;
  return 10 * Math.log10((255 * 255) / mse);
}

/** The 11-tap Gaussian of cv2.getGaussianKernel(11, 1.5): exp(-k²/(2·1.5²)), k = -5..5, normalised. */
export function ssimWindow1d(): Float64Array {
  const g = Float64Array.from({ length: 11 }, (_, i) => Math.exp(-((i - 5) ** 2) / (2 * 1.5 * 1.5)));
  const s = g.reduce((x, y) => x + y, 0);
  return g.map((v) => v / s);
}

/** Separable 'valid' filtering with a 1-D window applied along x then y. */
function filterValid(p: Float64Array, w: number, h: number, g: Float64Array): Float64Array {
  const k = g.length;
  const ow = w - k + 1;
  const oh = h - k + 1;
  const tmp = new Float64Array(h * ow);
  for (let y = 0; y < h; y++) {
    const r = y * w;
    for (let x = 0; x < ow; x++) {
      let s = 0;
      for (let t = 0; t < k; t++) s += g[t]! * p[r + x + t]!;
      tmp[y * ow + x] = s;
    }
  }
  const out = new Float64Array(oh * ow);
  for (let y = 0; y < oh; y++) {
    for (let t = 0; t < k; t++) {
      const wt = g[t]!;
      const r = (y + t) * ow;
      const o = y * ow;
      for (let x = 0; x < ow; x++) out[o + x] += wt * tmp[r + x]!;
    }
  }
  return out;
}

/** SSIM of two single-channel planes with values on the 0-255 scale (BasicSR's _ssim). */
export function ssimPlane(a: Plane, b: Plane): number {
  const { width: w, height: h } = a;
  if (b.width !== w || b.height !== h) throw new Error(`ssim: plane sizes differ: ${w}x${h} vs ${b.width}x${b.height}`);
  if (w < 11 || h < 11) throw new Error(`ssim: images must be at least 11x11 (the Gaussian window), got ${w}x${h}`);
  const g = ssimWindow1d();
  const n = w * h;
  const aa = new Float64Array(n);
  const bb = new Float64Array(n);
  const ab = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const x = a.data[i]!;
    const y = b.data[i]!;
    aa[i] = x * x;
    bb[i] = y * y;
    ab[i] = x * y;
  }
  const mu1 = filterValid(a.data, w, h, g);
  const mu2 = filterValid(b.data, w, h, g);
  const s11 = filterValid(aa, w, h, g);
  const s22 = filterValid(bb, w, h, g);
  const s12 = filterValid(ab, w, h, g);
  const c1 = (0.01 * 255) ** 2;
  const c2 = (0.03 * 255) ** 2;
  let sum = 0;
  for (let i = 0; i < mu1.length; i++) {
    const m1 = mu1[i]!;
    const m2 = mu2[i]!;
    const m11 = m1 * m1;
    const m22 = m2 * m2;
    const m12 = m1 * m2;
    const v1 = s11[i]! - m11;
    const v2 = s22[i]! - m22;
    const v12 = s12[i]! - m12;
    sum += ((2 * m12 + c1) * (2 * v12 + c2)) / ((m11 + m22 + c1) * (v1 + v2 + c2));
  }
  return sum / mu1.length;
}

/** SSIM between two same-size 8-bit RGB images (mean of per-channel SSIM, or on Y). */
export function ssim(a: RgbImage, b: RgbImage, opts: FullReferenceOptions = {}): number {
  checkPair(a, b, 'ssim');
  const pa = planes(a, opts);
  const pb = planes(b, opts);
  let s = 0;
  for (let c = 0; c < pa.length; c++) s += ssimPlane(pa[c]!, pb[c]!);
  return s / pa.length;
}
