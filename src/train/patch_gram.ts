/**
 * EnhanceNet's texture loss (Sajjadi et al. 2017, "EnhanceNet: Single Image Super-Resolution Through
 * Automated Texture Synthesis"): the Gram matrices of feature maps, taken over small patches rather
 * than the whole image, compared between the restored and the ground-truth image. A Gram matrix keeps
 * which channels fire together (the texture) and drops where (the exact placement), so it rewards a
 * plausible texture in the right region instead of the blur that averages the possible ones.
 */
import type { Value } from '../graph/ir.js';
import * as op from '../graph/ops.js';

/**
 * Per-patch Gram matrices of (B, C, H, W) features: (B * H/p * W/p, C, C), each divided by p^2,
 * where p is `patch` or the map's shorter side if that is smaller. Rows and columns that do not
 * fill a whole patch (at the bottom and right) are left out.
 */
export function patchGram(f: Value, patch: number): Value {
  const [b, c, h, w] = f.shape as number[];
  const p = Math.min(patch, h!, w!);
  const [ny, nx] = [Math.floor(h! / p), Math.floor(w! / p)];
  let whole = f;
  if (ny * p !== h) whole = op.slice(whole, 2, 0, ny * p);
  if (nx * p !== w) whole = op.slice(whole, 3, 0, nx * p);
  const tiles = op.transpose(op.reshape(whole, [b!, c!, ny, p, nx, p]), [0, 2, 4, 1, 3, 5]);
  const rows = op.reshape(tiles, [b! * ny * nx, c!, p * p]);
  return op.div(op.matmul(rows, op.transpose(rows, [0, 2, 1])), p * p);
}

/**
 * Mean squared difference of the per-patch Gram matrices of two feature pyramids, per image (B,),
 * summed over the levels. The patch side is `patch` feature pixels at every level, as in EnhanceNet,
 * so a coarser level's patch covers more of the image.
 */
export function patchGramDistance(fx: Value[], fy: Value[], patch: number): Value {
  let total: Value | undefined;
  fx.forEach((x, i) => {
    const d = op.sub(patchGram(x, patch), patchGram(fy[i]!, patch));
    const perImage = op.reduceMean(op.reshape(op.mul(d, d), [x.shape[0]!, -1]), [1], false);
    total = total ? op.add(total, perImage) : perImage;
  });
  return total!;
}
