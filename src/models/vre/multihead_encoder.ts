/**
 * OSDFace lq_embed/vqvae.py: the VQ encoder of the visual representation embedder
 * (ResnetBlock, MultiHeadAttnBlock, Downsample with asymmetric padding, MultiHeadEncoder).
 */
import type { Graph, Value } from '../../graph/ir.js';
import * as op from '../../graph/ops.js';
import { Module, ModuleList } from '../../nn/module.js';
import { Conv2d, GroupNorm } from '../../nn/layers.js';
import { attention } from '../../nn/functional/attention.js';

/** Normalize() in the reference: 32 groups, eps 1e-6, whatever the width. */
const normalize = (channels: number, groups: number) => new GroupNorm(groups, channels, 1e-6);

export class ResnetBlock extends Module {
  readonly norm1: GroupNorm;
  readonly conv1: Conv2d;
  readonly norm2: GroupNorm;
  readonly conv2: Conv2d;
  readonly nin_shortcut?: Conv2d;

  constructor(inChannels: number, outChannels: number, groups: number) {
    super();
    this.norm1 = this.addModule('norm1', normalize(inChannels, groups));
    this.conv1 = this.addModule('conv1', new Conv2d(inChannels, outChannels, 3, { padding: 1 }));
    this.norm2 = this.addModule('norm2', normalize(outChannels, groups));
    this.conv2 = this.addModule('conv2', new Conv2d(outChannels, outChannels, 3, { padding: 1 }));
    if (inChannels !== outChannels) this.nin_shortcut = this.addModule('nin_shortcut', new Conv2d(inChannels, outChannels, 1));
  }

  forward(g: Graph, x: Value): Value {
    let h = this.conv1.forward(g, op.silu(this.norm1.forward(g, x)));
    h = this.conv2.forward(g, op.silu(this.norm2.forward(g, h)));
    return op.add(this.nin_shortcut ? this.nin_shortcut.forward(g, x) : x, h);
  }
}

/** Self-attention over positions with `headSize` heads; norm2 exists in checkpoints but is unused here. */
export class MultiHeadAttnBlock extends Module {
  readonly norm1: GroupNorm;
  readonly norm2: GroupNorm;
  readonly q: Conv2d;
  readonly k: Conv2d;
  readonly v: Conv2d;
  readonly proj_out: Conv2d;

  constructor(readonly channels: number, readonly headSize: number, groups: number) {
    super();
    if (channels % headSize !== 0) throw new Error(`MultiHeadAttnBlock: ${channels} channels not divisible by head_size ${headSize}`);
    this.norm1 = this.addModule('norm1', normalize(channels, groups));
    this.norm2 = this.addModule('norm2', normalize(channels, groups));
    this.q = this.addModule('q', new Conv2d(channels, channels, 1));
    this.k = this.addModule('k', new Conv2d(channels, channels, 1));
    this.v = this.addModule('v', new Conv2d(channels, channels, 1));
    this.proj_out = this.addModule('proj_out', new Conv2d(channels, channels, 1));
  }

  forward(g: Graph, x: Value): Value {
    const h = this.norm1.forward(g, x);
    const tokens = (v: Value) => op.transpose(op.reshape(v, [0, 0, -1]), [0, 2, 1]);
    const attended = this.scoped(g, () => attention(
      tokens(this.q.forward(g, h)), tokens(this.k.forward(g, h)), tokens(this.v.forward(g, h)),
      this.headSize, 1 / Math.sqrt(this.channels / this.headSize),
    ));
    const spatial = op.reshape(op.transpose(attended, [0, 2, 1]), op.shapeOf(x));
    return op.add(x, this.proj_out.forward(g, spatial));
  }
}

/** Stride-2 convolution after a (0, 1, 0, 1) zero pad: right and bottom only. */
export class Downsample extends Module {
  readonly conv: Conv2d;

  constructor(channels: number) {
    super();
    this.conv = this.addModule('conv', new Conv2d(channels, channels, 3, { stride: 2 }));
  }

  forward(g: Graph, x: Value): Value {
    return this.conv.forward(g, op.pad(x, [0, 0, 0, 0, 0, 0, 1, 1]));
  }
}

class DownLevel extends Module {
  readonly block: ModuleList<ResnetBlock>;
  readonly attn: ModuleList<MultiHeadAttnBlock>;
  readonly downsample?: Downsample;

  constructor(blocks: ResnetBlock[], attns: MultiHeadAttnBlock[], downsampleChannels?: number) {
    super();
    this.block = this.addModule('block', new ModuleList(blocks));
    this.attn = this.addModule('attn', new ModuleList(attns));
    if (downsampleChannels !== undefined) this.downsample = this.addModule('downsample', new Downsample(downsampleChannels));
  }
}

class MidLevel extends Module {
  readonly block_1: ResnetBlock;
  readonly attn_1: MultiHeadAttnBlock;
  readonly block_2: ResnetBlock;

  constructor(channels: number, headSize: number, groups: number) {
    super();
    this.block_1 = this.addModule('block_1', new ResnetBlock(channels, channels, groups));
    this.attn_1 = this.addModule('attn_1', new MultiHeadAttnBlock(channels, headSize, groups));
    this.block_2 = this.addModule('block_2', new ResnetBlock(channels, channels, groups));
  }
}

export interface MultiHeadEncoderConfig {
  ch: number;
  chMult: number[];
  numResBlocks: number;
  attnResolutions: number[];
  resolution: number;
  inChannels: number;
  zChannels: number;
  doubleZ: boolean;
  enableMid: boolean;
  headSize: number;
  groups: number;
}

export class MultiHeadEncoder extends Module {
  readonly conv_in: Conv2d;
  readonly down: ModuleList<DownLevel>;
  readonly mid?: MidLevel;
  readonly norm_out: GroupNorm;
  readonly conv_out: Conv2d;

  constructor(readonly cfg: MultiHeadEncoderConfig) {
    super();
    const { ch, chMult, groups } = cfg;
    this.conv_in = this.addModule('conv_in', new Conv2d(cfg.inChannels, ch, 3, { padding: 1 }));
    this.down = this.addModule('down', new ModuleList<DownLevel>());
    let res = cfg.resolution;
    let blockIn = ch;
    chMult.forEach((mult, level) => {
      const blockOut = ch * mult;
      const blocks: ResnetBlock[] = [];
      const attns: MultiHeadAttnBlock[] = [];
      for (let i = 0; i < cfg.numResBlocks; i++) {
        blocks.push(new ResnetBlock(blockIn, blockOut, groups));
        blockIn = blockOut;
        if (cfg.attnResolutions.includes(res)) attns.push(new MultiHeadAttnBlock(blockIn, cfg.headSize, groups));
      }
      const last = level === chMult.length - 1;
      this.down.push(new DownLevel(blocks, attns, last ? undefined : blockIn));
      if (!last) res = Math.floor(res / 2);
    });
    if (cfg.enableMid) this.mid = this.addModule('mid', new MidLevel(blockIn, cfg.headSize, groups));
    this.norm_out = this.addModule('norm_out', normalize(blockIn, groups));
    this.conv_out = this.addModule('conv_out', new Conv2d(blockIn, cfg.doubleZ ? 2 * cfg.zChannels : cfg.zChannels, 3, { padding: 1 }));
  }

  forward(g: Graph, x: Value): Value {
    let h = this.conv_in.forward(g, x);
    for (const level of this.down.items) {
      level.block.items.forEach((b, i) => {
        h = b.forward(g, h);
        if (level.attn.length > 0) h = level.attn.items[i]!.forward(g, h);
      });
      if (level.downsample) h = level.downsample.forward(g, h);
    }
    if (this.mid) {
      h = this.mid.block_1.forward(g, h);
      h = this.mid.attn_1.forward(g, h);
      h = this.mid.block_2.forward(g, h);
    }
    return this.conv_out.forward(g, op.silu(this.norm_out.forward(g, h)));
  }
}
