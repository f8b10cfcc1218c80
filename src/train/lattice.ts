/**
 * A penalty on detail locked to the autoencoder's 8-pixel lattice. The decoder draws every 8x8 cell
 * from one latent vector; where the UNet's latent is smooth and a loss asks for texture (GAN
 * guidance, Gram matrices), each cell gets the same little pattern and the face gets a mesh. Real
 * detail has no preferred phase: averaged over the cells of a patch, its value at each of the 64
 * positions within a cell (y mod 8, x mod 8) is near zero, as a random texture's average is.
 *
 * For output and target alike: the grey high-pass (image minus its 5x5 binomial blur, zero on the
 * 2-pixel border), per
 * `patch`-pixel patch the mean over the patch's cells at each in-cell position; then the mean
 * squared difference of those phase means between output and target.
 */
import type { Graph, Value } from '../graph/ir.js';
import * as op from '../graph/ops.js';
import { gaussianBlur5 } from './discriminator.js';

/** The autoencoders' factor: one latent vector per 8x8 pixels (SD's VAE and TAEF2 alike). */
export const LATTICE_CELL = 8;
/** Side of the patches whose cells are averaged: 4x4 cells, local enough for a mesh in one region of the face. */
export const LATTICE_PATCH = 32;

/**
 * (1, 1, h, w): 1 inside, 0 on the `border`-pixel frame. A zero-padded blur darkens that frame
 * (2 pixels for gaussianBlur5, 4 for two of them); detail taken there would outweigh the image's own.
 */
export function interiorMask(g: Graph, h: number, w: number, border: number, hint: string): Value {
  const interior = new Float32Array(h * w);
  for (let r = border; r < h - border; r++) interior.fill(1, r * w + border, (r + 1) * w - border);
  return op.floatConst(g, [1, 1, h, w], interior, hint);
}

/** Per-patch means at each in-cell position of the grey high-pass of x (B, 3, H, W): (B, H/patch, cell, W/patch, cell). */
export function latticePhaseMeans(g: Graph, x: Value, cell: number, patch: number): Value {
  const [b, , h, w] = x.shape as number[];
  if (patch % cell !== 0 || h! % patch !== 0 || w! % patch !== 0) g.fail(`lattice: [${x.shape}] does not divide into ${patch}-pixel patches of ${cell}-pixel cells`);
  const grey = op.reduceMean(x, [1]);
  const detail = op.mul(op.sub(grey, gaussianBlur5(g, grey)), interiorMask(g, h!, w!, 2, 'lattice_interior'));
  const n = patch / cell;
  const cells = op.reshape(detail, [b!, h! / patch, n, cell, w! / patch, n, cell]);
  return op.reduceMean(cells, [2, 5], false);
}

/** Mean squared difference of the lattice phase means of x and y, per image (B,). */
export function latticeDistance(g: Graph, x: Value, y: Value, cell: number, patch: number): Value {
  const d = op.sub(latticePhaseMeans(g, x, cell, patch), latticePhaseMeans(g, y, cell, patch));
  return op.reduceMean(op.reshape(op.mul(d, d), [x.shape[0]!, -1]), [1], false);
}
