/**
 * Reader for the legacy (pre-1.6, non-zip) torch.save format, which the standard metric weights
 * are in (torchvision's vgg16-397923af.pth, the LPIPS v0.1 linear layers, pytorch-fid's Inception).
 *
 * The format, as torch/serialization.py writes it (`_legacy_save`) and reads it (`_legacy_load`),
 * and THPStorage_writeFileRaw (torch/csrc/serialization.cpp) writes each storage:
 *
 *   pickle  MAGIC_NUMBER = 0x1950a86a20f9469cfc6c
 *   pickle  PROTOCOL_VERSION = 1001
 *   pickle  sys_info = {'protocol_version': 1001, 'little_endian': bool, 'type_sizes': {...}}
 *   pickle  the object; each storage is a persistent id
 *           ('storage', storage_type, key, location, numel, view_metadata)
 *           with view_metadata None or (view_key, offset, view_numel) (older torch)
 *   pickle  the storage keys, a list, in the order the storages follow
 *   per key: int64 little-endian element count, then count * element_size raw bytes
 *
 * Every pickle goes through the restricted unpickler (./pickle.ts), so nothing in the file is
 * executed; every length is checked against the file before it is used. Element data is read as
 * little-endian: THPStorage_writeFileRaw writes the count and the elements little-endian whatever
 * the machine (recent torch), and big-endian files from older torch are refused by sys_info.
 * The even older tar-based format (torch < 0.1.10) is refused with a message.
 */

import * as fs from 'node:fs';
import { WeightFileError } from './errors.js';
import { type HostStorage, type StorageHandle, type StorageRef, unpickleAt } from './pickle.js';
import { ELEMENT_SIZE, decodeElements } from './safetensors.js';

/** torch/serialization.py MAGIC_NUMBER and PROTOCOL_VERSION. */
export const LEGACY_MAGIC_NUMBER = 0x1950a86a20f9469cfc6cn;
export const LEGACY_PROTOCOL_VERSION = 1001;

/** Where one storage's elements lie in the file. */
interface StorageExtent {
  ref: StorageRef;
  /** Byte offset of the first element (after the 8-byte count). */
  offset: number;
}

/**
 * Unpickles a legacy torch.save file. Returns the top-level object (tensors stay lazy
 * PickledTensors whose storages are decoded on first use and cached until `release`).
 */
export function readLegacyTorch(file: string): unknown {
  const data = fs.readFileSync(file);
  const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);

  const magic = unpickleAt(bytes, 0, { file, entry: 'magic number' });
  if (magic.value !== LEGACY_MAGIC_NUMBER) {
    throw new WeightFileError(file, 'is not a legacy torch checkpoint: the first pickle is not the torch magic number', {
      expected: `0x${LEGACY_MAGIC_NUMBER.toString(16)}`,
      found: typeof magic.value === 'bigint' || typeof magic.value === 'number' ? `0x${magic.value.toString(16)}` : typeof magic.value,
    });
  }
  const protocol = unpickleAt(bytes, magic.end, { file, entry: 'protocol version' });
  if (protocol.value !== LEGACY_PROTOCOL_VERSION) {
    throw new WeightFileError(file, 'has an unknown legacy torch protocol version', { expected: `${LEGACY_PROTOCOL_VERSION}`, found: String(protocol.value) });
  }
  const sysInfo = unpickleAt(bytes, protocol.end, { file, entry: 'sys_info' });
  if (sysInfo.value instanceof Map && sysInfo.value.get('little_endian') === false) {
    throw new WeightFileError(file, 'was saved on a big-endian machine, which is not supported', {
      hint: 'load it with torch on any machine and re-save it (torch.save writes zip files since 1.6)',
    });
  }

  const refs = new Map<string, StorageRef>();
  const extents = new Map<string, StorageExtent>();
  const cache = new Map<string, HostStorage>();
  const loadRoot = (key: string): HostStorage => {
    let s = cache.get(key);
    if (!s) {
      const ext = extents.get(key);
      if (!ext) throw new WeightFileError(file, `storage '${key}' is referenced but its data is not in the file`, { hint: 'the file is corrupt' });
      const n = ext.ref.numel * ELEMENT_SIZE[ext.ref.elementType];
      s = decodeElements(bytes.subarray(ext.offset, ext.offset + n), ext.ref.elementType, ext.ref.numel, true);
      cache.set(key, s);
    }
    return s;
  };
  const persistentLoad = (ref: StorageRef): StorageHandle => {
    const prev = refs.get(ref.key);
    if (!prev) refs.set(ref.key, ref);
    else if (prev.elementType !== ref.elementType || prev.numel !== ref.numel) {
      throw new WeightFileError(file, `storage '${ref.key}' is described twice, differently`, {
        expected: `${prev.numel} ${prev.storageClass} elements`,
        found: `${ref.numel} ${ref.storageClass} elements`,
      });
    }
    if (ref.view) {
      if (ref.view.offset + ref.view.numel > ref.numel) {
        throw new WeightFileError(file, `storage view '${ref.view.key}' (elements ${ref.view.offset}..${ref.view.offset + ref.view.numel}) reaches past its storage '${ref.key}' of ${ref.numel}`);
      }
    }
    const view = ref.view;
    return {
      ref,
      load: () => {
        const root = loadRoot(ref.key);
        if (!view) return root;
        return { dtype: root.dtype, data: root.data.subarray(view.offset, view.offset + view.numel) as HostStorage['data'] };
      },
      release: () => cache.delete(ref.key),
    };
  };
  const object = unpickleAt(bytes, sysInfo.end, { file, entry: 'object', persistentLoad });
  const keyList = unpickleAt(bytes, object.end, { file, entry: 'storage keys' });
  const keys = keyList.value;
  if (!Array.isArray(keys) || !keys.every((k) => typeof k === 'string')) {
    throw new WeightFileError(file, 'legacy torch file: the storage key list is not a list of strings', { hint: 'the file is corrupt' });
  }

  // The storages follow in the order of the key list, each an element count then its bytes.
  let pos = keyList.end;
  for (const key of keys as string[]) {
    const ref = refs.get(key);
    if (!ref) throw new WeightFileError(file, `legacy torch file lists storage '${key}', which no tensor refers to`, { hint: 'the file is corrupt' });
    if (extents.has(key)) throw new WeightFileError(file, `legacy torch file lists storage '${key}' twice`, { hint: 'the file is corrupt' });
    if (pos + 8 > bytes.length) {
      throw new WeightFileError(file, `data ends early: no element count for storage '${key}' at byte ${pos} (truncated)`, { expected: `${pos + 8} bytes`, found: `${bytes.length}` });
    }
    const count = new DataView(bytes.buffer, bytes.byteOffset + pos, 8).getBigInt64(0, true);
    if (count !== BigInt(ref.numel)) {
      throw new WeightFileError(file, `storage '${key}' holds ${count} elements, its persistent id says ${ref.numel}`, { hint: 'the file is corrupt' });
    }
    const size = ref.numel * ELEMENT_SIZE[ref.elementType];
    if (pos + 8 + size > bytes.length) {
      throw new WeightFileError(file, `data ends early inside storage '${key}' (truncated)`, {
        expected: `${size} bytes from byte ${pos + 8}`,
        found: `${bytes.length - pos - 8}`,
      });
    }
    extents.set(key, { ref, offset: pos + 8 });
    pos += 8 + size;
  }
  for (const key of refs.keys()) {
    if (!extents.has(key)) throw new WeightFileError(file, `storage '${key}' is referenced but missing from the storage key list`, { hint: 'the file is corrupt' });
  }
  return object.value;
}

/** Whether the bytes look like the tar-based torch format of torch < 0.1.10 ('ustar' at 257). */
export function looksLikeTorchTar(head: Uint8Array): boolean {
  return head.length >= 262 && String.fromCharCode(...head.subarray(257, 262)) === 'ustar';
}
