/** diffusers models/transformers/transformer_2d.py, continuous-input form. */
import type { Graph, Value } from '../graph/ir.js';
import * as op from '../graph/ops.js';
import { Module, ModuleList } from '../nn/module.js';
import { Conv2d, GroupNorm, Linear } from '../nn/layers.js';
import { BasicTransformerBlock } from './attention.js';

export interface Transformer2DConfig {
  heads: number;
  dimHead: number;
  inChannels: number;
  numLayers: number;
  crossAttentionDim: number;
  normNumGroups: number;
  useLinearProjection: boolean;
  onlyCrossAttention: boolean;
}

export class Transformer2DModel extends Module {
  readonly norm: GroupNorm;
  readonly proj_in: Linear | Conv2d;
  readonly transformer_blocks: ModuleList<BasicTransformerBlock>;
  readonly proj_out: Linear | Conv2d;

  constructor(readonly cfg: Transformer2DConfig) {
    super();
    const inner = cfg.heads * cfg.dimHead;
    const c = cfg.inChannels;
    this.norm = this.addModule('norm', new GroupNorm(cfg.normNumGroups, c, 1e-6));
    this.proj_in = this.addModule('proj_in', cfg.useLinearProjection ? new Linear(c, inner) : new Conv2d(c, inner, 1));
    this.transformer_blocks = this.addModule('transformer_blocks', new ModuleList(
      Array.from({ length: cfg.numLayers }, () => new BasicTransformerBlock({
        dim: inner, heads: cfg.heads, dimHead: cfg.dimHead, crossAttentionDim: cfg.crossAttentionDim, onlyCrossAttention: cfg.onlyCrossAttention,
      })),
    ));
    this.proj_out = this.addModule('proj_out', cfg.useLinearProjection ? new Linear(inner, c) : new Conv2d(inner, c, 1));
  }

  forward(g: Graph, x: Value, context: Value): Value {
    const toTokens = (v: Value) => op.transpose(op.reshape(v, [0, 0, -1]), [0, 2, 1]);
    const normed = this.norm.forward(g, x);
    let h = this.cfg.useLinearProjection ? this.proj_in.forward(g, toTokens(normed)) : toTokens(this.proj_in.forward(g, normed));
    for (const block of this.transformer_blocks.items) h = block.forward(g, h, context);
    const xShape = op.shapeOf(x);
    const toSpatial = (v: Value) =>
      op.reshape(op.transpose(v, [0, 2, 1]), op.concat([op.slice(xShape, 0, 0, 1), op.int64(g, [v.shape[2]!]), op.slice(xShape, 0, 2, 4)], 0));
    const out = this.cfg.useLinearProjection ? toSpatial(this.proj_out.forward(g, h)) : this.proj_out.forward(g, toSpatial(h));
    return op.add(out, x);
  }
}
