/**
 * A trained model can restore each face twice, as it is and mirrored left to right, and return the
 * mean of the two (the mirrored result mirrored back): the "self-ensemble" of super-resolution
 * (Timofte et al., "Seven ways to improve example-based single image super resolution", 2016; Lim
 * et al., EDSR+, 2017), with the one geometric transform under which aligned faces stay faces.
 * The two passes err differently where the network guesses (texture, and the fine pattern that GAN
 * guidance leaves locked to its 8-pixel grid), so their mean is closer to the truth there; what both
 * see clearly, they restore alike. It is a setting of the model directory (manifest
 * `settings.mirrorEnsemble`); it doubles the network's time.
 */
import { floatTensor, type FloatTensor } from '../tensor.js';

export function checkMirrorEnsemble(v: unknown, where: string): boolean {
  if (typeof v !== 'boolean') throw new RangeError(`${where}: mirrorEnsemble must be true or false, got ${JSON.stringify(v)}`);
  return v;
}

/** (B, C, H, W) mirrored left to right. */
export function mirrored(x: FloatTensor): FloatTensor {
  const w = x.shape[x.shape.length - 1]!;
  const out = floatTensor(x.shape);
  for (let row = 0; row < x.data.length; row += w) for (let i = 0; i < w; i++) out.data[row + i] = x.data[row + w - 1 - i]!;
  return out;
}

/** The mean of `out` and `mirroredOut` mirrored back: `mirroredOut` restored from the mirrored input. */
export function meanWithMirrored(out: FloatTensor, mirroredOut: FloatTensor): FloatTensor {
  const back = mirrored(mirroredOut);
  return floatTensor(out.shape, out.data.map((v, i) => Math.fround(Math.fround(v + back.data[i]!) * 0.5)));
}
