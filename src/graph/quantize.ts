/**
 * Static int8 quantization of a graph's convolutions and weight products, in the QDQ form ONNX
 * Runtime fuses into QLinearConv (and MatMulIntegerToFloat for MatMul, see quantizeGraph):
 *
 *   x -> QuantizeLinear(u8) -> DequantizeLinear ┐
 *   int8 weight -> DequantizeLinear (per output channel) ├ Conv -> QuantizeLinear(u8) -> DequantizeLinear
 *   int32 bias -> DequantizeLinear (scale x_scale * w_scale) ┘
 *
 * ONNX Runtime only fuses the pattern when the conv output is quantized too (measured here: a
 * 512-channel 3x3 conv at 128 x 128 takes 263 ms in fp32, 110 ms fused, 344 ms with a float
 * output), so activation ranges of both the input and the output of every quantized conv come
 * from calibration: `addRangeProbes` adds ReduceMin/ReduceMax outputs to an fp32 graph, the caller
 * runs it on real inputs and merges the ranges, and `quantizeGraph` rewrites a freshly built copy
 * of the same graph (value names are stable across builds, so ranges are keyed by name).
 *
 * A conv (MatMul) is quantized when its weight is a parameter or a constant expression of
 * parameters (the phase kernels of Upsample2D, transposed linear weights) and both of its channel
 * counts reach `minChannels`: the networks' first
 * and last convs (3 or 4 channels) stay fp32, they cost little and set the output's precision.
 */
import type { Graph, Node, Value } from './ir.js';
import type { WeightSource } from './emit.js';
import { type Tensor, numel, shapeStr, transpose2d } from '../tensor.js';

export interface QuantizeOptions {
  /** Convs with fewer input or output channels stay fp32. Default 16. */
  minChannels?: number;
}

/** [min, max] of each calibrated value, by value name. */
export type Ranges = Record<string, [number, number]>;

/** A Conv or MatMul to quantize. */
interface Target {
  node: Node;
  x: Value;
  /** The output, quantized too for a Conv (ONNX Runtime's fusion needs it), left float for a MatMul. */
  y: Value | null;
  weight: Value;
  /** The weight axis that gets one scale per index: Conv output channels (0), MatMul columns (1). */
  axis: number;
  bias: Value | null;
}

function producers(graph: Graph): Map<Value, Node> {
  const m = new Map<Value, Node>();
  for (const n of graph.nodes) for (const o of n.outputs) m.set(o, n);
  return m;
}

/** True when `v` is computed from parameters and constants alone by ops `evaluate` knows. */
function isWeightExpression(graph: Graph, v: Value, prod: Map<Value, Node>): boolean {
  if (graph.params.get(v.name) === v || graph.constants.has(v)) return true;
  const n = prod.get(v);
  if (!n || !['Slice', 'Add', 'Concat', 'Transpose'].includes(n.op)) return false;
  return n.inputs.every((i) => i !== null && isWeightExpression(graph, i, prod));
}

function targetsOf(graph: Graph, minChannels: number): Target[] {
  const prod = producers(graph);
  const targets: Target[] = [];
  for (const node of graph.nodes) {
    if (node.op === 'MatMul' && node.domain === '') {
      const [x, weight] = node.inputs;
      if (!x || !weight || weight.rank !== 2 || weight.shape[0]! < minChannels || weight.shape[1]! < minChannels) continue;
      if (isWeightExpression(graph, x, prod) || !isWeightExpression(graph, weight, prod)) continue;
      targets.push({ node, x, y: null, weight, axis: 1, bias: null });
      continue;
    }
    if (node.op !== 'Conv' || node.domain !== '') continue;
    const [x, weight, bias] = node.inputs;
    if (!x || !weight || weight.rank !== 4) continue;
    const group = node.attrs['group'];
    if (group?.kind === 'int' && group.value !== 1) continue;
    if (weight.shape[0]! < minChannels || weight.shape[1]! < minChannels) continue;
    if (!isWeightExpression(graph, weight, prod)) continue;
    if (bias && graph.params.get(bias.name) !== bias) continue;
    targets.push({ node, x, y: node.outputs[0]!, weight, axis: 0, bias: bias ?? null });
  }
  return targets;
}

/** The values whose ranges `quantizeGraph` needs: every quantized conv's input and output, every quantized MatMul's input. */
export function calibrationValues(graph: Graph, opts: QuantizeOptions = {}): Value[] {
  const seen = new Set<Value>();
  for (const t of targetsOf(graph, opts.minChannels ?? 16)) {
    seen.add(t.x);
    if (t.y) seen.add(t.y);
  }
  return [...seen];
}

export const RANGE_MIN = 'range_min:';
export const RANGE_MAX = 'range_max:';

/** Adds `range_min:<name>` / `range_max:<name>` scalar outputs for every value in `values`. */
export function addRangeProbes(graph: Graph, values: readonly Value[]): void {
  for (const v of values) {
    for (const [op, prefix] of [['ReduceMin', RANGE_MIN], ['ReduceMax', RANGE_MAX]] as const) {
      const r = graph.addNode(op, [v], [{ dtype: 'float32', shape: [] }], { keepdims: { kind: 'int', value: 0 } })[0]!;
      graph.output(r, `${prefix}${v.name}`);
    }
  }
}

/** Folds the probe outputs of one run into `ranges` (the union of all ranges seen). */
export function mergeRanges(ranges: Ranges, outputs: Record<string, { data: ArrayLike<number> }>): void {
  for (const [name, t] of Object.entries(outputs)) {
    if (!name.startsWith(RANGE_MIN)) continue;
    const key = name.slice(RANGE_MIN.length);
    const max = outputs[`${RANGE_MAX}${key}`];
    if (!max) continue;
    const lo = Number(t.data[0]);
    const hi = Number(max.data[0]);
    const prev = ranges[key];
    ranges[key] = prev ? [Math.min(prev[0], lo), Math.max(prev[1], hi)] : [lo, hi];
  }
}

/** uint8 affine parameters covering [min, max] and zero (zero must be exact for padding). */
export function activationQuant(range: [number, number]): { scale: number; zeroPoint: number } {
  const lo = Math.min(0, range[0]);
  const hi = Math.max(0, range[1]);
  const scale = Math.fround(hi > lo ? (hi - lo) / 255 : 1);
  const zeroPoint = Math.min(255, Math.max(0, Math.round(-lo / scale)));
  return { scale, zeroPoint };
}

/** Symmetric int8 quantization of a weight with one scale per index of `axis`. */
export function quantizeWeight(w: Float32Array, shape: readonly number[], axis = 0): { q: Int8Array; scales: Float32Array } {
  const channels = shape[axis]!;
  const outer = numel(shape.slice(0, axis));
  const inner = numel(shape.slice(axis + 1));
  const index = (o: number, c: number, i: number) => (o * channels + c) * inner + i;
  const q = new Int8Array(w.length);
  const scales = new Float32Array(channels);
  for (let c = 0; c < channels; c++) {
    let m = 0;
    for (let o = 0; o < outer; o++) for (let i = 0; i < inner; i++) m = Math.max(m, Math.abs(w[index(o, c, i)]!));
    const s = Math.fround(m > 0 ? m / 127 : 1);
    scales[c] = s;
    for (let o = 0; o < outer; o++) {
      for (let i = 0; i < inner; i++) q[index(o, c, i)] = Math.max(-127, Math.min(127, Math.round(w[index(o, c, i)]! / s)));
    }
  }
  return { q, scales };
}

// --- host evaluation of weight expressions (Slice / Add / Concat over parameters) ---

interface HostArray {
  shape: number[];
  data: Float32Array;
}

/**
 * Copies between `big` and `small` along `axis`: positions offset..offset+length of big and
 * 0..length of small (all other dimensions equal). `into` says which one is written.
 */
function copyAlong(big: HostArray, small: HostArray, axis: number, offset: number, into: 'big' | 'small'): void {
  const outer = numel(small.shape.slice(0, axis));
  const inner = numel(small.shape.slice(axis + 1));
  const length = small.shape[axis]!;
  for (let o = 0; o < outer; o++) {
    for (let a = 0; a < length; a++) {
      const bi = (o * big.shape[axis]! + offset + a) * inner;
      const si = (o * length + a) * inner;
      if (into === 'big') big.data.set(small.data.subarray(si, si + inner), bi);
      else small.data.set(big.data.subarray(bi, bi + inner), si);
    }
  }
}

/** What weight expressions are evaluated against: a snapshot taken before the rewrite. */
interface FoldContext {
  params: ReadonlySet<Value>;
  constants: ReadonlyMap<Value, Tensor>;
  prod: ReadonlyMap<Value, Node>;
  weights: WeightSource;
}

function evaluate(ctx: FoldContext, v: Value): HostArray {
  if (ctx.params.has(v)) return { shape: v.shape, data: ctx.weights.read(v.name, v.shape) };
  const c = ctx.constants.get(v);
  if (c) return { shape: c.shape, data: c.data instanceof Float32Array ? c.data : Float32Array.from(c.data as ArrayLike<number>) };
  const n = ctx.prod.get(v)!;
  const ints = (i: number) => Array.from(ctx.constants.get(n.inputs[i]!)!.data as BigInt64Array, Number);
  if (n.op === 'Add') {
    const [a, b] = n.inputs.map((i) => evaluate(ctx, i!));
    if (shapeStr(a!.shape) !== shapeStr(b!.shape)) throw new Error(`quantize: cannot fold Add of ${shapeStr(a!.shape)} and ${shapeStr(b!.shape)}`);
    return { shape: a!.shape, data: a!.data.map((x, i) => x + b!.data[i]!) };
  }
  if (n.op === 'Slice') {
    const src = evaluate(ctx, n.inputs[0]!);
    const [start] = ints(1);
    const [axis] = ints(3);
    const out: HostArray = { shape: v.shape, data: new Float32Array(numel(v.shape)) };
    const s = start! < 0 ? start! + src.shape[axis!]! : start!;
    copyAlong(src, out, axis!, s, 'small');
    return out;
  }
  if (n.op === 'Transpose') {
    const src = evaluate(ctx, n.inputs[0]!);
    const perm = n.attrs['perm'];
    if (src.shape.length !== 2 || perm?.kind !== 'ints' || perm.value[0] !== 1) throw new Error('quantize: only 2-D transposes are folded');
    const [rows, cols] = src.shape as [number, number];
    return { shape: [cols, rows], data: transpose2d(src.data, rows, cols) };
  }
  if (n.op === 'Concat') {
    const axisAttr = n.attrs['axis'];
    const axis = axisAttr?.kind === 'int' ? axisAttr.value : 0;
    const out: HostArray = { shape: v.shape, data: new Float32Array(numel(v.shape)) };
    let offset = 0;
    for (const i of n.inputs) {
      const part = evaluate(ctx, i!);
      copyAlong(out, part, axis, offset, 'big');
      offset += part.shape[axis]!;
    }
    return out;
  }
  throw new Error(`quantize: cannot fold ${n.op}`);
}

// --- the rewrite ---

/**
 * Rewrites `graph` in place: every quantizable conv gets the QDQ pattern above, every
 * quantizable MatMul the same without the output pair (ONNX Runtime fuses that into
 * MatMulIntegerToFloat: 2.3-3.2x faster than fp32 on UNet-sized products here), its fp32 weight
 * parameters are replaced by int8 ones (`<name>.int8`), and nodes and parameters no longer used
 * are dropped. Returns the weight source to emit the rewritten graph with (it serves the int8
 * weights and passes every other key through to `weights`).
 */
export function quantizeGraph(graph: Graph, ranges: Ranges, weights: WeightSource, opts: QuantizeOptions = {}): { weights: WeightSource; quantized: { conv: number; matmul: number } } {
  const targets = targetsOf(graph, opts.minChannels ?? 16);
  const prod = producers(graph);
  const ctx: FoldContext = { params: new Set(graph.params.values()), constants: new Map(graph.constants), prod, weights };
  const int8Weights = new Map<string, () => Int8Array>();
  const before = new Map<Node, Node[]>();
  const after = new Map<Node | null, Node[]>();
  const dequantized = new Map<Value, Value>();
  const qparams = new Map<Value, { scale: number; zeroPoint: number }>();

  const node = (op: string, inputs: Value[], out: Value, attrs: Node['attrs'] = {}): Node =>
    ({ op, domain: '', name: out.name, scope: '', inputs, outputs: [out], attrs });
  const f32 = (data: Float32Array, shape: number[], hint: string) => graph.constant({ dtype: 'float32', shape, data }, hint);

  const activation = (v: Value): { scale: number; zeroPoint: number } => {
    const known = qparams.get(v);
    if (known) return known;
    const range = ranges[v.name];
    if (!range) throw new Error(`quantize: no calibrated range for ${v.name}; calibrate with this graph's probes first`);
    const q = activationQuant(range);
    qparams.set(v, q);
    const scale = f32(Float32Array.of(q.scale), [], `${v.name}.scale`);
    const zp = graph.constant({ dtype: 'uint8', shape: [], data: Uint8Array.of(q.zeroPoint) }, `${v.name}.zero_point`);
    const quant = graph.newValue('uint8', v.shape, `${v.name}.quantized`);
    const deq = graph.newValue('float32', v.shape, `${v.name}.dequantized`);
    const at = prod.get(v) ?? null;
    after.set(at, [...(after.get(at) ?? []), node('QuantizeLinear', [v, scale, zp], quant), node('DequantizeLinear', [quant, scale, zp], deq)]);
    dequantized.set(v, deq);
    return q;
  };

  for (const t of targets) {
    const xq = activation(t.x);
    if (t.y) activation(t.y);
    const w = evaluate(ctx, t.weight);
    const cout = t.weight.shape[t.axis]!;
    const { scales } = quantizeWeight(w.data, w.shape, t.axis);
    const key = `${t.weight.name}.int8`;
    // Quantized again at emission (one weight at a time) rather than held: the UNet has 866M of them.
    int8Weights.set(key, () => quantizeWeight(evaluate(ctx, t.weight).data, w.shape, t.axis).q);
    const wq = graph.param(key, t.weight.shape, 'int8');
    const wScale = f32(scales, [cout], `${t.weight.name}.scale`);
    const wZero = graph.constant({ dtype: 'int8', shape: [cout], data: new Int8Array(cout) }, `${t.weight.name}.zero_point`);
    const wDeq = graph.newValue('float32', t.weight.shape, `${t.weight.name}.dequantized`);
    const pre = [node('DequantizeLinear', [wq, wScale, wZero], wDeq, { axis: { kind: 'int', value: t.axis } })];
    let bDeq: Value | null = null;
    if (t.bias) {
      const b = weights.read(t.bias.name, t.bias.shape);
      const bScale = scales.map((s) => Math.fround(s * xq.scale));
      const bq = Int32Array.from(b, (v, i) => Math.max(-(2 ** 31), Math.min(2 ** 31 - 1, Math.round(v / bScale[i]!))));
      const bConst = graph.constant({ dtype: 'int32', shape: [cout], data: bq }, `${t.bias.name}.int32`);
      const bScaleConst = f32(bScale, [cout], `${t.bias.name}.scale`);
      const bZero = graph.constant({ dtype: 'int32', shape: [cout], data: new Int32Array(cout) }, `${t.bias.name}.zero_point`);
      bDeq = graph.newValue('float32', [cout], `${t.bias.name}.dequantized`);
      pre.push(node('DequantizeLinear', [bConst, bScaleConst, bZero], bDeq, { axis: { kind: 'int', value: 0 } }));
    }
    before.set(t.node, pre);
    t.node.inputs = [dequantized.get(t.x)!, wDeq, ...(bDeq ? [bDeq] : [])];
  }

  // Every use of a quantized value reads its dequantized copy (the conv output must feed only its Q),
  // except Shape, which reads the uint8 copy: ONNX Runtime gives each consumer of a DequantizeLinear
  // its own copy of it, and a Shape would pay for a whole dequantization to read four numbers.
  const ownQuantize = new Set<Node>();
  for (const list of after.values()) for (const n of list) if (n.op === 'QuantizeLinear') ownQuantize.add(n);
  const quantizedOf = new Map<Value, Value>();
  for (const n of ownQuantize) quantizedOf.set(n.inputs[0]!, n.outputs[0]!);
  for (const n of graph.nodes) {
    if (ownQuantize.has(n)) continue;
    const copy = n.op === 'Shape' ? quantizedOf : dequantized;
    n.inputs = n.inputs.map((i) => (i ? copy.get(i) ?? i : i));
  }

  const ordered: Node[] = [...(after.get(null) ?? [])];
  for (const n of graph.nodes) {
    ordered.push(...(before.get(n) ?? []), n, ...(after.get(n) ?? []));
  }
  graph.nodes.splice(0, graph.nodes.length, ...liveNodes(graph, ordered));

  const used = new Set<Value>();
  for (const n of graph.nodes) for (const i of n.inputs) if (i) used.add(i);
  for (const [key, p] of [...graph.params]) if (!used.has(p)) graph.params.delete(key);
  for (const c of [...graph.constants.keys()]) if (!used.has(c)) graph.constants.delete(c);

  return {
    quantized: { conv: targets.filter((t) => t.y).length, matmul: targets.filter((t) => !t.y).length },
    weights: {
      read: (k, shape) => weights.read(k, shape),
      readInt8: (k) => {
        const q = int8Weights.get(k);
        if (!q) throw new Error(`quantize: no int8 weight '${k}'`);
        return q();
      },
    },
  };
}

/** `nodes` without those whose outputs reach no graph output. */
function liveNodes(graph: Graph, nodes: Node[]): Node[] {
  const needed = new Set<Value>(graph.outputs);
  const keep: Node[] = [];
  for (let i = nodes.length - 1; i >= 0; i--) {
    const n = nodes[i]!;
    if (!n.outputs.some((o) => needed.has(o))) continue;
    keep.push(n);
    for (const v of n.inputs) if (v) needed.add(v);
  }
  return keep.reverse();
}

/** The value of a weight expression (parameters and constants through Slice/Add/Concat), computed on the host. */
export function foldWeightExpression(graph: Graph, v: Value, weights: WeightSource): Float32Array {
  const ctx: FoldContext = { params: new Set(graph.params.values()), constants: new Map(graph.constants), prod: producers(graph), weights };
  return evaluate(ctx, v).data;
}
