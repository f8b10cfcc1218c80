/**
 * The fidelity knob, w in [0, 1], defined on OSDFace's own one-step structure:
 *
 *   x0_w  = (1 - w) * x0 + w * z                       (z: the input's scaled latent)
 *   out_w = decode(x0_w) + w * (input - decode(z))
 *
 * w = 0 is the model as trained. w = 1 gives the input back: decode(z) plus exactly what the
 * decoder cannot rebuild of it. The second term matters for a decoder fine-tuned on restored
 * latents (the packaged default model), which rebuilds an input's own latent poorly (23.8 dB);
 * for a decoder that rebuilds well it vanishes and the knob is plain latent interpolation.
 * bench/fidelity_candidates.ts measured it against latent interpolation alone, an earlier
 * timestep and a pixel blend (bench/RESULTS.md, "Fidelity").
 */
import { floatTensor, type FloatTensor } from '../tensor.js';

const f = Math.fround;

export function checkFidelity(w: unknown, where: string): number {
  if (typeof w !== 'number' || !Number.isFinite(w) || w < 0 || w > 1) {
    throw new RangeError(`${where}: fidelity must be a number in [0, 1] (0: the model as trained, 1: closest to the input), got ${String(w)}`);
  }
  return w;
}

/** (1 - w) * x0 + w * z, per element (float64, rounded to float32). */
export function towardsInput(x0: FloatTensor, z: FloatTensor, w: number): FloatTensor {
  return floatTensor(x0.shape, x0.data.map((v, i) => f(v + w * (z.data[i]! - v))));
}

/**
 * out + w * (input - rebuilt), clamped to [0, 1]. `out` in [0, 1]; `input` (the preprocessed
 * image) and `rebuilt` (decode(z), unclamped) in [-1, 1].
 */
export function addInputResidual(out: FloatTensor, input: FloatTensor, rebuilt: FloatTensor, w: number): FloatTensor {
  const unit = (v: number) => Math.min(1, Math.max(-1, v)) * 0.5 + 0.5;
  return floatTensor(out.shape, out.data.map((v, i) => Math.min(1, Math.max(0, f(v + w * (unit(input.data[i]!) - unit(rebuilt.data[i]!)))))));
}
