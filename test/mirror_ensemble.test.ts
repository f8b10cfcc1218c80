/**
 * The mirror ensemble (src/pipeline/mirror_ensemble.ts): a model directory whose manifest asks for
 * it restores every face as it is and mirrored, and returns the mean (the tiny model converted from
 * parity-a, process size 64).
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { floatTensor, type FloatTensor } from '../src/tensor.js';
import { meanWithMirrored, mirrored } from '../src/pipeline/mirror_ensemble.js';
import { keepInputLowFrequency } from '../src/pipeline/input_low_frequency.js';
import { loadModelDir } from '../src/pipeline/model.js';
import { ModelDirError } from '../src/pipeline/manifest.js';
import { OSDFace } from '../src/index.js';
import type { RgbImage } from '../src/image/io.js';
import { toSquareTensor } from '../src/image/pixels.js';
import { convertParityA, noFixtures, shared } from './helpers.js';

test('mirrored reverses every row of every channel, and twice gives the image back', () => {
  const x = floatTensor([2, 3, 4, 5], Float32Array.from({ length: 120 }, (_, i) => i));
  const m = mirrored(x);
  for (let row = 0; row < 24; row++) for (let i = 0; i < 5; i++) assert.equal(m.data[row * 5 + i], x.data[row * 5 + 4 - i]);
  assert.deepEqual(mirrored(m).data, x.data);
  // The mean with a restoration of the mirrored input, mirrored back: the same picture twice gives it unchanged.
  assert.deepEqual(meanWithMirrored(x, m).data, x.data);
});

const realLq = path.join(shared, 'data/real-lq');
const skip = noFixtures || (fs.existsSync(realLq) ? false : `face images not found at ${realLq}`);
let work = '';
let plainDir = '';
const withSettings = (name: string, settings: Record<string, unknown>): string => {
  const dir = path.join(work, name);
  fs.cpSync(plainDir, dir, { recursive: true });
  const manifestFile = path.join(dir, 'manifest.json');
  const manifest = JSON.parse(fs.readFileSync(manifestFile, 'utf8'));
  Object.assign(manifest.settings, settings);
  fs.writeFileSync(manifestFile, JSON.stringify(manifest));
  return dir;
};
let rgb: RgbImage;
let face: FloatTensor;

before(async () => {
  if (skip) return;
  work = fs.mkdtempSync(path.join(os.tmpdir(), 'osdface-mirror-'));
  plainDir = path.join(work, 'plain');
  await convertParityA(plainDir);
  const file = path.join(realLq, fs.readdirSync(realLq).filter((f) => f.endsWith('.png')).sort()[0]!);
  const data = await sharp(file).resize(64, 64).removeAlpha().raw().toBuffer();
  rgb = { data: new Uint8Array(data), width: 64, height: 64, channels: 3 };
  face = toSquareTensor(rgb).tensor;
});

after(() => {
  if (work) fs.rmSync(work, { recursive: true, force: true });
});

test('a model directory with the mirror ensemble restores to the mean of the face\'s and its mirror\'s restorations, then keeps the input\'s low frequencies', { skip }, async () => {
  const plain = await loadModelDir(plainDir, { threads: 2 });
  const ensemble = await loadModelDir(withSettings('mirror', { mirrorEnsemble: true }), { threads: 2 });
  const both = await loadModelDir(withSettings('both', { mirrorEnsemble: true, lowFrequencyFromInput: { radius: 6 } }), { threads: 2 });
  try {
    assert.equal(ensemble.pipeline.settings.mirrorEnsemble, true);
    const a = await plain.pipeline.restore(face);
    const m = await plain.pipeline.restore(mirrored(face));
    const b = await ensemble.pipeline.restore(face);
    // The intermediates are the face's own; only the output is the mean.
    assert.deepEqual(b.decoded.data, a.decoded.data);
    assert.deepEqual(b.out.data, meanWithMirrored(a.out, m.out).data);
    // The parity model is not mirror-symmetric, so the ensemble changes its output.
    assert.notDeepEqual(b.out.data, a.out.data);
    const c = await both.pipeline.restore(face);
    assert.deepEqual(c.out.data, keepInputLowFrequency(b.out, a.lqProcessed, { radius: 6 }).data);
  } finally {
    await plain.pipeline.dispose();
    await ensemble.pipeline.dispose();
    await both.pipeline.dispose();
  }
});

test('fidelity 1 still gives the input back with the mirror ensemble', { skip }, async () => {
  const model = await OSDFace.load(withSettings('fidelity', { mirrorEnsemble: true, lowFrequencyFromInput: { radius: 6 } }), { threads: 2 });
  try {
    const one = await model.restore(rgb, { fidelity: 1 });
    const worst = one.data.reduce((m, v, i) => Math.max(m, Math.abs(v - rgb.data[i]!)), 0);
    assert.ok(worst <= 1, `w=1 differs from the input by up to ${worst}/255`);
  } finally {
    await model.dispose();
  }
});

test('a mirrorEnsemble in manifest.json that is not true or false names the field and how to repair it', { skip }, async () => {
  const bad = withSettings('bad', { mirrorEnsemble: 'yes' });
  await assert.rejects(loadModelDir(bad), (e: unknown) => e instanceof ModelDirError && /mirrorEnsemble must be true or false, got "yes"/.test(e.message) && /reinstall or export the model again/.test(e.message));
});
