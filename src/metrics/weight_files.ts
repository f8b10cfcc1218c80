/**
 * Weight files for the metric networks (LPIPS, DISTS, FID): read the user's files (safetensors, or
 * torch.save files in the zip or the legacy format), rename their keys to our modules' names, and
 * check that every parameter a network uses is there with the right shape before anything runs.
 */

import { SafetensorsFile } from '../weights/safetensors.js';
import { loadTorchCheckpoint } from '../weights/torch.js';
import { WeightFileError, listKeys } from '../weights/errors.js';
import type { WeightSource } from '../graph/emit.js';
import type { Tensor } from '../tensor.js';
import { shapeStr } from '../tensor.js';

export interface LoadedTensor {
  tensor: Tensor;
  file: string;
}

/** All tensors of the files, by key (a later file's key wins over an earlier one's). */
export function readTensorFiles(files: readonly string[]): Map<string, LoadedTensor> {
  const out = new Map<string, LoadedTensor>();
  for (const file of files) {
    let tensors: Map<string, Tensor>;
    if (file.endsWith('.safetensors')) {
      const f = SafetensorsFile.open(file);
      try {
        tensors = f.readAll();
      } finally {
        f.close();
      }
    } else {
      tensors = loadTorchCheckpoint(file);
    }
    for (const [k, t] of tensors) out.set(k, { tensor: t, file });
  }
  return out;
}

/**
 * The float32 data of each `expected` parameter, found under the key `rename` maps a file key to
 * (undefined: not one of ours). Missing parameters and shape mismatches are WeightFileErrors that
 * name the file(s), the keys and `hint`.
 */
export function pickParameters(
  files: readonly string[],
  loaded: ReadonlyMap<string, LoadedTensor>,
  expected: readonly [string, number[]][],
  rename: (fileKey: string) => string | undefined,
  hint: string,
): Map<string, Float32Array> {
  const byOurKey = new Map<string, LoadedTensor & { fileKey: string }>();
  for (const [k, t] of loaded) {
    const ours = rename(k);
    if (ours !== undefined) byOurKey.set(ours, { ...t, fileKey: k });
  }
  const missing = expected.filter(([k]) => !byOurKey.has(k)).map(([k]) => k);
  if (missing.length > 0) {
    throw new WeightFileError(files.join(', '), `${missing.length} of the ${expected.length} parameters are missing: ${listKeys(missing)}`, {
      found: `${loaded.size} tensors, e.g. ${listKeys([...loaded.keys()])}`,
      hint,
    });
  }
  const out = new Map<string, Float32Array>();
  for (const [key, shape] of expected) {
    const t = byOurKey.get(key)!;
    const n = shape.reduce((a, b) => a * b, 1);
    const dataLength = t.tensor.data.length;
    // A bias-like [C] may be stored as [C] or a weight [O,I,1,1] as [O,I]: compare element counts
    // and, where ranks agree, the shape itself.
    if (dataLength !== n || (t.tensor.shape.length === shape.length && shapeStr(t.tensor.shape) !== shapeStr(shape))) {
      throw new WeightFileError(t.file, `tensor '${t.fileKey}' has shape ${shapeStr(t.tensor.shape)}`, { key: t.fileKey, expected: `shape ${shapeStr(shape)} (for ${key})`, hint });
    }
    out.set(key, toFloat32(t.tensor));
  }
  return out;
}

function toFloat32(t: Tensor): Float32Array {
  if (t.data instanceof Float32Array) return t.data;
  if (t.data instanceof BigInt64Array) return Float32Array.from(t.data, Number);
  return Float32Array.from(t.data as ArrayLike<number>);
}

/** A WeightSource over picked parameters (for emitOnnx). */
export function mapWeightSource(weights: ReadonlyMap<string, Float32Array>): WeightSource {
  return {
    read: (key) => {
      const w = weights.get(key);
      if (!w) throw new Error(`no weight '${key}'`);
      return w;
    },
  };
}
