/** Deterministic parameter initialisation for training from scratch (PyTorch-like scales). */
import { Random } from '../degrade/random.js';
import { numel } from '../tensor.js';

/**
 * Weights (rank >= 2): uniform within +-1/sqrt(fan_in), like torch's default for Linear/Conv;
 * 1-D `.weight` (norm scales): 1; biases: 0; LoRA B: 0 (so training starts from the base network).
 */
export function initParam(key: string, shape: number[], seed: number): Float32Array {
  const out = new Float32Array(numel(shape));
  if (/lora_B\.weight$/.test(key) || key.endsWith('.bias')) return out;
  if (shape.length === 1) return out.fill(1);
  const fanIn = numel(shape.slice(1));
  const bound = /quantize\.embedding\.weight$/.test(key) ? 1 / shape[0]! : 1 / Math.sqrt(fanIn);
  const rng = new Random(`${seed}:init:${key}`);
  for (let i = 0; i < out.length; i++) out[i] = rng.uniform(-bound, bound);
  return out;
}
