import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import {
  loadDiffusersModel,
  loadSchedulerConfig,
  renameLegacyVaeAttention,
  reshapeLegacyAttentionWeight,
} from '../src/weights/diffusers.js';
import { writeSafetensors } from '../src/weights/safetensors.js';
import { noFixtures, parityA, tempDir, throwsWeightError } from './helpers.js';

const sd = path.join(parityA, 'sd');

test('loads the parity-a sd folder: unet, vae and scheduler', { skip: noFixtures }, (t) => {
  const unet = loadDiffusersModel(sd, 'unet');
  t.after(() => unet.weights.close());
  assert.equal(unet.path, path.join(sd, 'unet', 'diffusion_pytorch_model.safetensors'));
  assert.equal(unet.config._class_name, 'UNet2DConditionModel');
  assert.equal(unet.config.cross_attention_dim, 48);
  assert.deepEqual(unet.config.block_out_channels, [32, 64, 64]);
  assert.deepEqual(unet.weights.info('conv_in.weight').shape, [32, 4, 3, 3]);

  const vae = loadDiffusersModel(sd, 'vae');
  t.after(() => vae.weights.close());
  assert.equal(vae.config._class_name, 'AutoencoderKL');
  assert.equal(vae.config.latent_channels, 4);
  assert.deepEqual(vae.weights.info('decoder.mid_block.attentions.0.to_q.weight').shape, [32, 32]);
  assert.deepEqual(vae.weights.read('quant_conv.weight').shape, [8, 8, 1, 1]);

  const sched = loadSchedulerConfig(sd);
  assert.equal(sched.num_train_timesteps, 1000);
  assert.equal(sched.beta_schedule, 'scaled_linear');
  assert.equal(sched.beta_start, 0.00085);
});

test('missing folder, subfolder, config and weights are reported', (t) => {
  const dir = tempDir(t, 'osdface-diffusers-');
  const missing = path.join(dir, 'no-such-model');
  throwsWeightError(() => loadDiffusersModel(missing, 'unet'), missing, 'does not exist', 'SD-2.1-base');
  throwsWeightError(() => loadSchedulerConfig(missing), missing, 'does not exist');

  const model = path.join(dir, 'model');
  fs.mkdirSync(model);
  throwsWeightError(() => loadDiffusersModel(model, 'vae'), path.join(model, 'vae'), "'vae' subfolder does not exist");
  throwsWeightError(() => loadSchedulerConfig(model), path.join(model, 'scheduler', 'scheduler_config.json'), 'does not exist');

  fs.mkdirSync(path.join(model, 'unet'));
  throwsWeightError(() => loadDiffusersModel(model, 'unet'), path.join(model, 'unet', 'config.json'), 'does not exist');

  fs.writeFileSync(path.join(model, 'unet', 'config.json'), '{"in_channels": 4}');
  fs.writeFileSync(path.join(model, 'unet', 'diffusion_pytorch_model.bin'), 'x');
  throwsWeightError(
    () => loadDiffusersModel(model, 'unet'),
    path.join(model, 'unet', 'diffusion_pytorch_model.safetensors'),
    'does not exist',
    'diffusion_pytorch_model.fp16.safetensors',
    'diffusion_pytorch_model.bin',
    'SD-2.1-base',
  );

  const notDir = path.join(dir, 'file');
  fs.writeFileSync(notDir, '');
  throwsWeightError(() => loadDiffusersModel(notDir, 'unet'), notDir, 'not a directory');
});

test('fp16 weight file is accepted; invalid JSON names line and column', (t) => {
  const dir = tempDir(t, 'osdface-diffusers-');
  const sub = path.join(dir, 'unet');
  fs.mkdirSync(sub);
  fs.writeFileSync(path.join(sub, 'config.json'), '{"in_channels": 4}');
  const weights = path.join(sub, 'diffusion_pytorch_model.fp16.safetensors');
  writeSafetensors(weights, { 'conv_in.bias': { dtype: 'float32', shape: [2], data: new Float32Array([1, 2]) } });
  const m = loadDiffusersModel(dir, 'unet');
  t.after(() => m.weights.close());
  assert.equal(m.path, weights);
  assert.deepEqual(m.config, { in_channels: 4 });
  assert.deepEqual([...m.weights.read('conv_in.bias').data], [1, 2]);

  const cfg = path.join(sub, 'config.json');
  fs.writeFileSync(cfg, '{\n  "in_channels": 4,\n  "out_channels": 4,,\n}');
  throwsWeightError(() => loadDiffusersModel(dir, 'unet'), cfg, 'invalid JSON', 'line 3');
  fs.writeFileSync(cfg, '[1, 2]');
  throwsWeightError(() => loadDiffusersModel(dir, 'unet'), cfg, 'not a JSON object');
});

test('legacy VAE attention names and 1x1 conv shapes map to the current layout', () => {
  assert.equal(renameLegacyVaeAttention('encoder.mid_block.attentions.0.query.weight'), 'encoder.mid_block.attentions.0.to_q.weight');
  assert.equal(renameLegacyVaeAttention('decoder.mid_block.attentions.0.key.bias'), 'decoder.mid_block.attentions.0.to_k.bias');
  assert.equal(renameLegacyVaeAttention('decoder.mid_block.attentions.0.value.weight'), 'decoder.mid_block.attentions.0.to_v.weight');
  assert.equal(renameLegacyVaeAttention('encoder.mid_block.attentions.1.proj_attn.weight'), 'encoder.mid_block.attentions.1.to_out.0.weight');
  // untouched: already new, or outside the mid-block attention
  for (const k of [
    'decoder.mid_block.attentions.0.to_q.weight',
    'decoder.mid_block.attentions.0.group_norm.weight',
    'decoder.up_blocks.0.attentions.0.query.weight',
    'decoder.mid_block.resnets.0.conv1.weight',
    'decoder.mid_block.attentions.0.query.extra.weight',
  ]) {
    assert.equal(renameLegacyVaeAttention(k), k);
  }

  const conv = { dtype: 'float32' as const, shape: [4, 4, 1, 1], data: new Float32Array(16).map((_, i) => i) };
  const lin = reshapeLegacyAttentionWeight(conv, [4, 4]);
  assert.deepEqual(lin.shape, [4, 4]);
  assert.equal(lin.data, conv.data, 'reshape shares the data');
  assert.deepEqual(conv.shape, [4, 4, 1, 1], 'input not modified');
  assert.equal(reshapeLegacyAttentionWeight(conv, [4, 4, 1, 1]), conv);
  assert.equal(reshapeLegacyAttentionWeight(conv, [2, 8]), conv, 'out-channel mismatch is left to the caller');
  const bias = { dtype: 'float32' as const, shape: [4], data: new Float32Array(4) };
  assert.equal(reshapeLegacyAttentionWeight(bias, [4]), bias);
});
