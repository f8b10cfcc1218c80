import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Config } from '../src/models/config.js';
import { UNet2DConditionModel } from '../src/models/unet_2d_condition.js';
import { unetGraph } from '../src/pipeline/graphs.js';
import { emitOnnx } from '../src/graph/emit.js';
import { OnnxSession } from '../src/graph/runtime.js';
import { type FloatTensor, floatTensor } from '../src/tensor.js';
import { gaussianNoise } from '../src/pipeline/random.js';
import { initParam } from '../src/train/init.js';
import { deepenUNetParams, isAddedLayerKey } from '../src/train/deepen_unet.js';
import { parseTrainConfig } from '../src/train/config.js';

// The structure of osdface-small's UNet (plain down block first, cross-attention below it), at a test's size.
const unetConfig = (layersPerBlock: number) => new Config({
  _class_name: 'UNet2DConditionModel', sample_size: 8, in_channels: 4, out_channels: 4,
  block_out_channels: [16, 32, 32], down_block_types: ['DownBlock2D', 'CrossAttnDownBlock2D', 'CrossAttnDownBlock2D'],
  up_block_types: ['CrossAttnUpBlock2D', 'CrossAttnUpBlock2D', 'UpBlock2D'], layers_per_block: layersPerBlock,
  attention_head_dim: [2, 4, 4], cross_attention_dim: 24, norm_num_groups: 8, use_linear_projection: true, flip_sin_to_cos: true, freq_shift: 0,
}, 'test unet');

/** Random weights everywhere (biases too), so that no layer is an identity by accident. */
function randomWeights(unet: UNet2DConditionModel, seed: number): Map<string, { shape: number[]; data: Float32Array }> {
  return new Map(unet.namedParameters().map(([k, shape], n) => {
    if (shape.length > 1) return [k, { shape, data: initParam(k, shape, seed) }];
    const data = gaussianNoise(shape[0]!, 1000 * seed + n).map((v) => 0.1 * v + (k.endsWith('.weight') ? 1 : 0));
    return [k, { shape, data }];
  }));
}

async function runUnet(unet: UNet2DConditionModel, weights: Map<string, { shape: number[]; data: Float32Array }>): Promise<FloatTensor> {
  const s = await OnnxSession.create(emitOnnx(unetGraph(unet), { weights: { read: (k: string) => weights.get(k)!.data } }));
  try {
    const sample = floatTensor([2, 4, 8, 8], gaussianNoise(2 * 4 * 8 * 8, 1));
    const context = floatTensor([2, 77, 24], gaussianNoise(2 * 77 * 24, 2));
    return (await s.run({ sample, timestep: floatTensor([1], Float32Array.of(399)), encoder_hidden_states: context })).eps as FloatTensor;
  } finally {
    await s.release();
  }
}

for (const [from, added] of [[1, 1], [1, 2], [2, 1]] as const) {
  test(`a UNet deepened from ${from} to ${from + added} layers per block computes what the trained one did`, async () => {
    const trained = new UNet2DConditionModel(unetConfig(from));
    const deep = new UNet2DConditionModel(unetConfig(from + added));
    const trainedWeights = randomWeights(trained, 1);
    const shapes = new Map(deep.namedParameters());
    const grown = deepenUNetParams(trainedWeights, shapes, from + added, added);
    // What the deepening leaves out (the new layers' other weights) starts random, as in training.
    const fresh = randomWeights(deep, 2);
    const weights = new Map([...shapes].map(([k]) => [k, grown.get(k) ?? fresh.get(k)!]));
    for (const [k, t] of grown) assert.deepEqual(t.shape, shapes.get(k), k);

    const before = await runUnet(trained, trainedWeights);
    const after = await runUnet(deep, weights);
    const scale = before.data.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
    const diff = before.data.reduce((m, v, i) => Math.max(m, Math.abs(v - after.data[i]!)), 0);
    assert.ok(scale > 0.1, `the trained UNet's output is not trivial (max |eps| ${scale})`);
    assert.ok(diff < 1e-4 * scale, `deepened UNet differs by ${diff} (max |eps| ${scale})`);

    // The same trained layers in the same places, the added layers left random: the output changes,
    // so the check above rests on the identity initialisation.
    const plain = new Map([...shapes].map(([k]) => [k, isAddedLayerKey(k, from, added) ? fresh.get(k)! : grown.get(k)!]));
    const other = await runUnet(deep, plain);
    assert.ok(other.data.some((v, i) => Math.abs(v - before.data[i]!) > 1e-2 * scale));
  });
}

test('deepening refuses a checkpoint that already has the layers it would add', () => {
  const deep = new UNet2DConditionModel(unetConfig(2));
  assert.throws(() => deepenUNetParams(randomWeights(deep, 1), new Map(deep.namedParameters()), 2, 1), /already has 'down_blocks\.0\.resnets\.1\..*layers_per_block 1/);
});

test('init.unetLayersAdded needs init.from and room in layers_per_block', () => {
  const base = {
    model: { unet: { layers_per_block: 2 } }, init: { unetLayersAdded: 1 }, data: { train: '.', holdout: 1 }, steps: 1, out: 'out',
  };
  assert.throws(() => parseTrainConfig(base, '/tmp/x.json'), /init\.unetLayersAdded.*give init\.from/);
  assert.throws(() => parseTrainConfig({ ...base, init: { from: '.', unetLayersAdded: 2 } }, '/tmp/x.json'), /init\.unetLayersAdded.*above 2, found 2/);
});
