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
  if ((attrInt(n, 'group') ?? 1) !== 1) graph.fail('Conv gradient: grouped convolutions are not supported');
  if ((attrInts(n, 'dilations') ?? []).some((d) => d !== 1)) graph.fail('Conv gradient: dilated convolutions are not supported');
  const stride = attrInts(n, 'strides') ?? Array(sp).fill(1);
  const pads = attrInts(n, 'pads') ?? Array(2 * sp).fill(0);
  const out: (Value | undefined)[] = [];
  out[0] = needs[0] ? op.convTranspose(gv, w, { stride, pads, outputShape: x.shape.slice(2) }) : undefined;
  if (needs[1]) {
    // dL/dW[o, i, k] = sum over batch and positions of g[o] * x_padded[i] shifted by k: a convolution
    // of the padded input (channels as batch) with the output gradient as kernel, dilated by the stride.
    const swap01 = [1, 0, ...Array.from({ length: sp }, (_, i) => i + 2)];
    const padded = pads.some((p) => p !== 0) ? op.pad(x, [0, 0, ...pads.slice(0, sp), 0, 0, ...pads.slice(sp)]) : x;
    let gw = op.conv(op.transpose(padded, swap01), op.transpose(gv, swap01), null, { dilations: stride });
    for (let i = 0; i < sp; i++) if (gw.shape[2 + i] !== w.shape[2 + i]) gw = op.slice(gw, 2 + i, 0, w.shape[2 + i]!);
    out[1] = op.transpose(gw, swap01);
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
    const pads = knownInput(n, 1);
    let out = g!;
    for (let a = 0; a < x.rank; a++) if (pads[a] !== 0 || pads[a + x.rank] !== 0) out = op.slice(out, a, pads[a]!, pads[a]! + x.shape[a]!);
    return [out];
  },
  ReduceMean: reduceRule(true),
  ReduceSum: reduceRule(false),
  Expand: (n, [g]) => [unbroadcast(g!, n.inputs[0]!.shape)],
  Resize: (n, [g]) => {
    const x = n.inputs[0]!;
    const mode = n.attrs['mode'];
    const fh = g!.shape[2]! / x.shape[2]!;
    const fw = g!.shape[3]! / x.shape[3]!;
    if (mode?.kind !== 'string' || mode.value !== 'nearest' || !Number.isInteger(fh) || !Number.isInteger(fw)) {
      x.graph.fail('Resize gradient: only nearest upsampling by an integer factor');
    }
    const blocks = op.reshape(g!, [0, 0, x.shape[2]!, fh, x.shape[3]!, fw]);
    return [op.reduceSum(blocks, [3, 5], false)];
  },
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

