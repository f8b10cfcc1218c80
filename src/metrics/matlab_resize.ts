/**
 * MATLAB's imresize with the bicubic kernel (Keys, a = -0.5) and antialiasing, on one float64
 * plane, as BasicSR's basicsr/utils/matlab_functions.py reproduces it (which NIQE uses for its
 * second scale):
 *
 * - output size ceil(in · scale) along each axis;
 * - output pixel x (1-based) maps to u = x / scale + 0.5 · (1 - 1 / scale);
 * - when shrinking, the kernel is stretched by 1 / scale (width 4 / scale) and scaled by `scale`;
 * - ceil(width) + 2 taps from floor(u - width / 2), weights normalised to sum 1, all-zero
 *   boundary tap columns dropped;
 * - out-of-range taps mirror the image ('symmetric': index 0 -> 1, -1 -> 2, n + 1 -> n);
 * - rows first, then columns.
 */

import type { Plane } from './psnr_ssim.js';

/** Keys' cubic convolution kernel with a = -0.5 (MATLAB's 'bicubic'). */
export function cubic(x: number): number {
  const ax = Math.abs(x);
  const ax2 = ax * ax;
  const ax3 = ax2 * ax;
  if (ax <= 1) return 1.5 * ax3 - 2.5 * ax2 + 1;
  if (ax <= 2) return -0.5 * ax3 + 2.5 * ax2 - 4 * ax + 2;
  return 0;
}

interface Contributions {
  /** For each output index: 0-based source indices (already mirrored) and their weights. */
  indices: Int32Array[];
  weights: Float64Array[];
}

function mirror(i1: number, n: number): number {
  // 1-based index with MATLAB 'symmetric' padding, back to 0-based
  let i = i1;
  const period = 2 * n;
  i = ((((i - 1) % period) + period) % period) + 1;
  return (i <= n ? i : period + 1 - i) - 1;
}

export function contributions(inLength: number, outLength: number, scale: number, antialiasing = true): Contributions {
  let width = 4;
  const shrink = scale < 1 && antialiasing;
  if (shrink) width = width / scale;
  const p = Math.ceil(width) + 2;
  const rows: { idx: number[]; w: number[] }[] = [];
  for (let x = 1; x <= outLength; x++) {
    const u = x / scale + 0.5 * (1 - 1 / scale);
    const left = Math.floor(u - width / 2);
    const idx: number[] = [];
    const w: number[] = [];
    let sum = 0;
    for (let j = 0; j < p; j++) {
      const i = left + j;
      const d = u - i;
      const wt = shrink ? scale * cubic(d * scale) : cubic(d);
      idx.push(i);
      w.push(wt);
      sum += wt;
    }
    rows.push({ idx, w: w.map((v) => v / sum) });
  }
  // Drop the first / last tap column when it is zero for every output.
  let first = 0;
  let last = p - 1;
  while (first < last && rows.every((r) => r.w[first] === 0)) first++;
  while (last > first && rows.every((r) => r.w[last] === 0)) last--;
  return {
    indices: rows.map((r) => Int32Array.from(r.idx.slice(first, last + 1), (i) => mirror(i, inLength))),
    weights: rows.map((r) => Float64Array.from(r.w.slice(first, last + 1))),
  };
}

/** imresize(plane, scale, 'bicubic') with antialiasing, same scale on both axes. */
export function imresize(img: Plane, scale: number, antialiasing = true): Plane {
  if (!(scale > 0)) throw new Error(`imresize: scale must be > 0, got ${scale}`);
  const { width: w, height: h, data } = img;
  const oh = Math.ceil(h * scale);
  const ow = Math.ceil(w * scale);
  const ch = contributions(h, oh, scale, antialiasing);
  const cw = contributions(w, ow, scale, antialiasing);
  // rows (H) first
  const mid = new Float64Array(oh * w);
  for (let y = 0; y < oh; y++) {
    const idx = ch.indices[y]!;
    const wt = ch.weights[y]!;
    for (let t = 0; t < idx.length; t++) {
      const r = idx[t]! * w;
      const k = wt[t]!;
      const o = y * w;
      for (let x = 0; x < w; x++) mid[o + x] += k * data[r + x]!;
    }
  }
  const out = new Float64Array(oh * ow);
  for (let x = 0; x < ow; x++) {
    const idx = cw.indices[x]!;
    const wt = cw.weights[x]!;
    for (let y = 0; y < oh; y++) {
      let s = 0;
      const r = y * w;
      for (let t = 0; t < idx.length; t++) s += wt[t]! * mid[r + idx[t]!]!;
      out[y * ow + x] = s;
    }
  }
  return { data: out, width: ow, height: oh };
}
