/**
 * Merging LoRA adapters into base weights: W' = W + (alpha / rank) * B @ A,
 * exactly OSDFace's infer.merge_Unet (2-D: `W + scale * mm(B, A)`; 4-D conv:
 * `W + scale * (B.view(out, rank) @ A.view(rank, -1)).view(W.shape)`).
 *
 * Recognised key styles (an optional model prefix, default "unet.", is stripped first):
 *   PEFT:                  <module>.lora_A[.<adapter>].weight / <module>.lora_B[.<adapter>].weight
 *   diffusers LoRA layers: <module>.lora.down.weight / <module>.lora.up.weight
 *   diffusers attention processors (older):
 *                          <attn>.processor.to_q_lora.down.weight -> <attn>.to_q.weight
 *                          (to_k / to_v likewise, to_out_lora -> <attn>.to_out.0)
 * The base key is always `<module>.weight`.
 *
 * Numerics: each entry of B @ A is a dot product over the rank, accumulated in float64 and
 * rounded once to float32; the scaling and the addition are then float32 operations. That is
 * the correctly rounded version of the reference's float32 `W + scale * mm(B, A)`, so results
 * agree with torch to within float32 rounding of the (tiny, rank-length) dot products.
 */

import { type FloatTensor, type Tensor, numel, shapeStr } from '../tensor.js';
import { WeightFileError, listKeys, similarKeys } from './errors.js';

export interface MergeLoraOptions {
  /** Rank r used for the scale alpha / r; defaults to each A's first dimension. When given, every A must have it. */
  rank?: number;
  /** LoRA alpha (OSDFace: lora_alpha). */
  alpha: number;
  /** Prefix naming the target model in LoRA keys, stripped before matching (default "unet."). */
  prefix?: string;
  /** LoRA file name for error messages. */
  file?: string;
}

interface Pair {
  module: string;
  a?: { key: string; t: Tensor };
  b?: { key: string; t: Tensor };
}

const PATTERNS: { re: RegExp; role: 'a' | 'b'; module: (m: RegExpMatchArray) => string }[] = [
  { re: /^(.+)\.lora_A(?:\.[^.]+)?\.weight$/, role: 'a', module: (m) => m[1] },
  { re: /^(.+)\.lora_B(?:\.[^.]+)?\.weight$/, role: 'b', module: (m) => m[1] },
  { re: /^(.+)\.processor\.(to_[qkv]|to_out)_lora\.down\.weight$/, role: 'a', module: processorModule },
  { re: /^(.+)\.processor\.(to_[qkv]|to_out)_lora\.up\.weight$/, role: 'b', module: processorModule },
  { re: /^(.+)\.lora\.down\.weight$/, role: 'a', module: (m) => m[1] },
  { re: /^(.+)\.lora\.up\.weight$/, role: 'b', module: (m) => m[1] },
];

function processorModule(m: RegExpMatchArray): string {
  return `${m[1]}.${m[2] === 'to_out' ? 'to_out.0' : m[2]}`;
}

/**
 * Merges every LoRA pair in `lora` into `weights`.
 *
 * `weights` is updated in place at the map level: each merged key's entry is replaced by a
 * new FloatTensor; the previous tensor objects and their arrays are left untouched (they may
 * be shared with other users). Everything is validated before anything is changed, so on
 * error `weights` is unmodified.
 *
 * @returns number of modules merged (each consumed one A and one B tensor)
 */
export function mergeLora(weights: Map<string, FloatTensor>, lora: Map<string, Tensor>, opts: MergeLoraOptions): { merged: number } {
  const file = opts.file ?? '<lora>';
  const prefix = opts.prefix ?? 'unet.';
  if (!Number.isFinite(opts.alpha)) throw new WeightFileError(file, 'LoRA alpha must be a finite number', { found: String(opts.alpha) });
  if (opts.rank !== undefined && !(Number.isInteger(opts.rank) && opts.rank > 0)) {
    throw new WeightFileError(file, 'LoRA rank must be a positive integer', { found: String(opts.rank) });
  }

  const pairs = new Map<string, Pair>();
  for (const [key, t] of lora) {
    const stripped = key.startsWith(prefix) ? key.slice(prefix.length) : key;
    let matched = false;
    for (const p of PATTERNS) {
      const m = stripped.match(p.re);
      if (!m) continue;
      const module = p.module(m);
      let pair = pairs.get(module);
      if (!pair) pairs.set(module, (pair = { module }));
      const other = pair[p.role];
      if (other) {
        throw new WeightFileError(file, `LoRA key '${key}' targets module '${module}', which '${other.key}' already targets`, {
          key,
          hint: 'the file mixes two LoRA key styles for the same module',
        });
      }
      pair[p.role] = { key, t };
      matched = true;
      break;
    }
    if (!matched) {
      throw new WeightFileError(file, `LoRA key '${key}' is not a recognised LoRA weight name`, {
        key,
        expected: '<module>.lora_A.weight / .lora_B.weight, or <module>.lora.down.weight / .lora.up.weight',
      });
    }
  }

  const updates: [string, FloatTensor][] = [];
  for (const pair of pairs.values()) {
    const { a, b } = pair;
    if (!a || !b) {
      const have = (a ?? b)!;
      throw new WeightFileError(file, `LoRA key '${have.key}' has no ${a ? 'up/B' : 'down/A'} partner`, {
        key: have.key,
        expected: `a matching ${a ? 'lora_B / lora.up' : 'lora_A / lora.down'} tensor for module '${pair.module}'`,
        found: 'none',
      });
    }
    const baseKey = `${pair.module}.weight`;
    const w = weights.get(baseKey);
    if (!w) {
      const similar = similarKeys(baseKey, weights.keys(), 3);
      throw new WeightFileError(file, `LoRA key '${a.key}' targets base weight '${baseKey}', which the model does not have`, {
        key: a.key,
        ...(similar.length > 0 ? { hint: `similar base keys: ${listKeys(similar)}` } : {}),
      });
    }
    updates.push([baseKey, merged(file, w, a, b, opts)]);
  }

  for (const [k, t] of updates) weights.set(k, t);
  return { merged: updates.length };
}

function merged(
  file: string,
  w: FloatTensor,
  a: { key: string; t: Tensor },
  b: { key: string; t: Tensor },
  opts: MergeLoraOptions,
): FloatTensor {
  for (const x of [a, b]) {
    if (x.t.dtype !== 'float32') {
      throw new WeightFileError(file, `LoRA tensor '${x.key}' is not floating point`, { key: x.key, expected: 'float32', found: x.t.dtype });
    }
  }
  if (w.dtype !== 'float32') throw new WeightFileError(file, `base weight for '${a.key}' is not float32`, { key: a.key, found: w.dtype });
  if (w.shape.length !== 2 && w.shape.length !== 4) {
    throw new WeightFileError(file, `LoRA key '${a.key}' targets a ${w.shape.length}-D weight`, {
      key: a.key,
      expected: 'a 2-D linear or 4-D conv weight',
      found: shapeStr(w.shape),
    });
  }
  const out = w.shape[0];
  const rank = a.t.shape[0];
  const inner = numel(w.shape) / out;
  // A has W's shape with the first dimension replaced by the rank; B is (out, rank[, 1, 1]).
  const wantA = [rank, ...w.shape.slice(1)];
  const wantB = w.shape.length === 4 ? [out, rank, 1, 1] : [out, rank];
  if (a.t.shape.length !== wantA.length || !a.t.shape.every((d, i) => d === wantA[i]) || rank === 0) {
    throw new WeightFileError(file, `LoRA tensor '${a.key}' does not fit base weight ${shapeStr(w.shape)}`, {
      key: a.key,
      expected: shapeStr(wantA),
      found: shapeStr(a.t.shape),
    });
  }
  if (b.t.shape.length !== wantB.length || !b.t.shape.every((d, i) => d === wantB[i])) {
    throw new WeightFileError(file, `LoRA tensor '${b.key}' does not fit base weight ${shapeStr(w.shape)} with rank ${rank}`, {
      key: b.key,
      expected: shapeStr(wantB),
      found: shapeStr(b.t.shape),
    });
  }
  if (opts.rank !== undefined && opts.rank !== rank) {
    throw new WeightFileError(file, `LoRA tensor '${a.key}' has rank ${rank}, but rank ${opts.rank} was configured`, {
      key: a.key,
      expected: `first dimension ${opts.rank}`,
      found: shapeStr(a.t.shape),
    });
  }

  const scale = Math.fround(opts.alpha / (opts.rank ?? rank));
  const A = a.t.data as Float32Array;
  const B = b.t.data as Float32Array;
  const W = w.data;
  const res = new Float32Array(W.length);
  for (let o = 0; o < out; o++) {
    for (let j = 0; j < inner; j++) {
      let acc = 0;
      for (let r = 0; r < rank; r++) acc += B[o * rank + r] * A[r * inner + j];
      const idx = o * inner + j;
      res[idx] = W[idx] + Math.fround(scale * Math.fround(acc));
    }
  }
  return { dtype: 'float32', shape: [...w.shape], data: res };
}
