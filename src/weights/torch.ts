/**
 * Loader for PyTorch checkpoints written by torch.save: the zip format (torch >= 1.6) here, the
 * legacy non-zip format in ./torch_legacy.ts.
 *
 * Zip layout: `<archive>/data.pkl` (the pickled object, storages replaced by persistent ids),
 * `<archive>/data/<key>` (raw storage bytes), `<archive>/byteorder` (optional, "little"
 * when absent) and `<archive>/version`. The pickle goes through the restricted unpickler,
 * so loading never executes code from the file.
 */

import * as fs from 'node:fs';
import type { Tensor } from '../tensor.js';
import { WeightFileError, listKeys } from './errors.js';
import { type HostStorage, type StorageHandle, type StorageRef, PickledTensor, TensorShell, unpickle } from './pickle.js';
import { NumpyArray } from './numpy_pickle.js';
import { looksLikeTorchTar, readLegacyTorch } from './torch_legacy.js';
import { ELEMENT_SIZE, decodeElements, openForReading, readFully } from './safetensors.js';
import { type ZipEntry, readZip } from './zip.js';

export interface TorchLoadOptions {
  /**
   * Keep only tensors whose (flattened) name passes; the storages of dropped tensors are
   * never read, which matters for checkpoints that bundle several networks.
   */
  filter?: (key: string) => boolean;
}

/**
 * Loads the tensors of a torch.save checkpoint as a flat name -> tensor map.
 *
 * The state dict is the top-level dict, or its `state_dict` entry when that is a dict
 * (Lightning-style checkpoints). Nested dicts are flattened with '.' (as nn.Module names are);
 * non-tensor values are ignored. Float storages (float16/bfloat16/float64 included) come back
 * as float32, int64 as BigInt64Array, int32/int16/int8 as int32, uint8 as uint8, bool as bool.
 * NumPy arrays in the dict (FID statistics files) come back as float64 tensors.
 * Zip and legacy files are told apart by their first bytes.
 */
export function loadTorchCheckpoint(file: string, options: TorchLoadOptions = {}): Map<string, Tensor> {
  const root = readTorchFile(file);
  let stateDict: Map<unknown, unknown>;
  if (root instanceof Map && root.get('state_dict') instanceof Map) {
    stateDict = root.get('state_dict') as Map<unknown, unknown>;
  } else if (root instanceof Map) {
    stateDict = root;
  } else {
    throw new WeightFileError(file, 'checkpoint does not hold a state dict', {
      expected: 'a dict of tensors (or a dict with a "state_dict" entry)',
      found: root instanceof PickledTensor ? 'a single tensor' : Array.isArray(root) ? 'a list/tuple' : typeof root,
      hint: 'save it with torch.save(model.state_dict(), path)',
    });
  }

  const lazy = new Map<string, PickledTensor | NumpyArray>();
  flatten(stateDict, '', lazy);
  if (lazy.size === 0) {
    throw new WeightFileError(file, 'checkpoint contains no tensors', {
      found: `top-level keys ${listKeys([...stateDict.keys()].map(String))}`,
    });
  }
  const kept = [...lazy].filter(([key]) => !options.filter || options.filter(key));
  // Drop each decoded storage as soon as its last tensor is copied out, so peak memory stays
  // near one copy of the weights rather than two.
  const uses = new Map<string, number>();
  for (const [, t] of kept) if (t instanceof PickledTensor) uses.set(t.storage.ref.key, (uses.get(t.storage.ref.key) ?? 0) + 1);
  const out = new Map<string, Tensor>();
  for (const [key, t] of kept) {
    if (t instanceof NumpyArray) {
      out.set(key, t.toTensor());
      continue;
    }
    out.set(key, t.materialize(file, key));
    const left = uses.get(t.storage.ref.key)! - 1;
    uses.set(t.storage.ref.key, left);
    if (left === 0) t.storage.release?.();
  }
  return out;
}

/**
 * The unpickled top-level object of a torch.save file of either format: dicts are Maps, tensors
 * lazy PickledTensors, numpy arrays NumpyArrays (see ./pickle.ts for the representation).
 */
export function readTorchFile(file: string): unknown {
  return checkTorchMagic(file) === 'zip' ? readZipTorch(file) : readLegacyTorch(file);
}

function readZipTorch(file: string): unknown {
  const entries = readZip(file);
  const pkl = findDataPkl(file, entries);
  const prefix = pkl.name.slice(0, -'data.pkl'.length);
  const byName = new Map(entries.map((e) => [e.name, e]));

  let littleEndian = true;
  const byteorder = byName.get(`${prefix}byteorder`);
  if (byteorder) {
    const order = byteorder.read().toString('latin1').trim();
    if (order !== 'little' && order !== 'big') {
      throw new WeightFileError(file, `unknown byte order '${order}' in '${byteorder.name}'`, { expected: "'little' or 'big'" });
    }
    littleEndian = order === 'little';
  }

  // Several tensors (views, tied weights) can share a storage: decode each storage at most once.
  const cache = new Map<string, HostStorage>();
  const persistentLoad = (ref: StorageRef): StorageHandle => {
    if (ref.view) {
      throw new WeightFileError(file, `storage '${ref.key}' is pickled as a view, which zip-format checkpoints never contain`, { hint: 'the file is corrupt' });
    }
    return persistentStorage(ref);
  };
  const persistentStorage = (ref: StorageRef): StorageHandle => ({
    ref,
    load: () => {
      let s = cache.get(ref.key);
      if (!s) {
        s = loadStorage(file, byName, prefix, ref, littleEndian);
        cache.set(ref.key, s);
      }
      return s;
    },
    release: () => cache.delete(ref.key),
  });
  return unpickle(pkl.read(), { file, entry: pkl.name, persistentLoad });
}

function flatten(dict: Map<unknown, unknown>, prefix: string, out: Map<string, PickledTensor | NumpyArray>): void {
  for (const [k, v] of dict) {
    if (typeof k !== 'string' && typeof k !== 'number') continue;
    const name = `${prefix}${k}`;
    if (v instanceof PickledTensor || v instanceof NumpyArray) out.set(name, v);
    else if (v instanceof TensorShell && v.tensor) out.set(name, v.tensor);
    else if (v instanceof Map) flatten(v, `${name}.`, out);
  }
}

/** Zip archives start with a local header; legacy torch files start with a pickle (PROTO opcode). */
function checkTorchMagic(file: string): 'zip' | 'legacy' {
  const fd = openForReading(file);
  let head: Uint8Array;
  try {
    const size = fs.fstatSync(fd).size;
    head = new Uint8Array(Math.min(512, size));
    readFully(file, fd, head, 0);
  } finally {
    fs.closeSync(fd);
  }
  if (head.length >= 4 && head[0] === 0x50 && head[1] === 0x4b && head[2] === 0x03 && head[3] === 0x04) return 'zip';
  if (head.length >= 2 && head[0] === 0x80 && head[1] >= 2 && head[1] <= 5) return 'legacy';
  if (looksLikeTorchTar(head)) {
    throw new WeightFileError(file, 'is a tar-format torch checkpoint (torch < 0.1.10), which is not supported', {
      hint: 'load it with torch and re-save it with torch.save(obj, path)',
    });
  }
  throw new WeightFileError(file, 'is not a torch checkpoint', {
    expected: 'a zip archive (starts with "PK\\x03\\x04") or a legacy torch.save file (starts with a pickle, 0x80 0x02)',
    found: `first bytes ${[...head.subarray(0, 8)].map((b) => b.toString(16).padStart(2, '0')).join(' ') || '(empty file)'}`,
  });
}

function findDataPkl(file: string, entries: ZipEntry[]): ZipEntry {
  // Exactly one top-level folder holds data.pkl; TorchScript archives have code/ and constants.pkl instead.
  const pkls = entries.filter((e) => /^[^/]+\/data\.pkl$/.test(e.name));
  if (pkls.length === 1) return pkls[0];
  if (pkls.length === 0) {
    const scripted = entries.some((e) => /^[^/]+\/constants\.pkl$/.test(e.name));
    throw new WeightFileError(file, 'zip archive has no <archive>/data.pkl, so it is not a torch.save checkpoint', {
      found: `entries ${listKeys(entries.map((e) => e.name))}`,
      hint: scripted ? 'this looks like a TorchScript archive; save the state_dict with torch.save instead' : 'save the weights with torch.save(model.state_dict(), path)',
    });
  }
  throw new WeightFileError(file, 'zip archive has more than one data.pkl', { found: listKeys(pkls.map((e) => e.name)) });
}

function loadStorage(
  file: string,
  byName: Map<string, ZipEntry>,
  prefix: string,
  ref: StorageRef,
  littleEndian: boolean,
): HostStorage {
  const name = `${prefix}data/${ref.key}`;
  const entry = byName.get(name);
  if (!entry) {
    throw new WeightFileError(file, `storage '${ref.key}' referenced by the pickle is missing from the archive`, {
      key: name,
      hint: 'the checkpoint is incomplete or corrupt',
    });
  }
  const bytes = entry.read();
  const want = ref.numel * ELEMENT_SIZE[ref.elementType];
  if (bytes.length < want) {
    throw new WeightFileError(file, `storage '${name}' is too short for ${ref.numel} ${ref.storageClass} elements`, {
      key: name,
      expected: `${want} bytes`,
      found: `${bytes.length}`,
    });
  }
  return decodeElements(bytes.subarray(0, want), ref.elementType, ref.numel, littleEndian);
}
