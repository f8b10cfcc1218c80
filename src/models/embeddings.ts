/** diffusers models/embeddings.py: sinusoidal Timesteps and the TimestepEmbedding MLP. */
import type { Graph, Value } from '../graph/ir.js';
import * as op from '../graph/ops.js';
import { Module } from '../nn/module.js';
import { Linear } from '../nn/layers.js';

/**
 * Frequencies exp(-ln(10000) * i / (half - shift)), rounded step by step to float32 as torch
 * computes them, so the embedding matches the reference to the last bit where possible.
 */
export function timestepFrequencies(half: number, downscaleFreqShift: number, maxPeriod = 10000): Float32Array {
  const f = Math.fround;
  const c = f(-Math.log(maxPeriod));
  const denom = f(half - downscaleFreqShift);
  return Float32Array.from({ length: half }, (_, i) => f(Math.exp(f(f(c * i) / denom))));
}

/** Timesteps(num_channels, flip_sin_to_cos, downscale_freq_shift): (T,) -> (T, num_channels). */
export function timestepEmbedding(t: Value, channels: number, flipSinToCos: boolean, freqShift: number): Value {
  const g = t.graph;
  if (channels % 2 !== 0) g.fail(`timestep embedding with an odd width (${channels}) is not supported`);
  const half = channels / 2;
  const freqs = op.floatConst(g, [1, half], timestepFrequencies(half, freqShift), 'timestep_freqs');
  const args = op.mul(op.unsqueeze(t, [1]), freqs);
  const parts = flipSinToCos ? [op.cos(args), op.sin(args)] : [op.sin(args), op.cos(args)];
  return op.concat(parts, -1);
}

export class TimestepEmbedding extends Module {
  readonly linear_1: Linear;
  readonly linear_2: Linear;

  constructor(inChannels: number, timeEmbedDim: number) {
    super();
    this.linear_1 = this.addModule('linear_1', new Linear(inChannels, timeEmbedDim));
    this.linear_2 = this.addModule('linear_2', new Linear(timeEmbedDim, timeEmbedDim));
  }

  forward(g: Graph, x: Value): Value {
    return this.linear_2.forward(g, op.silu(this.linear_1.forward(g, x)));
  }
}
