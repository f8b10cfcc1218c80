/**
 * safetensors reader and writer.
 *
 * Format (https://huggingface.co/docs/safetensors): u64 little-endian header length N,
 * N bytes of UTF-8 JSON `{key: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {..}}`,
 * then the data section; offsets are relative to the start of the data section.
 *
 * The API is synchronous on purpose: weights are read once at start-up, and positional
 * `readSync` on a kept-open descriptor lets `read(key)` fetch a single tensor from a
 * multi-gigabyte file without loading (or memory-mapping) the rest of it.
 *
 * The element decoders at the bottom are shared with the torch checkpoint reader.
 */

import * as fs from 'node:fs';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { type DType, type Tensor, type TensorData, numel, shapeStr, toFloat16Bits } from '../tensor.js';
import { WeightFileError, listKeys, similarKeys } from './errors.js';

/** Element types defined by the safetensors spec (also used as the vocabulary for torch storages). */
export type ElementType =
  | 'BOOL'
  | 'U8'
  | 'I8'
  | 'I16'
  | 'U16'
  | 'F16'
  | 'BF16'
  | 'I32'
  | 'U32'
  | 'F32'
  | 'F64'
  | 'I64'
  | 'U64'
  | 'F8_E4M3'
  | 'F8_E5M2';

export const ELEMENT_SIZE: Readonly<Record<ElementType, number>> = {
  BOOL: 1,
  U8: 1,
  I8: 1,
  I16: 2,
  U16: 2,
  F16: 2,
  BF16: 2,
  I32: 4,
  U32: 4,
  F32: 4,
  F64: 8,
  I64: 8,
  U64: 8,
  F8_E4M3: 1,
  F8_E5M2: 1,
};

/** Element types `decodeElements` can turn into a host tensor. */
const DECODABLE: ReadonlySet<ElementType> = new Set<ElementType>([
  'BOOL', 'U8', 'I8', 'I16', 'U16', 'F16', 'BF16', 'I32', 'F32', 'F64', 'I64',
]);

export interface TensorInfo {
  dtype: ElementType;
  shape: number[];
}

interface Entry extends TensorInfo {
  begin: number;
  end: number;
}

/** The spec caps the header at 100 MB; anything larger is corruption, not a real header. */
const MAX_HEADER_BYTES = 100_000_000;
/** readSync takes an int32 length; read big tensors in pieces well below that. */
const READ_CHUNK = 1 << 30;

export class SafetensorsFile {
  readonly path: string;
  /** The optional `__metadata__` string map ({} when absent). */
  readonly metadata: Record<string, string>;
  /** Absolute file offset of the data section (8 + header length). */
  readonly dataStart: number;
  private readonly entries: Map<string, Entry>;
  private fd: number | null;

  private constructor(file: string, fd: number, dataStart: number, entries: Map<string, Entry>, metadata: Record<string, string>) {
    this.path = file;
    this.fd = fd;
    this.dataStart = dataStart;
    this.entries = entries;
    this.metadata = metadata;
  }

  /**
   * Opens `file` and validates its header (synchronously). Only the header is read;
   * the descriptor stays open for `read()` until `close()`.
   */
  static open(file: string): SafetensorsFile {
    const fd = openForReading(file);
    try {
      const size = fs.fstatSync(fd).size;
      const { dataStart, entries, metadata } = parseHeader(file, fd, size);
      return new SafetensorsFile(file, fd, dataStart, entries, metadata);
    } catch (e) {
      fs.closeSync(fd);
      throw e;
    }
  }

  /** Tensor names in header order. */
  keys(): string[] {
    return [...this.entries.keys()];
  }

  has(key: string): boolean {
    return this.entries.has(key);
  }

  info(key: string): TensorInfo {
    const e = this.entry(key);
    return { dtype: e.dtype, shape: [...e.shape] };
  }

  /**
   * Reads one tensor. F32/F16/BF16/F64 come back as float32 (the whole port computes in
   * float32); I64 as int64 (BigInt64Array); I32, I16, I8, U16 as int32; U8 as uint8; BOOL as bool.
   */
  read(key: string): Tensor {
    const e = this.entry(key);
    if (!DECODABLE.has(e.dtype)) {
      throw new WeightFileError(this.path, `tensor '${key}' has dtype ${e.dtype}, which this reader does not support`, {
        key,
        expected: `one of ${[...DECODABLE].join(', ')}`,
        found: e.dtype,
        hint: 'convert the file to float32/float16 weights',
      });
    }
    if (this.fd === null) throw new WeightFileError(this.path, `cannot read '${key}': the file was closed`, { key });
    const byteLength = e.end - e.begin;
    const bytes = new Uint8Array(new ArrayBuffer(byteLength));
    readFully(this.path, this.fd, bytes, this.dataStart + e.begin, key);
    const count = numel(e.shape);
    const { dtype, data } = decodeElements(bytes, e.dtype, count);
    return { dtype, shape: [...e.shape], data };
  }

  /** Reads every tensor; fine for small files, use `read` per key for the big UNet. */
  readAll(): Map<string, Tensor> {
    const out = new Map<string, Tensor>();
    for (const key of this.entries.keys()) out.set(key, this.read(key));
    return out;
  }

  /** Releases the descriptor; idempotent. */
  close(): void {
    if (this.fd !== null) {
      fs.closeSync(this.fd);
      this.fd = null;
    }
  }

  private entry(key: string): Entry {
    const e = this.entries.get(key);
    if (e) return e;
    const similar = similarKeys(key, this.entries.keys());
    throw new WeightFileError(this.path, `no tensor named '${key}'`, {
      key,
      hint:
        similar.length > 0
          ? `similar keys: ${listKeys(similar)}`
          : `the file has ${this.entries.size} tensors, e.g. ${listKeys([...this.entries.keys()], 3)}`,
    });
  }
}

/** Opens read-only, turning ENOENT & co. into messages that say what is wrong with the path. */
export function openForReading(file: string): number {
  try {
    const st = fs.statSync(file);
    if (st.isDirectory()) throw new WeightFileError(file, 'is a directory, expected a weight file');
    return fs.openSync(file, 'r');
  } catch (e) {
    if (e instanceof WeightFileError) throw e;
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new WeightFileError(file, 'file does not exist', { cause: e, hint: 'check the path' });
    throw new WeightFileError(file, `cannot open file (${code ?? String(e)})`, { cause: e });
  }
}

/** Positional read of exactly `dst.length` bytes; a short read means the file shrank or is truncated. */
export function readFully(file: string, fd: number, dst: Uint8Array, position: number, key?: string): void {
  let done = 0;
  while (done < dst.length) {
    const want = Math.min(READ_CHUNK, dst.length - done);
    const n = fs.readSync(fd, dst, done, want, position + done);
    if (n === 0) {
      throw new WeightFileError(file, `file ends early at byte ${position + done}`, {
        ...(key !== undefined ? { key } : {}),
        expected: `${dst.length} bytes from offset ${position}`,
        found: `${done}`,
        hint: 'the file is truncated or changed while open; download it again',
      });
    }
    done += n;
  }
}

function parseHeader(file: string, fd: number, size: number): { dataStart: number; entries: Map<string, Entry>; metadata: Record<string, string> } {
  const bad = (problem: string, details: ConstructorParameters<typeof WeightFileError>[2] = {}) =>
    new WeightFileError(file, problem, { hint: 'the file is corrupt, truncated, or not a safetensors file', ...details });

  if (size < 8) {
    throw bad('file is too short to hold the 8-byte safetensors header length', { expected: 'at least 8 bytes', found: `${size}` });
  }
  const lenBuf = new Uint8Array(8);
  readFully(file, fd, lenBuf, 0);
  const headerLen64 = new DataView(lenBuf.buffer).getBigUint64(0, true);
  if (headerLen64 > BigInt(size - 8)) {
    throw bad('header length is larger than the file', {
      expected: `at most ${size - 8} header bytes`,
      found: `${headerLen64}`,
    });
  }
  const headerLen = Number(headerLen64);
  if (headerLen > MAX_HEADER_BYTES) {
    throw bad('header is implausibly large', { expected: `at most ${MAX_HEADER_BYTES} bytes`, found: `${headerLen}` });
  }
  const headerBytes = new Uint8Array(headerLen);
  readFully(file, fd, headerBytes, 8);

  let header: unknown;
  try {
    header = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(headerBytes));
  } catch (e) {
    throw bad(`header is not valid UTF-8 JSON (${(e as Error).message})`, { cause: e });
  }
  if (!isPlainObject(header)) throw bad('header is not a JSON object', { found: describeJson(header) });

  const dataStart = 8 + headerLen;
  const dataLen = size - dataStart;
  const entries = new Map<string, Entry>();
  let metadata: Record<string, string> = {};

  for (const [key, raw] of Object.entries(header)) {
    if (key === '__metadata__') {
      if (!isPlainObject(raw)) throw bad('__metadata__ is not a JSON object', { found: describeJson(raw) });
      metadata = Object.fromEntries(Object.entries(raw).map(([k, v]) => [k, typeof v === 'string' ? v : JSON.stringify(v)]));
      continue;
    }
    if (!isPlainObject(raw)) throw bad('header entry is not an object', { key, found: describeJson(raw) });
    const { dtype, shape, data_offsets: offsets } = raw as Record<string, unknown>;
    if (typeof dtype !== 'string') throw bad('header entry has no string "dtype"', { key, found: describeJson(dtype) });
    if (!(dtype in ELEMENT_SIZE)) {
      throw bad(`tensor '${key}' has unknown dtype '${dtype}'`, { key, expected: `one of ${Object.keys(ELEMENT_SIZE).join(', ')}` });
    }
    if (!Array.isArray(shape) || !shape.every(isNonNegativeInt)) {
      throw bad('header entry has no valid "shape" (array of non-negative integers)', { key, found: describeJson(shape) });
    }
    if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(isNonNegativeInt)) {
      throw bad('header entry has no valid "data_offsets" ([begin, end])', { key, found: describeJson(offsets) });
    }
    const [begin, end] = offsets as [number, number];
    if (begin > end) throw bad(`tensor '${key}' has data_offsets with begin > end`, { key, found: `[${begin}, ${end}]` });
    if (end > dataLen) {
      throw bad(`tensor '${key}' data lies outside the file`, {
        key,
        expected: `end <= ${dataLen} (data section size)`,
        found: `data_offsets [${begin}, ${end}]`,
      });
    }
    const et = dtype as ElementType;
    const want = numel(shape as number[]) * ELEMENT_SIZE[et];
    if (end - begin !== want) {
      throw bad(`tensor '${key}' data size does not match its shape ${shapeStr(shape as number[])} and dtype ${et}`, {
        key,
        expected: `${want} bytes`,
        found: `${end - begin} (data_offsets [${begin}, ${end}])`,
      });
    }
    entries.set(key, { dtype: et, shape: [...(shape as number[])], begin, end });
  }

  // Tensors must not share bytes: sort by position and require each to start after the last one ended.
  const sorted = [...entries.entries()].filter(([, e]) => e.end > e.begin).sort((a, b) => a[1].begin - b[1].begin);
  for (let i = 1; i < sorted.length; i++) {
    const [prevKey, prev] = sorted[i - 1];
    const [key, cur] = sorted[i];
    if (cur.begin < prev.end) {
      throw bad(`tensor '${key}' overlaps tensor '${prevKey}'`, {
        key,
        expected: `begin >= ${prev.end}`,
        found: `data_offsets [${cur.begin}, ${cur.end}] vs [${prev.begin}, ${prev.end}]`,
      });
    }
  }
  return { dataStart, entries, metadata };
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function isNonNegativeInt(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}

function describeJson(v: unknown): string {
  const s = JSON.stringify(v);
  return s === undefined ? String(v) : s.length > 80 ? `${s.slice(0, 77)}...` : s;
}

// ---------------------------------------------------------------------------------------------
// Writing

// instanceof rather than constructor names, so Buffers (a Uint8Array subclass) are accepted.
const WRITE_DTYPE: Readonly<Record<DType, { st: ElementType; ctor: Function }>> = {
  float32: { st: 'F32', ctor: Float32Array },
  float64: { st: 'F64', ctor: Float64Array },
  int64: { st: 'I64', ctor: BigInt64Array },
  int32: { st: 'I32', ctor: Int32Array },
  uint8: { st: 'U8', ctor: Uint8Array },
  int8: { st: 'I8', ctor: Int8Array },
  bool: { st: 'BOOL', ctor: Uint8Array },
};

/**
 * Writes tensors (float32 -> F32, float64 -> F64, int64 -> I64, int32 -> I32, uint8 -> U8,
 * bool -> BOOL) in the given order. The file is written under a temporary name in the same
 * folder and renamed into place, so a crash never leaves a half-written file at `file`.
 */
export function writeSafetensors(
  file: string,
  tensors: Map<string, Tensor> | Record<string, Tensor>,
  metadata?: Record<string, string>,
  opts: { float16?: boolean } = {},
): void {
  const list = tensors instanceof Map ? [...tensors.entries()] : Object.entries(tensors);
  // float16: float32 tensors are stored as F16 (read back as float32, like every F16 file).
  const half = new Set(opts.float16 ? list.filter(([, t]) => t.dtype === 'float32').map(([k]) => k) : []);
  const header: Record<string, unknown> = {};
  if (metadata && Object.keys(metadata).length > 0) header.__metadata__ = { ...metadata };
  let offset = 0;
  for (const [key, t] of list) {
    if (key === '__metadata__') throw new WeightFileError(file, "'__metadata__' is reserved and cannot be a tensor name", { key });
    const spec = WRITE_DTYPE[t.dtype];
    if (!spec) throw new WeightFileError(file, `tensor '${key}' has unsupported dtype`, { key, found: String(t.dtype) });
    if (!(t.data instanceof spec.ctor)) {
      throw new WeightFileError(file, `tensor '${key}' data array does not match its dtype ${t.dtype}`, {
        key,
        expected: spec.ctor.name,
        found: t.data.constructor.name,
      });
    }
    const n = numel(t.shape);
    if (t.data.length !== n) {
      throw new WeightFileError(file, `tensor '${key}' has ${t.data.length} elements but shape ${shapeStr(t.shape)}`, {
        key,
        expected: `${n} elements`,
        found: `${t.data.length}`,
      });
    }
    const st = half.has(key) ? 'F16' : spec.st;
    const bytes = n * ELEMENT_SIZE[st];
    header[key] = { dtype: st, shape: [...t.shape], data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  let json = JSON.stringify(header);
  // Pad with spaces (allowed by the spec) so the data section starts 8-byte aligned,
  // which lets readers that map the file view tensors in place.
  json += ' '.repeat((8 - ((8 + Buffer.byteLength(json)) % 8)) % 8);
  const headerBytes = Buffer.from(json, 'utf8');
  const lenBytes = Buffer.alloc(8);
  lenBytes.writeBigUInt64LE(BigInt(headerBytes.length));

  const tmp = path.join(path.dirname(file), `.${path.basename(file)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
  let fd: number | null = null;
  try {
    fd = fs.openSync(tmp, 'wx');
    writeAll(fd, lenBytes);
    writeAll(fd, headerBytes);
    for (const [k, t] of list) writeAll(fd, half.has(k) ? littleEndianBytes(toFloat16Bits(t.data as Float32Array)) : littleEndianBytes(t.data));
    fs.fsyncSync(fd);
    fs.closeSync(fd);
    fd = null;
    fs.renameSync(tmp, file);
  } catch (e) {
    if (fd !== null) fs.closeSync(fd);
    fs.rmSync(tmp, { force: true });
    if (e instanceof WeightFileError) throw e;
    throw new WeightFileError(file, `cannot write file (${(e as NodeJS.ErrnoException).code ?? String(e)})`, { cause: e });
  }
}

function writeAll(fd: number, bytes: Uint8Array): void {
  let done = 0;
  while (done < bytes.length) {
    done += fs.writeSync(fd, bytes, done, Math.min(READ_CHUNK, bytes.length - done));
  }
}

// ---------------------------------------------------------------------------------------------
// Element decoding (shared with torch.ts)

export const HOST_LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

function littleEndianBytes(data: TensorData | Uint16Array): Uint8Array {
  const view = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  if (HOST_LITTLE_ENDIAN || data.BYTES_PER_ELEMENT === 1) return view;
  return swapBytes(view, data.BYTES_PER_ELEMENT);
}

/** Copy of `bytes` with every `size`-byte element reversed (endianness flip). */
function swapBytes(bytes: Uint8Array, size: number): Uint8Array {
  const out = new Uint8Array(bytes.length);
  for (let i = 0; i < bytes.length; i += size) {
    for (let j = 0; j < size; j++) out[i + j] = bytes[i + size - 1 - j];
  }
  return out;
}

let halfTable: Float32Array | null = null;

/** All 65536 half-precision values, built once: a lookup beats bit twiddling per element. */
function getHalfTable(): Float32Array {
  if (halfTable) return halfTable;
  const t = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) {
    const sign = h & 0x8000 ? -1 : 1;
    const exp = (h >> 10) & 0x1f;
    const mant = h & 0x3ff;
    if (exp === 0) t[h] = sign * mant * 2 ** -24;
    else if (exp === 31) t[h] = mant ? NaN : sign * Infinity;
    else t[h] = sign * (1 + mant / 1024) * 2 ** (exp - 15);
  }
  halfTable = t;
  return t;
}

/**
 * Turns `count` raw elements of type `type` into host tensor data (float types -> float32,
 * I64 -> int64, narrower ints -> int32, U8 -> uint8, BOOL -> bool).
 * `bytes` must hold exactly count * size bytes; when no conversion is needed and the bytes
 * are suitably aligned the result is a view on `bytes`' memory, not a copy.
 */
export function decodeElements(
  bytes: Uint8Array,
  type: ElementType,
  count: number,
  littleEndian = true,
): { dtype: DType; data: TensorData } {
  const size = ELEMENT_SIZE[type];
  if (bytes.length !== count * size) {
    throw new Error(`decodeElements: ${bytes.length} bytes for ${count} ${type} elements`);
  }
  if (littleEndian !== HOST_LITTLE_ENDIAN && size > 1) {
    bytes = swapBytes(bytes, size);
  }
  // Typed-array views need the offset to be a multiple of the element size.
  // (new Uint8Array(x) copies; Buffer#slice would not.)
  if (bytes.byteOffset % size !== 0) bytes = new Uint8Array(bytes);
  const buf = bytes.buffer;
  const off = bytes.byteOffset;
  switch (type) {
    case 'F32':
      return { dtype: 'float32', data: new Float32Array(buf, off, count) };
    case 'F64':
      return { dtype: 'float32', data: Float32Array.from(new Float64Array(buf, off, count)) };
    case 'F16': {
      const src = new Uint16Array(buf, off, count);
      const table = getHalfTable();
      const out = new Float32Array(count);
      for (let i = 0; i < count; i++) out[i] = table[src[i]];
      return { dtype: 'float32', data: out };
    }
    case 'BF16': {
      // bfloat16 is the top half of a float32: shift the bits into place.
      const src = new Uint16Array(buf, off, count);
      const out = new Float32Array(count);
      const bits = new Uint32Array(out.buffer);
      for (let i = 0; i < count; i++) bits[i] = src[i] << 16;
      return { dtype: 'float32', data: out };
    }
    case 'I64':
      return { dtype: 'int64', data: new BigInt64Array(buf, off, count) };
    case 'I32':
      return { dtype: 'int32', data: new Int32Array(buf, off, count) };
    case 'I16':
      return { dtype: 'int32', data: Int32Array.from(new Int16Array(buf, off, count)) };
    case 'U16':
      return { dtype: 'int32', data: Int32Array.from(new Uint16Array(buf, off, count)) };
    case 'I8':
      return { dtype: 'int32', data: Int32Array.from(new Int8Array(buf, off, count)) };
    case 'U8':
      return { dtype: 'uint8', data: new Uint8Array(buf, off, count) };
    case 'BOOL':
      return { dtype: 'bool', data: new Uint8Array(buf, off, count) };
    default:
      throw new Error(`decodeElements: element type ${type} is not supported`);
  }
}
