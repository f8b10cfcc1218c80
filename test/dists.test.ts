import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { tempDir } from './helpers.js';
import { Graph } from '../src/graph/ir.js';
import * as op from '../src/graph/ops.js';
import { gradients } from '../src/graph/autodiff.js';
import { emitOnnx } from '../src/graph/emit.js';
import { OnnxSession } from '../src/graph/runtime.js';
import { Dists, edgeAwareDists, loadDistsWeights } from '../src/train/dists.js';
import { initParam } from '../src/train/init.js';
import { writeSafetensors } from '../src/weights/safetensors.js';
import { floatTensor, numel, type FloatTensor } from '../src/tensor.js';
import { Random } from '../src/degrade/random.js';

const dists = new Dists();
/** Random VGG weights and positive alpha/beta: the identities tested hold for any weights. */
const weights = new Map(dists.namedParameters().map(([k, s]) => {
  const v = initParam(k, s, 1);
  if (k === 'alpha' || k === 'beta') {
    const r = new Random(k);
    for (let i = 0; i < v.length; i++) v[i] = 0.1 + r.random();
  }
  return [k, v];
}));

function image(seed: number, s = 32): FloatTensor {
  const r = new Random(`img${seed}`);
  return floatTensor([1, 3, s, s], Float32Array.from({ length: 3 * s * s }, (_, i) => 0.5 + 0.3 * Math.sin(i / 17 + seed) + 0.1 * r.random()));
}

async function session(withGrad: boolean) {
  const g = new Graph('dists');
  g.fusedAttention = false;
  const x = g.input('x', 'float32', [1, 3, 32, 32]);
  const y = g.input('y', 'float32', [1, 3, 32, 32]);
  g.output(op.reduceSum(dists.forward(g, x, y), [0], false), 'd');
  const loss = edgeAwareDists(dists, g, x, y);
  g.output(loss, 'loss');
  if (withGrad) g.output(gradients(g, loss, [x])[0]!, 'dx');
  return OnnxSession.create(emitOnnx(g, { weights: { read: (k) => weights.get(k)! } }));
}

test('DISTS: zero for identical images, positive and symmetric otherwise', async () => {
  const s = await session(false);
  const a = image(1);
  const b = image(2);
  const same = (await s.run({ x: a, y: a })).d!.data[0] as number;
  const ab = (await s.run({ x: a, y: b })).d!.data[0] as number;
  const ba = (await s.run({ x: b, y: a })).d!.data[0] as number;
  assert.ok(Math.abs(same) < 1e-6, `DISTS(x, x) = ${same}`);
  assert.ok(ab > 1e-4, `DISTS(a, b) = ${ab}`);
  assert.ok(Math.abs(ab - ba) < 1e-6, `${ab} vs ${ba}`);
  await s.release();
});

test('edge-aware DISTS: gradient with respect to the image matches finite differences', async () => {
  const s = await session(true);
  const a = image(1);
  const b = image(2);
  const dx = (await s.run({ x: a, y: b })).dx!.data as Float32Array;
  const h = 2e-3;
  for (const j of [5, 700, 1500, 2047, 3000]) {
    const orig = a.data[j]!;
    a.data[j] = orig + h;
    const up = (await s.run({ x: a, y: b })).loss!.data[0] as number;
    a.data[j] = orig - h;
    const down = (await s.run({ x: a, y: b })).loss!.data[0] as number;
    a.data[j] = orig;
    const numeric = (up - down) / (2 * h);
    assert.ok(Math.abs(numeric - dx[j]!) <= 0.05 * Math.abs(numeric) + 2e-4, `element ${j}: autodiff ${dx[j]} vs finite difference ${numeric}`);
  }
  await s.release();
});

test('DISTS weights: torchvision VGG16 keys plus alpha/beta load; a missing tensor names its key', async (t) => {
  const dir = tempDir(t, 'osdface-dists-');
  const vgg = new Map([...weights].filter(([k]) => k.startsWith('vgg.')).map(([k, v]) => [k.slice(4), floatTensor(dists.namedParameters().find(([n]) => n === k)![1], v)]));
  const ab = new Map([...weights].filter(([k]) => !k.startsWith('vgg.')).map(([k, v]) => [k, floatTensor([1, numel([v.length]), 1, 1], v)]));
  writeSafetensors(path.join(dir, 'vgg16.safetensors'), vgg);
  writeSafetensors(path.join(dir, 'dists.safetensors'), ab);
  const loaded = await loadDistsWeights([path.join(dir, 'vgg16.safetensors'), path.join(dir, 'dists.safetensors')]);
  assert.deepEqual(loaded.get('vgg.features.28.bias'), weights.get('vgg.features.28.bias'));
  await assert.rejects(loadDistsWeights([path.join(dir, 'vgg16.safetensors')]), /DISTS needs tensor 'alpha'/);
});
