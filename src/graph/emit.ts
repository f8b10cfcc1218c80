/**
 * Graph -> ONNX model bytes. Parameters become initializers named by their checkpoint keys, read
 * one at a time from a WeightSource so a 3.9 GB model never sits in memory twice. With `external`,
 * parameter bytes go to a side file (ONNX external data): protobuf cannot hold more than 2 GB.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { Graph, Node, Value } from './ir.js';
import { encodeModel, onnxDataType, ONNX_OPSET, type OnnxNode, type OnnxTensor } from './onnx.js';
import { type Tensor, numel, shapeStr, toFloat16Bits, transpose2d } from '../tensor.js';

export interface WeightSource {
  /** The float32 data of parameter `key`, which must have exactly `shape`. */
  read(key: string, shape: number[]): Float32Array;
  /** The data of an int8 parameter (quantized graphs, ./quantize.ts). */
  readInt8?(key: string, shape: number[]): Int8Array;
}

export interface EmitOptions {
  weights: WeightSource;
  /** Write parameters to `<dir>/<fileName>` instead of inline. */
  external?: {
    dir: string;
    fileName: string;
    /**
     * The data file already holds these parameters, written by emitting a graph with the same
     * parameters in the same order (e.g. the graph this one adds outputs to): refer to it, write nothing.
     */
    existing?: boolean;
  };
  producerVersion?: string;
  /** Parameters fed at run time as graph inputs instead of stored (e.g. the ones being trained). */
  paramInputs?: ReadonlySet<string>;
  metadata?: Record<string, string>;
  docString?: string;
  /**
   * Store float32 parameters as float16 (half the file) with a Cast back to float32 in front of
   * their readers; ONNX Runtime folds the casts when the session loads, so it computes in float32.
   */
  float16Weights?: boolean;
}

/** Offsets are page-aligned so ONNX Runtime can memory-map each tensor. */
const EXTERNAL_ALIGN = 4096;

function tensorBytes(t: Tensor): Uint8Array {
  const d = t.data;
  return new Uint8Array(d.buffer, d.byteOffset, d.byteLength);
}

/**
 * Parameters that are only ever read through a 2-D Transpose (linear weights feeding MatMul) are
 * written pre-transposed and the Transpose node dropped, so ONNX Runtime does not have to fold
 * (and briefly duplicate) them at load time.
 */
function foldedTransposes(graph: Graph, keep?: ReadonlySet<string>): Map<Value, Node> {
  const consumers = new Map<Value, Node[]>();
  for (const n of graph.nodes) for (const i of n.inputs) if (i) consumers.set(i, [...(consumers.get(i) ?? []), n]);
  const folded = new Map<Value, Node>();
  for (const [key, p] of graph.params) {
    if (keep?.has(key)) continue;
    const uses = consumers.get(p) ?? [];
    const t = uses[0];
    const perm = t?.attrs['perm'];
    if (uses.length === 1 && t && t.op === 'Transpose' && p.rank === 2 && perm?.kind === 'ints' && perm.value[0] === 1) folded.set(p, t);
  }
  return folded;
}

function readInt8(weights: WeightSource, key: string, shape: number[]): Int8Array {
  if (!weights.readInt8) throw new Error(`weight '${key}' is int8 but the weight source has no int8 data`);
  return weights.readInt8(key, shape);
}

export function emitOnnx(graph: Graph, opts: EmitOptions): Uint8Array {
  const folded = foldedTransposes(graph, opts.paramInputs);
  const renamed = new Map<string, string>();
  const halfCasts: OnnxNode[] = [];
  for (const t of folded.values()) renamed.set(t.outputs[0]!.name, `${t.inputs[0]!.name}.T`);
  const initializers: OnnxTensor[] = [];
  let fd: number | undefined;
  let offset = 0;
  const existingSize = opts.external?.existing ? fs.statSync(path.join(opts.external.dir, opts.external.fileName)).size : undefined;
  if (opts.external && existingSize === undefined) fd = fs.openSync(path.join(opts.external.dir, opts.external.fileName), 'w');
  try {
    for (const [key, value] of graph.params) {
      if (opts.paramInputs?.has(key)) continue;
      const transposed = folded.has(value);
      const name = transposed ? `${key}.T` : key;
      const dims = transposed ? [value.shape[1]!, value.shape[0]!] : value.shape;
      const external = opts.external;
      if (external) offset = Math.ceil(offset / EXTERNAL_ALIGN) * EXTERNAL_ALIGN;
      if (existingSize !== undefined) {
        const length = numel(value.shape) * (value.dtype === 'int8' ? 1 : 4);
        if (offset + length > existingSize) throw new Error(`${external!.fileName} ends before parameter '${key}': it was not written for this graph`);
        initializers.push({ name, dtype: value.dtype, dims, external: { location: external!.fileName, offset, length } });
        offset += length;
        continue;
      }
      let data: Float32Array | Int8Array = value.dtype === 'int8' ? readInt8(opts.weights, key, value.shape) : opts.weights.read(key, value.shape);
      if (data.length !== numel(value.shape)) {
        throw new Error(`weight '${key}': ${data.length} values for shape ${shapeStr(value.shape)}`);
      }
      if (transposed) data = transpose2d(data as Float32Array, value.shape[0]!, value.shape[1]!);
      const half = opts.float16Weights === true && value.dtype === 'float32';
      const stored = half ? toFloat16Bits(data as Float32Array) : data;
      const bytes = new Uint8Array(stored.buffer, stored.byteOffset, stored.byteLength);
      const storedName = half ? `${name}.fp16` : name;
      const dtype = half ? 'float16' : value.dtype;
      if (half) halfCasts.push({ opType: 'Cast', name: `${name}.cast`, inputs: [storedName], outputs: [name], attrs: { to: { kind: 'int', value: onnxDataType('float32') } } });
      if (fd !== undefined) {
        fs.writeSync(fd, bytes, 0, bytes.length, offset);
        initializers.push({ name: storedName, dtype, dims, external: { location: external!.fileName, offset, length: bytes.length } });
        offset += bytes.length;
      } else {
        initializers.push({ name: storedName, dtype, dims, raw: bytes });
      }
    }
  } finally {
    if (fd !== undefined) fs.closeSync(fd);
  }
  for (const [value, t] of graph.constants) {
    initializers.push({ name: value.name, dtype: t.dtype, dims: t.shape, raw: tensorBytes(t) });
  }

  const droppedNodes = new Set<Node>(folded.values());
  const ref = (v: Value | null) => (v ? renamed.get(v.name) ?? v.name : '');
  const nodes: OnnxNode[] = [...halfCasts, ...graph.nodes.filter((n) => !droppedNodes.has(n)).map((n) => ({
    opType: n.op,
    domain: n.domain,
    name: n.name,
    inputs: n.inputs.map(ref),
    outputs: n.outputs.map((o) => o.name),
    attrs: n.attrs,
  }))];
  // Trailing empty optional inputs are dropped: ONNX treats a missing input and '' alike.
  for (const n of nodes) while (n.inputs.length > 0 && n.inputs[n.inputs.length - 1] === '') n.inputs.pop();

  const domains = new Set(graph.nodes.map((n) => n.domain).filter((d) => d !== ''));
  return encodeModel({
    producerVersion: opts.producerVersion ?? '0',
    docString: opts.docString,
    metadata: opts.metadata,
    opsets: [{ domain: '', version: ONNX_OPSET }, ...[...domains].map((domain) => ({ domain, version: 1 }))],
    graph: {
      name: graph.name,
      nodes,
      initializers,
      inputs: [
        ...graph.inputs.map((i) => ({ name: i.value.name, dtype: i.value.dtype, dims: i.dims })),
        ...[...(opts.paramInputs ?? [])].map((key) => {
          const p = graph.params.get(key);
          if (!p) throw new Error(`paramInputs: the graph has no parameter '${key}'`);
          return { name: key, dtype: p.dtype, dims: p.shape };
        }),
      ],
      // Output sizes follow the named input dimensions, so they are left for ONNX Runtime to infer.
      outputs: graph.outputs.map((o) => ({ name: o.name, dtype: o.dtype })),
    },
  });
}
