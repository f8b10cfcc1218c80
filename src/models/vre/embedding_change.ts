/** OSDFace TwoLayerConv1x1: tokens (B, 77, E) -> prompt (B, 77, C) through two 1x1 Conv1d + SiLU. */
import type { Graph, Value } from '../../graph/ir.js';
import * as op from '../../graph/ops.js';
import { Module } from '../../nn/module.js';
import { Conv1d } from '../../nn/layers.js';

export class TwoLayerConv1x1 extends Module {
  readonly conv1: Conv1d;
  readonly conv2: Conv1d;

  constructor(readonly inChannels: number, readonly outChannels: number, hiddenChannels = Math.floor(inChannels / 2)) {
    super();
    this.conv1 = this.addModule('conv1', new Conv1d(inChannels, hiddenChannels, 1));
    this.conv2 = this.addModule('conv2', new Conv1d(hiddenChannels, outChannels, 1));
  }

  forward(g: Graph, tokens: Value): Value {
    const x = op.transpose(tokens, [0, 2, 1]);
    const h = op.silu(this.conv2.forward(g, op.silu(this.conv1.forward(g, x))));
    return op.transpose(h, [0, 2, 1]);
  }
}
