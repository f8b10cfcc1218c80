/**
 * ONNX protobuf messages (onnx.proto, IR version 8) written with ProtoWriter.
 * Field numbers follow onnx/onnx.proto; only the parts our graphs use are covered.
 */
import { ProtoWriter } from './protobuf.js';
import type { DType } from '../tensor.js';

export const ONNX_IR_VERSION = 8;
export const ONNX_OPSET = 18;

/** Tensor types an ONNX file may store: float16 only for weights kept at half size on disk (emit's `float16Weights`). */
export type StoredDType = DType | 'float16';

const DATA_TYPE: Record<StoredDType, number> = {
  int8: 3,
  float32: 1, uint8: 2, int32: 6, int64: 7, bool: 9, float16: 10, float64: 11,
};

export function onnxDataType(dtype: StoredDType): number {
  return DATA_TYPE[dtype];
}

export type AttrValue =
  | { kind: 'int'; value: number }
  | { kind: 'float'; value: number }
  | { kind: 'string'; value: string }
  | { kind: 'ints'; value: number[] }
  | { kind: 'floats'; value: number[] }
  | { kind: 'tensor'; value: OnnxTensor };

export interface OnnxTensor {
  name: string;
  dtype: StoredDType;
  dims: number[];
  /** Little-endian raw bytes, or a reference to external data. */
  raw?: Uint8Array;
  external?: { location: string; offset: number; length: number };
}

export interface OnnxNode {
  opType: string;
  domain?: string;
  name: string;
  inputs: string[];
  outputs: string[];
  attrs: Record<string, AttrValue>;
}

export interface OnnxValueInfo {
  name: string;
  dtype: DType;
  /** A number is a fixed size; a string names a dimension that may vary at run time; absent: rank and sizes unknown. */
  dims?: (number | string)[];
}

export interface OnnxGraph {
  name: string;
  nodes: OnnxNode[];
  initializers: OnnxTensor[];
  inputs: OnnxValueInfo[];
  outputs: OnnxValueInfo[];
}

export interface OnnxModel {
  graph: OnnxGraph;
  producerVersion: string;
  opsets: { domain: string; version: number }[];
  metadata?: Record<string, string>;
  docString?: string;
}

function writeTensor(w: ProtoWriter, t: OnnxTensor): void {
  if (t.dims.length > 0) w.packedInts(1, t.dims);
  w.int(2, DATA_TYPE[t.dtype]);
  w.string(8, t.name);
  if (t.external) {
    const ext = t.external;
    const entry = (key: string, value: string) =>
      w.message(13, (e) => e.string(1, key).string(2, value));
    entry('location', ext.location);
    entry('offset', String(ext.offset));
    entry('length', String(ext.length));
    w.int(14, 1);
  } else {
    w.bytes(9, t.raw ?? new Uint8Array(0));
  }
}

function writeAttr(w: ProtoWriter, name: string, a: AttrValue): void {
  w.string(1, name);
  switch (a.kind) {
    case 'float': w.float(2, a.value).int(20, 1); break;
    case 'int': w.int(3, a.value).int(20, 2); break;
    case 'string': w.string(4, a.value).int(20, 3); break;
    case 'tensor': w.message(5, (t) => writeTensor(t, a.value)).int(20, 4); break;
    case 'floats': w.packedFloats(7, a.value).int(20, 6); break;
    case 'ints': w.packedInts(8, a.value).int(20, 7); break;
  }
}

function writeNode(w: ProtoWriter, n: OnnxNode): void {
  for (const i of n.inputs) w.string(1, i);
  for (const o of n.outputs) w.string(2, o);
  w.string(3, n.name);
  w.string(4, n.opType);
  for (const [k, a] of Object.entries(n.attrs)) w.message(5, (aw) => writeAttr(aw, k, a));
  if (n.domain) w.string(7, n.domain);
}

function writeValueInfo(w: ProtoWriter, v: OnnxValueInfo): void {
  w.string(1, v.name);
  w.message(2, (type) =>
    type.message(1, (tt) => {
      tt.int(1, DATA_TYPE[v.dtype]);
      if (v.dims) {
        const dims = v.dims;
        tt.message(2, (shape) => {
          for (const d of dims) shape.message(1, (dim) => (typeof d === 'number' ? dim.int(1, d) : dim.string(2, d)));
        });
      }
    }),
  );
}

export function encodeModel(m: OnnxModel): Uint8Array {
  const w = new ProtoWriter();
  w.int(1, ONNX_IR_VERSION);
  w.string(2, 'osdface');
  w.string(3, m.producerVersion);
  if (m.docString) w.string(6, m.docString);
  w.message(7, (g) => {
    for (const n of m.graph.nodes) g.message(1, (nw) => writeNode(nw, n));
    g.string(2, m.graph.name);
    for (const t of m.graph.initializers) g.message(5, (tw) => writeTensor(tw, t));
    for (const v of m.graph.inputs) g.message(11, (vw) => writeValueInfo(vw, v));
    for (const v of m.graph.outputs) g.message(12, (vw) => writeValueInfo(vw, v));
  });
  for (const o of m.opsets) w.message(8, (ow) => ow.string(1, o.domain).int(2, o.version));
  for (const [k, v] of Object.entries(m.metadata ?? {})) {
    w.message(14, (e) => e.string(1, k).string(2, v));
  }
  return w.finish();
}
