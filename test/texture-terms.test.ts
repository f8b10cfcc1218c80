import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { noWeights, shared, taef2Weights, tempDir, tinyTaef2Config, trainingFace as face } from './helpers.js';
import { Graph } from '../src/graph/ir.js';
import { emitOnnx } from '../src/graph/emit.js';
import { OnnxSession } from '../src/graph/runtime.js';
import { Config } from '../src/models/config.js';
import { AutoencoderTiny, TAEF2_CONFIG } from '../src/models/autoencoder_tiny.js';
import { EncoderDists } from '../src/train/encoder_dists.js';
import { patchGram, patchGramDistance } from '../src/train/patch_gram.js';
import { LATTICE_CELL, LATTICE_PATCH, latticeDistance, latticePhaseMeans } from '../src/train/lattice.js';
import { train } from '../src/train/run.js';
import { taef2Store } from '../src/weights/taesd.js';
import { type FloatTensor, floatTensor } from '../src/tensor.js';
import { Random } from '../src/degrade/random.js';

const faces = path.join(shared, 'data/faces-hq/train');
const skip = !fs.existsSync(taef2Weights) ? `TAEF2 weights not found at ${taef2Weights}` : !fs.existsSync(faces) ? `training faces not found at ${faces}` : false;

/** Runs patchGram and patchGramDistance on (1, C, H, W) maps. */
async function gramSession(c: number, h: number, w: number, patch: number) {
  const g = new Graph('patch_gram');
  const x = g.input('x', 'float32', [1, c, h, w]);
  const y = g.input('y', 'float32', [1, c, h, w]);
  g.output(patchGram(x, patch), 'gram');
  g.output(patchGramDistance([x], [y], patch), 'distance');
  const session = await OnnxSession.create(emitOnnx(g, { weights: noWeights }), { threads: 1 });
  return async (a: FloatTensor, b: FloatTensor) => {
    const out = await session.run({ x: a, y: b });
    return { gram: out.gram!, distance: out.distance!.data[0] as number };
  };
}

test('patchGram: per patch, which channels fire together (divided by the patch area); the distance ignores where in a patch, not which patch', async () => {
  const [c, h, w, p] = [3, 4, 6, 2];
  const rand = new Random('patch-gram');
  const a = floatTensor([1, c, h, w], Float32Array.from({ length: c * h * w }, () => rand.normal()));
  const run = await gramSession(c, h, w, p);
  const { gram, distance } = await run(a, a);
  assert.deepEqual(gram.shape, [(h / p) * (w / p), c, c]);
  assert.equal(distance, 0);
  const at = (t: FloatTensor, ch: number, r: number, q: number) => t.data[(ch * h + r) * w + q]!;
  for (let py = 0; py < h / p; py++) for (let px = 0; px < w / p; px++) for (let i = 0; i < c; i++) for (let j = 0; j < c; j++) {
    let sum = 0;
    for (let r = py * p; r < (py + 1) * p; r++) for (let q = px * p; q < (px + 1) * p; q++) sum += at(a, i, r, q) * at(a, j, r, q);
    const got = (gram.data as Float32Array)[((py * (w / p) + px) * c + i) * c + j]!;
    assert.ok(Math.abs(got - sum / (p * p)) < 1e-5, `patch (${py}, ${px}), channels ${i}, ${j}: ${got} against ${sum / (p * p)}`);
  }
  // Pixels moved within their patch (every channel alike): the same texture, distance 0.
  const moved = (swap: (r: number, q: number) => [number, number]) => {
    const out = new Float32Array(a.data.length);
    for (let ch = 0; ch < c; ch++) for (let r = 0; r < h; r++) for (let q = 0; q < w; q++) out[(ch * h + r) * w + q] = at(a, ch, ...swap(r, q));
    return floatTensor(a.shape, out);
  };
  const withinPatch = await run(moved((r, q) => [r ^ 1, q]), a);
  assert.ok(Math.abs(withinPatch.distance) < 1e-10, `moved within patches: ${withinPatch.distance}`);
  // Columns moved across patch borders: another texture per patch.
  const acrossPatches = await run(moved((r, q) => [r, (q + 1) % w]), a);
  assert.ok(acrossPatches.distance > 0.01, `moved across patches: ${acrossPatches.distance}`);
});

test('patchGram on a map that does not divide into patches: whole patches only; a map smaller than a patch is one patch', async () => {
  const rand = new Random('patch-gram-edges');
  const [c, h, w] = [2, 5, 7];
  const a = floatTensor([1, c, h, w], Float32Array.from({ length: c * h * w }, () => rand.normal()));
  assert.deepEqual((await (await gramSession(c, h, w, 2))(a, a)).gram.shape, [2 * 3, c, c]);
  const one = (await (await gramSession(c, h, w, 16))(a, a)).gram.data as Float32Array;
  assert.equal(one.length, c * c);
  let sum = 0;
  for (let r = 0; r < 5; r++) for (let q = 0; q < 5; q++) sum += a.data[r * w + q]! * a.data[(h + r) * w + q]!;
  assert.ok(Math.abs(one[1]! - sum / 25) < 1e-5, `${one[1]} against ${sum / 25}`);
});

test('lattice: a pattern repeated in every 8-pixel cell moves the phase means far more than random detail of the same energy', async () => {
  const [h, w] = [64, 96];
  const g = new Graph('lattice');
  const x = g.input('x', 'float32', [1, 3, h, w]);
  const y = g.input('y', 'float32', [1, 3, h, w]);
  g.output(latticeDistance(g, x, y, LATTICE_CELL, LATTICE_PATCH), 'distance');
  g.output(latticePhaseMeans(g, x, LATTICE_CELL, LATTICE_PATCH), 'phases');
  const session = await OnnxSession.create(emitOnnx(g, { weights: noWeights }), { threads: 1 });
  const rand = new Random('lattice');
  // A smooth image (a gradient), then the same with a mesh (one fixed 8x8 tile) or with noise of the same power.
  const base = Float32Array.from({ length: 3 * h * w }, (_, i) => 0.3 + 0.4 * ((i % w) / w));
  const tile = Float32Array.from({ length: 64 }, () => rand.normal());
  const power = tile.reduce((s, v) => s + v * v, 0) / 64;
  const image = (detail: (r: number, q: number) => number) => {
    const out = Float32Array.from(base);
    for (let r = 0; r < h; r++) for (let q = 0; q < w; q++) { const d = 0.02 * detail(r, q); for (let c = 0; c < 3; c++) out[(c * h + r) * w + q]! += d; }
    return floatTensor([1, 3, h, w], out);
  };
  const smooth = floatTensor([1, 3, h, w], base);
  const mesh = image((r, q) => tile[(r % 8) * 8 + (q % 8)]!);
  const noise = image(() => rand.normal() * Math.sqrt(power));
  const run = async (a: FloatTensor, b: FloatTensor) => session.run({ x: a, y: b });
  const phases = (await run(mesh, smooth)).phases!;
  assert.deepEqual(phases.shape, [1, h / LATTICE_PATCH, LATTICE_CELL, w / LATTICE_PATCH, LATTICE_CELL]);
  assert.equal((await run(mesh, mesh)).distance!.data[0], 0);
  const [meshed, noisy] = [(await run(mesh, smooth)).distance!.data[0] as number, (await run(noise, smooth)).distance!.data[0] as number];
  assert.ok(meshed > 5 * noisy && noisy > 0, `mesh ${meshed}, noise of the same power ${noisy}`);
});

test('encoderGram texture distance on TAEF2\'s pretrained encoder: zero for the same face, growing with blur, raised by added noise', { skip }, async () => {
  const size = 128;
  const perceptual = new EncoderDists(new AutoencoderTiny(new Config(TAEF2_CONFIG, 'TAEF2')));
  const weights = perceptual.weightsFrom(taef2Store(taef2Weights));
  const g = new Graph('encoder_gram');
  const x = g.input('x', 'float32', [1, 3, size, size]);
  const y = g.input('y', 'float32', [1, 3, size, size]);
  g.output(perceptual.texture(g, x, y), 'distance');
  const session = await OnnxSession.create(emitOnnx(g, { weights: { read: (k) => weights.get(k)! } }), { threads: 1 });
  const sharpFace = await face(size);
  const distance = async (a: FloatTensor) => (await session.run({ x: a, y: sharpFace })).distance!.data[0] as number;
  assert.ok(Math.abs(await distance(sharpFace)) < 1e-9);
  const [mild, strong] = [await distance(await face(size, (s) => s.blur(1))), await distance(await face(size, (s) => s.blur(2.5)))];
  assert.ok(mild > 0 && strong > 2 * mild, `blur σ 1: ${mild}, σ 2.5: ${strong}`);
  // Noise is not texture: grain on the sharp face (about 5/255) moves it about as far as a σ 1 blur.
  const rand = new Random('grain');
  const grainy = floatTensor(sharpFace.shape, sharpFace.data.map((v) => v + 0.02 * rand.normal()));
  const noisy = await distance(grainy);
  assert.ok(noisy > mild / 2, `noise σ 0.02: ${noisy}, blur σ 1: ${mild}`);
});

test('training with loss.encoderGram, loss.lattice, loss.ssim and loss.detailEnergy: logged beside the other terms, from the frozen TAEF2 copy; configs name what they need', { skip }, async (t) => {
  const tiny = tinyTaef2Config(tempDir(t, 'osdface-encoder-gram-'));
  const config = (loss: Record<string, unknown>, init?: Record<string, unknown>, crop = 0) => tiny({ loss, data: { crop }, ...(init ? { init } : {}) });
  assert.throws(() => config({ l1: 1, encoderGram: 1 }, {}), /'loss\.encoderGram' needs a tiny autoencoder .* and its pretrained weights in init\.vae/);
  assert.throws(() => config({ l1: 1, encoderGram: -1 }), /'loss\.encoderGram'/);
  assert.throws(() => config({ l1: 1, lattice: 1 }, undefined, 24), /'loss\.lattice' averages 32-pixel patches: data\.crop must be a multiple of 32, found 24/);
  assert.throws(() => config({ l1: 1, ssim: 1 }, undefined, 8), /'loss\.ssim' needs training images of at least 11 pixels \(SSIM's Gaussian window\), found data\.crop 8/);
  assert.throws(() => config({ l1: 1, detailEnergy: 1 }, undefined, 24), /'loss\.detailEnergy' compares 16-pixel patches: data\.crop must be a multiple of 16, found 24/);
  assert.ok(!['encoderGram', 'lattice', 'ssim', 'detailEnergy'].some((k) => k in config({ l1: 1 }).loss), 'a config without the keys keeps its hash');
  const { trainer, logs } = await train(config({ mse: 0, l1: 1, encoderGram: 10, lattice: 1000, ssim: 1, detailEnergy: 100 }), { onLog: () => {} });
  assert.equal(logs.length, 2);
  for (const l of logs) {
    assert.ok(l.encoderGram! > 0 && l.lattice! > 0 && l.ssim! > 0 && l.ssim! <= 2 && l.detailEnergy! > 0, JSON.stringify(l));
    assert.ok(l.loss > 10 * l.encoderGram! + 1000 * l.lattice! + l.ssim! + 100 * l.detailEnergy!, JSON.stringify(l));
  }
  assert.ok(![...trainer.params.keys()].some((k) => k.startsWith('perceptual_encoder.')), 'the encoder copy is frozen');
});
