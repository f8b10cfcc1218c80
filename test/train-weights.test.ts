/**
 * weightsFromCheckpoints: averaging a run's last checkpoints, and the weighted blend of two stages
 * that `npm run train:default` exports (a parameter only one stage has, such as a GAN stage's
 * discriminator, drops out).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { tempDir } from './helpers.js';
import { weightsFromCheckpoints } from '../src/train/trainer.js';
import { SafetensorsFile, writeSafetensors } from '../src/weights/safetensors.js';
import { floatTensor, type Tensor } from '../src/tensor.js';

function saved(file: string, step: number, params: Record<string, number[]>): string {
  const tensors = new Map<string, Tensor>(Object.entries(params).map(([k, v]) => [`param/${k}`, floatTensor([v.length], Float32Array.from(v))]));
  tensors.set('adam_m/unet.w', floatTensor([2], Float32Array.of(9, 9)));
  writeSafetensors(file, tensors, { step: String(step), config: `config-${step}` });
  return file;
}

function read(file: string): { meta: Record<string, string>; params: Record<string, number[]> } {
  const f = SafetensorsFile.open(file);
  try {
    return { meta: f.metadata, params: Object.fromEntries(f.keys().map((k) => [k, [...(f.read(k).data as Float32Array)]])) };
  } finally {
    f.close();
  }
}

test('the average of checkpoints keeps their parameters only, with the last one\'s step and config', (t) => {
  const dir = tempDir(t);
  const files = [1, 2, 3].map((s) => saved(path.join(dir, `step-${s}.safetensors`), s * 50, { 'unet.w': [s, -s], 'unet.b': [2 * s, 0] }));
  weightsFromCheckpoints(files, path.join(dir, 'avg.safetensors'), false);
  const { meta, params } = read(path.join(dir, 'avg.safetensors'));
  assert.deepEqual(params, { 'param/unet.w': [2, -2], 'param/unet.b': [4, 0] });
  assert.equal(meta['step'], '150');
  assert.equal(meta['config'], 'config-150');
});

test('a weighted blend of two stages drops what only one of them has', (t) => {
  const dir = tempDir(t);
  const a = saved(path.join(dir, 'stage2.safetensors'), 494, { 'unet.w': [1, 2] });
  const b = saved(path.join(dir, 'stage3.safetensors'), 500, { 'unet.w': [3, 6], 'discriminator.conv.weight': [5, 5] });
  weightsFromCheckpoints([a, b], path.join(dir, 'blend.safetensors'), false, [0.75, 0.25]);
  const { meta, params } = read(path.join(dir, 'blend.safetensors'));
  assert.deepEqual(params, { 'param/unet.w': [1.5, 3] });
  assert.equal(meta['step'], '500');
  assert.throws(() => weightsFromCheckpoints([a, b], path.join(dir, 'x.safetensors'), false, [1]), /1 mixing weights for 2 files/);
});
