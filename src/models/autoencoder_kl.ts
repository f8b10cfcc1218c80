/** diffusers models/autoencoders/vae.py (Encoder, Decoder) and autoencoder_kl.py (AutoencoderKL). */
import type { Graph, Value } from '../graph/ir.js';
import * as op from '../graph/ops.js';
import { Module, ModuleList } from '../nn/module.js';
import { Conv2d, GroupNorm } from '../nn/layers.js';
import { Config } from './config.js';
import { DownEncoderBlock2D, UNetMidBlock2D, UpDecoderBlock2D } from './unet_2d_blocks.js';

interface CoderConfig {
  inChannels: number;
  outChannels: number;
  blockOut: number[];
  layers: number;
  groups: number;
  midAttention: boolean;
}

/** The VAE blocks all use eps 1e-6 whatever the config says (as diffusers hard-codes). */
const VAE_EPS = 1e-6;

export class Encoder extends Module {
  readonly conv_in: Conv2d;
  readonly down_blocks: ModuleList<DownEncoderBlock2D>;
  readonly mid_block: UNetMidBlock2D;
  readonly conv_norm_out: GroupNorm;
  readonly conv_out: Conv2d;

  constructor(c: CoderConfig) {
    super();
    const last = c.blockOut[c.blockOut.length - 1]!;
    this.conv_in = this.addModule('conv_in', new Conv2d(c.inChannels, c.blockOut[0]!, 3, { padding: 1 }));
    this.down_blocks = this.addModule('down_blocks', new ModuleList<DownEncoderBlock2D>());
    let outCh = c.blockOut[0]!;
    c.blockOut.forEach((ch, i) => {
      const inCh = outCh;
      outCh = ch;
      this.down_blocks.push(new DownEncoderBlock2D(
        { numLayers: c.layers, inChannels: inCh, outChannels: outCh, tembChannels: null, eps: VAE_EPS, groups: c.groups },
        i < c.blockOut.length - 1, 0,
      ));
    });
    this.mid_block = this.addModule('mid_block', new UNetMidBlock2D(
      { numLayers: 1, inChannels: last, outChannels: last, tembChannels: null, eps: VAE_EPS, groups: c.groups }, last, c.midAttention,
    ));
    this.conv_norm_out = this.addModule('conv_norm_out', new GroupNorm(c.groups, last, VAE_EPS));
    this.conv_out = this.addModule('conv_out', new Conv2d(last, 2 * c.outChannels, 3, { padding: 1 }));
  }

  forward(g: Graph, x: Value): Value {
    let h = this.conv_in.forward(g, x);
    for (const b of this.down_blocks.items) h = b.forward(g, h);
    h = this.mid_block.forward(g, h, null);
    return this.conv_out.forward(g, op.silu(this.conv_norm_out.forward(g, h)));
  }
}

export class Decoder extends Module {
  readonly conv_in: Conv2d;
  readonly up_blocks: ModuleList<UpDecoderBlock2D>;
  readonly mid_block: UNetMidBlock2D;
  readonly conv_norm_out: GroupNorm;
  readonly conv_out: Conv2d;

  constructor(c: CoderConfig) {
    super();
    const rev = [...c.blockOut].reverse();
    this.conv_in = this.addModule('conv_in', new Conv2d(c.inChannels, rev[0]!, 3, { padding: 1 }));
    this.up_blocks = this.addModule('up_blocks', new ModuleList<UpDecoderBlock2D>());
    this.mid_block = this.addModule('mid_block', new UNetMidBlock2D(
      { numLayers: 1, inChannels: rev[0]!, outChannels: rev[0]!, tembChannels: null, eps: VAE_EPS, groups: c.groups }, rev[0]!, c.midAttention,
    ));
    let outCh = rev[0]!;
    rev.forEach((ch, i) => {
      const prev = outCh;
      outCh = ch;
      this.up_blocks.push(new UpDecoderBlock2D(
        { numLayers: c.layers + 1, inChannels: prev, outChannels: outCh, tembChannels: null, eps: VAE_EPS, groups: c.groups },
        i < rev.length - 1,
      ));
    });
    this.conv_norm_out = this.addModule('conv_norm_out', new GroupNorm(c.groups, c.blockOut[0]!, VAE_EPS));
    this.conv_out = this.addModule('conv_out', new Conv2d(c.blockOut[0]!, c.outChannels, 3, { padding: 1 }));
  }

  forward(g: Graph, z: Value): Value {
    let h = this.conv_in.forward(g, z);
    h = this.mid_block.forward(g, h, null);
    for (const b of this.up_blocks.items) h = b.forward(g, h);
    return this.conv_out.forward(g, op.silu(this.conv_norm_out.forward(g, h)));
  }
}

export interface Posterior {
  mean: Value;
  /** Clamped to [-30, 20] as DiagonalGaussianDistribution does. */
  logvar: Value;
}

export class AutoencoderKL extends Module {
  readonly encoder: Encoder;
  readonly decoder: Decoder;
  readonly quant_conv?: Conv2d;
  readonly post_quant_conv?: Conv2d;
  readonly latentChannels: number;
  readonly scalingFactor: number;
  /** Spatial downsampling factor between image and latent. */
  readonly downFactor: number;

  constructor(readonly config: Config) {
    super();
    const c = config;
    c.requireDefault('act_fn', ['silu']);
    const downTypes = c.strings('down_block_types', ['DownEncoderBlock2D']);
    const upTypes = c.strings('up_block_types', ['UpDecoderBlock2D']);
    for (const t of downTypes) if (t !== 'DownEncoderBlock2D') c.fail('down_block_types', `contains unsupported block '${t}'`);
    for (const t of upTypes) if (t !== 'UpDecoderBlock2D') c.fail('up_block_types', `contains unsupported block '${t}'`);
    const blockOut = c.ints('block_out_channels', [64]);
    if (blockOut.length !== downTypes.length || blockOut.length !== upTypes.length) {
      c.fail('block_out_channels', `has ${blockOut.length} entries but there are ${downTypes.length} down and ${upTypes.length} up blocks`);
    }
    const groups = c.int('norm_num_groups', 32);
    for (const ch of blockOut) if (ch % groups !== 0) c.fail('norm_num_groups', `${groups} groups do not divide ${ch} channels`);
    this.latentChannels = c.int('latent_channels', 4);
    this.scalingFactor = c.number('scaling_factor', 0.18215);
    this.downFactor = 2 ** (blockOut.length - 1);
    const layers = c.int('layers_per_block', 1);
    const midAttention = c.bool('mid_block_add_attention', true);
    this.encoder = this.addModule('encoder', new Encoder({ inChannels: c.int('in_channels', 3), outChannels: this.latentChannels, blockOut, layers, groups, midAttention }));
    this.decoder = this.addModule('decoder', new Decoder({ inChannels: this.latentChannels, outChannels: c.int('out_channels', 3), blockOut, layers, groups, midAttention }));
    const L = this.latentChannels;
    if (c.bool('use_quant_conv', true)) this.quant_conv = this.addModule('quant_conv', new Conv2d(2 * L, 2 * L, 1));
    if (c.bool('use_post_quant_conv', true)) this.post_quant_conv = this.addModule('post_quant_conv', new Conv2d(L, L, 1));
  }

  /** image (B, 3, H, W) in [-1, 1] -> posterior of the unscaled latent. */
  encode(g: Graph, image: Value): Posterior {
    let moments = this.encoder.forward(g, image);
    if (this.quant_conv) moments = this.quant_conv.forward(g, moments);
    const [mean, logvar] = op.split(moments, 1, 2) as [Value, Value];
    return { mean, logvar: op.clip(logvar, -30, 20) };
  }

  /** unscaled latent -> image (no clamp). */
  decode(g: Graph, z: Value): Value {
    const h = this.post_quant_conv ? this.post_quant_conv.forward(g, z) : z;
    return this.decoder.forward(g, h);
  }
}
