/**
 * diffusers models/autoencoders/autoencoder_tiny.py (AutoencoderTiny) with vae.py's EncoderTiny,
 * DecoderTiny and unets/unet_2d_blocks.py's AutoencoderTinyBlock, plus TAEF2's mid-block GroupNorm
 * pooling (taesd.py `Block(..., use_midblock_gn=True)`, config key `use_midblock_gn`).
 *
 * Layer indices are TAESD's `nn.Sequential` indices (the decoder's Clamp is its layer 0, as in
 * taesd.py), so a parameter path is `encoder.layers.<key in taef2_encoder.pth>` and
 * `decoder.layers.<key in taef2_decoder.pth>`. Like diffusers, encode takes images in [-1, 1] and
 * decode returns them in [-1, 1] (TAESD itself works in [0, 1]); latents are raw, no posterior.
 *
 * One generalisation: block widths may differ between resolutions (diffusers requires them
 * equal); the stride-2 conv of the encoder and the conv after each decoder upsample then change
 * the width. With equal widths the layers are exactly diffusers'.
 */
import type { Graph, Value } from '../graph/ir.js';
import * as op from '../graph/ops.js';
import { Module } from '../nn/module.js';
import { Conv2d, GroupNorm } from '../nn/layers.js';
import { Config } from './config.js';

/** An nn.Sequential whose parameterless entries (ReLU, Upsample, Clamp) keep their indices. */
class Layers extends Module {
  readonly steps: ((g: Graph, x: Value) => Value)[] = [];

  add<T extends Module & { forward(g: Graph, x: Value): Value }>(m: T): T {
    this.addModule(String(this.steps.length), m);
    this.steps.push((g, x) => m.forward(g, x));
    return m;
  }

  addFunction(fn: (x: Value) => Value): void {
    this.steps.push((_, x) => fn(x));
  }

  forward(g: Graph, x: Value): Value {
    return this.steps.reduce((h, step) => step(g, h), x);
  }
}

const conv3x3 = (inCh: number, outCh: number, cfg: { stride?: number; bias?: boolean } = {}) => new Conv2d(inCh, outCh, 3, { padding: 1, ...cfg });

/** AutoencoderTinyBlock: relu(conv(relu(conv(relu(conv(x))))) + skip(x)), after x + pool(x) when `pool` is on. */
export class AutoencoderTinyBlock extends Module {
  readonly pool?: Layers;
  readonly conv: Layers;
  readonly skip?: Conv2d;

  constructor(readonly inChannels: number, readonly outChannels: number, midblockGroupNorm: boolean) {
    super();
    this.conv = this.addModule('conv', new Layers());
    this.conv.add(conv3x3(inChannels, outChannels));
    this.conv.addFunction(op.relu);
    this.conv.add(conv3x3(outChannels, outChannels));
    this.conv.addFunction(op.relu);
    this.conv.add(conv3x3(outChannels, outChannels));
    if (inChannels !== outChannels) this.skip = this.addModule('skip', new Conv2d(inChannels, outChannels, 1, { bias: false }));
    if (midblockGroupNorm) {
      const wide = 4 * inChannels;
      this.pool = this.addModule('pool', new Layers());
      this.pool.add(new Conv2d(inChannels, wide, 1, { bias: false }));
      this.pool.add(new GroupNorm(4, wide));
      this.pool.addFunction(op.relu);
      this.pool.add(new Conv2d(wide, inChannels, 1, { bias: false }));
    }
  }

  forward(g: Graph, x: Value): Value {
    return this.scoped(g, () => {
      const h = this.pool ? op.add(x, this.pool.forward(g, x)) : x;
      return op.relu(op.add(this.conv.forward(g, h), this.skip ? this.skip.forward(g, h) : h));
    });
  }
}

export interface TinyCoderConfig {
  inChannels: number;
  outChannels: number;
  blockOut: number[];
  numBlocks: number[];
  midblockGroupNorm: boolean;
  upsampleFactor: number;
}

export class EncoderTiny extends Module {
  readonly layers: Layers;
  /** Index of the last block at each resolution, full resolution first (the feature pyramid's taps). */
  private readonly taps: number[] = [];

  constructor(readonly config: TinyCoderConfig) {
    super();
    const c = config;
    this.layers = this.addModule('layers', new Layers());
    c.numBlocks.forEach((n, i) => {
      const ch = c.blockOut[i]!;
      this.layers.add(i === 0 ? conv3x3(c.inChannels, ch) : conv3x3(c.blockOut[i - 1]!, ch, { stride: 2, bias: false }));
      // TAEF2 pools with GroupNorm in the blocks at the latent resolution only.
      for (let b = 0; b < n; b++) this.layers.add(new AutoencoderTinyBlock(ch, ch, c.midblockGroupNorm && i === c.numBlocks.length - 1));
      this.taps.push(this.layers.steps.length - 1);
    });
    this.layers.add(conv3x3(c.blockOut[c.blockOut.length - 1]!, c.outChannels));
  }

  /** image in [-1, 1] -> latent (TAESD's encoder reads [0, 1]). */
  forward(g: Graph, x: Value): Value {
    return this.scoped(g, () => this.layers.forward(g, op.mul(op.add(x, 1), 0.5)));
  }

  /** image in [0, 1] -> the output of each resolution's last block (ReLU features, `blockOut[i]` channels at 1/2^i scale). */
  features(g: Graph, x: Value): Value[] {
    return this.scoped(g, () => {
      const out: Value[] = [];
      let h = x;
      for (let i = 0; i <= this.taps[this.taps.length - 1]!; i++) {
        h = this.layers.steps[i]!(g, h);
        if (this.taps.includes(i)) out.push(h);
      }
      return out;
    });
  }
}

export class DecoderTiny extends Module {
  readonly layers: Layers;

  constructor(c: TinyCoderConfig) {
    super();
    this.layers = this.addModule('layers', new Layers());
    // Layer 0: TAESD's Clamp, tanh(x / 3) * 3 (diffusers applies it in forward, outside `layers`).
    this.layers.addFunction((z) => op.mul(op.tanh(op.div(z, 3)), 3));
    this.layers.add(conv3x3(c.inChannels, c.blockOut[0]!));
    this.layers.addFunction(op.relu);
    c.numBlocks.forEach((n, i) => {
      const ch = c.blockOut[i]!;
      const last = i === c.numBlocks.length - 1;
      for (let b = 0; b < n; b++) this.layers.add(new AutoencoderTinyBlock(ch, ch, c.midblockGroupNorm && i === 0));
      if (!last) this.layers.addFunction((x) => op.resize2d(x, { scale: c.upsampleFactor }, { mode: 'nearest' }));
      this.layers.add(conv3x3(ch, last ? c.outChannels : c.blockOut[i + 1]!, { bias: last }));
    });
  }

  /** latent -> image in about [-1, 1] (TAESD's decoder writes [0, 1]; not clamped). */
  forward(g: Graph, z: Value): Value {
    return this.scoped(g, () => op.sub(op.mul(this.layers.forward(g, z), 2), 1));
  }
}

export class AutoencoderTiny extends Module {
  readonly encoder: EncoderTiny;
  readonly decoder: DecoderTiny;
  readonly latentChannels: number;
  readonly scalingFactor: number;
  /** Spatial downsampling factor between image and latent. */
  readonly downFactor: number;

  constructor(readonly config: Config) {
    super();
    const c = config;
    c.requireDefault('act_fn', ['relu']);
    c.requireDefault('upsample_fn', ['nearest']);
    if (c.number('shift_factor', 0) !== 0) c.fail('shift_factor', 'must be 0 (latents are scaled, not shifted)');
    const encOut = c.ints('encoder_block_out_channels', [64, 64, 64, 64]);
    const decOut = c.ints('decoder_block_out_channels', [64, 64, 64, 64]);
    const encBlocks = c.ints('num_encoder_blocks', [1, 3, 3, 3]);
    const decBlocks = c.ints('num_decoder_blocks', [3, 3, 3, 1]);
    if (encOut.length !== encBlocks.length) c.fail('num_encoder_blocks', `has ${encBlocks.length} entries for ${encOut.length} encoder_block_out_channels`);
    if (decOut.length !== decBlocks.length) c.fail('num_decoder_blocks', `has ${decBlocks.length} entries for ${decOut.length} decoder_block_out_channels`);
    const up = c.int('upsampling_scaling_factor', 2);
    this.downFactor = 2 ** (encOut.length - 1);
    if (up ** (decOut.length - 1) !== this.downFactor) c.fail('upsampling_scaling_factor', `${up}^${decOut.length - 1} does not undo the encoder's factor ${this.downFactor}`);
    const midblockGroupNorm = c.bool('use_midblock_gn', false);
    this.latentChannels = c.int('latent_channels', 4);
    this.scalingFactor = c.number('scaling_factor', 1);
    this.encoder = this.addModule('encoder', new EncoderTiny({
      inChannels: c.int('in_channels', 3), outChannels: this.latentChannels, blockOut: encOut, numBlocks: encBlocks, midblockGroupNorm, upsampleFactor: up,
    }));
    this.decoder = this.addModule('decoder', new DecoderTiny({
      inChannels: this.latentChannels, outChannels: c.int('out_channels', 3), blockOut: decOut, numBlocks: decBlocks, midblockGroupNorm, upsampleFactor: up,
    }));
  }

  /** image (B, 3, H, W) in [-1, 1] -> unscaled latent; the tiny autoencoder is deterministic (no posterior). */
  encode(g: Graph, image: Value): Value {
    return this.encoder.forward(g, image);
  }

  /** unscaled latent -> image in about [-1, 1] (no clamp). */
  decode(g: Graph, z: Value): Value {
    return this.decoder.forward(g, z);
  }
}

/** TAEF2's architecture as an AutoencoderTiny config (../shared/weights/taef2/README.md). */
export const TAEF2_CONFIG = {
  _class_name: 'AutoencoderTiny',
  in_channels: 3, out_channels: 3, latent_channels: 32,
  encoder_block_out_channels: [64, 64, 64, 64], decoder_block_out_channels: [64, 64, 64, 64],
  num_encoder_blocks: [1, 3, 3, 3], num_decoder_blocks: [3, 3, 3, 1],
  act_fn: 'relu', upsample_fn: 'nearest', upsampling_scaling_factor: 2, use_midblock_gn: true, scaling_factor: 1, shift_factor: 0,
};
