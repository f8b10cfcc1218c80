import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { shared, taef2Weights, tempDir } from './helpers.js';
import { parseTrainConfig } from '../src/train/config.js';
import { train } from '../src/train/run.js';
import { FaceDataset } from '../src/train/data.js';
import { exportModel, ExportError } from '../src/train/export.js';
import { loadModelDir } from '../src/pipeline/model.js';
import { readManifest } from '../src/pipeline/manifest.js';
import type { FloatTensor } from '../src/tensor.js';

const faces = path.join(shared, 'data/faces-hq/train');
const skip = fs.existsSync(faces) ? false : `training faces not found at ${faces}`;

/** A tiny OSDFace-shaped model on a tiny autoencoder of the TAESD family (random start, 32 px faces). */
const TINY_TAESD_MODEL = {
  vae: {
    _class_name: 'AutoencoderTiny', latent_channels: 4, encoder_block_out_channels: [8, 8, 8, 8], decoder_block_out_channels: [8, 8, 8, 8],
    num_encoder_blocks: [1, 1, 1, 1], num_decoder_blocks: [1, 1, 1, 1], use_midblock_gn: true,
  },
  unet: { in_channels: 4, out_channels: 4, block_out_channels: [16, 32], attention_head_dim: [2, 2], cross_attention_dim: 32, norm_num_groups: 4 },
  vre: { ch: 8, ch_mult: [1, 2], attn_resolutions: [16], z_channels: 16, n_embed: 32, embed_dim: 16, n_min: 8, norm_num_groups: 4, resolution: 32 },
  promptChannels: 32,
};

function config(root: string, out: string, extra: Record<string, unknown> = {}) {
  const train_ = path.join(root, 'train');
  fs.mkdirSync(train_, { recursive: true });
  for (const n of fs.readdirSync(faces).filter((f) => f.startsWith('dmdnet_')).slice(0, 5)) fs.copyFileSync(path.join(faces, n), path.join(train_, n));
  return parseTrainConfig({
    data: { train: train_, holdout: 2, valImages: 2, size: 32, batch: 2, degradation: 'mild' },
    model: TINY_TAESD_MODEL,
    trainable: { mode: 'full', frozen: ['encoder.'] },
    loss: { mse: 0, l1: 1, latent: 0.5 },
    optim: { lr: 0.003, warmupSteps: 0, schedule: 'constant' },
    steps: 4, seed: 5, threads: 1, out, checkpointEvery: 2, sampleEvery: 2, evalEvery: 2,
    ...extra,
  }, path.join(root, 'config.json'));
}

function psnr(pred: FloatTensor, hq: FloatTensor, i: number): number {
  const n = pred.data.length / pred.shape[0]!;
  let se = 0;
  for (let k = i * n; k < (i + 1) * n; k++) se += (pred.data[k]! - hq.data[k]!) ** 2;
  return 10 * Math.log10(n / se);
}

test('osdface export: the model directory of a training run restores the validation faces as training evaluated them; float16 storage stays within 45 dB', { skip }, async (t) => {
  const root = tempDir(t);
  const out = path.join(root, 'run');
  const cfg = config(root, out);
  const { logs } = await train(cfg, { stopAt: 2, onLog: () => {} });
  const val = logs.find((l) => l.step === 2)!.val!;

  const dir = path.join(root, 'model');
  const manifest = exportModel({ checkpoint: out, out: dir, name: 'tiny-test' });
  assert.equal(manifest.architecture, 'tiny-test');
  assert.equal(manifest.step, 2);
  assert.equal(readManifest(dir).settings.processSize, 32);
  // The hold-out faces (the last 2 of the training folder), degraded as training's validation does.
  const set = await FaceDataset.load(cfg.data.train, 32, 2, { holdout: 2, part: 'holdout' });
  const batch = await set.fixed(cfg.seed, cfg.data.degradation);
  await set.dispose();
  const { pipeline } = await loadModelDir(dir, { threads: 1 });
  const restored = (await pipeline.restore(batch.lq)).out;
  await pipeline.dispose();
  const mean = (psnr(restored, batch.hq, 0) + psnr(restored, batch.hq, 1)) / 2;
  assert.ok(Math.abs(mean - val.psnr) < 0.01, `exported model ${mean.toFixed(4)} dB, training's evaluation ${val.psnr.toFixed(4)} dB`);

  const half = path.join(root, 'model-fp16');
  exportModel({ checkpoint: path.join(out, 'checkpoints', 'step-0000002.safetensors'), out: half, float16Weights: true });
  assert.equal(readManifest(half).weightStorage, 'float16');
  const bytes = (d: string) => fs.readdirSync(d).filter((f) => f.endsWith('.data')).reduce((s, f) => s + fs.statSync(path.join(d, f)).size, 0);
  // Tiny tensors are padded to 4 KB in the data files, so the saving shows less than half here.
  assert.ok(bytes(half) < bytes(dir), `float16 weights ${bytes(half)} bytes vs ${bytes(dir)}`);
  const p16 = (await loadModelDir(half, { threads: 1 })).pipeline;
  const r16 = (await p16.restore(batch.lq)).out;
  await p16.dispose();
  assert.ok(psnr(r16, restored, 0) > 45 && psnr(r16, restored, 1) > 45, `float16 vs float32: ${psnr(r16, restored, 0)} dB`);
});

test('training goes on from a weights-only file on a fresh run folder; export refuses what it cannot use', { skip }, async (t) => {
  const root = tempDir(t);
  const weightsFile = path.join(root, 'state', 'weights.safetensors');
  const first = await train(config(root, path.join(root, 'a')), { stopAt: 2, weightsFile, onLog: () => {} });
  assert.equal(first.trainer.step, 2);
  assert.ok(fs.existsSync(weightsFile));
  const lines: string[] = [];
  // A new folder (a fresh clone): no checkpoint, so the weights of step 2 are the start.
  const cfgB = config(root, path.join(root, 'a'));
  fs.rmSync(path.join(root, 'a'), { recursive: true });
  const second = await train(cfgB, { weightsFile, onLog: (l) => lines.push(l) });
  assert.equal(second.trainer.step, 4);
  assert.ok(lines.some((l) => /going on from the weights of step 2/.test(l)), lines.join('\n'));
  assert.deepEqual(second.logs.map((l) => l.step), [3, 4]);

  assert.throws(() => exportModel({ checkpoint: path.join(root, 'nowhere'), out: path.join(root, 'm') }), (e: Error) => e instanceof ExportError && e.message.includes('nowhere'));
  assert.throws(() => exportModel({ checkpoint: path.join(root, 'train'), out: path.join(root, 'm') }), /no config\.json/);
  assert.ok(!fs.existsSync(path.join(root, 'm')));
});

test('init.vae starts the autoencoder from TAEF2 and names a mismatch', { skip: skip || (fs.existsSync(taef2Weights) ? false : 'TAEF2 weights not found') }, (t) => {
  const root = tempDir(t);
  assert.throws(() => config(root, path.join(root, 'o'), { init: { vae: '/no/such/taef2' } }), /'init\.vae' \/no\/such\/taef2 does not exist/);
});
