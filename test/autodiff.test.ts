import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Graph, type Value } from '../src/graph/ir.js';
import * as op from '../src/graph/ops.js';
import { gradients } from '../src/graph/autodiff.js';
import { emitOnnx } from '../src/graph/emit.js';
import { OnnxSession } from '../src/graph/runtime.js';
import { groupNorm } from '../src/nn/functional/group_norm.js';
import { attention } from '../src/nn/functional/attention.js';
import { Upsample2D } from '../src/models/resnet.js';
import { floatTensor, numel, type FloatTensor } from '../src/tensor.js';

function rand(n: number, seed: number, lo = -1, hi = 1): Float32Array {
  let s = seed >>> 0;
  return Float32Array.from({ length: n }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return lo + (hi - lo) * (s / 4294967296);
  });
}

interface Options { lo?: number; hi?: number; params?: Record<string, number[]> }

/** Compares `analytic` with central differences (h = 1e-2) of the session's `loss` in every element of `x`. */
async function compareWithFiniteDifferences(s: OnnxSession, feeds: Record<string, FloatTensor>, x: FloatTensor, analytic: Float32Array, label: string): Promise<void> {
  const h = 1e-2;
  const loss = async () => ((await s.run(feeds)).loss!.data as Float32Array)[0]!;
  for (let j = 0; j < x.data.length; j++) {
    const orig = x.data[j]!;
    x.data[j] = orig + h;
    const up = await loss();
    x.data[j] = orig - h;
    const down = await loss();
    x.data[j] = orig;
    const numeric = (up - down) / (2 * h);
    assert.ok(Math.abs(numeric - analytic[j]!) <= 2e-2 * Math.max(1, Math.abs(numeric)), `${label} element ${j}: autodiff ${analytic[j]} vs finite difference ${numeric}`);
  }
}

/**
 * Checks d(sum(f(x) * R))/dx from `gradients` against central finite differences (float32, h = 1e-2)
 * at every coordinate of small inputs (and parameters).
 */
async function checkGrad(shapes: number[][], build: (g: Graph, xs: Value[]) => Value, o: Options = {}): Promise<void> {
  const g = new Graph('fd');
  g.fusedAttention = false;
  const xs = shapes.map((s, i) => g.input(`x${i}`, 'float32', s));
  const params = Object.entries(o.params ?? {}).map(([k, s]) => g.param(k, s));
  const y = build(g, xs);
  const r = g.input('r', 'float32', y.shape);
  const loss = op.reduceSum(op.mul(y, r), y.shape.map((_, i) => i), false);
  g.output(loss, 'loss');
  const wrt = [...xs, ...params];
  gradients(g, loss, wrt).forEach((gv, i) => g.output(gv, `g${i}`));
  const paramData = Object.fromEntries(params.map((p, i) => [p.name, rand(numel(p.shape), 100 + i)]));
  // Parameters become inputs of the checking session so they can be perturbed too.
  const s = await OnnxSession.create(emitOnnx(g, { weights: { read: (k) => paramData[k]! } }));
  const feeds: Record<string, FloatTensor> = {};
  xs.forEach((x, i) => { feeds[x.name] = floatTensor(x.shape, rand(numel(x.shape), i + 1, o.lo, o.hi)); });
  feeds['r'] = floatTensor(y.shape, rand(numel(y.shape), 99));
  const out = await s.run(feeds);
  for (let i = 0; i < xs.length; i++) {
    await compareWithFiniteDifferences(s, feeds, feeds[xs[i]!.name]!, out[`g${i}`]!.data as Float32Array, `input ${i}`);
  }
  // Parameter gradients: compare through the graph's own forward with the parameter fed as an input.
  for (let p = 0; p < params.length; p++) {
    const param = params[p]!;
    const analytic = out[`g${xs.length + p}`]!.data as Float32Array;
    const g2 = new Graph('fd_param');
    g2.fusedAttention = false;
    const xs2 = shapes.map((sh, i) => g2.input(`x${i}`, 'float32', sh));
    const pin = g2.input('p', 'float32', param.shape);
    const y2 = build(new Proxy(g2, {
      get: (t, k) => {
        if (k === 'param') return (key: string, shape: number[]) => (key === param.name ? pin : t.param(key, shape));
        const v = Reflect.get(t, k) as unknown;
        return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(t) : v;
      },
    }), xs2);
    const r2 = g2.input('r', 'float32', y2.shape);
    g2.output(op.reduceSum(op.mul(y2, r2), y2.shape.map((_, i) => i), false), 'loss');
    const s2 = await OnnxSession.create(emitOnnx(g2, { weights: { read: (k) => paramData[k]! } }));
    const pdata = floatTensor(param.shape, Float32Array.from(paramData[param.name]!));
    await compareWithFiniteDifferences(s2, { ...feeds, p: pdata }, pdata, analytic, `parameter ${param.name}`);
    await s2.release();
  }
  await s.release();
}

const cases: [string, number[][], (g: Graph, xs: Value[]) => Value, Options?][] = [
  ['Add/Sub/Mul with broadcasting', [[2, 3, 4], [3, 1]], (_, [a, b]) => op.mul(op.sub(op.add(a!, b!), b!), op.add(b!, 2))],
  ['Div (both inputs, broadcast)', [[2, 3], [3]], (_, [a, b]) => op.div(a!, op.add(op.mul(b!, b!), 1))],
  ['Sigmoid, Exp, Neg, Erf, Sin, Cos', [[2, 5]], (_, [a]) => op.add(op.add(op.sigmoid(a!), op.exp(op.neg(a!))), op.add(op.erf(a!), op.mul(op.sin(a!), op.cos(a!))))],
  ['Sqrt', [[6]], (_, [a]) => op.sqrt(a!), { lo: 0.5, hi: 2 }],
  // Inputs kept away from 0, where these are not differentiable and finite differences straddle the kink.
  ['Abs, Relu, LeakyRelu', [[8]], (_, [a]) => op.add(op.abs(op.sub(a!, 1.5)), op.add(op.relu(op.sub(a!, 2)), op.leakyRelu(op.sub(a!, 1.6), 0.2))), { lo: 0.1, hi: 3 }],
  ['SiLU and exact GELU', [[2, 4]], (_, [a]) => op.add(op.silu(a!), op.gelu(a!))],
  ['MatMul, batched with broadcast weight', [[2, 3, 4], [4, 5]], (_, [a, b]) => op.matmul(a!, b!)],
  ['MatMul, batched both sides', [[2, 2, 3, 4], [2, 1, 4, 2]], (_, [a, b]) => op.matmul(a!, b!)],
  ['Conv 2-D 3x3, padding 1, with bias', [[1, 2, 5, 5]], (g, [x]) => op.conv(x!, g.param('w', [3, 2, 3, 3]), g.param('b', [3]), { pads: [1, 1, 1, 1] }), { params: { w: [3, 2, 3, 3], b: [3] } }],
  ['Conv 2-D stride 2 after asymmetric (0,1,0,1) pad, odd size', [[2, 2, 5, 5]], (g, [x]) => op.conv(op.pad(x!, [0, 0, 0, 0, 0, 0, 1, 1]), g.param('w', [2, 2, 3, 3]), null, { stride: [2, 2] }), { params: { w: [2, 2, 3, 3] } }],
  ['Conv 2-D grouped (2 groups), stride 2, padding 1', [[1, 4, 5, 5]], (g, [x]) => op.conv(x!, g.param('w', [6, 2, 3, 3]), g.param('b', [6]), { stride: [2, 2], pads: [1, 1, 1, 1], groups: 2 }), { params: { w: [6, 2, 3, 3], b: [6] } }],
  ['Conv 1-D kernel 1', [[2, 3, 4]], (g, [x]) => op.conv(x!, g.param('w', [2, 3, 1]), g.param('b', [2])), { params: { w: [2, 3, 1], b: [2] } }],
  ['LayerNormalization with scale and bias', [[2, 3, 6]], (g, [x]) => op.layerNorm(x!, g.param('s', [6]), g.param('b', [6]), 1e-5), { params: { s: [6], b: [6] } }],
  ['GroupNorm (ReduceMean form) with affine', [[2, 4, 3, 3]], (g, [x]) => groupNorm(x!, 2, g.param('w', [4]), g.param('b', [4]), 1e-6), { params: { w: [4], b: [4] } }],
  ['Softmax', [[2, 5]], (_, [x]) => op.softmax(x!, -1)],
  ['attention (composite form), 2 heads', [[1, 3, 4], [1, 5, 4], [1, 5, 4]], (_, [q, k, v]) => attention(q!, k!, v!, 2)],
  ['Reshape, Transpose, Unsqueeze', [[2, 3, 4]], (_, [x]) => op.unsqueeze(op.transpose(op.reshape(x!, [0, -1, 2]), [2, 0, 1]), [1])],
  ['Concat, Split, Slice, Pad', [[2, 3], [2, 2]], (_, [a, b]) => {
    const [p, q] = op.split(op.concat([a!, op.pad(b!, [0, 0, 0, 1])], 1), 1, 2);
    return op.mul(op.slice(p!, 1, 1, 3), op.slice(q!, 1, 0, 2));
  }],
  ['ReduceMean, ReduceSum (keepdims or not), Expand', [[2, 3, 4]], (_, [x]) => op.add(op.reduceMean(x!, [1], true), op.mul(op.expand(op.reduceSum(x!, [2], true), op.int64(x!.graph, [2, 3, 4])), op.unsqueeze(op.reduceSum(x!, [0], false), [0])))],
  ['Upsample2D (nearest x2 + 3x3 conv as four 2x2 phase convolutions and DepthToSpace)', [[1, 2, 3, 4]], (g, [x]) => {
    const up = new Upsample2D(2);
    return up.forward(g, x!);
  }, { params: { 'conv.weight': [2, 2, 3, 3], 'conv.bias': [2] } }],
  ['Resize nearest x2 (by scale and to a size)', [[1, 2, 2, 3], [1, 1, 4, 6]], (_, [x, y]) => op.add(op.resize2d(x!, { scale: 2 }, { mode: 'nearest' }), op.mul(op.resize2d(x!, op.slice(op.shapeOf(y!), 0, 2, 4), { mode: 'nearest' }), y!))],
  // Inputs spread over [-5, 5] so that h = 1e-2 never changes which element of a window is the maximum.
  ['MaxPool 3x3 stride 2 (overlapping windows, odd leftover column)', [[2, 2, 7, 8]], (_, [x]) => op.maxPool2d(x!, 3, 2), { lo: -5, hi: 5 }],
  // Several outputs of different sizes, flattened and concatenated, each element with its own weight in the loss.
  ['AveragePool 2x2 stride 2 on an odd size, and 3x2 stride (2, 1) overlapping', [[1, 2, 5, 7]], (_, [x]) => op.concat([
    op.reshape(op.avgPool2d(x!, 2, 2), [0, 0, -1]), op.reshape(op.avgPool2d(x!, [3, 2], [2, 1]), [0, 0, -1])], 2)],
  ['Resize linear: asymmetric down, pytorch_half_pixel and align_corners up', [[1, 2, 5, 7]], (_, [x]) => op.concat([
    op.reshape(op.resize2dLinear(x!, [3, 4], 'asymmetric'), [0, 0, -1]),
    op.reshape(op.resize2d(x!, [8, 11], { mode: 'linear', alignCorners: false }), [0, 0, -1]),
    op.reshape(op.resize2d(x!, [9, 6], { mode: 'linear', alignCorners: true }), [0, 0, -1])], 2)],
];

for (const [name, shapes, build, o] of cases) {
  test(`gradient of ${name} matches finite differences`, async () => checkGrad(shapes, build, o));
}

test('an op without a gradient rule is an error naming it and the module path', () => {
  const g = new Graph('nograd');
  const x = g.input('x', 'float32', [1, 4]);
  const y = g.scope('blocks.0', () => op.clip(x, 0, 1));
  assert.throws(() => gradients(g, op.reduceSum(y, [0, 1], false), [x]), /grad\/blocks\.0: no gradient rule for Clip/);
});

test('mirrored padding has no gradient rule (slicing would drop what the mirrored edge adds back)', () => {
  const g = new Graph('reflect');
  const x = g.input('x', 'float32', [1, 1, 4, 4]);
  const y = op.pad(x, [0, 0, 1, 1, 0, 0, 1, 1], 'reflect');
  assert.throws(() => gradients(g, op.reduceSum(y, [0, 1, 2, 3], false), [x]), /Pad gradient: only constant mode, not 'reflect'/);
});

test('the fused attention op asks for the composite form', () => {
  const g = new Graph('fused');
  const q = g.input('q', 'float32', [1, 2, 4]);
  const y = attention(q, q, q, 2);
  assert.throws(() => gradients(g, op.reduceSum(y, [0, 1, 2], false), [q]), /MultiHeadAttention.*fusedAttention = false/);
});
