import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { shared, tempDir } from './helpers.js';
import { parseTrainConfig, TrainConfigError } from '../src/train/config.js';
import { adamWStep, learningRate, newAdamWState, type AdamWConfig } from '../src/train/optim.js';
import { train } from '../src/train/run.js';
import { PatchDiscriminator } from '../src/train/discriminator.js';
import { initParam } from '../src/train/init.js';
import { Graph } from '../src/graph/ir.js';
import { emitOnnx } from '../src/graph/emit.js';
import { OnnxSession } from '../src/graph/runtime.js';
import { floatTensor } from '../src/tensor.js';

const faces = path.join(shared, 'data/faces-hq/train');
const valFaces = path.join(shared, 'data/faces-hq/test');

/** A small dataset folder: a few HQ faces copied into a temporary folder at test time. */
function smallSet(dir: string, names: string[]): string {
  fs.mkdirSync(dir, { recursive: true });
  for (const n of names) fs.copyFileSync(path.join(faces, n), path.join(dir, n));
  return dir;
}

const TINY_MODEL = {
  unet: { block_out_channels: [16, 32], attention_head_dim: [2, 2], cross_attention_dim: 32, norm_num_groups: 4 },
  vae: { block_out_channels: [16, 16], norm_num_groups: 4 },
  vre: { ch: 8, ch_mult: [1, 2], attn_resolutions: [16], z_channels: 16, n_embed: 32, embed_dim: 16, n_min: 8, norm_num_groups: 4 },
  promptChannels: 32,
};

function tinyConfig(root: string, out: string, extra: Record<string, unknown> = {}) {
  const names = fs.readdirSync(faces).filter((f) => f.startsWith('dmdnet_')).slice(0, 4);
  const train_ = smallSet(path.join(root, 'train'), names);
  const val = smallSet(path.join(root, 'val'), names.slice(0, 2));
  return parseTrainConfig({
    data: { train: train_, val, size: 32, batch: 2, valImages: 2, degradation: 'mild' },
    model: TINY_MODEL,
    optim: { lr: 0.003, warmupSteps: 0, schedule: 'constant' },
    steps: 4, seed: 3, threads: 1, out, checkpointEvery: 2, sampleEvery: 2, evalEvery: 2,
    ...extra,
  }, path.join(root, 'config.json'));
}

test('config errors name the file and the key, with what was expected', () => {
  const file = '/x/config.json';
  assert.throws(() => parseTrainConfig({ steps: 10, out: 'o', data: { train: valFaces, val: valFaces }, optim: { lr: 'fast' } }, file),
    (e: Error) => e instanceof TrainConfigError && /^\/x\/config\.json: 'optim\.lr' must be a number/.test(e.message));
  assert.throws(() => parseTrainConfig({ steps: 10, out: 'o', data: { train: valFaces, val: valFaces }, optim: { learning_rate: 1 } }, file),
    /'optim\.learning_rate' is not a known setting/);
  assert.throws(() => parseTrainConfig({ steps: 10, out: 'o', data: { train: '/no/such/dir', val: valFaces } }, file), /'data\.train' folder \/no\/such\/dir does not exist/);
  assert.throws(() => parseTrainConfig({ out: 'o', data: { train: valFaces, val: valFaces } }, file), /'steps' is required/);
  assert.throws(() => parseTrainConfig({ steps: 1, out: 'o', data: { train: valFaces, val: valFaces }, loss: { mse: 0 } }, file), /'loss' needs at least one positive weight/);
});

test('AdamW: one step against a hand computation (bias-corrected moments, decoupled decay, clipping)', () => {
  const c: AdamWConfig = { lr: 0.1, betas: [0.9, 0.999], eps: 1e-8, weightDecay: 0.5, clipNorm: 1, warmupSteps: 0, schedule: 'constant', totalSteps: 10, minLrRatio: 0 };
  const params = new Map([['w', Float32Array.of(1, -2)]]);
  const state = newAdamWState(params);
  const { gradNorm } = adamWStep(c, state, params, new Map([['w', Float32Array.of(3, 4)]]));
  assert.equal(gradNorm, 5);
  // Clipped gradient (0.6, 0.8); after one step m/(1-b1) = g and v/(1-b2) = g^2, so the update is lr * sign(g).
  const expected = [1 - 0.1 * 0.5 * 1 - 0.1 * (0.6 / (0.6 + 1e-8)), -2 - 0.1 * 0.5 * -2 - 0.1 * (0.8 / (0.8 + 1e-8))];
  params.get('w')!.forEach((v, i) => assert.ok(Math.abs(v - expected[i]!) < 1e-6, `${v} vs ${expected[i]}`));
  assert.equal(state.step, 1);
});

test('learning rate: linear warmup then cosine decay to the floor', () => {
  const c: AdamWConfig = { lr: 1, betas: [0.9, 0.999], eps: 1e-8, weightDecay: 0, clipNorm: 0, warmupSteps: 4, schedule: 'cosine', totalSteps: 14, minLrRatio: 0.1 };
  assert.deepEqual([0, 1, 2, 3].map((s) => learningRate(c, s)), [0.25, 0.5, 0.75, 1]);
  assert.ok(Math.abs(learningRate(c, 9) - (0.1 + 0.9 * 0.5)) < 1e-12);
  assert.ok(Math.abs(learningRate(c, 14) - 0.1) < 1e-12);
});

test('training resumes exactly: 2 steps + resume 2 steps give the same losses as 4 steps straight', async (t) => {
  const root = tempDir(t, 'osdface-train-');
  const quiet = { onLog: () => {} };
  const straight = await train(tinyConfig(root, path.join(root, 'a')), quiet);
  await train(tinyConfig(root, path.join(root, 'b')), { ...quiet, stopAt: 2 });
  const resumed = await train(tinyConfig(root, path.join(root, 'b')), quiet);
  const losses = (logs: { step: number; loss: number; gradNorm: number }[]) => logs.map((l) => [l.step, l.loss, l.gradNorm]);
  assert.equal(straight.logs.length, 4);
  assert.deepEqual(losses(resumed.logs), losses(straight.logs));
  for (const f of ['loss.png', 'log.jsonl', 'checkpoints/latest.json', 'samples/step-0000004.png']) assert.ok(fs.existsSync(path.join(root, 'b', f)), f);
  assert.equal(fs.readFileSync(path.join(root, 'b', 'log.jsonl'), 'utf8').trim().split('\n').length, 4);
  // A different configuration refuses to resume from these checkpoints.
  await assert.rejects(train(tinyConfig(root, path.join(root, 'b'), { seed: 4 }), quiet), /different configuration/);
});

test('a tiny model lowers its training loss on a few faces', async (t) => {
  const root = tempDir(t, 'osdface-learn-');
  const cfg = tinyConfig(root, path.join(root, 'run'), { steps: 30, evalEvery: 30, sampleEvery: 30, checkpointEvery: 30 });
  cfg.data.augment = { flip: false, scale: 0, shift: 0, colorJitter: 0 };
  const { logs } = await train(cfg, { onLog: () => {} });
  const first = (logs[0]!.loss + logs[1]!.loss + logs[2]!.loss) / 3;
  const last = (logs[27]!.loss + logs[28]!.loss + logs[29]!.loss) / 3;
  assert.ok(last < 0.6 * first, `loss ${first} -> ${last}`);
});

test('GAN guidance: the discriminator trains in alternation and resumes exactly with its own optimizer state', async (t) => {
  const root = tempDir(t, 'osdface-gan-');
  const quiet = { onLog: () => {} };
  const gan = { loss: { mse: 1, l1: 0.5, gan: 0.1 }, steps: 3 };
  const straight = await train(tinyConfig(root, path.join(root, 'a'), gan), quiet);
  await train(tinyConfig(root, path.join(root, 'b'), gan), { ...quiet, stopAt: 2 });
  const resumed = await train(tinyConfig(root, path.join(root, 'b'), gan), quiet);
  const d = straight.logs.map((l) => l.discriminatorLoss!);
  assert.ok(d.every(Number.isFinite) && new Set(d).size === 3, `discriminator losses ${d}`);
  assert.deepEqual(resumed.logs.map((l) => [l.loss, l.discriminatorLoss, l.adversarial]), straight.logs.map((l) => [l.loss, l.discriminatorLoss, l.adversarial]));
});

test('a GAN stage started from an earlier GAN stage goes on with its discriminator, not a fresh one', async (t) => {
  const root = tempDir(t, 'osdface-gan-stages-');
  const quiet = { onLog: () => {} };
  const gan = { loss: { mse: 1, l1: 0.5, gan: 0.1 }, steps: 2 };
  const first = await train(tinyConfig(root, path.join(root, 'first'), gan), quiet);
  const next = await train(tinyConfig(root, path.join(root, 'next'), { ...gan, init: { from: path.join(root, 'first') } }), { ...quiet, stopAt: 0 });
  const fresh = await train(tinyConfig(root, path.join(root, 'fresh'), gan), { ...quiet, stopAt: 0 });
  assert.ok(first.trainer.dParams.size > 0);
  for (const [k, v] of first.trainer.dParams) {
    assert.deepEqual(next.trainer.dParams.get(k), v, `${k} carried over`);
  }
  assert.ok([...first.trainer.dParams].some(([k, v]) => v.some((x, i) => x !== fresh.trainer.dParams.get(k)![i])), 'the first stage trained its discriminator');
});

test('a wider critic: sized by the config, warmed up alone with the generator frozen, then joined to a generator from another stage', async (t) => {
  const root = tempDir(t, 'osdface-gan-wide-');
  const quiet = { onLog: () => {} };
  const gan = { loss: { mse: 1, l1: 0.5, gan: 0.1 }, steps: 2 };
  const narrow = await train(tinyConfig(root, path.join(root, 'narrow'), gan), quiet);
  const generatorPrefixes = [...new Set([...narrow.trainer.params.keys()].map((k) => `${k.split('.')[0]}.`))];
  const wide = { ...gan, discriminator: { width: 8, layers: 3 } };
  const warmup = { ...wide, trainable: { frozen: generatorPrefixes }, init: { from: path.join(root, 'narrow') } };
  const untrained = await train(tinyConfig(root, path.join(root, 'warmup'), warmup), { ...quiet, stopAt: 0 });
  const fresh = await train(tinyConfig(root, path.join(root, 'fresh'), wide), { ...quiet, stopAt: 0 });
  assert.deepEqual([...fresh.trainer.dParams].filter(([k]) => k.includes('convs')).map(([, v]) => v.length),
    [8 * 3 * 16, 8, 16 * 8 * 16, 16, 32 * 16 * 16, 32], 'three 4x4 layers, 8 then 16 then 32 channels');
  for (const [k, v] of fresh.trainer.dParams) assert.deepEqual(untrained.trainer.dParams.get(k), v, `${k}: the narrow stage's critic is left out`);
  const warmed = await train(tinyConfig(root, path.join(root, 'warmup'), warmup), quiet);
  assert.equal(warmed.trainer.params.size, 0, 'the generator is frozen');
  assert.ok(warmed.logs.every((l) => Number.isFinite(l.discriminatorLoss)), 'the critic trains');
  const joined = await train(tinyConfig(root, path.join(root, 'joined'), { ...wide, init: { from: [path.join(root, 'narrow'), path.join(root, 'warmup')] } }), { ...quiet, stopAt: 0 });
  for (const [k, v] of narrow.trainer.params) assert.deepEqual(joined.trainer.params.get(k), v, `${k} from the first file`);
  for (const [k, v] of warmed.trainer.dParams) assert.deepEqual(joined.trainer.dParams.get(k), v, `${k} from the warm-up`);
  assert.ok([...warmed.trainer.dParams].some(([k, v]) => v.some((x, i) => x !== fresh.trainer.dParams.get(k)![i])), 'the warm-up trained its critic');
  const still = await train(tinyConfig(root, path.join(root, 'still'), { ...wide, discriminator: { ...wide.discriminator, lr: 0 } }), quiet);
  for (const [k, v] of fresh.trainer.dParams) assert.deepEqual(still.trainer.dParams.get(k), v, `${k}: discriminator.lr 0 keeps the critic still`);
  assert.ok([...still.trainer.params].some(([k, v]) => v.some((x, i) => x !== fresh.trainer.params.get(k)![i])), 'while the generator learns at optim.lr');
  assert.throws(() => tinyConfig(root, path.join(root, 'bad'), { discriminator: { lr: -1 } }), /'discriminator\.lr' must be a number in \[0, 10\]/);
  assert.throws(() => tinyConfig(root, path.join(root, 'bad'), { discriminator: { width: 8, layers: 4 } }), /'discriminator\.layers' 4 layers shrink a 32-pixel training image below 4 pixels/);
  assert.throws(() => tinyConfig(root, path.join(root, 'bad'), { discriminator: { input: 'edges' } }), /'discriminator\.input' must be one of 'image', 'detail', 'encoder', found "edges"/);
  assert.throws(() => tinyConfig(root, path.join(root, 'bad'), { discriminator: { depth: 3 } }), /'discriminator\.depth' is not a known setting/);
  assert.throws(() => tinyConfig(root, path.join(root, 'bad'), { init: { from: [path.join(root, 'narrow'), path.join(root, 'none')] } }), /'init\.from\[1\]' .*none does not exist/);
  await assert.rejects(train(tinyConfig(root, path.join(root, 'idle'), { trainable: { frozen: generatorPrefixes } }), quiet), /every weight is frozen .* nothing would learn/);
});

test('the detail critic judges texture, not colour: a colour cast leaves its logits unchanged away from the edges', async () => {
  const size = 64;
  const image = new Float32Array(3 * size * size).map((_, i) => Math.sin(i * 0.37) * 0.5 + Math.cos(i * 0.011) * 0.3);
  const cast = image.map((v, i) => (i < size * size ? v + 0.2 : i >= 2 * size * size ? v - 0.1 : v));
  const logits = async (input: 'image' | 'detail', pixels: Float32Array) => {
    const d = new PatchDiscriminator(3, 8, 1, input);
    const g = new Graph('critic');
    g.output(d.forward(g, g.input('x', 'float32', [1, 3, size, size])), 'logits');
    const weights = new Map(d.namedParameters().map(([k, shape]) => [k, initParam(k, shape, 1)]));
    const s = await OnnxSession.create(emitOnnx(g, { weights: { read: (k) => weights.get(k)! } }), { threads: 1 });
    try {
      return (await s.run({ x: floatTensor([1, 3, size, size], pixels) })).logits!.data as Float32Array;
    } finally {
      await s.release();
    }
  };
  // One strided 4x4 layer and a 3x3 head see 8 pixels, the blur 2 more: patches 3 or more from the edge never see the padding.
  const side = size / 2;
  const interior = (v: Float32Array) => [...v].filter((_, i) => Math.min(i % side, Math.floor(i / side), side - 1 - (i % side), side - 1 - Math.floor(i / side)) >= 3);
  const [detail, detailCast, plain, plainCast] = await Promise.all([logits('detail', image), logits('detail', cast), logits('image', image), logits('image', cast)]);
  const maxDiff = (a: number[], b: number[]) => Math.max(...a.map((v, i) => Math.abs(v - b[i]!)));
  assert.ok(maxDiff(interior(detail), interior(detailCast)) < 1e-5, `detail critic moved by ${maxDiff(interior(detail), interior(detailCast))}`);
  assert.ok(maxDiff(interior(plain), interior(plainCast)) > 1e-3, 'the image critic sees the cast');
});

test('the edge-aware DISTS term trains with user-supplied weight files; without them the config says what is needed', async (t) => {
  const root = tempDir(t, 'osdface-perceptual-');
  const { Dists } = await import('../src/train/dists.js');
  const { initParam } = await import('../src/train/init.js');
  const { writeSafetensors } = await import('../src/weights/safetensors.js');
  const { floatTensor } = await import('../src/tensor.js');
  const tensors = new Map(new Dists().namedParameters().map(([k, s]) => [k.replace(/^vgg\./, ''), floatTensor(s, k === 'alpha' || k === 'beta' ? new Float32Array(s[1]!).fill(0.5) : initParam(k, s, 2))]));
  const weights = path.join(root, 'dists-and-vgg16.safetensors');
  writeSafetensors(weights, tensors);
  const { logs } = await train(tinyConfig(root, path.join(root, 'run'), { steps: 2, loss: { mse: 1, perceptual: 0.1, perceptualWeights: [weights] } }), { onLog: () => {} });
  assert.ok(logs.length === 2 && logs.every((l) => Number.isFinite(l.loss)));
  assert.throws(() => tinyConfig(root, path.join(root, 'run2'), { loss: { perceptual: 0.1 } }), /'loss\.perceptualWeights' is required when loss\.perceptual > 0: torchvision VGG16/);
});

test('the minimal config printed by `osdface train --help` and the README is valid', () => {
  const cfg = parseTrainConfig({ data: { train: faces, holdout: 10 }, steps: 200, out: 'runs/tiny' }, '/x/config.json');
  assert.equal(cfg.data.val, null);
  assert.equal(cfg.data.holdout, 10);
  assert.throws(() => parseTrainConfig({ data: { train: faces }, steps: 1, out: 'o' }, '/x/c.json'), /'data\.val' is required \(or set data\.holdout/);
  assert.throws(() => parseTrainConfig({ data: { train: faces, holdout: 2, crop: 30, size: 64 }, steps: 1, out: 'o' }, '/x/c.json'), /'data\.crop' must be a multiple of 8/);
});
