import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Graph, ShapeError } from '../src/graph/ir.js';
import * as op from '../src/graph/ops.js';
import { emitOnnx, type WeightSource } from '../src/graph/emit.js';
import { OnnxSession } from '../src/graph/runtime.js';

const mapSource = (m: Record<string, Float32Array>): WeightSource => ({ read: (k) => m[k]! });

test('a small graph with parameters runs in ONNX Runtime and matches hand computation', async () => {
  const g = new Graph('t');
  const x = g.input('x', 'float32', ['batch', 2, 3], [1, 2, 3]);
  const w = g.param('lin.weight', [4, 3]);
  const y = op.add(op.matmul(x, op.transpose(w, [1, 0])), 1);
  g.output(op.reshape(y, [0, -1]), 'y');
  const weights = { 'lin.weight': Float32Array.from({ length: 12 }, (_, i) => i) };
  const session = await OnnxSession.create(emitOnnx(g, { weights: mapSource(weights) }));
  // Batch 2 although the graph was built with batch 1: the batch dimension is symbolic.
  const xs = Float32Array.from({ length: 12 }, (_, i) => i * 0.5);
  const { y: out } = await session.run({ x: { dtype: 'float32', shape: [2, 2, 3], data: xs } });
  assert.deepEqual(out!.shape, [2, 8]);
  const expected: number[] = [];
  for (let r = 0; r < 4; r++) {
    for (let o = 0; o < 4; o++) {
      let s = 1;
      for (let k = 0; k < 3; k++) s += xs[r * 3 + k]! * weights['lin.weight'][o * 3 + k]!;
      expected.push(s);
    }
  }
  assert.deepEqual(Array.from(out!.data as Float32Array), expected);
  await session.release();
});

test('external data: parameters go to a side file and load by path', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'osdface-ext-'));
  const g = new Graph('ext');
  const x = g.input('x', 'float32', [1, 5]);
  g.output(op.mul(x, g.param('scale', [5])), 'y');
  const bytes = emitOnnx(g, { weights: mapSource({ scale: Float32Array.of(1, 2, 3, 4, 5) }), external: { dir, fileName: 'm.onnx.data' } });
  fs.writeFileSync(path.join(dir, 'm.onnx'), bytes);
  assert.ok(bytes.length < 2000, 'the weights are not inline');
  const s = await OnnxSession.create(path.join(dir, 'm.onnx'));
  const { y } = await s.run({ x: { dtype: 'float32', shape: [1, 5], data: Float32Array.of(1, 1, 1, 1, 2) } });
  assert.deepEqual(Array.from(y!.data as Float32Array), [1, 2, 3, 4, 10]);
  await s.release();
  fs.rmSync(dir, { recursive: true });
});

test('shape errors name the module path and both shapes', () => {
  const g = new Graph('bad');
  const x = g.input('x', 'float32', [1, 8, 4, 4]);
  assert.throws(
    () => g.scope('up_blocks.2.attentions.1.proj_in', () => op.conv(x, g.param('up_blocks.2.attentions.1.proj_in.weight', [16, 4, 1, 1]), null)),
    (e: unknown) => e instanceof ShapeError && /^up_blocks\.2\.attentions\.1\.proj_in: Conv: input has 8 channels, weight \[16, 4, 1, 1\] expects 4/.test(e.message),
  );
  assert.throws(() => op.matmul(x, g.param('w', [3, 2])), /MatMul: inner dimensions differ/);
  assert.throws(() => op.reshape(x, [3, -1]), /cannot reshape/);
});
