/**
 * OSDFace VQVAEencoder + vqvae_encoder.forward: resize to the VRE resolution, the second
 * (x - 0.5) / 0.5 (the weights expect inputs in [-3, 1]), MultiHeadEncoder, quant_conv, and the
 * nearest-code search. The order-dependent unique selection runs on the host (vq_select.ts).
 */
import type { Graph, Value } from '../../graph/ir.js';
import * as op from '../../graph/ops.js';
import { Module } from '../../nn/module.js';
import { Conv2d } from '../../nn/layers.js';
import { Config } from '../config.js';
import { MultiHeadEncoder } from './multihead_encoder.js';

export class VectorQuantizer extends Module {
  constructor(readonly nEmbed: number, readonly embedDim: number) {
    super();
    this.addModule('embedding', new Embedding(nEmbed, embedDim));
  }

  /** The codebook (n_embed, embed_dim) as a graph value. */
  codebook(g: Graph): Value {
    return g.param(`${this.path}.embedding.weight`, [this.nEmbed, this.embedDim]);
  }
}

export class Embedding extends Module {
  constructor(num: number, dim: number) {
    super();
    this.registerParam('weight', [num, dim]);
  }
}

export interface NearestCodes {
  /** quant_conv output z (B, embed_dim, g, g). */
  z: Value;
  /** Per position (row-major over g x g): the smallest squared distance to a code (B, g*g). */
  minDistance: Value;
  /** ... and the index of that code, first on ties (B, g*g), int64. */
  codeIndex: Value;
}

export class VQVAEEncoder extends Module {
  readonly encoder: MultiHeadEncoder;
  readonly quantize: VectorQuantizer;
  readonly quant_conv: Conv2d;
  readonly nMin: number;
  /** Side of the square every input is resized to (vqvae_encoder.forward hard-codes 512). */
  readonly inputSize: number;

  constructor(readonly config: Config, inputSize?: number) {
    super();
    const c = config;
    const zChannels = c.int('z_channels', 512);
    const embedDim = c.int('embed_dim', 512);
    const chMult = c.ints('ch_mult', [1, 2, 2, 2, 4, 8]);
    this.nMin = c.int('n_min', 77);
    this.inputSize = inputSize ?? c.int('resolution', 512);
    this.encoder = this.addModule('encoder', new MultiHeadEncoder({
      ch: c.int('ch', 64), chMult, numResBlocks: c.int('num_res_blocks', 2), attnResolutions: c.ints('attn_resolutions', [16]),
      resolution: c.int('resolution', 512), inChannels: c.int('in_channels', 3), zChannels, doubleZ: c.bool('double_z', false),
      enableMid: c.bool('enable_mid', true), headSize: c.int('head_size', 1), groups: c.int('norm_num_groups', 32),
    }));
    if (!c.bool('enable_mid', true)) c.fail('enable_mid', 'false is not supported (the reference needs the mid block)');
    this.quantize = this.addModule('quantize', new VectorQuantizer(c.int('n_embed', 1024), embedDim));
    this.quant_conv = this.addModule('quant_conv', new Conv2d(c.bool('double_z', false) ? 2 * zChannels : zChannels, embedDim, 1));
  }

  /** image (B, 3, H, W) in [-1, 1], any size. */
  forward(g: Graph, image: Value): NearestCodes {
    const resized = g.scope('resize', () => op.resize2d(image, [this.inputSize, this.inputSize], { mode: 'linear', alignCorners: false }));
    const x = op.div(op.sub(resized, 0.5), 0.5);
    const z = this.quant_conv.forward(g, this.encoder.forward(g, x));
    return g.scope('quantize', () => {
      const flat = op.reshape(op.transpose(z, [0, 2, 3, 1]), [0, -1, this.quantize.embedDim]);
      const e = this.quantize.codebook(g);
      // d = |z|^2 + |e|^2 - 2 z.e, in the reference's order of operations.
      const d = op.sub(
        op.add(op.reduceSum(op.mul(flat, flat), [2], true), op.reduceSum(op.mul(e, e), [1], false)),
        op.mul(op.matmul(flat, op.transpose(e, [1, 0])), 2),
      );
      const { values, indices } = op.minWithIndex(d, 2);
      return { z, minDistance: values, codeIndex: indices };
    });
  }
}
