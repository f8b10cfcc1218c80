/**
 * Multi-head scaled dot-product attention, behind one function so its implementation can change
 * in one place. q: (B, Lq, heads*d), k and v: (B, Lk, heads*d) -> (B, Lq, heads*d).
 *
 * By default it is ONNX Runtime's fused com.microsoft.MultiHeadAttention, which never holds the
 * (heads, Lq, Lk) score matrix in memory; graphs built with `graph.fusedAttention = false` get the
 * same math from standard ONNX ops (needed where a standard-only graph is wanted, e.g. for
 * differentiation).
 */
import type { Value } from '../../graph/ir.js';
import * as op from '../../graph/ops.js';

export function attention(q: Value, k: Value, v: Value, heads: number, scale?: number): Value {
  const g = q.graph;
  const inner = q.shape[2]!;
  if (q.rank !== 3 || k.rank !== 3 || v.rank !== 3) g.fail(`attention expects (B, L, C) tensors, got ${q.shape} / ${k.shape} / ${v.shape}`);
  if (inner % heads !== 0) g.fail(`attention: ${inner} channels not divisible into ${heads} heads`);
  if (k.shape[2] !== inner || v.shape[2] !== inner) g.fail(`attention: q has ${inner} channels, k ${k.shape[2]}, v ${v.shape[2]}`);
  if (k.shape[1] !== v.shape[1]) g.fail(`attention: k has ${k.shape[1]} positions, v ${v.shape[1]}`);
  const d = inner / heads;
  const s = scale ?? 1 / Math.sqrt(d);
  if (g.fusedAttention) {
    return g.addNode('MultiHeadAttention', [q, k, v], [{ dtype: q.dtype, shape: q.shape }], {
      num_heads: { kind: 'int', value: heads },
      scale: { kind: 'float', value: s },
    }, 'com.microsoft')[0]!;
  }
  const split = (x: Value) => op.transpose(op.reshape(x, [0, 0, heads, d]), [0, 2, 1, 3]);
  const kT = op.transpose(op.reshape(k, [0, 0, heads, d]), [0, 2, 3, 1]);
  const scores = op.mul(op.matmul(split(q), kT), s);
  const out = op.matmul(op.softmax(scores, -1), split(v));
  return op.reshape(op.transpose(out, [0, 2, 1, 3]), [0, 0, inner]);
}
