import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import sharp from 'sharp';
import { noWeights, realLq, repoRoot, shared, tempDir } from './helpers.js';
import { Graph } from '../src/graph/ir.js';
import * as op from '../src/graph/ops.js';
import { gradients } from '../src/graph/autodiff.js';
import { emitOnnx } from '../src/graph/emit.js';
import { OnnxSession } from '../src/graph/runtime.js';
import { decodeImage, type RgbImage } from '../src/image/io.js';
import { floatTensor, type FloatTensor } from '../src/tensor.js';
import {
  cosineSimilarity, DESCRIPTOR_SIZE, FaceRecognitionNet, FaceRecognizer, identityLoss, identitySimilarity, loadRecognitionWeights,
  recognitionInput, weightSource,
} from '../src/face/recognition.js';
import { parseTrainConfig } from '../src/train/config.js';
import { train } from '../src/train/run.js';

const fixture = JSON.parse(fs.readFileSync(path.join(repoRoot, 'test/fixtures/face_recognition_descriptors.json'), 'utf8')) as {
  faceApi: string; backend: string; images: { file: string; sha256: string; width: number; height: number; descriptor: number[] }[];
};

let recognizer: Promise<FaceRecognizer> | undefined;
const getRecognizer = () => (recognizer ??= FaceRecognizer.create({ threads: 2 }));
after(async () => { if (recognizer) await (await recognizer).dispose(); });

test('descriptors match face-api 1.7.15 on TensorFlow.js (fixture) for five real faces, one of them not square', async () => {
  const r = await getRecognizer();
  assert.equal(fixture.images.length, 5);
  for (const ref of fixture.images) {
    const file = path.join(realLq, ref.file);
    const bytes = fs.readFileSync(file);
    assert.equal(crypto.createHash('sha256').update(bytes).digest('hex'), ref.sha256, `${file} is not the image the fixture was made from`);
    const img = await decodeImage(bytes);
    assert.deepEqual([img.width, img.height], [ref.width, ref.height]);
    const d = await r.descriptor(img);
    assert.equal(d.length, DESCRIPTOR_SIZE);
    let maxAbs = 0;
    d.forEach((v, i) => { maxAbs = Math.max(maxAbs, Math.abs(v - ref.descriptor[i]!)); });
    // Measured: at most 3.9e-7 against tfjs-cpu (4.8e-7 against tfjs-wasm) with descriptor
    // entries of about 0.1; 5e-6 leaves room for other CPUs' float32 kernels, while a wrong
    // layer, padding or resize rule moves entries by 1e-3 and more.
    assert.ok(maxAbs < 5e-6, `${ref.file}: max abs difference ${maxAbs}`);
    assert.ok(cosineSimilarity(d, ref.descriptor) > 1 - 1e-9, `${ref.file}: cosine ${cosineSimilarity(d, ref.descriptor)}`);
  }
});

test('identity similarity: 1 for the same face, symmetric, lower for another person and for a heavy blur', async () => {
  const load = async (f: string) => decodeImage(path.join(realLq, f));
  const a = await load('codeformer_0143.png');
  const b = await load('gfpgan_Adele_crop.png');
  const blurred = await decodeImage(await sharp(Buffer.from(a.data), { raw: { width: a.width, height: a.height, channels: 3 } }).blur(12).png().toBuffer());
  const same = await identitySimilarity(a, a);
  assert.ok(Math.abs(same - 1) < 1e-6, `same image: ${same}`);
  const ab = await identitySimilarity(a, b);
  assert.equal(ab, await identitySimilarity(b, a));
  assert.ok(ab < 0.95, `different people: ${ab}`);
  const blur = await identitySimilarity(a, blurred);
  assert.ok(blur < 0.99 && blur > ab - 0.2, `blurred: ${blur}`);
});

test('recognitionInput pads like face-api padToSquare (centred, round(diff / 2) after)', () => {
  const img: RgbImage = { width: 2, height: 5, channels: 3, data: new Uint8Array(2 * 5 * 3).fill(255) };
  const { shape, data } = recognitionInput(img);
  assert.deepEqual(shape, [1, 3, 5, 5]);
  // diff 3: 2 columns after, 1 before.
  const row = Array.from(data.subarray(0, 5));
  assert.deepEqual(row, [0, 1, 1, 0, 0]);
});

test('max-pool gradient: ties go to the first maximum of the window in row-major order, shared maxima collect every window', async () => {
  const g = new Graph('ties');
  const x = g.input('x', 'float32', [1, 1, 5, 5]);
  const r = g.input('r', 'float32', [1, 1, 2, 2]);
  const loss = op.reduceSum(op.mul(op.maxPool2d(x, 3, 2), r), [0, 1, 2, 3], false);
  const [gx] = gradients(g, loss, [x]);
  g.output(gx!, 'gx');
  const s = await OnnxSession.create(emitOnnx(g, { weights: noWeights }));
  const run = async (xs: number[]) => Array.from((await s.run({ x: floatTensor([1, 1, 5, 5], Float32Array.from(xs)), r: floatTensor([1, 1, 2, 2], Float32Array.of(1, 10, 100, 1000)) })).gx!.data as Float32Array);
  // All equal: every window's first element (its top-left corner) takes its gradient.
  const flat = await run(Array(25).fill(3));
  const expected = Array(25).fill(0);
  expected[0] = 1; expected[2] = 10; expected[10] = 100; expected[12] = 1000;
  assert.deepEqual(flat, expected);
  // One maximum shared by all four windows (the centre, in every overlap) gets the sum.
  const peak = Array(25).fill(0);
  peak[12] = 5;
  assert.deepEqual(await run(peak), Array.from({ length: 25 }, (_, i) => (i === 12 ? 1111 : 0)));
  await s.release();
});

async function face32(file: string): Promise<FloatTensor> {
  const { data } = await sharp(path.join(realLq, file)).removeAlpha().resize(32, 32, { kernel: 'cubic' }).raw().toBuffer({ resolveWithObject: true });
  const t = floatTensor([1, 3, 32, 32]);
  for (let i = 0; i < 32 * 32; i++) for (let c = 0; c < 3; c++) t.data[c * 1024 + i] = data[3 * i + c]! / 255;
  return t;
}

test('identity loss: gradient with respect to the restored image matches finite differences (32x32, resized to 150 inside)', async () => {
  const g = new Graph('identity_grad');
  const restored = g.input('restored', 'float32', [1, 3, 32, 32]);
  const target = g.input('target', 'float32', [1, 3, 32, 32]);
  const loss = identityLoss(g, restored, target);
  g.output(loss, 'loss');
  const [grad] = gradients(g, loss, [restored]);
  g.output(grad!, 'grad');
  for (const k of g.params.keys()) assert.match(k, /^face_recognition\./);
  const s = await OnnxSession.create(emitOnnx(g, { weights: weightSource(loadRecognitionWeights()) }), { threads: 2 });
  const feeds = { restored: await face32('codeformer_0143.png'), target: await face32('gfpgan_Adele_crop.png') };
  const out = await s.run(feeds);
  const base = (out.loss!.data as Float32Array)[0]!;
  assert.ok(base > 0.02 && base < 1, `identity loss of two different people: ${base}`);
  const analytic = out.grad!.data as Float32Array;
  // The three largest gradient entries and three fixed ones elsewhere (R, G, B planes).
  const order = Array.from(analytic.keys()).sort((p, q) => Math.abs(analytic[q]!) - Math.abs(analytic[p]!));
  const coords = [...order.slice(0, 3), 5 * 32 + 7, 1024 + 16 * 32 + 16, 2048 + 25 * 32 + 20];
  const scale = Math.abs(analytic[order[0]!]!);
  const h = 1e-3;
  const lossAt = async () => ((await s.run(feeds)).loss!.data as Float32Array)[0]!;
  for (const j of coords) {
    const orig = feeds.restored.data[j]!;
    feeds.restored.data[j] = orig + h;
    const up = await lossAt();
    feeds.restored.data[j] = orig - h;
    const down = await lossAt();
    feeds.restored.data[j] = orig;
    // The loss is only piecewise smooth (ReLU, max pool): a kink within h of the point makes the
    // central difference the mean of two one-sided slopes while autodiff gives one of them (seen
    // here: slopes -0.051 / -0.057 on either side of one pixel, autodiff -0.0504). So the check
    // accepts the central or either one-sided difference, within 5% of the largest entry; with
    // h = 1e-3 the float32 noise of these differences is ~1e-4 of that entry's 0.05.
    const fd = { central: (up - down) / (2 * h), forward: (up - base) / h, backward: (base - down) / h };
    const err = Math.min(...Object.values(fd).map((v) => Math.abs(v - analytic[j]!)));
    assert.ok(err <= 0.05 * scale, `coordinate ${j}: autodiff ${analytic[j]} vs finite differences ${JSON.stringify(fd)} (largest entry ${scale})`);
  }
  await s.release();
});

test('the recognition network declares exactly the weights face-api ships', () => {
  const net = new FaceRecognitionNet();
  const weights = loadRecognitionWeights();
  const params = net.namedParameters();
  assert.equal(weights.size, params.length);
  const total = params.reduce((n, [, shape]) => n + shape.reduce((a, b) => a * b, 1), 0);
  assert.equal([...weights.values()].reduce((n, w) => n + w.length, 0), total);
  assert.equal(params.length, 1 + 4 + 14 * 8);
});

test('training with loss.identity: 3 steps log finite losses and the recognition weights stay frozen', async (t) => {
  const root = tempDir(t, 'osdface-identity-');
  const faces = path.join(shared, 'data/faces-hq/train');
  const names = fs.readdirSync(faces).filter((f) => f.startsWith('dmdnet_')).slice(0, 4);
  const copy = (dir: string, list: string[]) => {
    fs.mkdirSync(dir, { recursive: true });
    for (const n of list) fs.copyFileSync(path.join(faces, n), path.join(dir, n));
    return dir;
  };
  const cfg = parseTrainConfig({
    data: { train: copy(path.join(root, 'train'), names), val: copy(path.join(root, 'val'), names.slice(0, 2)), size: 32, batch: 2, valImages: 2, degradation: 'mild' },
    model: {
      unet: { block_out_channels: [16, 32], attention_head_dim: [2, 2], cross_attention_dim: 32, norm_num_groups: 4 },
      vae: { block_out_channels: [16, 16], norm_num_groups: 4 },
      vre: { ch: 8, ch_mult: [1, 2], attn_resolutions: [16], z_channels: 16, n_embed: 32, embed_dim: 16, n_min: 8, norm_num_groups: 4 },
      promptChannels: 32,
    },
    loss: { mse: 1, identity: 0.1 },
    optim: { lr: 0.003, warmupSteps: 0, schedule: 'constant' },
    steps: 3, seed: 3, threads: 2, out: path.join(root, 'run'), checkpointEvery: 3, sampleEvery: 3, evalEvery: 3,
  }, path.join(root, 'config.json'));
  assert.equal(cfg.loss.identity, 0.1);
  const { trainer, logs } = await train(cfg, { onLog: () => {} });
  assert.equal(logs.length, 3);
  for (const l of logs) {
    assert.ok(Number.isFinite(l.loss) && Number.isFinite(l.gradNorm), `step ${l.step}: loss ${l.loss}, |g| ${l.gradNorm}`);
    assert.ok(l.identity !== undefined && l.identity > 0 && l.identity < 2, `step ${l.step}: identity ${l.identity}`);
    assert.ok(l.loss > 0.1 * l.identity, `step ${l.step}: the total loss includes 0.1 * identity`);
  }
  assert.ok(Number.isFinite(logs[2]!.val!.loss));
  assert.ok(![...trainer.params.keys()].some((k) => k.startsWith('face_recognition.')), 'recognition weights must not be trainable');
});

test('loss.identity is validated like the other weights and defaults to 0', () => {
  const dirs = { train: realLq, val: realLq };
  assert.equal(parseTrainConfig({ steps: 1, out: 'o', data: dirs }, '/x/c.json').loss.identity, 0);
  assert.throws(() => parseTrainConfig({ steps: 1, out: 'o', data: dirs, loss: { identity: -1 } }, '/x/c.json'), /'loss\.identity' must be a number in \[0, Infinity\]/);
  assert.throws(() => parseTrainConfig({ steps: 1, out: 'o', data: dirs, loss: { identity: 'yes' } }, '/x/c.json'), /'loss\.identity' must be a number/);
  assert.equal(parseTrainConfig({ steps: 1, out: 'o', data: dirs, loss: { mse: 0, identity: 1 } }, '/x/c.json').loss.identity, 1);
});
