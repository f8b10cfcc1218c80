/**
 * Reverse-mode differentiation over the graph IR. `gradients()` appends the backward nodes to the
 * same graph, so one ONNX model computes a loss and its gradients, and ONNX Runtime runs training
 * steps with the same kernels as inference.
 *
 * Each op has a vector-Jacobian rule below, written with the same op builders as the forward
 * networks (so shapes are checked while the backward graph is built). Ops without a rule are an
 * error naming the op and the module path, never a silent zero.
 */
import type { Graph, Node, Value } from './ir.js';
import * as op from './ops.js';
import { shapeStr } from '../tensor.js';

type Rule = (node: Node, grad: (Value | undefined)[], needs: boolean[]) => (Value | undefined)[];

const attrInts = (n: Node, name: string): number[] | undefined => {
  const a = n.attrs[name];
  return a?.kind === 'ints' ? a.value : undefined;
};
const attrInt = (n: Node, name: string): number | undefined => {
  const a = n.attrs[name];
  return a?.kind === 'int' ? a.value : undefined;
};
const knownInput = (n: Node, i: number): number[] => {
  const v = n.inputs[i];
  if (!v?.known) return n.outputs[0]!.graph.fail(`${n.op}: input ${i} must be a constant to differentiate`);
  return v.known;
};

/** Sums `g` over the axes along which `shape` was broadcast, giving back `shape`. */
export function unbroadcast(g: Value, shape: number[]): Value {
  if (g.shape.length === shape.length && g.shape.every((d, i) => d === shape[i])) return g;
  const lead = g.rank - shape.length;
  const axes: number[] = [];
  for (let i = 0; i < g.rank; i++) if (i < lead || (shape[i - lead] === 1 && g.shape[i] !== 1)) axes.push(i);
  const summed = axes.length > 0 ? op.reduceSum(g, axes, true) : g;
  return op.reshape(summed, shape.length === 0 ? [] : shape);
}

function swapLast(x: Value): Value {
  const perm = x.shape.map((_, i) => i);
  [perm[x.rank - 1], perm[x.rank - 2]] = [perm[x.rank - 2]!, perm[x.rank - 1]!];
  return op.transpose(x, perm);
}

function zerosLike(x: Value): Value {
  return op.mul(x, 0);
}

function convRule(n: Node, [g]: (Value | undefined)[], needs: boolean[]): (Value | undefined)[] {
  const [x, w, b] = n.inputs as [Value, Value, Value | null];
  const gv = g!;
  const graph = gv.graph;
  const sp = x.rank - 2;
  const groups = attrInt(n, 'group') ?? 1;
  if ((attrInts(n, 'dilations') ?? []).some((d) => d !== 1)) graph.fail('Conv gradient: dilated convolutions are not supported');
  const stride = attrInts(n, 'strides') ?? Array(sp).fill(1);
  const pads = attrInts(n, 'pads') ?? Array(2 * sp).fill(0);
  const out: (Value | undefined)[] = [];
  out[0] = needs[0] ? op.convTranspose(gv, w, { stride, pads, outputShape: x.shape.slice(2), groups }) : undefined;
  if (needs[1]) {
    // dL/dW[o, i, k] = sum over batch and positions of g[o] * x_padded[i] shifted by k: a convolution
    // of the padded input (channels as batch) with the output gradient as kernel, dilated by the
    // stride. Grouped convolutions do this per group (input and output channels split alike).
    const swap01 = [1, 0, ...Array.from({ length: sp }, (_, i) => i + 2)];
    const padded = pads.some((p) => p !== 0) ? op.pad(x, [0, 0, ...pads.slice(0, sp), 0, 0, ...pads.slice(sp)]) : x;
    const weightGrad = (xin: Value, gout: Value) => {
      let gw = op.conv(op.transpose(xin, swap01), op.transpose(gout, swap01), null, { dilations: stride });
      for (let i = 0; i < sp; i++) if (gw.shape[2 + i] !== w.shape[2 + i]) gw = op.slice(gw, 2 + i, 0, w.shape[2 + i]!);
      return op.transpose(gw, swap01);
    };
    if (groups === 1) out[1] = weightGrad(padded, gv);
    else {
      const xs = op.split(padded, 1, groups);
      const gs = op.split(gv, 1, groups);
      out[1] = op.concat(xs.map((xi, i) => weightGrad(xi, gs[i]!)), 0);
    }
  }
  if (b && needs[2]) out[2] = op.reduceSum(gv, [0, ...Array.from({ length: sp }, (_, i) => i + 2)], false);
  return out;
}

function layerNormRule(n: Node, [g]: (Value | undefined)[], needs: boolean[]): (Value | undefined)[] {
  const [x, scale, bias] = n.inputs as [Value, Value, Value];
  const eps = n.attrs['epsilon']?.kind === 'float' ? n.attrs['epsilon'].value : 1e-5;
  if ((attrInt(n, 'axis') ?? -1) !== -1 && attrInt(n, 'axis') !== x.rank - 1) x.graph.fail('LayerNormalization gradient: only the last axis');
  const gv = g!;
  const centred = op.sub(x, op.reduceMean(x, [-1]));
  const rstd = op.div(op.scalar(x.graph, 1), op.sqrt(op.add(op.reduceMean(op.mul(centred, centred), [-1]), eps)));
  const xhat = op.mul(centred, rstd);
  const gxhat = op.mul(gv, scale);
  return [
    needs[0] ? op.mul(rstd, op.sub(op.sub(gxhat, op.reduceMean(gxhat, [-1])), op.mul(xhat, op.reduceMean(op.mul(gxhat, xhat), [-1])))) : undefined,
    needs[1] ? unbroadcast(op.mul(gv, xhat), scale.shape) : undefined,
    needs[2] ? unbroadcast(gv, bias.shape) : undefined,
  ];
}

function reduceRule(mean: boolean): Rule {
  return (n, [g]) => {
    const x = n.inputs[0]!;
    const axes = knownInput(n, 1).map((a) => (a < 0 ? a + x.rank : a));
    const keep = (attrInt(n, 'keepdims') ?? 1) === 1;
    const gk = keep ? g! : op.unsqueeze(g!, axes);
    const spread = op.expand(gk, op.shapeOf(x));
    return [mean ? op.div(spread, axes.reduce((p, a) => p * x.shape[a]!, 1)) : spread];
  };
}

/**
 * Elements start, start + stride, ..., start + stride * (count - 1) along axis 2 or 3 of an NCHW
 * tensor, from Pad / Slice / Reshape (step-1 slices only, so every piece has a gradient rule).
 */
function stridedView(x: Value, axis: 2 | 3, start: number, count: number, stride: number): Value {
  const need = start + stride * count - x.shape[axis]!;
  const pads = [0, 0, 0, 0, 0, 0, 0, 0];
  pads[4 + axis] = Math.max(0, need);
  const padded = need > 0 ? op.pad(x, pads) : x;
  const window = op.slice(padded, axis, start, start + stride * count);
  const split = op.reshape(window, axis === 2 ? [0, 0, count, stride, -1] : [0, 0, 0, count, stride]);
  return op.reshape(op.slice(split, axis + 1, 0, 1), [0, 0, 0, -1]);
}

/** The transpose of stridedView: puts `g` at those positions of a zero tensor of `size` along `axis`. */
function stridedScatter(g: Value, axis: 2 | 3, start: number, size: number, stride: number): Value {
  const count = g.shape[axis]!;
  let spread = g;
  if (stride > 1) {
    const pads = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    pads[5 + axis + 1] = stride - 1;
    const cells = op.pad(op.reshape(g, axis === 2 ? [0, 0, 0, 1, -1] : [0, 0, 0, 0, 1]), pads);
    spread = op.reshape(cells, axis === 2 ? [0, 0, count * stride, -1] : [0, 0, 0, -1]);
  }
  const end = start + stride * count;
  const pads = [0, 0, 0, 0, 0, 0, 0, 0];
  pads[axis] = start;
  pads[4 + axis] = Math.max(0, size - end);
  const placed = start > 0 || size > end ? op.pad(spread, pads) : spread;
  return end > size ? op.slice(placed, axis, 0, size) : placed;
}

/** Kernel and strides of a MaxPool / AveragePool node, refusing the forms the rules below do not cover. */
function poolGeometry(n: Node): { kernel: number[]; strides: number[] } {
  const graph = n.outputs[0]!.graph;
  const x = n.inputs[0]!;
  const kernel = attrInts(n, 'kernel_shape') ?? [];
  const autoPad = n.attrs['auto_pad'];
  if (x.rank !== 4 || kernel.length !== 2) graph.fail(`${n.op} gradient: only 2-D pooling of NCHW tensors`);
  if ((attrInts(n, 'pads') ?? []).some((p) => p !== 0) || (autoPad?.kind === 'string' && autoPad.value !== 'NOTSET' && autoPad.value !== 'VALID')) {
    graph.fail(`${n.op} gradient: only unpadded ('valid') pooling`);
  }
  if ((attrInt(n, 'ceil_mode') ?? 0) !== 0) graph.fail(`${n.op} gradient: ceil_mode is not supported`);
  if ((attrInts(n, 'dilations') ?? []).some((d) => d !== 1)) graph.fail(`${n.op} gradient: dilated pooling is not supported`);
  return { kernel, strides: attrInts(n, 'strides') ?? [1, 1] };
}

/**
 * MaxPool: the pool is the maximum over the kh * kw shifted strided views of the input (one per
 * window offset), so the gradient of each output goes to the view that holds the maximum, scattered
 * back with the transpose of that view; overlapping windows add up. Ties: the first offset in
 * row-major window order that equals the maximum takes the whole gradient (as ONNX Runtime's
 * MaxPool indices and PyTorch's max_pool2d backward do), so nothing is counted twice.
 */
function maxPoolRule(n: Node, [g]: (Value | undefined)[]): (Value | undefined)[] {
  const { kernel: [kh, kw], strides: [sh, sw] } = poolGeometry(n);
  const x = n.inputs[0]!;
  const y = n.outputs[0]!;
  const [ho, wo] = [y.shape[2]!, y.shape[3]!];
  let unclaimed: Value | undefined;
  let gx: Value | undefined;
  for (let dy = 0; dy < kh!; dy++) {
    for (let dx = 0; dx < kw!; dx++) {
      const view = stridedView(stridedView(x, 2, dy, ho, sh!), 3, dx, wo, sw!);
      // 1 where this offset holds the maximum (view - y is exactly 0 there, negative elsewhere).
      const equal = op.sub(op.scalar(x.graph, 1), op.abs(op.sign(op.sub(view, y))));
      const wins = unclaimed ? op.mul(equal, unclaimed) : equal;
      if (dy !== kh! - 1 || dx !== kw! - 1) unclaimed = op.sub(unclaimed ?? op.scalar(x.graph, 1), wins);
      const piece = stridedScatter(stridedScatter(op.mul(g!, wins), 3, dx, x.shape[3]!, sw!), 2, dy, x.shape[2]!, sh!);
      gx = gx ? op.add(gx, piece) : piece;
    }
  }
  return [gx];
}

/** AveragePool without padding: each output's gradient / (kh * kw) spread over its window (overlaps add up). */
function averagePoolRule(n: Node, [g]: (Value | undefined)[]): (Value | undefined)[] {
  const { kernel: [kh, kw], strides: [sh, sw] } = poolGeometry(n);
  const x = n.inputs[0]!;
  const share = op.div(g!, kh! * kw!);
  let gx: Value | undefined;
  for (let dy = 0; dy < kh!; dy++) {
    for (let dx = 0; dx < kw!; dx++) {
      const piece = stridedScatter(stridedScatter(share, 3, dx, x.shape[3]!, sw!), 2, dy, x.shape[2]!, sh!);
      gx = gx ? op.add(gx, piece) : piece;
    }
  }
  return [gx];
}

/**
 * The (out x in) matrix of ONNX Runtime's linear Resize along one axis (no antialiasing):
 * source coordinate from the coordinate mode, clamped to [0, in - 1], weights to its two
 * neighbours.
 */
export function linearResizeMatrix(inSize: number, outSize: number, coordinates: string): Float32Array {
  const m = new Float32Array(outSize * inSize);
  const scale = outSize / inSize;
  for (let o = 0; o < outSize; o++) {
    let src: number;
    switch (coordinates) {
      case 'asymmetric': src = o / scale; break;
      case 'half_pixel': src = (o + 0.5) / scale - 0.5; break;
      case 'pytorch_half_pixel': src = outSize > 1 ? (o + 0.5) / scale - 0.5 : 0; break;
      case 'align_corners': src = outSize === 1 ? 0 : (o * (inSize - 1)) / (outSize - 1); break;
      default: throw new Error(`linear Resize gradient: coordinate_transformation_mode '${coordinates}' is not supported`);
    }
    src = Math.max(0, Math.min(src, inSize - 1));
    const i0 = Math.min(Math.floor(src), inSize - 1);
    const i1 = Math.min(i0 + 1, inSize - 1);
    const w1 = src - i0;
    m[o * inSize + i0]! += 1 - w1;
    m[o * inSize + i1]! += w1;
  }
  return m;
}

/** Linear Resize of the last two axes is Rh @ x @ Rw^T, so its gradient is Rh^T @ g @ Rw. */
function linearResizeRule(n: Node, g: Value): Value {
  const x = n.inputs[0]!;
  const graph = x.graph;
  const y = n.outputs[0]!;
  const coord = n.attrs['coordinate_transformation_mode'];
  const antialias = attrInt(n, 'antialias') ?? 0;
  if (x.rank !== 4 || y.shape[0] !== x.shape[0] || y.shape[1] !== x.shape[1] || antialias !== 0) {
    graph.fail('Resize gradient: linear mode only over the last two axes of NCHW, without antialiasing');
  }
  const mode = coord?.kind === 'string' ? coord.value : 'half_pixel';
  const [h, w, ho, wo] = [x.shape[2]!, x.shape[3]!, y.shape[2]!, y.shape[3]!];
  const rh = linearResizeMatrix(h, ho, mode);
  const rhT = new Float32Array(h * ho);
  for (let o = 0; o < ho; o++) for (let i = 0; i < h; i++) rhT[i * ho + o] = rh[o * h + i]!;
  const rw = linearResizeMatrix(w, wo, mode);
  return op.matmul(op.matmul(op.floatConst(graph, [h, ho], rhT, 'resize_rhT'), g), op.floatConst(graph, [wo, w], rw, 'resize_rw'));
}

const RULES: Record<string, Rule> = {
  Identity: (_, [g]) => [g],
  Add: (n, [g]) => [unbroadcast(g!, n.inputs[0]!.shape), unbroadcast(g!, n.inputs[1]!.shape)],
  Sub: (n, [g]) => [unbroadcast(g!, n.inputs[0]!.shape), unbroadcast(op.neg(g!), n.inputs[1]!.shape)],
  Mul: (n, [g], needs) => {
    const [a, b] = n.inputs as [Value, Value];
    return [needs[0] ? unbroadcast(op.mul(g!, b), a.shape) : undefined, needs[1] ? unbroadcast(op.mul(g!, a), b.shape) : undefined];
  },
  Div: (n, [g], needs) => {
    const [a, b] = n.inputs as [Value, Value];
    const y = n.outputs[0]!;
    return [needs[0] ? unbroadcast(op.div(g!, b), a.shape) : undefined, needs[1] ? unbroadcast(op.neg(op.div(op.mul(g!, y), b)), b.shape) : undefined];
  },
  Neg: (_, [g]) => [op.neg(g!)],
  Abs: (n, [g]) => [op.mul(g!, op.sign(n.inputs[0]!))],
  // d/dx relu = [x > 0] = (sign(x) + |sign(x)|) / 2, built from ops that have float kernels.
  Relu: (n, [g]) => {
    const s = op.sign(n.inputs[0]!);
    return [op.mul(g!, op.mul(op.add(s, op.abs(s)), 0.5))];
  },
  LeakyRelu: (n, [g]) => {
    const alpha = n.attrs['alpha']?.kind === 'float' ? n.attrs['alpha'].value : 0.01;
    const s = op.sign(n.inputs[0]!);
    const positive = op.mul(op.add(s, op.abs(s)), 0.5);
    return [op.mul(g!, op.add(op.mul(positive, 1 - alpha), alpha))];
  },
  Tanh: (n, [g]) => {
    const y = n.outputs[0]!;
    return [op.mul(g!, op.sub(op.scalar(y.graph, 1), op.mul(y, y)))];
  },
  Sigmoid: (n, [g]) => {
    const y = n.outputs[0]!;
    return [op.mul(g!, op.mul(y, op.sub(op.scalar(y.graph, 1), y)))];
  },
  Exp: (n, [g]) => [op.mul(g!, n.outputs[0]!)],
  Sqrt: (n, [g]) => [op.div(op.mul(g!, 0.5), n.outputs[0]!)],
  Erf: (n, [g]) => {
    const x = n.inputs[0]!;
    return [op.mul(g!, op.mul(op.exp(op.neg(op.mul(x, x))), 2 / Math.sqrt(Math.PI)))];
  },
  Sin: (n, [g]) => [op.mul(g!, op.cos(n.inputs[0]!))],
  Cos: (n, [g]) => [op.neg(op.mul(g!, op.sin(n.inputs[0]!)))],
  MatMul: (n, [g], needs) => {
    const [a, b] = n.inputs as [Value, Value];
    return [
      needs[0] ? unbroadcast(op.matmul(g!, swapLast(b)), a.shape) : undefined,
      needs[1] ? unbroadcast(op.matmul(swapLast(a), g!), b.shape) : undefined,
    ];
  },
  Conv: convRule,
  LayerNormalization: layerNormRule,
  Softmax: (n, [g]) => {
    const y = n.outputs[0]!;
    const axis = attrInt(n, 'axis') ?? -1;
    return [op.mul(y, op.sub(g!, op.reduceSum(op.mul(g!, y), [axis], true)))];
  },
  Reshape: (n, [g]) => [op.reshape(g!, op.shapeOf(n.inputs[0]!))],
  Unsqueeze: (n, [g]) => [op.reshape(g!, op.shapeOf(n.inputs[0]!))],
  Transpose: (n, [g]) => {
    const perm = attrInts(n, 'perm')!;
    const inverse = perm.map((_, i) => perm.indexOf(i));
    return [op.transpose(g!, inverse)];
  },
  Concat: (n, [g], needs) => {
    const axis = attrInt(n, 'axis')!;
    let start = 0;
    return n.inputs.map((x, i) => {
      const size = x!.shape[axis]!;
      const piece = needs[i] ? op.slice(g!, axis, start, start + size) : undefined;
      start += size;
      return piece;
    });
  },
  Split: (n, grads) => {
    const axis = attrInt(n, 'axis')!;
    return [op.concat(n.outputs.map((o, i) => grads[i] ?? zerosLike(o)), axis)];
  },
  Slice: (n, [g]) => {
    const x = n.inputs[0]!;
    const [start] = knownInput(n, 1);
    const [axis] = knownInput(n, 3);
    const size = x.shape[axis!]!;
    const begin = Math.max(0, start! < 0 ? start! + size : Math.min(start!, size));
    const pads = Array(2 * x.rank).fill(0);
    pads[axis!] = begin;
    pads[axis! + x.rank] = size - begin - g!.shape[axis!]!;
    return [op.pad(g!, pads)];
  },
  Pad: (n, [g]) => {
    const x = n.inputs[0]!;
    // Slicing the gradient is right for constant padding only: mirrored edges would add back into the border.
    const mode = n.attrs['mode'];
    if (mode?.kind === 'string' && mode.value !== 'constant') g!.graph.fail(`Pad gradient: only constant mode, not '${mode.value}'`);
    const pads = knownInput(n, 1);
    let out = g!;
    for (let a = 0; a < x.rank; a++) if (pads[a] !== 0 || pads[a + x.rank] !== 0) out = op.slice(out, a, pads[a]!, pads[a]! + x.shape[a]!);
    return [out];
  },
  ReduceMean: reduceRule(true),
  ReduceSum: reduceRule(false),
  Expand: (n, [g]) => [unbroadcast(g!, n.inputs[0]!.shape)],
  // SpaceToDepth is the exact inverse permutation of DepthToSpace in DCR order.
  DepthToSpace: (n, [g]) => {
    const mode = n.attrs['mode'];
    if (mode?.kind === 'string' && mode.value !== 'DCR') g!.graph.fail('DepthToSpace gradient: only DCR mode');
    const x = n.inputs[0]!;
    return [g!.graph.addNode('SpaceToDepth', [g!], [{ dtype: g!.dtype, shape: x.shape }], { blocksize: n.attrs['blocksize']! })[0]!];
  },
  Resize: (n, [g]) => {
    const x = n.inputs[0]!;
    const mode = n.attrs['mode'];
    if (mode?.kind === 'string' && mode.value === 'linear') return [linearResizeRule(n, g!)];
    const fh = g!.shape[2]! / x.shape[2]!;
    const fw = g!.shape[3]! / x.shape[3]!;
    if (mode?.kind !== 'string' || mode.value !== 'nearest' || !Number.isInteger(fh) || !Number.isInteger(fw)) {
      x.graph.fail('Resize gradient: nearest mode only for upsampling by an integer factor');
    }
    const blocks = op.reshape(g!, [0, 0, x.shape[2]!, fh, x.shape[3]!, fw]);
    return [op.reduceSum(blocks, [3, 5], false)];
  },
  MaxPool: maxPoolRule,
  AveragePool: averagePoolRule,
};

/** Ops whose outputs carry no gradient (shapes, integer paths). */
const NON_DIFFERENTIABLE = new Set(['Shape', 'ArgMin', 'Cast', 'Sign']);

/**
 * Appends to `graph` the gradients of the scalar `loss` with respect to each of `wrt` (inputs,
 * parameters or intermediate values) and returns them in the same order.
 */
export function gradients(graph: Graph, loss: Value, wrt: Value[]): Value[] {
  if (loss.rank !== 0) graph.fail(`gradients: the loss must be a scalar, got shape [${loss.shape}]`);
  const requires = new Set<Value>(wrt);
  const nodes = [...graph.nodes];
  for (const n of nodes) {
    if (NON_DIFFERENTIABLE.has(n.op)) continue;
    if (n.inputs.some((i) => i && requires.has(i))) for (const o of n.outputs) if (o.dtype === 'float32') requires.add(o);
  }
  if (!requires.has(loss)) graph.fail('gradients: the loss does not depend on any of the requested values');

  const grads = new Map<Value, Value>();
  const accumulate = (v: Value, gv: Value) => {
    const prev = grads.get(v);
    grads.set(v, prev ? op.add(prev, gv) : gv);
  };
  grads.set(loss, op.scalar(graph, 1, 'grad_seed'));
  for (let k = nodes.length - 1; k >= 0; k--) {
    const n = nodes[k]!;
    const outGrads = n.outputs.map((o) => grads.get(o));
    if (outGrads.every((x) => x === undefined)) continue;
    const needs = n.inputs.map((i) => !!i && requires.has(i));
    if (!needs.some(Boolean)) continue;
    const rule = RULES[n.op];
    graph.atPath(`grad/${n.scope}`, () => {
      if (!rule) graph.fail(`no gradient rule for ${n.domain ? `${n.domain}.` : ''}${n.op} (build the graph with fusedAttention = false for attention)`);
      const inGrads = rule(n, outGrads, needs);
      n.inputs.forEach((input, i) => {
        const gi = inGrads[i];
        if (input && needs[i] && gi) {
          if (shapeStr(gi.shape) !== shapeStr(input.shape)) graph.fail(`${n.op} gradient for input ${i} has shape ${shapeStr(gi.shape)}, input ${shapeStr(input.shape)}`);
          accumulate(input, gi);
        }
      });
    });
  }
  return wrt.map((v) => grads.get(v) ?? graph.atPath('grad', () => zerosLike(v)));
}

