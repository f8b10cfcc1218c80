/**
 * Restored faces that keep the input's low frequencies (src/pipeline/input_low_frequency.ts): the
 * low-pass itself, what it keeps and drops, and a model directory whose manifest asks for it (the
 * tiny model converted from parity-a, process size 64).
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { floatTensor, type FloatTensor } from '../src/tensor.js';
import { keepInputLowFrequency, lowpass } from '../src/pipeline/input_low_frequency.js';
import { loadModelDir } from '../src/pipeline/model.js';
import { ModelDirError } from '../src/pipeline/manifest.js';
import { OSDFace } from '../src/index.js';
import type { RgbImage } from '../src/image/io.js';
import { convertParityA, noFixtures, realFace, realLq, repoRoot, withManifestSettings } from './helpers.js';

const cli = path.join(repoRoot, 'dist/src/cli/main.js');

function plane(h: number, w: number, at: (y: number, x: number) => number): FloatTensor {
  const t = floatTensor([1, 1, h, w]);
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) t.data[y * w + x] = at(y, x);
  return t;
}

test('the low-pass is three box filters: an impulse spreads to weights summing to 1, symmetric, of variance r(r+1) per axis', () => {
  for (const r of [1, 3, 5]) {
    const n = 6 * r + 9;
    const c = (n - 1) / 2;
    const out = lowpass(plane(n, n, (y, x) => (y === c && x === c ? 1 : 0)), r);
    let sum = 0;
    let varY = 0;
    let asymmetry = 0;
    for (let y = 0; y < n; y++) {
      for (let x = 0; x < n; x++) {
        const v = out.data[y * n + x]!;
        sum += v;
        varY += v * (y - c) ** 2;
        asymmetry = Math.max(asymmetry, Math.abs(v - out.data[x * n + y]!), Math.abs(v - out.data[(n - 1 - y) * n + x]!));
      }
    }
    assert.ok(Math.abs(sum - 1) < 1e-5, `r=${r}: weights sum to ${sum}`);
    // A box of width 2r + 1 has variance r(r + 1) / 3; three in a row add up.
    assert.ok(Math.abs(varY - r * (r + 1)) < 1e-3 * r * r, `r=${r}: variance ${varY}, expected ${r * (r + 1)}`);
    assert.ok(asymmetry < 1e-7, `r=${r}: asymmetric by ${asymmetry}`);
  }
});

test('the low-pass leaves a constant image as it is, up to its edges (edges are replicated)', () => {
  const out = lowpass(plane(7, 9, () => 0.3), 4);
  for (const v of out.data) assert.ok(Math.abs(v - 0.3) < 1e-6, String(v));
});

test('the restored image takes the input\'s shading and colour, and keeps its own detail', () => {
  const h = 64;
  const w = 64;
  // The network's output: fine detail (a checkerboard) on a flat grey; the input: no detail, but brighter towards the right.
  const out = floatTensor([1, 3, h, w]);
  const input = floatTensor([1, 3, h, w]);
  for (let c = 0; c < 3; c++) {
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        out.data[(c * h + y) * w + x] = 0.5 + ((x + y) % 2 ? 0.1 : -0.1);
        input.data[(c * h + y) * w + x] = (0.4 + 0.2 * x / (w - 1)) * 2 - 1;
      }
    }
  }
  const kept = keepInputLowFrequency(out, input, { radius: 4 });
  for (const [y, x] of [[30, 30], [31, 30], [20, 45]] as const) {
    const at = (t: FloatTensor) => t.data[y * w + x]!;
    const shading = 0.4 + 0.2 * x / (w - 1);
    // The checkerboard survives (its low-pass is near zero), now on the input's shading.
    assert.ok(Math.abs(at(kept) - (at(out) - 0.5 + shading)) < 0.01, `(${y}, ${x}): ${at(kept)} vs ${at(out) - 0.5 + shading}`);
  }
  // An input equal to the output changes nothing.
  const same = floatTensor(out.shape, out.data.map((v) => v * 2 - 1));
  assert.deepEqual(keepInputLowFrequency(out, same, { radius: 4 }).data, out.data);
});

const skip = noFixtures || (fs.existsSync(realLq) ? false : `face images not found at ${realLq}`);
let work = '';
let plainDir = '';
let keptDir = '';
/** A real degraded face at the tiny model's process size, as pixels and as the pipeline's tensor. */
let rgb: RgbImage;
let face: FloatTensor;

before(async () => {
  if (skip) return;
  work = fs.mkdtempSync(path.join(os.tmpdir(), 'osdface-low-frequency-'));
  plainDir = path.join(work, 'plain');
  await convertParityA(plainDir);
  keptDir = withManifestSettings(plainDir, path.join(work, 'kept'), { lowFrequencyFromInput: { radius: 6 } });
  ({ rgb, face } = await realFace());
});

after(() => {
  if (work) fs.rmSync(work, { recursive: true, force: true });
});

test('a model directory that asks for the input\'s low frequencies restores to exactly the network\'s output with them', { skip }, async () => {
  const plain = await loadModelDir(plainDir, { threads: 2 });
  const kept = await loadModelDir(keptDir, { threads: 2 });
  try {
    assert.deepEqual(kept.pipeline.settings.lowFrequencyFromInput, { radius: 6 });
    const a = await plain.pipeline.restore(face);
    const b = await kept.pipeline.restore(face);
    assert.deepEqual(b.decoded.data, a.decoded.data);
    assert.deepEqual(b.out.data, keepInputLowFrequency(a.out, a.lqProcessed, { radius: 6 }).data);
    assert.notDeepEqual(b.out.data, a.out.data);
  } finally {
    await plain.pipeline.dispose();
    await kept.pipeline.dispose();
  }
});

test('fidelity 1 still gives the input back when the model keeps the input\'s low frequencies, with the mirror ensemble or without', { skip }, async () => {
  const mirroredToo = withManifestSettings(keptDir, path.join(work, 'kept-mirrored'), { mirrorEnsemble: true });
  for (const dir of [keptDir, mirroredToo]) {
    const model = await OSDFace.load(dir, { threads: 2 });
    try {
      const one = await model.restore(rgb, { fidelity: 1 });
      const worst = one.data.reduce((m, v, i) => Math.max(m, Math.abs(v - rgb.data[i]!)), 0);
      assert.ok(worst <= 1, `${path.basename(dir)}: w=1 differs from the input by up to ${worst}/255`);
    } finally {
      await model.dispose();
    }
  }
});

test('a bad lowFrequencyFromInput in manifest.json names the field and how to repair it', { skip }, async () => {
  const bad = withManifestSettings(keptDir, path.join(work, 'bad'), { lowFrequencyFromInput: { radius: 0 } });
  await assert.rejects(loadModelDir(bad), (e: unknown) => e instanceof ModelDirError && /lowFrequencyFromInput must be \{ "radius"/.test(e.message) && /reinstall or export the model again/.test(e.message));
});

test('osdface export refuses a --low-frequency-radius that is not a whole number of pixels', () => {
  for (const r of ['0', '2.5']) {
    const res = spawnSync(process.execPath, [cli, 'export', '--checkpoint', 'nowhere', '-o', path.join(os.tmpdir(), 'never'), '--low-frequency-radius', r], { encoding: 'utf8' });
    assert.equal(res.status, 2, res.stderr);
    assert.match(res.stderr, /--low-frequency-radius must be a whole number of pixels, 1 or more/);
  }
});
