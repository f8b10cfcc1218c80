/**
 * How much fine detail each region has, whatever its phase: per `patch`-pixel patch, the RMS of
 * the grey image's two finest bands (image minus its 5x5 binomial blur; that blur minus its own
 * blur), held to the target's. Texture with the target's local amplitude (hair textured, cheeks
 * nearly smooth) costs less SSIM than texture spread evenly: SSIM's constant C2 hides faint
 * detail where the target is smooth, and where the target is textured a restoration that lacks
 * it scores near zero anyway (the model card's "How far texture alone can go" measured it).
 */
import type { Graph, Value } from '../graph/ir.js';
import * as op from '../graph/ops.js';
import { gaussianBlur5 } from './discriminator.js';
import { interiorMask } from './lattice.js';

/** Side of the patches whose detail energy is compared: local enough to tell hair from skin. */
export const DETAIL_ENERGY_PATCH = 16;
/** Floor under the energies (an RMS of 0.25 grey levels), so the square root keeps a finite slope. */
const ENERGY_FLOOR = 1e-6;

/** Per patch and band, the RMS of the detail of x (B, 3, H, W): (B, 2, H/patch, W/patch). */
export function detailEnergy(g: Graph, x: Value, patch: number): Value {
  const [b, , h, w] = x.shape as number[];
  if (h! % patch !== 0 || w! % patch !== 0) g.fail(`detail energy: [${x.shape}] does not divide into ${patch}-pixel patches`);
  const grey = op.reduceMean(x, [1]);
  const once = gaussianBlur5(g, grey);
  const twice = gaussianBlur5(g, once);
  const bands = op.mul(op.concat([op.sub(grey, once), op.sub(once, twice)], 1), interiorMask(g, h!, w!, 4, 'detail_energy_interior'));
  const squares = op.reshape(op.mul(bands, bands), [b!, 2, h! / patch, patch, w! / patch, patch]);
  return op.sqrt(op.add(op.reduceMean(squares, [3, 5], false), ENERGY_FLOOR));
}

/** Mean squared difference of the patch detail energies of x and y, per image (B,). */
export function detailEnergyDistance(g: Graph, x: Value, y: Value, patch: number): Value {
  const d = op.sub(detailEnergy(g, x, patch), detailEnergy(g, y, patch));
  return op.reduceMean(op.reshape(op.mul(d, d), [x.shape[0]!, -1]), [1], false);
}
