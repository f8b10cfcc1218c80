/**
 * diffusers models/attention_processor.py (Attention with AttnProcessor) and models/attention.py
 * (FeedForward with GEGLU, BasicTransformerBlock).
 */
import type { Graph, Value } from '../graph/ir.js';
import * as op from '../graph/ops.js';
import { Module, ModuleList } from '../nn/module.js';
import { GroupNorm, LayerNorm, Linear } from '../nn/layers.js';
import { attention } from '../nn/functional/attention.js';

export interface AttentionConfig {
  queryDim: number;
  crossAttentionDim?: number;
  heads: number;
  dimHead: number;
  bias: boolean;
  /** Set for the VAE's mid-block attention: group norm on the input, residual added inside. */
  normNumGroups?: number;
  eps?: number;
  residualConnection?: boolean;
  rescaleOutputFactor?: number;
}

export class Attention extends Module {
  readonly group_norm?: GroupNorm;
  readonly to_q: Linear;
  readonly to_k: Linear;
  readonly to_v: Linear;
  readonly to_out: ModuleList<Linear>;

  constructor(readonly cfg: AttentionConfig) {
    super();
    const inner = cfg.heads * cfg.dimHead;
    const kvDim = cfg.crossAttentionDim ?? cfg.queryDim;
    if (cfg.normNumGroups !== undefined) {
      this.group_norm = this.addModule('group_norm', new GroupNorm(cfg.normNumGroups, cfg.queryDim, cfg.eps ?? 1e-5));
    }
    this.to_q = this.addModule('to_q', new Linear(cfg.queryDim, inner, cfg.bias));
    this.to_k = this.addModule('to_k', new Linear(kvDim, inner, cfg.bias));
    this.to_v = this.addModule('to_v', new Linear(kvDim, inner, cfg.bias));
    this.to_out = this.addModule('to_out', new ModuleList([new Linear(inner, cfg.queryDim, true)]));
  }

  /** x: (B, L, C), or (B, C, H, W) for the spatial (VAE) form; context: (B, Lk, crossAttentionDim). */
  forward(g: Graph, x: Value, context?: Value): Value {
    const spatial = x.rank === 4;
    const normed = this.group_norm ? this.group_norm.forward(g, x) : x;
    const tokens = spatial ? op.transpose(op.reshape(normed, [0, 0, -1]), [0, 2, 1]) : normed;
    const kv = context ?? tokens;
    const q = this.to_q.forward(g, tokens);
    const k = this.to_k.forward(g, kv);
    const v = this.to_v.forward(g, kv);
    let out = this.to_out.items[0]!.forward(g, this.scoped(g, () => attention(q, k, v, this.cfg.heads, 1 / Math.sqrt(this.cfg.dimHead))));
    if (spatial) out = op.reshape(op.transpose(out, [0, 2, 1]), op.shapeOf(x));
    if (this.cfg.residualConnection) out = op.add(out, x);
    const rescale = this.cfg.rescaleOutputFactor ?? 1;
    return rescale === 1 ? out : op.div(out, rescale);
  }
}

/** GEGLU: a projection to twice the width, one half gating the other through exact GELU. */
export class GEGLU extends Module {
  readonly proj: Linear;

  constructor(dimIn: number, dimOut: number) {
    super();
    this.proj = this.addModule('proj', new Linear(dimIn, dimOut * 2));
  }

  forward(g: Graph, x: Value): Value {
    const [hidden, gate] = this.scoped(g, () => op.split(this.proj.forward(g, x), -1, 2)) as [Value, Value];
    return op.mul(hidden, op.gelu(gate));
  }
}

/** FeedForward(dim, activation_fn='geglu', mult=4): net = [GEGLU, Dropout, Linear]. */
export class FeedForward extends Module {
  readonly net: ModuleList<Module>;
  private readonly geglu: GEGLU;
  private readonly out: Linear;

  constructor(dim: number, mult = 4) {
    super();
    const inner = dim * mult;
    this.geglu = new GEGLU(dim, inner);
    this.out = new Linear(inner, dim);
    this.net = this.addModule('net', new ModuleList<Module>([this.geglu, new Dropout(), this.out]));
  }

  forward(g: Graph, x: Value): Value {
    return this.out.forward(g, this.geglu.forward(g, x));
  }
}

/** Inference-time dropout: no parameters, no computation; kept so module indices match torch. */
export class Dropout extends Module {}

export interface BasicTransformerBlockConfig {
  dim: number;
  heads: number;
  dimHead: number;
  crossAttentionDim: number;
  onlyCrossAttention: boolean;
}

export class BasicTransformerBlock extends Module {
  readonly norm1: LayerNorm;
  readonly attn1: Attention;
  readonly norm2: LayerNorm;
  readonly attn2: Attention;
  readonly norm3: LayerNorm;
  readonly ff: FeedForward;

  constructor(readonly cfg: BasicTransformerBlockConfig) {
    super();
    const { dim, heads, dimHead } = cfg;
    this.norm1 = this.addModule('norm1', new LayerNorm(dim, 1e-5));
    this.attn1 = this.addModule('attn1', new Attention({
      queryDim: dim, heads, dimHead, bias: false,
      crossAttentionDim: cfg.onlyCrossAttention ? cfg.crossAttentionDim : undefined,
    }));
    this.norm2 = this.addModule('norm2', new LayerNorm(dim, 1e-5));
    this.attn2 = this.addModule('attn2', new Attention({ queryDim: dim, crossAttentionDim: cfg.crossAttentionDim, heads, dimHead, bias: false }));
    this.norm3 = this.addModule('norm3', new LayerNorm(dim, 1e-5));
    this.ff = this.addModule('ff', new FeedForward(dim));
  }

  forward(g: Graph, x: Value, context: Value): Value {
    let h = op.add(this.attn1.forward(g, this.norm1.forward(g, x), this.cfg.onlyCrossAttention ? context : undefined), x);
    h = op.add(this.attn2.forward(g, this.norm2.forward(g, h), context), h);
    return op.add(this.ff.forward(g, this.norm3.forward(g, h)), h);
  }
}
