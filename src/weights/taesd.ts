/**
 * TAESD-family checkpoints (TAEF2: `taef2_encoder.pth`, `taef2_decoder.pth`): two plain state dicts
 * keyed by `nn.Sequential` index, read through the restricted unpickler and keyed as AutoencoderTiny
 * parameters (`encoder.layers.<key>`, `decoder.layers.<key>`, src/models/autoencoder_tiny.ts).
 */
import path from 'node:path';
import type { Tensor } from '../tensor.js';
import { type TensorStore, mapStore } from './bind.js';
import { loadTorchCheckpoint } from './torch.js';

export function loadTaesdWeights(encoderFile: string, decoderFile: string): Map<string, Tensor> {
  const out = new Map<string, Tensor>();
  for (const [part, file] of [['encoder', encoderFile], ['decoder', decoderFile]] as const) {
    for (const [k, t] of loadTorchCheckpoint(file)) out.set(`${part}.layers.${k}`, t);
  }
  return out;
}

/** The TAEF2 pair in a folder (taef2_encoder.pth, taef2_decoder.pth) as a store named after the folder. */
export function taef2Store(dir: string): TensorStore {
  return mapStore(dir, loadTaesdWeights(path.join(dir, 'taef2_encoder.pth'), path.join(dir, 'taef2_decoder.pth')));
}
