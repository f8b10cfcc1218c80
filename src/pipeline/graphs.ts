/**
 * The graphs the pipeline runs, one per network stage. Batch and spatial dimensions are named
 * so one emitted model serves every batch size and (where the network allows) image size.
 */
import { Graph } from '../graph/ir.js';
import * as op from '../graph/ops.js';
import type { UNet2DConditionModel } from '../models/unet_2d_condition.js';
import type { AutoencoderKL } from '../models/autoencoder_kl.js';
import { AutoencoderTiny } from '../models/autoencoder_tiny.js';
import type { VQVAEEncoder } from '../models/vre/vqvae_encoder.js';
import type { TwoLayerConv1x1 } from '../models/vre/embedding_change.js';

/** lq in [0, 1] -> lq * 2 - 1 resized to size x size (bilinear, align_corners=True), as infer.py does. */
export function preprocessGraph(size: number): Graph {
  const g = new Graph('preprocess');
  const x = g.input('lq', 'float32', ['batch', 3, 'height', 'width'], [1, 3, size, size]);
  g.output(op.resize2d(op.sub(op.mul(x, 2), 1), [size, size], { mode: 'linear', alignCorners: true }), 'lq_processed');
  return g;
}

/** image in [-1, 1] (any size) -> quant_conv output and the nearest code of every position. */
export function vreGraph(vre: VQVAEEncoder): Graph {
  const g = new Graph('vre');
  const x = g.input('image', 'float32', ['batch', 3, 'height', 'width'], [1, 3, vre.inputSize, vre.inputSize]);
  const { z, minDistance, codeIndex } = vre.forward(g, x);
  g.output(z, 'z');
  g.output(minDistance, 'min_distance');
  g.output(codeIndex, 'code_index');
  return g;
}

export function embeddingChangeGraph(ec: TwoLayerConv1x1, tokens: number): Graph {
  const g = new Graph('embedding_change');
  const x = g.input('tokens', 'float32', ['batch', tokens, ec.inChannels], [1, tokens, ec.inChannels]);
  g.output(ec.forward(g, x), 'prompt');
  return g;
}

/**
 * image in [-1, 1] -> the posterior (`mean`, `logvar`) of an AutoencoderKL, or the deterministic
 * `latent` of an AutoencoderTiny.
 */
export function vaeEncoderGraph(vae: AutoencoderKL | AutoencoderTiny, exampleSize = 8 * vae.downFactor): Graph {
  const g = new Graph('vae_encoder');
  const x = g.input('image', 'float32', ['batch', 3, 'height', 'width'], [1, 3, exampleSize, exampleSize]);
  if (vae instanceof AutoencoderTiny) {
    g.output(vae.encode(g, x), 'latent');
    return g;
  }
  const { mean, logvar } = vae.encode(g, x);
  g.output(mean, 'mean');
  g.output(logvar, 'logvar');
  return g;
}

export function vaeDecoderGraph(vae: AutoencoderKL | AutoencoderTiny, exampleSize = 8): Graph {
  const g = new Graph('vae_decoder');
  const z = g.input('latent', 'float32', ['batch', vae.latentChannels, 'height', 'width'], [1, vae.latentChannels, exampleSize, exampleSize]);
  g.output(vae.decode(g, z), 'image');
  return g;
}

export function unetGraph(unet: UNet2DConditionModel, contextLength = 77, exampleSize = 16): Graph {
  const g = new Graph('unet');
  const sample = g.input('sample', 'float32', ['batch', unet.inChannels, 'height', 'width'], [1, unet.inChannels, exampleSize, exampleSize]);
  const t = g.input('timestep', 'float32', [1]);
  const context = g.input('encoder_hidden_states', 'float32', ['batch', contextLength, unet.crossAttentionDim], [1, contextLength, unet.crossAttentionDim]);
  g.output(unet.forward(g, sample, t, context), 'eps');
  return g;
}
