/**
 * LoRA adapters as trainable graph parameters: W' = W + (alpha / rank) * B @ A, with A (rank, in...)
 * and B (out, rank...) named `<module>.lora_A.weight` / `<module>.lora_B.weight` (PEFT's names
 * without the model prefix). For convolutions B is viewed as (out, rank) and A as (rank, in*k*k).
 */
import type { Graph, Value } from '../graph/ir.js';
import * as op from '../graph/ops.js';

export function adaptedWeight(g: Graph, modulePath: string, w: Value): Value {
  const lora = g.lora;
  if (!lora || !lora.targets.has(modulePath)) return w;
  const [out, inner] = [w.shape[0]!, w.shape.slice(1).reduce((a, b) => a * b, 1)];
  const a = g.param(`${modulePath}.lora_A.weight`, [lora.rank, ...w.shape.slice(1)]);
  const b = g.param(`${modulePath}.lora_B.weight`, [out, lora.rank, ...w.shape.slice(2).map(() => 1)]);
  const delta = op.matmul(op.reshape(b, [out, lora.rank]), op.reshape(a, [lora.rank, inner]));
  return op.add(w, op.mul(op.reshape(delta, w.shape), lora.scale));
}
