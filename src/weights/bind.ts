/**
 * Binds a module's declared parameters to tensors from a weight file. Everything is checked up
 * front (every key present, every shape exact) so a wrong checkpoint fails before any graph is
 * emitted, with the file, the key, and expected vs found in the message.
 */
import type { WeightSource } from '../graph/emit.js';
import { type FloatTensor, type Tensor, numel, shapeStr } from '../tensor.js';
import { WeightFileError, similarKeys } from './errors.js';
import type { SafetensorsFile } from './safetensors.js';

/** Read access to named tensors, from a file or from memory. */
export interface TensorStore {
  readonly file: string;
  keys(): string[];
  has(key: string): boolean;
  shape(key: string): number[];
  read(key: string): Tensor;
}

export function safetensorsStore(f: SafetensorsFile): TensorStore {
  return { file: f.path, keys: () => f.keys(), has: (k) => f.has(k), shape: (k) => f.info(k).shape, read: (k) => f.read(k) };
}

export function mapStore(file: string, map: Map<string, Tensor>): TensorStore {
  return {
    file,
    keys: () => [...map.keys()],
    has: (k) => map.has(k),
    shape: (k) => map.get(k)!.shape,
    read: (k) => map.get(k)!,
  };
}

/** Reads every float tensor of a store into memory. */
export function readAllFloats(store: TensorStore): Map<string, FloatTensor> {
  const out = new Map<string, FloatTensor>();
  for (const k of store.keys()) {
    const t = store.read(k);
    if (t.dtype === 'float32') out.set(k, t as FloatTensor);
  }
  return out;
}

export interface BindOptions {
  /** Other names a parameter may have in older files (tried after the key itself). */
  aliases?: (key: string) => string[];
  /** Tensors that replace the file's (e.g. LoRA-merged weights). */
  overrides?: Map<string, FloatTensor>;
}

/**
 * A WeightSource for `params` ([checkpoint key, shape] as from Module.namedParameters()).
 * A tensor stored with trailing 1x1 dimensions where a linear weight is expected (old VAE
 * attention files) is accepted when the element counts match.
 */
export function bindWeights(store: TensorStore, params: [string, number[]][], opts: BindOptions = {}): WeightSource {
  const resolved = new Map<string, string>();
  const missing: string[] = [];
  for (const [key, shape] of params) {
    if (opts.overrides?.has(key)) {
      checkShape(store.file, key, opts.overrides.get(key)!.shape, shape);
      continue;
    }
    const name = [key, ...(opts.aliases?.(key) ?? [])].find((k) => store.has(k));
    if (name === undefined) {
      missing.push(key);
      continue;
    }
    checkShape(store.file, key, store.shape(name), shape);
    resolved.set(key, name);
  }
  if (missing.length > 0) {
    const first = missing[0]!;
    const similar = similarKeys(first, store.keys(), 3);
    throw new WeightFileError(store.file, `${missing.length} of ${params.length} expected tensors are missing, first '${first}'`, {
      key: first,
      expected: `shape ${shapeStr(params.find(([k]) => k === first)![1])}`,
      found: similar.length > 0 ? `no such key (similar: ${similar.join(', ')})` : 'no such key',
      hint: missing.length > 1 ? `also missing: ${missing.slice(1, 6).join(', ')}${missing.length > 6 ? ', ...' : ''}` : undefined,
    });
  }
  return {
    read(key: string, shape: number[]): Float32Array {
      const override = opts.overrides?.get(key);
      if (override) return override.data;
      const name = resolved.get(key);
      if (name === undefined) throw new WeightFileError(store.file, `no tensor was bound for '${key}'`, { key });
      const t = store.read(name);
      if (t.dtype !== 'float32') {
        throw new WeightFileError(store.file, `tensor '${name}' is ${t.dtype}`, { key: name, expected: 'a floating-point tensor', found: t.dtype });
      }
      if (t.data.length !== numel(shape)) checkShape(store.file, key, t.shape, shape);
      return t.data as Float32Array;
    },
  };
}

function checkShape(file: string, key: string, found: number[], expected: number[]): void {
  const squeezedMatch = expected.length === 2 && found.length === 4 && found[2] === 1 && found[3] === 1 &&
    found[0] === expected[0] && found[1] === expected[1];
  if (shapeStr(found) !== shapeStr(expected) && !squeezedMatch) {
    throw new WeightFileError(file, `tensor '${key}' does not fit the model built from its config`, {
      key,
      expected: `shape ${shapeStr(expected)}`,
      found: `shape ${shapeStr(found)}`,
      hint: 'the config.json and the weight file come from different models',
    });
  }
}
