import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { parityA } from './helpers.js';
import { Config } from '../src/models/config.js';
import { UNet2DConditionModel } from '../src/models/unet_2d_condition.js';
import { AutoencoderKL } from '../src/models/autoencoder_kl.js';
import { unetGraph, vaeDecoderGraph } from '../src/pipeline/graphs.js';
import { emitOnnx } from '../src/graph/emit.js';
import { OnnxSession } from '../src/graph/runtime.js';
import { SafetensorsFile } from '../src/weights/safetensors.js';
import { bindWeights, mapStore } from '../src/weights/bind.js';
import { type FloatTensor, type Tensor, floatTensor } from '../src/tensor.js';
import { gaussianNoise } from '../src/pipeline/random.js';
import { timestepFrequencies } from '../src/models/embeddings.js';
import { legacyVaeAttentionName } from '../src/pipeline/release.js';

const readConfig = (sub: string, edit: (j: Record<string, unknown>) => void = () => {}) => {
  const file = path.join(parityA, 'sd', sub, 'config.json');
  const j = JSON.parse(fs.readFileSync(file, 'utf8')) as Record<string, unknown>;
  edit(j);
  return new Config(j, file);
};

function readWeights(sub: string): Map<string, Tensor> {
  const f = SafetensorsFile.open(path.join(parityA, 'sd', sub, 'diffusion_pytorch_model.safetensors'));
  const all = f.readAll();
  f.close();
  return all;
}

async function runUnet(unet: UNet2DConditionModel, weights: Map<string, Tensor>, sample: FloatTensor): Promise<FloatTensor> {
  const source = bindWeights(mapStore('unet', weights), unet.namedParameters());
  const s = await OnnxSession.create(emitOnnx(unetGraph(unet), { weights: source }));
  const context = floatTensor([sample.shape[0]!, 77, unet.crossAttentionDim], gaussianNoise(sample.shape[0]! * 77 * unet.crossAttentionDim, 2));
  const out = await s.run({ sample, timestep: floatTensor([1], Float32Array.of(399)), encoder_hidden_states: context });
  await s.release();
  return out.eps as FloatTensor;
}

const maxDiff = (a: FloatTensor, b: FloatTensor) => a.data.reduce((m, v, i) => Math.max(m, Math.abs(v - b.data[i]!)), 0);

test('UNet upsamples to the skip connection size when the latent is not a multiple of 2^(blocks-1)', async () => {
  const unet = new UNet2DConditionModel(readConfig('unet'));
  // 10 -> 5 -> 3 on the way down; the up path must go 3 -> 5 -> 10, not 3 -> 6.
  const out = await runUnet(unet, readWeights('unet'), floatTensor([1, 4, 10, 10], gaussianNoise(400, 1)));
  assert.deepEqual(out.shape, [1, 4, 10, 10]);
  assert.ok(out.data.every(Number.isFinite));
});

test('use_linear_projection=false (1x1 conv proj_in/proj_out) computes the same as the linear form', async () => {
  const weights = readWeights('unet');
  const sample = floatTensor([2, 4, 8, 8], gaussianNoise(512, 3));
  const linear = await runUnet(new UNet2DConditionModel(readConfig('unet')), weights, sample);
  const convWeights = new Map(weights);
  for (const [k, t] of weights) {
    if (/\.proj_(in|out)\.weight$/.test(k)) convWeights.set(k, { ...t, shape: [...t.shape, 1, 1] });
  }
  const conv = await runUnet(new UNet2DConditionModel(readConfig('unet', (j) => { j['use_linear_projection'] = false; })), convWeights, sample);
  assert.ok(maxDiff(linear, conv) < 1e-5, `max diff ${maxDiff(linear, conv)}`);
});

test('old VAE files with query/key/value/proj_attn (1x1 conv) attention weights decode identically', async () => {
  const vae = new AutoencoderKL(readConfig('vae'));
  const modern = readWeights('vae');
  const legacy = new Map<string, Tensor>();
  const names: Record<string, string> = { to_q: 'query', to_k: 'key', to_v: 'value', 'to_out.0': 'proj_attn' };
  for (const [k, t] of modern) {
    const m = /^(.*mid_block\.attentions\.\d+\.)(to_q|to_k|to_v|to_out\.0)\.(weight|bias)$/.exec(k);
    if (!m) legacy.set(k, t);
    else legacy.set(`${m[1]}${names[m[2]!]}.${m[3]}`, m[3] === 'weight' ? { ...t, shape: [...t.shape, 1, 1] } : t);
  }
  assert.ok(!legacy.has('decoder.mid_block.attentions.0.to_q.weight') && legacy.has('decoder.mid_block.attentions.0.query.weight'));
  const latent = floatTensor([1, 4, 8, 8], gaussianNoise(256, 4));
  const decode = async (w: Map<string, Tensor>) => {
    const source = bindWeights(mapStore('vae', w), vae.namedParameters(), { aliases: legacyVaeAttentionName });
    const s = await OnnxSession.create(emitOnnx(vaeDecoderGraph(vae), { weights: source }));
    const out = (await s.run({ latent })).image as FloatTensor;
    await s.release();
    return out;
  };
  assert.equal(maxDiff(await decode(modern), await decode(legacy)), 0);
});

test('timestep frequencies follow exp(-ln(10000) * i / (half - shift))', () => {
  const f = timestepFrequencies(4, 1);
  const expected = [0, 1, 2, 3].map((i) => Math.exp((-Math.log(10000) * i) / 3));
  f.forEach((v, i) => assert.ok(Math.abs(v - expected[i]!) <= 1e-7 * Math.max(1, expected[i]!)));
});
