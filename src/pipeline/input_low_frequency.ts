/**
 * A trained model's restored face can keep the input's low frequencies: its colours and its
 * shading at scales of tens of pixels, which blur, noise and JPEG leave nearly intact and a small
 * autoencoder does not rebuild exactly. Diffusion restorers do the same after decoding (the
 * "colour fix" of StableSR and OSEDiff); here it is a setting of the model directory
 * (manifest `settings.lowFrequencyFromInput`), applied to every face that model restores:
 *
 *   out' = clamp(out + lowpass(input - out), 0, 1)
 *
 * lowpass is three box filters of width 2r + 1 along each axis (close to a Gaussian of
 * sigma = sqrt(r (r + 1))), edges replicated. Three running sums a row cost the same for any r.
 */
import { floatTensor, type FloatTensor } from '../tensor.js';

export interface LowFrequencyFromInput {
  /** Box radius r of the low-pass, in pixels of the restored image. */
  radius: number;
}

export function checkLowFrequencyFromInput(v: unknown, where: string): LowFrequencyFromInput {
  const r = (v as { radius?: unknown } | null)?.radius;
  if (v === null || typeof v !== 'object' || typeof r !== 'number' || !Number.isInteger(r) || r < 1) {
    throw new RangeError(`${where}: lowFrequencyFromInput must be { "radius": <whole number of pixels, 1 or more> }, got ${JSON.stringify(v)}`);
  }
  return { radius: r };
}

/**
 * One box filter of width 2r + 1 along the row of `n` values at `src[start]`, written to `dst` at
 * the same place; `padded` (n + 2r + 1 long) holds the row with its edge values repeated.
 */
function boxRow(src: Float32Array, dst: Float32Array, start: number, n: number, r: number, padded: Float64Array): void {
  for (let i = 0; i < r; i++) padded[i] = src[start]!;
  for (let i = 0; i < n; i++) padded[r + i] = src[start + i]!;
  for (let i = 0; i <= r; i++) padded[r + n + i] = src[start + n - 1]!;
  const w = 2 * r + 1;
  let sum = 0;
  for (let i = 0; i < w; i++) sum += padded[i]!;
  for (let i = 0; i < n; i++) {
    dst[start + i] = sum / w;
    sum += padded[i + w]! - padded[i]!;
  }
}

/** One box filter of width 2r + 1 down the columns of the (h, w) plane at `base`: running sums of whole rows, which read memory in order. */
function boxColumns(src: Float32Array, dst: Float32Array, base: number, h: number, w: number, r: number, sums: Float64Array): void {
  const row = (y: number) => base + Math.min(h - 1, Math.max(0, y)) * w;
  sums.fill(0);
  for (let y = -r; y <= r; y++) {
    const at = row(y);
    for (let x = 0; x < w; x++) sums[x] += src[at + x]!;
  }
  const width = 2 * r + 1;
  for (let y = 0; y < h; y++) {
    const out = base + y * w;
    const enter = row(y + r + 1);
    const leave = row(y - r);
    for (let x = 0; x < w; x++) {
      dst[out + x] = sums[x]! / width;
      sums[x] += src[enter + x]! - src[leave + x]!;
    }
  }
}

/** The low-pass of every (H, W) plane of `x` (B, C, H, W), in place. */
export function lowpass(x: FloatTensor, radius: number): FloatTensor {
  const [, , h, w] = x.shape as [number, number, number, number];
  const data = x.data;
  const tmp = new Float32Array(data.length);
  const padded = new Float64Array(w + 2 * radius + 1);
  const sums = new Float64Array(w);
  const planes = data.length / (h * w);
  for (let pass = 0; pass < 3; pass++) {
    for (let p = 0; p < planes; p++) {
      const base = p * h * w;
      for (let y = 0; y < h; y++) boxRow(data, tmp, base + y * w, w, radius, padded);
      boxColumns(tmp, data, base, h, w, radius, sums);
    }
  }
  return x;
}

/** `out` (B, 3, H, W) in [0, 1] with the low frequencies of `input` ((B, 3, H, W), the preprocessed image in [-1, 1]). */
export function keepInputLowFrequency(out: FloatTensor, input: FloatTensor, settings: LowFrequencyFromInput): FloatTensor {
  if (out.shape.join() !== input.shape.join()) throw new Error(`restored image [${out.shape}] and input [${input.shape}] differ in shape`);
  const diff = floatTensor(out.shape);
  for (let i = 0; i < diff.data.length; i++) diff.data[i] = Math.min(1, Math.max(-1, input.data[i]!)) * 0.5 + 0.5 - out.data[i]!;
  lowpass(diff, settings.radius);
  for (let i = 0; i < diff.data.length; i++) diff.data[i] = Math.min(1, Math.max(0, out.data[i]! + diff.data[i]!));
  return diff;
}
