/** diffusers models/resnet.py and models/upsampling.py / downsampling.py: ResnetBlock2D, Downsample2D, Upsample2D. */
import type { Graph, Value } from '../graph/ir.js';
import * as op from '../graph/ops.js';
import { Module } from '../nn/module.js';
import { Conv2d, GroupNorm, Linear } from '../nn/layers.js';

export interface ResnetBlock2DConfig {
  inChannels: number;
  outChannels?: number;
  /** null: no timestep conditioning (VAE). */
  tembChannels: number | null;
  groups: number;
  eps: number;
  outputScaleFactor?: number;
}

export class ResnetBlock2D extends Module {
  readonly norm1: GroupNorm;
  readonly conv1: Conv2d;
  readonly time_emb_proj?: Linear;
  readonly norm2: GroupNorm;
  readonly conv2: Conv2d;
  readonly conv_shortcut?: Conv2d;
  readonly outputScaleFactor: number;

  constructor(cfg: ResnetBlock2DConfig) {
    super();
    const out = cfg.outChannels ?? cfg.inChannels;
    this.outputScaleFactor = cfg.outputScaleFactor ?? 1;
    this.norm1 = this.addModule('norm1', new GroupNorm(cfg.groups, cfg.inChannels, cfg.eps));
    this.conv1 = this.addModule('conv1', new Conv2d(cfg.inChannels, out, 3, { padding: 1 }));
    if (cfg.tembChannels !== null) this.time_emb_proj = this.addModule('time_emb_proj', new Linear(cfg.tembChannels, out));
    this.norm2 = this.addModule('norm2', new GroupNorm(cfg.groups, out, cfg.eps));
    this.conv2 = this.addModule('conv2', new Conv2d(out, out, 3, { padding: 1 }));
    if (cfg.inChannels !== out) this.conv_shortcut = this.addModule('conv_shortcut', new Conv2d(cfg.inChannels, out, 1));
  }

  forward(g: Graph, x: Value, temb: Value | null): Value {
    let h = this.conv1.forward(g, op.silu(this.norm1.forward(g, x)));
    if (this.time_emb_proj) {
      if (!temb) return this.scoped(g, () => g.fail('this block needs a timestep embedding'));
      h = op.add(h, op.unsqueeze(this.time_emb_proj.forward(g, op.silu(temb)), [2, 3]));
    }
    h = this.conv2.forward(g, op.silu(this.norm2.forward(g, h)));
    const shortcut = this.conv_shortcut ? this.conv_shortcut.forward(g, x) : x;
    const out = op.add(shortcut, h);
    return this.outputScaleFactor === 1 ? out : op.div(out, this.outputScaleFactor);
  }
}

export class Downsample2D extends Module {
  readonly conv: Conv2d;

  /** padding 0 means torch's asymmetric (0, 1, 0, 1) pad before a stride-2 convolution. */
  constructor(channels: number, readonly padding: number) {
    super();
    this.conv = this.addModule('conv', new Conv2d(channels, channels, 3, { stride: 2, padding }));
  }

  forward(g: Graph, x: Value): Value {
    const input = this.padding === 0 ? op.pad(x, [0, 0, 0, 0, 0, 0, 1, 1]) : x;
    return this.conv.forward(g, input);
  }
}

export class Upsample2D extends Module {
  readonly conv: Conv2d;

  constructor(channels: number) {
    super();
    this.conv = this.addModule('conv', new Conv2d(channels, channels, 3, { padding: 1 }));
  }

  /**
   * Nearest-neighbour upsampling to `size` (the skip connection's [h, w]), then a 3x3 conv. Without
   * `size` (exactly 2x, as in the VAE decoder) the same result is computed at the low resolution: each
   * of the four output phases sees only 2x2 distinct input pixels, so four 2x2 convolutions with
   * summed kernel taps, interleaved by DepthToSpace, need 16 instead of 36 multiply-adds per input
   * pixel and channel pair.
   */
  forward(g: Graph, x: Value, size?: Value): Value {
    if (size) return this.conv.forward(g, op.resize2d(x, size, { mode: 'nearest' }));
    return this.scoped(g, () => {
      const { weight, bias } = this.conv.weightAndBias(g);
      const tap = (w: Value, axis: number, i: number) => op.slice(w, axis, i, i + 1);
      // Phase 0 reads input rows (i-1, i) with kernel rows (0, 1+2); phase 1 reads (i, i+1) with (0+1, 2).
      const fold = (w: Value, axis: number, phase: number) => (phase === 0
        ? op.concat([tap(w, axis, 0), op.add(tap(w, axis, 1), tap(w, axis, 2))], axis)
        : op.concat([op.add(tap(w, axis, 0), tap(w, axis, 1)), tap(w, axis, 2)], axis));
      const phases: Value[] = [];
      for (const a of [0, 1]) {
        for (const b of [0, 1]) {
          const k = fold(fold(weight, 2, a), 3, b);
          phases.push(op.conv(x, k, bias, { pads: [1 - a, 1 - b, a, b] }));
        }
      }
      const stacked = op.concat(phases, 1);
      const [n, c, h, w] = x.shape as [number, number, number, number];
      return g.addNode('DepthToSpace', [stacked], [{ dtype: x.dtype, shape: [n, this.conv.outChannels, h * 2, w * 2] }], {
        blocksize: { kind: 'int', value: 2 }, mode: { kind: 'string', value: 'DCR' },
      })[0]!;
    });
  }
}
