/**
 * Growing a trained UNet deeper: `layers_per_block + added`, the new layers starting as identities,
 * so that the grown network computes exactly what the trained one did and training goes on from
 * there instead of from scratch (Net2DeeperNet, Chen et al. 2016, with zero-initialised residual
 * branches).
 *
 * - A new down-block layer is a ResnetBlock2D whose `conv2` is zero (out = x) and, in cross-attention
 *   blocks, a Transformer2DModel whose `proj_out` is zero (out = x). Each adds one skip connection,
 *   equal to the block's last trained resnet output.
 * - An up block pops its skips from the end. With the identities inserted after the trained down
 *   layers, up layer 0 and up layers 1..added all receive that repeated skip. The trained layer i
 *   (i >= 1) moves to i + added and receives the skip it always had. The new up layers 1..added
 *   ignore their skip: conv2 is zero and the 1x1 `conv_shortcut` passes the hidden channels (first
 *   in the concatenation) through and drops the skip's.
 *
 * Keys are the checkpoint's (diffusers' UNet2DConditionModel paths, no prefix).
 */

import { numel } from '../tensor.js';

const LAYER = /^(down_blocks|up_blocks)\.(\d+)\.(resnets|attentions)\.(\d+)\.(.+)$/;

/** Where a trained layer's key goes in the deepened UNet (down layers keep their index; up layer i >= 1 moves to i + added). */
export function deepenedKey(key: string, added: number): string {
  const m = LAYER.exec(key);
  if (!m || m[1] !== 'up_blocks' || m[4] === '0') return key;
  return `${m[1]}.${m[2]}.${m[3]}.${Number(m[4]) + added}.${m[5]}`;
}

/** Whether `key` belongs to a layer the deepening adds (down index >= the trained layers_per_block; up index 1..added). */
export function isAddedLayerKey(key: string, trainedLayersPerBlock: number, added: number): boolean {
  const m = LAYER.exec(key);
  if (!m) return false;
  const i = Number(m[4]);
  return m[1] === 'down_blocks' ? i >= trainedLayersPerBlock : i >= 1 && i <= added;
}

/**
 * The starting value of an added layer's parameter that makes the layer an identity, or undefined
 * for a parameter that may start anywhere (the caller's usual initialisation): its branch is zeroed.
 */
export function identityInit(key: string, shape: number[]): Float32Array | undefined {
  const size = numel(shape);
  if (/\.resnets\.\d+\.conv2\.(weight|bias)$/.test(key) || /\.attentions\.\d+\.proj_out\.(weight|bias)$/.test(key)) return new Float32Array(size);
  if (/\.resnets\.\d+\.conv_shortcut\.bias$/.test(key)) return new Float32Array(size);
  if (/\.resnets\.\d+\.conv_shortcut\.weight$/.test(key)) {
    const [out, inp] = shape as [number, number];
    if (inp < out) throw new Error(`deepening: '${key}' maps ${inp} channels to ${out}; an identity needs at least as many inputs`);
    const w = new Float32Array(size);
    for (let o = 0; o < out; o++) w[o * inp + o] = 1;
    return w;
  }
  return undefined;
}

/**
 * A trained UNet's parameters (by checkpoint key) as the deepened UNet's: trained layers moved to
 * their new places, the added layers' residual branches zeroed. The added layers' other parameters
 * are absent from the result; the caller initialises them as for a new network.
 */
export function deepenUNetParams<T extends { shape: number[]; data: Float32Array }>(
  trained: Map<string, T>, deepenedShapes: Map<string, number[]>, layersPerBlock: number, added: number,
): Map<string, { shape: number[]; data: Float32Array }> {
  if (!Number.isInteger(added) || added < 1) throw new Error(`deepening: ${added} layers to add; give a whole number >= 1`);
  const trainedLayers = layersPerBlock - added;
  if (trainedLayers < 1) throw new Error(`deepening: layers_per_block ${layersPerBlock} leaves ${trainedLayers} trained layers after adding ${added}`);
  const out = new Map<string, { shape: number[]; data: Float32Array }>();
  for (const [k, t] of trained) {
    const m = LAYER.exec(k);
    if (m && m[1] === 'down_blocks' && Number(m[4]) >= trainedLayers) {
      throw new Error(`deepening: the checkpoint already has '${k}': it is not a UNet with layers_per_block ${trainedLayers}`);
    }
    out.set(deepenedKey(k, added), t);
  }
  for (const [k, shape] of deepenedShapes) {
    if (!isAddedLayerKey(k, trainedLayers, added)) continue;
    const init = identityInit(k, shape);
    if (init) out.set(k, { shape, data: init });
  }
  return out;
}
