/**
 * Reads the float32 initializers of an ONNX file we emitted (weights inline or as external data)
 * back as a WeightSource, so a converted model directory can feed graphs other than the ones it
 * holds (the tiled VAE's pieces) without keeping a second copy of its weights on disk.
 *
 * Only the protobuf fields that locate initializers are decoded; everything else is skipped.
 * Field numbers are ONNX's (onnx.proto): ModelProto.graph = 7, GraphProto.initializer = 5,
 * TensorProto dims = 1, data_type = 2, float_data = 4, name = 8, raw_data = 9,
 * external_data = 13 (key = 1, value = 2), data_location = 14.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { WeightSource } from './emit.js';
import { numel, shapeStr } from '../tensor.js';

const FLOAT = 1;

interface Initializer {
  dims: number[];
  dataType: number;
  /** Inline bytes (raw_data), or a window into the file that holds them. */
  raw?: Uint8Array;
  floats?: Float32Array;
  external?: { file: string; offset: number; length: number };
}

/** One protobuf field: its number, wire type, and value (varint or bytes). */
interface Field {
  field: number;
  wire: number;
  int: bigint;
  bytes: Uint8Array;
}

function* fields(buf: Uint8Array): Generator<Field> {
  let pos = 0;
  const varint = (): bigint => {
    let v = 0n;
    let shift = 0n;
    for (;;) {
      if (pos >= buf.length) throw new Error('truncated protobuf varint');
      const b = buf[pos++]!;
      v |= BigInt(b & 0x7f) << shift;
      if (b < 0x80) return v;
      shift += 7n;
    }
  };
  const none = new Uint8Array(0);
  while (pos < buf.length) {
    const key = Number(varint());
    const field = key >>> 3;
    const wire = key & 7;
    if (wire === 0) {
      yield { field, wire, int: varint(), bytes: none };
    } else if (wire === 2) {
      const len = Number(varint());
      if (pos + len > buf.length) throw new Error('truncated protobuf message');
      yield { field, wire, int: 0n, bytes: buf.subarray(pos, pos + len) };
      pos += len;
    } else if (wire === 5) {
      yield { field, wire, int: 0n, bytes: buf.subarray(pos, pos + 4) };
      pos += 4;
    } else if (wire === 1) {
      yield { field, wire, int: 0n, bytes: buf.subarray(pos, pos + 8) };
      pos += 8;
    } else {
      throw new Error(`unsupported protobuf wire type ${wire}`);
    }
  }
}

function packedVarints(bytes: Uint8Array): number[] {
  const out: number[] = [];
  let v = 0n;
  let shift = 0n;
  for (const b of bytes) {
    v |= BigInt(b & 0x7f) << shift;
    shift += 7n;
    if (b < 0x80) {
      out.push(Number(BigInt.asIntN(64, v)));
      v = 0n;
      shift = 0n;
    }
  }
  return out;
}

function parseTensor(bytes: Uint8Array, dir: string): [string, Initializer] {
  let name = '';
  const t: Initializer = { dims: [], dataType: 0 };
  const ext: Record<string, string> = {};
  let location = 0;
  for (const f of fields(bytes)) {
    if (f.field === 1) {
      if (f.wire === 2) t.dims.push(...packedVarints(f.bytes));
      else t.dims.push(Number(BigInt.asIntN(64, f.int)));
    } else if (f.field === 2) t.dataType = Number(f.int);
    else if (f.field === 4 && f.wire === 2) t.floats = new Float32Array(f.bytes.slice().buffer);
    else if (f.field === 8) name = new TextDecoder().decode(f.bytes);
    else if (f.field === 9) t.raw = f.bytes;
    else if (f.field === 13) {
      let k = '';
      let v = '';
      for (const e of fields(f.bytes)) {
        if (e.field === 1) k = new TextDecoder().decode(e.bytes);
        else if (e.field === 2) v = new TextDecoder().decode(e.bytes);
      }
      ext[k] = v;
    } else if (f.field === 14) location = Number(f.int);
  }
  if (location === 1) {
    const file = ext['location'];
    if (!file) throw new Error(`initializer '${name}' is external but names no file`);
    const length = ext['length'] !== undefined ? Number(ext['length']) : numel(t.dims) * 4;
    t.external = { file: path.join(dir, file), offset: Number(ext['offset'] ?? 0), length };
  }
  return [name, t];
}

/** The initializers of `onnxFile`, by name. */
function readInitializers(onnxFile: string): Map<string, Initializer> {
  const model = fs.readFileSync(onnxFile);
  const out = new Map<string, Initializer>();
  for (const m of fields(model)) {
    if (m.field !== 7 || m.wire !== 2) continue;
    for (const g of fields(m.bytes)) {
      if (g.field === 5 && g.wire === 2) {
        const [name, t] = parseTensor(g.bytes, path.dirname(onnxFile));
        out.set(name, t);
      }
    }
  }
  return out;
}

function loadFloats(name: string, t: Initializer, fds: Map<string, number>): Float32Array {
  if (t.dataType !== FLOAT) throw new Error(`initializer '${name}' holds ONNX data type ${t.dataType}, not float32`);
  if (t.floats) return t.floats;
  if (t.raw) return new Float32Array(t.raw.slice().buffer);
  if (!t.external) return new Float32Array(numel(t.dims));
  const { file, offset, length } = t.external;
  let fd = fds.get(file);
  if (fd === undefined) {
    fd = fs.openSync(file, 'r');
    fds.set(file, fd);
  }
  const buf = new Uint8Array(length);
  for (let done = 0; done < length;) {
    const n = fs.readSync(fd, buf, done, Math.min(length - done, 1 << 30), offset + done);
    if (n <= 0) throw new Error(`${file}: ends before initializer '${name}' (offset ${offset}, ${length} bytes)`);
    done += n;
  }
  return new Float32Array(buf.buffer);
}

export interface OnnxWeights extends WeightSource {
  /** Closes the external data files opened so far. */
  close(): void;
}

/**
 * The float32 parameters stored in one or more ONNX files, by checkpoint key. A key the emitter
 * stored pre-transposed (`<key>.T`, see emit.ts) is transposed back.
 */
export function onnxWeights(onnxFiles: readonly string[]): OnnxWeights {
  const inits = new Map<string, Initializer>();
  for (const f of onnxFiles) for (const [k, v] of readInitializers(f)) if (!inits.has(k)) inits.set(k, v);
  const fds = new Map<string, number>();
  return {
    read(key: string, shape: number[]): Float32Array {
      const direct = inits.get(key);
      if (direct) {
        if (shapeStr(direct.dims) !== shapeStr(shape)) throw new Error(`initializer '${key}' is ${shapeStr(direct.dims)}, expected ${shapeStr(shape)}`);
        return loadFloats(key, direct, fds);
      }
      const transposed = inits.get(`${key}.T`);
      if (transposed && shape.length === 2 && transposed.dims[0] === shape[1] && transposed.dims[1] === shape[0]) {
        const t = loadFloats(`${key}.T`, transposed, fds);
        const [rows, cols] = shape as [number, number];
        const out = new Float32Array(t.length);
        for (let c = 0; c < cols; c++) for (let r = 0; r < rows; r++) out[r * cols + c] = t[c * rows + r]!;
        return out;
      }
      throw new Error(`no float32 initializer '${key}' ${shapeStr(shape)} in ${onnxFiles.join(', ')}`);
    },
    close(): void {
      for (const fd of fds.values()) fs.closeSync(fd);
      fds.clear();
    },
  };
}
