import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { fullSize } from './helpers.js';
import { Config } from '../src/models/config.js';
import { UNet2DConditionModel } from '../src/models/unet_2d_condition.js';
import { AutoencoderKL } from '../src/models/autoencoder_kl.js';
import { VQVAEEncoder } from '../src/models/vre/vqvae_encoder.js';
import { TwoLayerConv1x1 } from '../src/models/vre/embedding_change.js';
import type { Module } from '../src/nn/module.js';
import { numel } from '../src/tensor.js';
import { unetGraph, vaeDecoderGraph, vaeEncoderGraph, vreGraph } from '../src/pipeline/graphs.js';

const readJson = (f: string) => JSON.parse(fs.readFileSync(path.join(fullSize, f), 'utf8')) as Record<string, unknown>;
const osd = readJson('osdface_config.json');
const ec = osd['embedding_change'] as Record<string, number>;

const networks: Record<string, () => Module> = {
  unet: () => new UNet2DConditionModel(new Config(readJson('sd21-base/unet/config.json'), 'unet/config.json')),
  vae: () => new AutoencoderKL(new Config(readJson('sd21-base/vae/config.json'), 'vae/config.json')),
  vre: () => new VQVAEEncoder(new Config(osd['vre'] as Record<string, unknown>, 'osdface_config.json')),
  embedding_change: () => new TwoLayerConv1x1(ec['in_channels']!, ec['out_channels']!, ec['hidden_channels']!),
};

let total = 0;
for (const [name, build] of Object.entries(networks)) {
  test(`full-size ${name}: parameter names, shapes and order are exactly the reference state_dict`, () => {
    const ref = readJson(`${name}_params.json`) as { params: [string, number[]][]; count: number; tensors: number };
    const ours = build().namedParameters();
    assert.equal(ours.length, ref.tensors);
    assert.deepEqual(ours, ref.params);
    const count = ours.reduce((s, [, shape]) => s + numel(shape), 0);
    assert.equal(count, ref.count);
    total += count;
  });
}

test('full-size total is 979,131,499 parameters', () => {
  const counts = readJson('param_counts.json') as { total: { parameters: number } };
  assert.equal(total, counts.total.parameters);
  assert.equal(total, 979_131_499);
});

test('full-size graphs build and shape-check at 512x512 without touching weights', () => {
  const unet = networks.unet!() as UNet2DConditionModel;
  const vae = networks.vae!() as AutoencoderKL;
  const vre = networks.vre!() as VQVAEEncoder;
  const g = unetGraph(unet, 77, 64);
  assert.equal(g.params.size, 686);
  assert.deepEqual(g.outputs[0]!.shape, [1, 4, 64, 64]);
  assert.deepEqual(vaeEncoderGraph(vae, 512).outputs[0]!.shape, [1, 4, 64, 64]);
  assert.deepEqual(vaeDecoderGraph(vae, 64).outputs[0]!.shape, [1, 3, 512, 512]);
  const vg = vreGraph(vre);
  assert.deepEqual(vg.outputs.map((o) => o.shape), [[1, 512, 16, 16], [1, 256], [1, 256]]);
  // MultiHeadAttnBlock.norm2 exists in checkpoints but its forward never uses it (no second input).
  const unused = vre.namedParameters().map(([k]) => k).filter((k) => !vg.params.has(k));
  assert.deepEqual(unused, ['encoder.down.5.attn.0.norm2.weight', 'encoder.down.5.attn.0.norm2.bias', 'encoder.down.5.attn.1.norm2.weight',
    'encoder.down.5.attn.1.norm2.bias', 'encoder.mid.attn_1.norm2.weight', 'encoder.mid.attn_1.norm2.bias']);
});
