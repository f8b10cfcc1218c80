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
import { floatTensor, type FloatTensor } from '../src/tensor.js';
import { meanWithMirrored, mirrored } from '../src/pipeline/mirror_ensemble.js';
import { keepInputLowFrequency } from '../src/pipeline/input_low_frequency.js';
import { loadModelDir } from '../src/pipeline/model.js';
import { ModelDirError } from '../src/pipeline/manifest.js';
import { convertParityA, noFixtures, realFace, realLq, withManifestSettings } from './helpers.js';

test('mirrored reverses every row of every channel, and twice gives the image back', () => {
  const x = floatTensor([2, 3, 4, 5], Float32Array.from({ length: 120 }, (_, i) => i));
  const m = mirrored(x);
  for (let row = 0; row < 24; row++) for (let i = 0; i < 5; i++) assert.equal(m.data[row * 5 + i], x.data[row * 5 + 4 - i]);
  assert.deepEqual(mirrored(m).data, x.data);
  // The mean with a restoration of the mirrored input, mirrored back: the same picture twice gives it unchanged.
  assert.deepEqual(meanWithMirrored(x, m).data, x.data);
});

const skip = noFixtures || (fs.existsSync(realLq) ? false : `face images not found at ${realLq}`);
let work = '';
let plainDir = '';
const withSettings = (name: string, settings: Record<string, unknown>): string => withManifestSettings(plainDir, path.join(work, name), settings);
let face: FloatTensor;

before(async () => {
  if (skip) return;
  work = fs.mkdtempSync(path.join(os.tmpdir(), 'osdface-mirror-'));
  plainDir = path.join(work, 'plain');
  await convertParityA(plainDir);
  ({ face } = await realFace());
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

test('a mirrorEnsemble in manifest.json that is not true or false names the field and how to repair it', { skip }, async () => {
  const bad = withSettings('bad', { mirrorEnsemble: 'yes' });
  await assert.rejects(loadModelDir(bad), (e: unknown) => e instanceof ModelDirError && /mirrorEnsemble must be true or false, got "yes"/.test(e.message) && /reinstall or export the model again/.test(e.message));
});
