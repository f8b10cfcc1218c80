/**
 * Group normalization, behind one function so its implementation can change in one place.
 * ONNX's GroupNormalization expands into ~29 small ops in ONNX Runtime; normalizing the
 * (N, groups, -1) view with InstanceNormalization is a single fused kernel instead.
 */
import type { Value } from '../../graph/ir.js';
import * as op from '../../graph/ops.js';

export function groupNorm(x: Value, groups: number, weight: Value | null, bias: Value | null, eps: number): Value {
  const g = x.graph;
  const c = x.shape[1]!;
  if (c % groups !== 0) g.fail(`GroupNorm: ${c} channels are not divisible into ${groups} groups`);
  const ones = op.floatConst(g, [groups], new Float32Array(groups).fill(1), 'gn_ones');
  const zeros = op.floatConst(g, [groups], new Float32Array(groups), 'gn_zeros');
  const grouped = op.reshape(x, [0, groups, -1]);
  let y = op.reshape(op.instanceNorm(grouped, ones, zeros, eps), op.shapeOf(x));
  const perChannel = [c, ...Array(x.rank - 2).fill(1)];
  if (weight) {
    if (weight.shape[0] !== c) g.fail(`GroupNorm: weight ${weight.shape} for ${c} channels`);
    y = op.mul(y, op.reshape(weight, perChannel));
  }
  if (bias) y = op.add(y, op.reshape(bias, perChannel));
  return y;
}
