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

/** One box filter of width 2r + 1 over `n` values at `src[start + i * stride]`, written to `dst` the same way. */
function boxLine(src: Float32Array, dst: Float32Array, start: number, stride: number, n: number, r: number, line: Float64Array): void {
  const at = (i: number) => src[start + Math.min(n - 1, Math.max(0, i)) * stride]!;
  let sum = 0;
  for (let i = -r; i <= r; i++) sum += at(i);
  for (let i = 0; i < n; i++) {
    line[i] = sum;
    sum += at(i + r + 1) - at(i - r);
  }
  const w = 2 * r + 1;
  for (let i = 0; i < n; i++) dst[start + i * stride] = line[i]! / w;
}

/** The low-pass of every (H, W) plane of `x` (B, C, H, W), in place. */
export function lowpass(x: FloatTensor, radius: number): FloatTensor {
  const [, , h, w] = x.shape as [number, number, number, number];
  const data = x.data;
  const tmp = new Float32Array(data.length);
  const line = new Float64Array(Math.max(h, w));
  const planes = data.length / (h * w);
  for (let pass = 0; pass < 3; pass++) {
    for (let p = 0; p < planes; p++) {
      const base = p * h * w;
      for (let y = 0; y < h; y++) boxLine(data, tmp, base + y * w, 1, w, radius, line);
      for (let c = 0; c < w; c++) boxLine(tmp, data, base + c, w, h, radius, line);
    }
  }
  return x;
}

/** `out` (B, 3, H, W) in [0, 1] with the low frequencies of `input` ((B, 3, H, W), the preprocessed image in [-1, 1]). */
export function keepInputLowFrequency(out: FloatTensor, input: FloatTensor, settings: LowFrequencyFromInput): FloatTensor {
  if (out.shape.join() !== input.shape.join()) throw new Error(`restored image [${out.shape}] and input [${input.shape}] differ in shape`);
  const diff = floatTensor(out.shape, out.data.map((v, i) => Math.min(1, Math.max(-1, input.data[i]!)) * 0.5 + 0.5 - v));
  lowpass(diff, settings.radius);
  return floatTensor(out.shape, out.data.map((v, i) => Math.min(1, Math.max(0, v + diff.data[i]!))));
}
