/**
 * OSDFace's own checkpoints:
 *  - associate_2.ckpt: torch.save({'state_dict': ...}) of the joint VQ-VAE training run. The
 *    visual representation embedder (VRE) is `vqvae_LQ` minus its decoder; the reference loads
 *    it with strict=False, so the decoder and the `vqvae_HQ` network are simply ignored.
 *  - embedding_change_weights.pth: state_dict of TwoLayerConv1x1 (conv1/conv2 1-D convs).
 */

import type { Tensor } from '../tensor.js';
import { WeightFileError, listKeys } from './errors.js';
import { loadTorchCheckpoint } from './torch.js';

const VRE_PREFIX = 'vqvae_LQ.';
const VRE_DROPPED = 'vqvae_LQ.decoder.';

/**
 * VRE weights from associate_2.ckpt, keyed as VQVAEencoder names
 * (`encoder.*`, `quant_conv.*`, `quantize.embedding.weight`). Tensors of the dropped
 * networks are never read from the archive.
 */
export function loadVreCheckpoint(file: string): Map<string, Tensor> {
  const prefixes = new Set<string>();
  const kept = loadTorchCheckpoint(file, {
    filter: (k) => {
      prefixes.add(k.split('.')[0] + '.');
      return k.startsWith(VRE_PREFIX) && !k.startsWith(VRE_DROPPED);
    },
  });
  if (kept.size === 0) {
    throw new WeightFileError(file, `has no '${VRE_PREFIX}' encoder tensors, so it is not an OSDFace associate_2.ckpt`, {
      expected: `keys starting with '${VRE_PREFIX}' (other than '${VRE_DROPPED}')`,
      found: `key prefixes ${listKeys([...prefixes])}`,
    });
  }
  const out = new Map<string, Tensor>();
  for (const [k, t] of kept) out.set(k.slice(VRE_PREFIX.length), t);
  return out;
}

export const EMBEDDING_CHANGE_KEYS = ['conv1.weight', 'conv1.bias', 'conv2.weight', 'conv2.bias'] as const;

/** TwoLayerConv1x1 weights: conv1.weight (E/2, E, 1), conv1.bias, conv2.weight (C, E/2, 1), conv2.bias. */
export function loadEmbeddingChange(file: string): Map<string, Tensor> {
  const weights = loadTorchCheckpoint(file);
  requireKeys(weights, EMBEDDING_CHANGE_KEYS, file);
  return weights;
}

/**
 * Throws a WeightFileError listing the expected keys that `source` lacks (the first few and
 * the total count); used by model binders to check a checkpoint before building a graph.
 */
export function requireKeys(source: { has(key: string): boolean }, expectedKeys: Iterable<string>, file: string): void {
  const missing: string[] = [];
  let expected = 0;
  for (const k of expectedKeys) {
    expected++;
    if (!source.has(k)) missing.push(k);
  }
  if (missing.length > 0) {
    throw new WeightFileError(file, `is missing ${missing.length} of ${expected} expected tensors: ${listKeys(missing)}`, {
      key: missing[0],
      hint: 'the checkpoint does not match the model configuration',
    });
  }
}
