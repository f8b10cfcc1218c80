/**
 * A full-size OSDFace with random weights, built from ../shared/fixtures/full-size configs, for
 * timing without the official files. Values are deterministic per tensor name and scaled like an
 * initialised network (uniform with the variance of N(0, 1/fan_in); norms 1, biases 0).
 */
import fs from 'node:fs';
import path from 'node:path';
import { Config } from '../src/models/config.js';
import { UNet2DConditionModel } from '../src/models/unet_2d_condition.js';
import { AutoencoderKL } from '../src/models/autoencoder_kl.js';
import { VQVAEEncoder } from '../src/models/vre/vqvae_encoder.js';
import { TwoLayerConv1x1 } from '../src/models/vre/embedding_change.js';
import type { WeightSource } from '../src/graph/emit.js';
import { alphasCumprod } from '../src/pipeline/scheduler.js';
import { PAPER_ARCHITECTURE, type OSDFaceRelease } from '../src/pipeline/release.js';
import { numel, type FloatTensor } from '../src/tensor.js';

function seedOf(key: string): number {
  let h = 2166136261;
  for (let i = 0; i < key.length; i++) h = Math.imul(h ^ key.charCodeAt(i), 16777619);
  return h >>> 0;
}

export function randomTensor(key: string, shape: number[]): Float32Array {
  const n = numel(shape);
  const out = new Float32Array(n);
  if (shape.length === 1) {
    if (/(norm[^.]*|group_norm|norm_out)\.weight$/.test(key)) out.fill(1);
    return out;
  }
  const fanIn = numel(shape.slice(1));
  const a = Math.sqrt(3 / fanIn);
  let s = seedOf(key);
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = (s / 4294967296 * 2 - 1) * a;
  }
  return out;
}

const randomWeights: WeightSource = { read: (key, shape) => randomTensor(key, shape) };

export function randomRelease(fullSizeDir: string): OSDFaceRelease {
  const json = (f: string) => JSON.parse(fs.readFileSync(path.join(fullSizeDir, f), 'utf8')) as Record<string, unknown>;
  const osd = json('osdface_config.json');
  const ec = osd['embedding_change'] as Record<string, number>;
  const unet = new UNet2DConditionModel(new Config(json('sd21-base/unet/config.json'), 'sd21-base/unet/config.json'));
  const vae = new AutoencoderKL(new Config(json('sd21-base/vae/config.json'), 'sd21-base/vae/config.json'));
  const vre = new VQVAEEncoder(new Config(osd['vre'] as Record<string, unknown>, 'osdface_config.json'), 512);
  const embeddingChange = new TwoLayerConv1x1(ec['in_channels']!, ec['out_channels']!, ec['hidden_channels']!);
  const cbShape = [vre.quantize.nEmbed, vre.quantize.embedDim];
  const codebook: FloatTensor = { dtype: 'float32', shape: cbShape, data: randomTensor('quantize.embedding.weight', cbShape) };
  return {
    architecture: PAPER_ARCHITECTURE,
    unet: { module: unet, weights: randomWeights },
    vae: { module: vae, weights: randomWeights },
    vre: { module: vre, weights: randomWeights },
    embeddingChange: { module: embeddingChange, weights: randomWeights },
    codebook,
    alphasCumprod: alphasCumprod(new Config(json('sd21-base/scheduler/scheduler_config.json'), 'scheduler_config.json')),
    timestep: osd['timestep'] as number,
    processSize: osd['process_size'] as number,
    lora: null,
    close: () => {},
  };
}
