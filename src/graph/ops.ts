/**
 * Op builders: each one checks its inputs, works out the output shape and appends an ONNX node.
 * Reshapes are expressed with 0 (keep) / -1 (infer) or with shapes read at run time, so an
 * emitted graph stays valid when its named input dimensions (batch, height, width) change.
 */
import { Graph, Value } from './ir.js';
import type { AttrValue } from './onnx.js';
import { type DType, numel, shapeStr } from '../tensor.js';

const int = (value: number): AttrValue => ({ kind: 'int', value });
const float = (value: number): AttrValue => ({ kind: 'float', value });
const ints = (value: number[]): AttrValue => ({ kind: 'ints', value });
const str = (value: string): AttrValue => ({ kind: 'string', value });

function one(g: Graph, op: string, inputs: (Value | null)[], dtype: DType, shape: number[], attrs: Record<string, AttrValue> = {}, domain = ''): Value {
  return g.addNode(op, inputs, [{ dtype, shape }], attrs, domain)[0]!;
}

function normAxis(g: Graph, axis: number, rank: number): number {
  const a = axis < 0 ? axis + rank : axis;
  if (a < 0 || a >= rank) g.fail(`axis ${axis} out of range for rank ${rank}`);
  return a;
}

export function int64(g: Graph, values: number[], hint = 'ints'): Value {
  return g.constant({ dtype: 'int64', shape: [values.length], data: BigInt64Array.from(values.map(BigInt)) }, hint);
}

export function scalar(g: Graph, value: number, hint = 'scalar'): Value {
  return g.constant({ dtype: 'float32', shape: [], data: Float32Array.of(value) }, hint);
}

export function floatConst(g: Graph, shape: number[], data: Float32Array, hint = 'const'): Value {
  return g.constant({ dtype: 'float32', shape, data }, hint);
}

export function broadcastShapes(g: Graph, a: number[], b: number[], op: string): number[] {
  const rank = Math.max(a.length, b.length);
  const out: number[] = [];
  for (let i = 0; i < rank; i++) {
    const da = a[a.length - rank + i] ?? 1;
    const db = b[b.length - rank + i] ?? 1;
    if (da !== db && da !== 1 && db !== 1) g.fail(`${op}: cannot broadcast ${shapeStr(a)} with ${shapeStr(b)}`);
    out.push(da === 1 ? db : da);
  }
  return out;
}

function binary(op: string, a: Value, b: Value | number): Value {
  const g = a.graph;
  const bv = typeof b === 'number' ? scalar(g, b) : b;
  if (a.dtype !== bv.dtype) g.fail(`${op}: dtype ${a.dtype} vs ${bv.dtype}`);
  return one(g, op, [a, bv], a.dtype, broadcastShapes(g, a.shape, bv.shape, op));
}

export const add = (a: Value, b: Value | number) => binary('Add', a, b);
export const sub = (a: Value, b: Value | number) => binary('Sub', a, b);
export const mul = (a: Value, b: Value | number) => binary('Mul', a, b);
export const div = (a: Value, b: Value | number) => binary('Div', a, b);

function unary(op: string, x: Value, attrs: Record<string, AttrValue> = {}): Value {
  return one(x.graph, op, [x], x.dtype, x.shape, attrs);
}

export const sigmoid = (x: Value) => unary('Sigmoid', x);
export const tanh = (x: Value) => unary('Tanh', x);
export const exp = (x: Value) => unary('Exp', x);
export const sqrt = (x: Value) => unary('Sqrt', x);
export const sin = (x: Value) => unary('Sin', x);
export const cos = (x: Value) => unary('Cos', x);
export const erf = (x: Value) => unary('Erf', x);
export const neg = (x: Value) => unary('Neg', x);
export const abs = (x: Value) => unary('Abs', x);
export const sign = (x: Value) => unary('Sign', x);
export const relu = (x: Value) => unary('Relu', x);
export const leakyRelu = (x: Value, alpha: number) => unary('LeakyRelu', x, { alpha: float(alpha) });

export function silu(x: Value): Value {
  return mul(x, sigmoid(x));
}

/** Exact (erf) GELU, as torch.nn.functional.gelu with approximate='none'. */
export function gelu(x: Value): Value {
  return mul(mul(x, 0.5), add(erf(mul(x, Math.SQRT1_2)), 1));
}

export function clip(x: Value, min: number, max: number): Value {
  const g = x.graph;
  return one(g, 'Clip', [x, scalar(g, min, 'min'), scalar(g, max, 'max')], x.dtype, x.shape);
}

export function cast(x: Value, to: DType): Value {
  const codes: Record<DType, number> = { float32: 1, uint8: 2, int8: 3, int32: 6, int64: 7, bool: 9, float64: 11 };
  return one(x.graph, 'Cast', [x], to, x.shape, { to: int(codes[to]) });
}

/** Batched matrix product with numpy broadcasting of the leading dimensions. */
export function matmul(a: Value, b: Value): Value {
  const g = a.graph;
  if (a.rank < 2 || b.rank < 2) g.fail(`MatMul needs rank >= 2, got ${shapeStr(a.shape)} @ ${shapeStr(b.shape)}`);
  const [m, k] = a.shape.slice(-2) as [number, number];
  const [k2, n] = b.shape.slice(-2) as [number, number];
  if (k !== k2) g.fail(`MatMul: inner dimensions differ: ${shapeStr(a.shape)} @ ${shapeStr(b.shape)}`);
  const batch = broadcastShapes(g, a.shape.slice(0, -2), b.shape.slice(0, -2), 'MatMul');
  return one(g, 'MatMul', [a, b], a.dtype, [...batch, m, n]);
}

export interface ConvOptions {
  stride?: number[];
  pads?: number[];
  dilations?: number[];
  groups?: number;
}

/** N-d convolution (1-D or 2-D in practice); `pads` as ONNX: all begins, then all ends. */
export function conv(x: Value, w: Value, b: Value | null, opts: ConvOptions = {}): Value {
  const g = x.graph;
  const sp = x.rank - 2;
  if (sp < 1 || w.rank !== x.rank) g.fail(`Conv: input ${shapeStr(x.shape)} and weight ${shapeStr(w.shape)} ranks do not fit`);
  const groups = opts.groups ?? 1;
  const stride = opts.stride ?? Array(sp).fill(1);
  const dil = opts.dilations ?? Array(sp).fill(1);
  const pads = opts.pads ?? Array(2 * sp).fill(0);
  const cin = x.shape[1]!;
  if (cin !== w.shape[1]! * groups) {
    g.fail(`Conv: input has ${cin} channels, weight ${shapeStr(w.shape)} expects ${w.shape[1]! * groups}`);
  }
  const cout = w.shape[0]!;
  if (b && (b.rank !== 1 || b.shape[0] !== cout)) g.fail(`Conv: bias ${shapeStr(b.shape)} does not match ${cout} output channels`);
  const spatial = x.shape.slice(2).map((size, i) => {
    const k = (w.shape[2 + i]! - 1) * dil[i]! + 1;
    const out = Math.floor((size + pads[i]! + pads[i + sp]! - k) / stride[i]!) + 1;
    if (out < 1) g.fail(`Conv: spatial size ${size} too small for kernel ${w.shape[2 + i]}`);
    return out;
  });
  return one(g, 'Conv', b ? [x, w, b] : [x, w], x.dtype, [x.shape[0]!, cout, ...spatial], {
    kernel_shape: ints(w.shape.slice(2)), strides: ints(stride), pads: ints(pads), dilations: ints(dil), group: int(groups),
  });
}

/** Constant zero padding; `pads` as ONNX (all begins, then all ends). */
/** ONNX Pad; mode 'reflect' mirrors without repeating the edge (OpenCV's BORDER_REFLECT_101). */
export function pad(x: Value, pads: number[], mode: 'constant' | 'reflect' = 'constant'): Value {
  const g = x.graph;
  if (pads.length !== 2 * x.rank) g.fail(`Pad: ${pads.length} pad values for rank ${x.rank}`);
  const shape = x.shape.map((d, i) => d + pads[i]! + pads[i + x.rank]!);
  return one(g, 'Pad', [x, int64(g, pads, 'pads')], x.dtype, shape, { mode: str(mode) });
}

/** Reshape with ONNX semantics: 0 keeps the input dimension, -1 is inferred. */
export function reshape(x: Value, spec: number[] | Value): Value {
  const g = x.graph;
  const target = Array.isArray(spec) ? spec : spec.known;
  if (!target) return g.fail(`Reshape: target shape of ${x.name} is not known while building`);
  let inferAt = -1;
  const shape = target.map((d, i) => {
    if (d === 0) {
      if (i >= x.rank) g.fail(`Reshape: 0 at position ${i} but input has rank ${x.rank}`);
      return x.shape[i]!;
    }
    if (d === -1) {
      if (inferAt >= 0) g.fail('Reshape: more than one -1');
      inferAt = i;
      return 1;
    }
    return d;
  });
  const total = numel(x.shape);
  if (inferAt >= 0) {
    const rest = numel(shape);
    if (rest === 0 || total % rest !== 0) g.fail(`Reshape: cannot reshape ${shapeStr(x.shape)} to ${shapeStr(target)}`);
    shape[inferAt] = total / rest;
  }
  if (numel(shape) !== total) g.fail(`Reshape: ${shapeStr(x.shape)} has ${total} elements, ${shapeStr(shape)} has ${numel(shape)}`);
  const specValue = Array.isArray(spec) ? int64(g, spec, 'shape') : spec;
  return one(g, 'Reshape', [x, specValue], x.dtype, shape);
}

export function transpose(x: Value, perm: number[]): Value {
  const g = x.graph;
  if (perm.length !== x.rank || [...perm].sort().some((p, i) => p !== i)) g.fail(`Transpose: bad permutation [${perm}] for rank ${x.rank}`);
  return one(g, 'Transpose', [x], x.dtype, perm.map((p) => x.shape[p]!), { perm: ints(perm) });
}

export function concat(xs: Value[], axis: number): Value {
  const g = xs[0]!.graph;
  const a = normAxis(g, axis, xs[0]!.rank);
  const shape = [...xs[0]!.shape];
  for (const x of xs.slice(1)) {
    if (x.rank !== shape.length || x.shape.some((d, i) => i !== a && d !== shape[i])) {
      g.fail(`Concat on axis ${a}: ${xs.map((v) => shapeStr(v.shape)).join(' vs ')}`);
    }
    shape[a] = shape[a]! + x.shape[a]!;
  }
  const out = one(g, 'Concat', xs, xs[0]!.dtype, shape, { axis: int(a) });
  if (xs.every((x) => x.known)) out.known = xs.flatMap((x) => x.known!);
  return out;
}

/** Splits into `parts` equal chunks along `axis` (torch.chunk for divisible sizes). */
export function split(x: Value, axis: number, parts: number): Value[] {
  const g = x.graph;
  const a = normAxis(g, axis, x.rank);
  if (x.shape[a]! % parts !== 0) g.fail(`Split: dimension ${x.shape[a]} of ${shapeStr(x.shape)} not divisible into ${parts}`);
  const shape = x.shape.map((d, i) => (i === a ? d / parts : d));
  return g.addNode('Split', [x], Array.from({ length: parts }, () => ({ dtype: x.dtype, shape })), { axis: int(a), num_outputs: int(parts) });
}

export function slice(x: Value, axis: number, start: number, end: number): Value {
  const g = x.graph;
  const a = normAxis(g, axis, x.rank);
  const size = x.shape[a]!;
  const s = Math.max(0, start < 0 ? start + size : Math.min(start, size));
  const e = Math.max(s, end < 0 ? end + size : Math.min(end, size));
  const shape = x.shape.map((d, i) => (i === a ? e - s : d));
  const out = one(g, 'Slice', [x, int64(g, [start]), int64(g, [end]), int64(g, [a])], x.dtype, shape);
  if (x.known) out.known = x.known.slice(s, e);
  return out;
}

export function unsqueeze(x: Value, axes: number[]): Value {
  const g = x.graph;
  const rank = x.rank + axes.length;
  const norm = axes.map((a) => normAxis(g, a, rank)).sort((p, q) => p - q);
  const shape = [...x.shape];
  for (const a of norm) shape.splice(a, 0, 1);
  return one(g, 'Unsqueeze', [x, int64(g, axes, 'axes')], x.dtype, shape);
}

/** The run-time shape of `x` as an int64 vector (known while building). */
export function shapeOf(x: Value): Value {
  const out = one(x.graph, 'Shape', [x], 'int64', [x.rank]);
  out.known = [...x.shape];
  return out;
}

export function softmax(x: Value, axis = -1): Value {
  return one(x.graph, 'Softmax', [x], x.dtype, x.shape, { axis: int(normAxis(x.graph, axis, x.rank)) });
}

function reduce(op: string, x: Value, axes: number[], keepdims: boolean): Value {
  const g = x.graph;
  const norm = axes.map((a) => normAxis(g, a, x.rank));
  const shape = keepdims ? x.shape.map((d, i) => (norm.includes(i) ? 1 : d)) : x.shape.filter((_, i) => !norm.includes(i));
  return one(g, op, [x, int64(g, norm, 'axes')], x.dtype, shape, { keepdims: int(keepdims ? 1 : 0) });
}

export const reduceSum = (x: Value, axes: number[], keepdims = true) => reduce('ReduceSum', x, axes, keepdims);
export const reduceMean = (x: Value, axes: number[], keepdims = true) => reduce('ReduceMean', x, axes, keepdims);

/** Minimum along `axis` (dropped) and the index of its first occurrence. */
export function minWithIndex(x: Value, axis: number): { values: Value; indices: Value } {
  const g = x.graph;
  const a = normAxis(g, axis, x.rank);
  const shape = x.shape.filter((_, i) => i !== a);
  const values = one(g, 'ReduceMin', [x, int64(g, [a], 'axes')], x.dtype, shape, { keepdims: int(0) });
  const indices = one(g, 'ArgMin', [x], 'int64', shape, { axis: int(a), keepdims: int(0), select_last_index: int(0) });
  return { values, indices };
}

export function layerNorm(x: Value, scale: Value, bias: Value, epsilon: number): Value {
  const g = x.graph;
  const c = x.shape[x.rank - 1]!;
  if (scale.shape[0] !== c || bias.shape[0] !== c) {
    g.fail(`LayerNorm: last dimension is ${c}, weight ${shapeStr(scale.shape)} / bias ${shapeStr(bias.shape)}`);
  }
  return one(g, 'LayerNormalization', [x, scale, bias], x.dtype, x.shape, { axis: int(-1), epsilon: float(epsilon) });
}

export type ResizeMode =
  | { mode: 'nearest' }
  | { mode: 'linear'; alignCorners: boolean };

/**
 * Resizes the last two dimensions of an NCHW tensor: to a fixed [h, w], to the [h, w] held by a
 * shape vector read at run time, or by an integer `scale` (which stays valid at any input size).
 */
export function resize2d(x: Value, size: [number, number] | Value | { scale: number }, how: ResizeMode): Value {
  const g = x.graph;
  if (x.rank !== 4) g.fail(`Resize: expected NCHW input, got ${shapeStr(x.shape)}`);
  let hw: number[];
  let inputs: (Value | null)[];
  if (Array.isArray(size)) {
    hw = size;
    inputs = [x, null, null, concat([slice(shapeOf(x), 0, 0, 2), int64(g, size, 'hw')], 0)];
  } else if (size instanceof Value) {
    if (!size.known || size.known.length !== 2) return g.fail('Resize: target size must be a known [h, w] vector');
    hw = size.known;
    inputs = [x, null, null, concat([slice(shapeOf(x), 0, 0, 2), size], 0)];
  } else {
    hw = [x.shape[2]! * size.scale, x.shape[3]! * size.scale];
    inputs = [x, null, floatConst(g, [4], Float32Array.of(1, 1, size.scale, size.scale), 'scales')];
  }
  const attrs: Record<string, AttrValue> =
    how.mode === 'nearest'
      ? { mode: str('nearest'), coordinate_transformation_mode: str('asymmetric'), nearest_mode: str('floor') }
      : { mode: str('linear'), coordinate_transformation_mode: str(how.alignCorners ? 'align_corners' : 'pytorch_half_pixel') };
  return one(g, 'Resize', inputs, x.dtype, [x.shape[0]!, x.shape[1]!, hw[0]!, hw[1]!], attrs);
}

/** Broadcasts `x` to the run-time shape held by `shape` (a known int64 vector). */
export function expand(x: Value, shape: Value): Value {
  const g = x.graph;
  if (!shape.known) return g.fail('Expand: target shape must be known while building');
  return one(g, 'Expand', [x, shape], x.dtype, broadcastShapes(g, x.shape, shape.known, 'Expand'));
}

export function convTranspose(x: Value, w: Value, opts: { stride: number[]; pads: number[]; outputShape: number[]; groups?: number }): Value {
  const g = x.graph;
  const sp = x.rank - 2;
  const groups = opts.groups ?? 1;
  if (w.shape[0] !== x.shape[1]) g.fail(`ConvTranspose: input has ${x.shape[1]} channels, weight ${shapeStr(w.shape)}`);
  const spatial = opts.outputShape;
  const outputPadding = spatial.map((size, i) => {
    const base = (x.shape[2 + i]! - 1) * opts.stride[i]! - opts.pads[i]! - opts.pads[i + sp]! + w.shape[2 + i]!;
    const extra = size - base;
    if (extra < 0 || extra >= opts.stride[i]!) g.fail(`ConvTranspose: cannot reach output size ${size} from ${x.shape[2 + i]}`);
    return extra;
  });
  return one(g, 'ConvTranspose', [x, w], x.dtype, [x.shape[0]!, w.shape[1]! * groups, ...spatial], {
    kernel_shape: ints(w.shape.slice(2)), strides: ints(opts.stride), pads: ints(opts.pads), output_padding: ints(outputPadding), group: int(groups),
  });
}

/** Where a linear Resize samples its input: ONNX's `coordinate_transformation_mode`. */
export type ResizeCoordinates = 'asymmetric' | 'half_pixel' | 'pytorch_half_pixel' | 'align_corners';

/**
 * Bilinear resize of the last two dimensions of an NCHW tensor to a fixed [h, w], with an explicit
 * coordinate mapping. 'asymmetric' (source = destination * in / out) is TensorFlow's
 * `resizeBilinear` with alignCorners = halfPixelCenters = false; resize2d covers the others.
 */
export function resize2dLinear(x: Value, size: [number, number], coordinates: ResizeCoordinates): Value {
  const g = x.graph;
  if (x.rank !== 4) g.fail(`Resize: expected NCHW input, got ${shapeStr(x.shape)}`);
  const sizes = concat([slice(shapeOf(x), 0, 0, 2), int64(g, size, 'hw')], 0);
  return one(g, 'Resize', [x, null, null, sizes], x.dtype, [x.shape[0]!, x.shape[1]!, size[0], size[1]], {
    mode: str('linear'), coordinate_transformation_mode: str(coordinates),
  });
}

function pool2d(opType: 'MaxPool' | 'AveragePool', x: Value, kernel: number | [number, number], stride: number | [number, number]): Value {
  const g = x.graph;
  if (x.rank !== 4) g.fail(`${opType}: expected NCHW input, got ${shapeStr(x.shape)}`);
  const k = typeof kernel === 'number' ? [kernel, kernel] : kernel;
  const s = typeof stride === 'number' ? [stride, stride] : stride;
  const spatial = [0, 1].map((i) => {
    const out = Math.floor((x.shape[2 + i]! - k[i]!) / s[i]!) + 1;
    if (out < 1) g.fail(`${opType}: spatial size ${x.shape[2 + i]} too small for kernel ${k[i]}`);
    return out;
  });
  return one(g, opType, [x], x.dtype, [x.shape[0]!, x.shape[1]!, ...spatial], { kernel_shape: ints(k), strides: ints(s), pads: ints([0, 0, 0, 0]) });
}

/** 2-D max pooling without padding ('valid'): windows that do not fit at the end are dropped. */
export const maxPool2d = (x: Value, kernel: number | [number, number], stride: number | [number, number]) => pool2d('MaxPool', x, kernel, stride);
/** 2-D average pooling without padding ('valid'): windows that do not fit at the end are dropped. */
export const avgPool2d = (x: Value, kernel: number | [number, number], stride: number | [number, number]) => pool2d('AveragePool', x, kernel, stride);
