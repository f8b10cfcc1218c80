/**
 * NIQE (Mittal, Soundararajan and Bovik, "Making a 'Completely Blind' Image Quality Analyzer",
 * IEEE SPL 2013), computed as BasicSR's basicsr/metrics/niqe.py calculate_niqe does, which
 * reproduces the authors' MATLAB release (BasicSR reports 5.7296 for its test image baboon.png,
 * the same as MATLAB R2021a). Lower is better.
 *
 * 1. The image goes to BT.601 Y (MATLAB rgb2ycbcr, 16-235) and is rounded to integers; crop_border 0.
 * 2. It is cropped to whole 96x96 blocks (top-left kept).
 * 3. At two scales (full, then MATLAB-bicubic half size with antialiasing on values / 255):
 *    MSCN coefficients (I - μ) / (σ + 1), μ and σ from the 7x7 Gaussian window of the parameter
 *    file with edge replication ('nearest'); per block (96x96, then 48x48) 18 features: the AGGD
 *    fit (α, mean of βl and βr) of the coefficients, and for the products with the four
 *    neighbours (0,1), (1,0), (1,1), (1,-1) (circular shifts) α, mean, βl, βr. The AGGD shape α is
 *    the grid value 0.2, 0.201, ..., 10 closest to the moment ratio, as in the MATLAB code.
 * 4. The 36-dimensional block features are fitted by a Gaussian (nan-mean; covariance over blocks
 *    without NaN, N - 1 normalisation) and compared with the pristine model:
 *    NIQE = sqrt((μp - μd)ᵀ pinv((Σp + Σd) / 2) (μp - μd)).
 *
 * The pristine parameters (mu_pris_param 1x36, cov_pris_param 36x36, gaussian_window 7x7) are
 * the authors' (from modelparameters.mat of the MATLAB release), as BasicSR ships them in
 * basicsr/metrics/niqe_pris_params.npz; load that file with loadNiqeParams.
 *
 * Precision: BasicSR keeps the image, the local mean and variance and the MSCN coefficients in
 * float32, and that rounding matters (the variance E[I²] - μ² cancels): computed in float64
 * throughout, baboon.png gives 5.72996. Those maps are therefore rounded to float32 here as in
 * BasicSR; the rest (features, the half-size resize, the Gaussian fit) is float64. On BasicSR's
 * test image test_scripts/data/baboon.png (@8d56e3a) this gives 5.729574; BasicSR reports
 * 5.7295763 and MATLAB R2021a 5.72957338 (basicsr/metrics/niqe.py docstring).
 */

import { WeightFileError } from '../weights/errors.js';
import type { RgbImage } from '../image/io.js';
import { imresize } from './matlab_resize.js';
import { readNpz } from './npz.js';
import { rgbToY, type Plane } from './psnr_ssim.js';
import { gamma, pinvSymmetric } from './special.js';

export interface NiqeParams {
  /** Mean of the pristine features, 36 values. */
  mu: Float64Array;
  /** Covariance of the pristine features, 36x36 row-major. */
  cov: Float64Array;
  /** The 7x7 Gaussian window, row-major. */
  window: Float64Array;
  windowSize: number;
}

export const NIQE_FEATURES = 36;
export const NIQE_BLOCK = 96;

/** Reads niqe_pris_params.npz (mu_pris_param, cov_pris_param, gaussian_window). */
export function loadNiqeParams(file: string): NiqeParams {
  const arrays = readNpz(file);
  const get = (key: string, count: number, what: string) => {
    const a = arrays.get(key);
    if (!a) throw new WeightFileError(file, `missing array '${key}'`, { hint: 'use niqe_pris_params.npz from BasicSR (basicsr/metrics/)', found: `arrays ${[...arrays.keys()].join(', ') || 'none'}` });
    if (a.data.length !== count) throw new WeightFileError(file, `array '${key}' has shape (${a.shape.join(', ')})`, { expected: what });
    return a;
  };
  const mu = get('mu_pris_param', NIQE_FEATURES, '36 values (1x36)');
  const cov = get('cov_pris_param', NIQE_FEATURES * NIQE_FEATURES, '36x36');
  const win = arrays.get('gaussian_window');
  if (!win || win.shape.length !== 2 || win.shape[0] !== win.shape[1] || win.shape[0]! % 2 !== 1) {
    throw new WeightFileError(file, `array 'gaussian_window' must be an odd square`, { found: win ? `(${win.shape.join(', ')})` : 'missing' });
  }
  return { mu: mu.data, cov: cov.data, window: win.data, windowSize: win.shape[0]! };
}

/** scipy.ndimage.convolve(img, window, mode='nearest') for a symmetric odd square window. */
function convolveNearest(p: Plane, win: Float64Array, k: number): Float64Array {
  const { width: w, height: h, data } = p;
  const r = (k - 1) / 2;
  const out = new Float64Array(w * h);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      let s = 0;
      for (let dy = -r; dy <= r; dy++) {
        const sy = Math.min(h - 1, Math.max(0, y + dy));
        const row = sy * w;
        // convolution flips the window; for NIQE's symmetric Gaussian it is the same
        const wr = (r - dy) * k + r;
        for (let dx = -r; dx <= r; dx++) {
          const sx = Math.min(w - 1, Math.max(0, x + dx));
          s += win[wr - dx]! * data[row + sx]!;
        }
      }
      out[y * w + x] = s;
    }
  }
  return out;
}

// The AGGD shape grid: numpy.arange(0.2, 10.001, 0.001), 9801 values, and its moment ratios.
let grid: { gam: Float64Array; rGam: Float64Array } | undefined;
function aggdGrid(): { gam: Float64Array; rGam: Float64Array } {
  if (!grid) {
    const gam = Float64Array.from({ length: 9801 }, (_, i) => 0.2 + i * 0.001);
    const rGam = gam.map((g) => gamma(2 / g) ** 2 / (gamma(1 / g) * gamma(3 / g)));
    grid = { gam, rGam };
  }
  return grid;
}

/** AGGD parameters (α, βl, βr) of the values, by moment matching (BasicSR estimate_aggd_param). */
export function estimateAggd(values: Float64Array): { alpha: number; betaL: number; betaR: number } {
  let sl = 0;
  let nl = 0;
  let sr = 0;
  let nr = 0;
  let sAbs = 0;
  let s2 = 0;
  for (const v of values) {
    if (v < 0) {
      sl += v * v;
      nl++;
    } else if (v > 0) {
      sr += v * v;
      nr++;
    }
    sAbs += Math.abs(v);
    s2 += v * v;
  }
  const n = values.length;
  const leftStd = Math.sqrt(sl / nl); // NaN when there are no negative values, as numpy's mean of nothing
  const rightStd = Math.sqrt(sr / nr);
  const gh = leftStd / rightStd;
  const rhat = (sAbs / n) ** 2 / (s2 / n);
  const rhatnorm = (rhat * (gh ** 3 + 1) * (gh + 1)) / (gh ** 2 + 1) ** 2;
  const { gam, rGam } = aggdGrid();
  let pos = 0; // numpy argmin returns the first NaN's index (0) when everything is NaN
  if (!Number.isNaN(rhatnorm)) {
    let best = Infinity;
    for (let i = 0; i < rGam.length; i++) {
      const d = (rGam[i]! - rhatnorm) ** 2;
      if (d < best) {
        best = d;
        pos = i;
      }
    }
  }
  const alpha = gam[pos]!;
  const f = Math.sqrt(gamma(1 / alpha) / gamma(3 / alpha));
  return { alpha, betaL: leftStd * f, betaR: rightStd * f };
}

/** The 18 features of one block (bh x bw values, row-major) of MSCN coefficients. */
export function blockFeatures(block: Float64Array, bh: number, bw: number): number[] {
  const feat: number[] = [];
  const a = estimateAggd(block);
  feat.push(a.alpha, (a.betaL + a.betaR) / 2);
  const prod = new Float64Array(bh * bw);
  // numpy.roll(block, (dy, dx), axis=(0, 1)): shifted[i, j] = block[i - dy, j - dx] (circular)
  for (const [dy, dx] of [[0, 1], [1, 0], [1, 1], [1, -1]] as const) {
    for (let i = 0; i < bh; i++) {
      const si = (i - dy + bh) % bh;
      for (let j = 0; j < bw; j++) {
        const sj = (j - dx + bw) % bw;
        prod[i * bw + j] = block[i * bw + j]! * block[si * bw + sj]!;
      }
    }
    const p = estimateAggd(prod);
    const mean = (p.betaR - p.betaL) * (gamma(2 / p.alpha) / gamma(1 / p.alpha));
    feat.push(p.alpha, mean, p.betaL, p.betaR);
  }
  return feat;
}

/** NIQE of a Y (or grey) plane with values on the 0-255 scale, used as given (no rounding). */
export function niqePlane(img: Plane, params: NiqeParams, blockSize = NIQE_BLOCK): number {
  const nbh = Math.floor(img.height / blockSize);
  const nbw = Math.floor(img.width / blockSize);
  if (nbh * nbw < 2) {
    throw new Error(`niqe: the image must hold at least two ${blockSize}x${blockSize} blocks (e.g. ${blockSize}x${2 * blockSize}), got ${img.width}x${img.height}`);
  }
  // crop to whole blocks
  let w = nbw * blockSize;
  let h = nbh * blockSize;
  let cur: Plane = { data: new Float64Array(w * h), width: w, height: h };
  for (let y = 0; y < h; y++) cur.data.set(img.data.subarray(y * img.width, y * img.width + w), y * w);

  const feats: number[][] = Array.from({ length: nbh * nbw }, () => []);
  for (const scale of [1, 2]) {
    w = cur.width;
    h = cur.height;
    const mu = convolveNearest(cur, params.window, params.windowSize);
    const sq: Plane = { data: cur.data.map((v) => v * v), width: w, height: h };
    const mu2 = convolveNearest(sq, params.window, params.windowSize);
    // float32 steps as BasicSR (scipy returns float32 for float32 input; numpy keeps float32):
    // the variance E[I²] - μ² cancels, and its float32 rounding moves NIQE in the 4th digit.
    const f = Math.fround;
    const mscn = new Float64Array(w * h);
    for (let i = 0; i < mscn.length; i++) {
      const m = f(mu[i]!);
      const sigma = f(Math.sqrt(Math.abs(f(f(mu2[i]!) - f(m * m)))));
      mscn[i] = f(f(cur.data[i]! - m) / f(sigma + 1));
    }
    let b = 0;
    for (let bx = 0; bx < nbw; bx++) {
      for (let by = 0; by < nbh; by++) {
        const y0 = Math.floor((by * blockSize) / scale);
        const y1 = Math.floor(((by + 1) * blockSize) / scale);
        const x0 = Math.floor((bx * blockSize) / scale);
        const x1 = Math.floor(((bx + 1) * blockSize) / scale);
        const bh = y1 - y0;
        const bw = x1 - x0;
        const block = new Float64Array(bh * bw);
        for (let y = 0; y < bh; y++) block.set(mscn.subarray((y0 + y) * w + x0, (y0 + y) * w + x1), y * bw);
        feats[b++]!.push(...blockFeatures(block, bh, bw));
      }
    }
    if (scale === 1) {
      const half = imresize({ data: cur.data.map((v) => v / 255), width: w, height: h }, 0.5, true);
      cur = { data: half.data.map((v) => v * 255), width: half.width, height: half.height };
    }
  }

  const d = NIQE_FEATURES;
  // nan-mean per feature
  const muD = new Float64Array(d);
  for (let j = 0; j < d; j++) {
    let s = 0;
    let n = 0;
    for (const f of feats) {
      if (!Number.isNaN(f[j]!)) {
        s += f[j]!;
        n++;
      }
    }
    muD[j] = s / n;
  }
  // covariance over the rows without NaN
  const rows = feats.filter((f) => f.every((v) => !Number.isNaN(v)));
  const covD = new Float64Array(d * d);
  if (rows.length >= 2) {
    const mean = new Float64Array(d);
    for (const r of rows) for (let j = 0; j < d; j++) mean[j] += r[j]! / rows.length;
    for (const r of rows) {
      for (let i = 0; i < d; i++) {
        const di = r[i]! - mean[i]!;
        for (let j = 0; j < d; j++) covD[i * d + j] += di * (r[j]! - mean[j]!);
      }
    }
    for (let i = 0; i < d * d; i++) covD[i]! /= rows.length - 1;
  } else {
    covD.fill(NaN);
  }
  const avg = new Float64Array(d * d);
  for (let i = 0; i < d * d; i++) avg[i] = (params.cov[i]! + covD[i]!) / 2;
  if (avg.some((v) => Number.isNaN(v))) return NaN;
  const inv = pinvSymmetric(avg, d);
  const diff = params.mu.map((v, j) => v - muD[j]!);
  let q = 0;
  for (let i = 0; i < d; i++) {
    let s = 0;
    for (let j = 0; j < d; j++) s += inv[i * d + j]! * diff[j]!;
    q += diff[i]! * s;
  }
  return Math.sqrt(q);
}

/** NIQE of an 8-bit RGB image: Y channel (BT.601, MATLAB rgb2ycbcr), rounded, crop_border 0. */
export function niqe(img: RgbImage, params: NiqeParams): number {
  const y = rgbToY(img);
  for (let i = 0; i < y.data.length; i++) y.data[i] = roundHalfEven(y.data[i]!);
  return niqePlane(y, params);
}

function roundHalfEven(v: number): number {
  const r = Math.round(v);
  return r - v === 0.5 && r % 2 !== 0 ? r - 1 : r;
}
