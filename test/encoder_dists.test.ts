import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { noWeights, shared, taef2Weights, tempDir, tinyTaef2Config, trainingFace } from './helpers.js';
import { Graph } from '../src/graph/ir.js';
import { emitOnnx } from '../src/graph/emit.js';
import { OnnxSession } from '../src/graph/runtime.js';
import { Config } from '../src/models/config.js';
import { AutoencoderTiny, TAEF2_CONFIG } from '../src/models/autoencoder_tiny.js';
import { EncoderDists } from '../src/train/encoder_dists.js';
import { shifted, shiftKernel, shiftKernelShape } from '../src/train/discriminator.js';
import { train } from '../src/train/run.js';
import { taef2Store } from '../src/weights/taesd.js';
import { type FloatTensor, floatTensor } from '../src/tensor.js';

const faces = path.join(shared, 'data/faces-hq/train');
const skip = !fs.existsSync(taef2Weights) ? `TAEF2 weights not found at ${taef2Weights}` : !fs.existsSync(faces) ? `training faces not found at ${faces}` : false;

const face = (size: number, blur = 0) => trainingFace(size, (s) => (blur > 0 ? s.blur(blur) : s));

test('encoderDists: zero for the same face, growing with blur, from TAEF2\'s pretrained encoder', { skip }, async () => {
  const size = 96;
  const perceptual = new EncoderDists(new AutoencoderTiny(new Config(TAEF2_CONFIG, 'TAEF2')));
  const weights = perceptual.weightsFrom(taef2Store(taef2Weights));
  assert.deepEqual([...weights.keys()].slice(0, 2), ['perceptual_encoder.layers.0.weight', 'perceptual_encoder.layers.0.bias']);
  const g = new Graph('encoder_dists');
  const x = g.input('x', 'float32', [1, 3, size, size]);
  const y = g.input('y', 'float32', [1, 3, size, size]);
  g.output(perceptual.forward(g, x, y), 'distance');
  g.output(perceptual.forwardEdges(g, x, y), 'edges');
  const session = await OnnxSession.create(emitOnnx(g, { weights: { read: (k) => weights.get(k)! } }), { threads: 1 });
  const sharpFace = await face(size);
  const distances = async (a: FloatTensor, b: FloatTensor) => {
    const out = await session.run({ x: a, y: b });
    return { distance: out.distance!.data[0] as number, edges: out.edges!.data[0] as number };
  };
  const same = await distances(sharpFace, sharpFace);
  assert.ok(Math.abs(same.distance) < 1e-5 && Math.abs(same.edges) < 1e-5, `same face: ${JSON.stringify(same)}`);
  const [mild, strong] = [await distances(await face(size, 1), sharpFace), await distances(await face(size, 2.5), sharpFace)];
  for (const key of ['distance', 'edges'] as const) {
    assert.ok(mild[key] > 0.01 && strong[key] > mild[key] + 0.01, `${key}: blur σ 1: ${mild[key]}, σ 2.5: ${strong[key]}`);
  }
});

test('training with loss.encoderDists: the frozen copy keeps TAEF2\'s weights while the model\'s encoder trains; configs name what it needs', { skip }, async (t) => {
  const tiny = tinyTaef2Config(tempDir(t, 'osdface-encoder-dists-'));
  const config = (loss: Record<string, unknown>, init?: Record<string, unknown>) => tiny({ loss, ...(init ? { init } : {}) });
  assert.throws(() => config({ l1: 1, encoderDists: 1 }, {}), /'loss\.encoderDists' needs a tiny autoencoder .* and its pretrained weights in init\.vae/);
  assert.throws(() => config({ l1: 1, encoderDistsEdges: 1 }, {}), /'loss\.encoderDistsEdges' needs a tiny autoencoder/);
  // A config without the keys leaves them out, so the hash of older stages (and their resumes) stays.
  assert.ok(!('encoderDists' in config({ l1: 1 }).loss) && !('encoderDistsEdges' in config({ l1: 1 }).loss));

  const { trainer, logs } = await train(config({ mse: 0, l1: 1, encoderDists: 1, encoderDistsEdges: 1 }), { onLog: () => {} });
  assert.equal(logs.length, 2);
  for (const l of logs) {
    assert.ok(l.encoderDists! > 0 && l.encoderDists! < 1, `encoderDists ${l.encoderDists}`);
    assert.ok(l.encoderDistsEdges! > 0 && l.encoderDistsEdges! < 1, `encoderDistsEdges ${l.encoderDistsEdges}`);
  }
  assert.ok(![...trainer.params.keys()].some((k) => k.startsWith('perceptual_encoder.')));
  const taef2 = taef2Store(taef2Weights).read('encoder.layers.0.weight').data as Float32Array;
  const trained = trainer.params.get('encoder.layers.0.weight')!;
  assert.ok(trained.some((v, i) => v !== taef2[i]), "the model's own encoder trains");
});

test('a projected critic: spectrally normalized heads on the frozen TAEF2 features train beside the generator and resume exactly', { skip }, async (t) => {
  const root = tempDir(t, 'osdface-projected-critic-');
  const tiny = tinyTaef2Config(root);
  const config = (out: string, discriminator: Record<string, unknown>, init?: Record<string, unknown>) => tiny({
    loss: { l1: 1, gan: 0.1 }, discriminator, steps: 3, out: path.join(root, out), checkpointEvery: 1, sampleEvery: 3, ...(init ? { init } : {}),
  });
  const projected = { width: 4, layers: 2, input: 'encoder', spectralNorm: true };
  assert.throws(() => config('bad', projected, {}), /'discriminator\.input' 'encoder' needs a tiny autoencoder .* and its pretrained weights in init\.vae/);
  assert.throws(() => config('bad', { ...projected, input: 'edges' }), /'discriminator\.input' must be one of 'image', 'detail', 'encoder', found "edges"/);
  assert.throws(() => config('bad', { ...projected, spectralNorm: 'yes' }), /'discriminator\.spectralNorm' must be true or false, found "yes"/);

  const quiet = { onLog: () => {} };
  const straight = await train(config('a', projected), quiet);
  // One head per resolution of TAEF2's encoder; the encoder copy itself is frozen, not the critic's.
  assert.deepEqual([...straight.trainer.dParams.keys()].filter((k) => k.endsWith('conv_in.weight')),
    [0, 1, 2, 3].map((i) => `discriminator.heads.${i}.conv_in.weight`));
  const d = straight.logs.map((l) => l.discriminatorLoss!);
  assert.ok(d.every(Number.isFinite) && new Set(d).size === 3, `discriminator losses ${d}`);
  assert.ok(straight.logs.every((l) => Number.isFinite(l.adversarial)), 'the generator gets the adversarial term');
  await train(config('b', projected), { ...quiet, stopAt: 2 });
  const resumed = await train(config('b', projected), quiet);
  assert.deepEqual(resumed.logs.map((l) => [l.loss, l.discriminatorLoss, l.adversarial]), straight.logs.map((l) => [l.loss, l.discriminatorLoss, l.adversarial]));
  for (const [k, v] of straight.trainer.dParams) assert.deepEqual(resumed.trainer.dParams.get(k), v, `${k} after the resume`);
  // Without spectral normalization the same start trains another critic.
  const plain = await train(config('c', { ...projected, spectralNorm: false }), quiet);
  assert.notDeepEqual(plain.logs.map((l) => l.discriminatorLoss), d);
});

test('a projected critic kept off the finest levels, or judging blurred images: heads on the levels named only, settings checked', { skip }, async (t) => {
  const root = tempDir(t, 'osdface-critic-levels-');
  const tiny = tinyTaef2Config(root);
  const config = (out: string, discriminator: Record<string, unknown>) => tiny({ loss: { l1: 1, gan: 0.1 }, discriminator, steps: 2, out: path.join(root, out) });
  const projected = { width: 4, layers: 2, input: 'encoder', spectralNorm: true };
  assert.throws(() => config('bad', { ...projected, levels: [3, 2] }), /'discriminator\.levels' must be increasing pyramid levels \(0 full resolution, 1 half, \.\.\.\), found \[3,2\]/);
  assert.throws(() => config('bad', { ...projected, levels: [] }), /'discriminator\.levels' must be increasing pyramid levels/);
  assert.throws(() => config('bad', { width: 4, layers: 2, levels: [2] }), /'discriminator\.levels' chooses the heads of a projected critic: set discriminator\.input to 'encoder'/);
  await assert.rejects(train(config('deep', { ...projected, levels: [2, 4] }), { onLog: () => {} }), /discriminator\.levels: level 4 does not exist; the encoder's pyramid has levels 0 to 3/);

  const coarse = await train(config('coarse', { ...projected, levels: [2, 3] }), { onLog: () => {} });
  assert.deepEqual([...coarse.trainer.dParams.keys()].filter((k) => k.endsWith('conv_in.weight')), ['discriminator.heads.0.conv_in.weight', 'discriminator.heads.1.conv_in.weight']);
  assert.ok(coarse.logs.every((l) => Number.isFinite(l.discriminatorLoss) && Number.isFinite(l.adversarial)), JSON.stringify(coarse.logs));
  // The same critic on every level trains differently from one on the coarse levels alone.
  const all = await train(config('all', projected), { onLog: () => {} });
  assert.notDeepEqual(all.logs.map((l) => l.adversarial), coarse.logs.map((l) => l.adversarial));

  // A critic that judges blurred images: same parameters, other verdicts.
  assert.throws(() => config('bad', { ...projected, blur: 'yes' }), /'discriminator\.blur' must be true or false, found "yes"/);
  const blurred = await train(config('blurred', { ...projected, levels: [2, 3], blur: true }), { onLog: () => {} });
  assert.deepEqual([...blurred.trainer.dParams.keys()], [...coarse.trainer.dParams.keys()]);
  assert.ok(blurred.logs.every((l) => Number.isFinite(l.discriminatorLoss) && Number.isFinite(l.adversarial)), JSON.stringify(blurred.logs));
  assert.notDeepEqual(blurred.logs.map((l) => l.adversarial), coarse.logs.map((l) => l.adversarial));
});

test('shiftKernel moves every channel by whole pixels, with zeros where the image moved away', async () => {
  const [h, w, m] = [5, 6, 2];
  const g = new Graph('shift');
  const x = g.input('x', 'float32', [1, 3, h, w]);
  g.output(shifted(x, g.input('kernel', 'float32', shiftKernelShape(3, m)), m), 'y');
  const session = await OnnxSession.create(emitOnnx(g, { weights: noWeights }), { threads: 1 });
  const image = floatTensor([1, 3, h, w], Float32Array.from({ length: 3 * h * w }, (_, i) => i + 1));
  for (const [dy, dx] of [[0, 0], [2, -1], [-2, 2], [1, 0]] as const) {
    const y = (await session.run({ x: image, kernel: shiftKernel(3, m, dy, dx) })).y!.data;
    for (let c = 0; c < 3; c++) for (let r = 0; r < h; r++) for (let q = 0; q < w; q++) {
      const [sr, sq] = [r - dy, q - dx];
      const want = sr >= 0 && sr < h && sq >= 0 && sq < w ? image.data[(c * h + sr) * w + sq] : 0;
      assert.equal(y[(c * h + r) * w + q], want, `shift (${dy}, ${dx}), channel ${c}, pixel (${r}, ${q})`);
    }
  }
});

test('a critic that judges randomly shifted images: one seeded draw per step, so runs resume exactly; settings checked', { skip }, async (t) => {
  const root = tempDir(t, 'osdface-critic-shift-');
  const tiny = tinyTaef2Config(root);
  const config = (out: string, discriminator: Record<string, unknown>) => tiny({ loss: { l1: 1, gan: 0.1 }, discriminator, steps: 3, checkpointEvery: 1, sampleEvery: 3, out: path.join(root, out) });
  const projected = { width: 4, layers: 2, input: 'encoder', spectralNorm: true, blur: true };
  assert.throws(() => config('bad', { ...projected, shift: 0 }), /'discriminator\.shift'/);
  assert.throws(() => config('bad', { ...projected, shift: 2.5 }), /'discriminator\.shift'/);
  const quiet = { onLog: () => {} };
  const still = await train(config('still', projected), quiet);
  const moving = await train(config('moving', { ...projected, shift: 4 }), quiet);
  assert.deepEqual([...moving.trainer.dParams.keys()], [...still.trainer.dParams.keys()]);
  assert.ok(moving.logs.every((l) => Number.isFinite(l.discriminatorLoss) && Number.isFinite(l.adversarial)), JSON.stringify(moving.logs));
  assert.notDeepEqual(moving.logs.map((l) => l.discriminatorLoss), still.logs.map((l) => l.discriminatorLoss));
  await train(config('resumed', { ...projected, shift: 4 }), { ...quiet, stopAt: 2 });
  const resumed = await train(config('resumed', { ...projected, shift: 4 }), quiet);
  assert.deepEqual(resumed.logs.map((l) => [l.loss, l.discriminatorLoss, l.adversarial]), moving.logs.map((l) => [l.loss, l.discriminatorLoss, l.adversarial]));
});
