/**
 * The fidelity knob (src/pipeline/fidelity.ts) on a tiny model converted from parity-a (process
 * size 64): 0 is the model as trained, 1 gives the input back, and closeness to the input rises
 * with w in between; bad values are refused by the API and the CLI.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { OSDFace } from '../src/index.js';
import type { RgbImage } from '../src/image/io.js';
import { psnr } from '../src/metrics/index.js';
import { convertParityA, noFixtures, realLq, repoRoot } from './helpers.js';

const skip = noFixtures || (fs.existsSync(realLq) ? false : `face images not found at ${realLq}`);
const cli = path.join(repoRoot, 'dist/src/cli/main.js');

let work = '';
let modelDir = '';
let model: OSDFace;
/** Two real degraded faces at the tiny model's process size, so the input is what the network sees. */
let faces: RgbImage[] = [];

before(async () => {
  if (skip) return;
  work = fs.mkdtempSync(path.join(os.tmpdir(), 'osdface-fidelity-'));
  modelDir = path.join(work, 'model');
  await convertParityA(modelDir);
  model = await OSDFace.load(modelDir, { threads: 2 });
  const files = fs.readdirSync(realLq).filter((f) => f.endsWith('.png')).sort().slice(0, 2);
  faces = await Promise.all(files.map(async (f) => {
    const data = await sharp(path.join(realLq, f)).resize(64, 64).removeAlpha().raw().toBuffer();
    return { data: new Uint8Array(data), width: 64, height: 64, channels: 3 as const };
  }));
});

after(async () => {
  await model?.dispose();
  if (work) fs.rmSync(work, { recursive: true, force: true });
});

test('fidelity 0 gives the same bytes as no knob at all', { skip }, async () => {
  for (const face of faces) {
    const plain = await model.restore(face);
    const zero = await model.restore(face, { fidelity: 0 });
    assert.deepEqual(Buffer.from(zero.data), Buffer.from(plain.data));
  }
});

test('fidelity 1 gives the input back, and closeness to the input rises with w', { skip }, async () => {
  for (const face of faces) {
    const scores: number[] = [];
    for (const w of [0, 0.25, 0.5, 0.75, 1]) scores.push(psnr(await model.restore(face, { fidelity: w }), face));
    for (let i = 1; i < scores.length; i++) assert.ok(scores[i]! > scores[i - 1]!, `PSNR against the input falls from w=${(i - 1) / 4} to w=${i / 4}: ${scores.map((s) => s.toFixed(2)).join(', ')}`);
    const one = await model.restore(face, { fidelity: 1 });
    const worst = one.data.reduce((m, v, i) => Math.max(m, Math.abs(v - face.data[i]!)), 0);
    assert.ok(worst <= 1, `w=1 differs from the input by up to ${worst}/255`);
  }
});

test('a fidelity outside [0, 1] is refused, by the API and by the CLI', { skip }, async () => {
  await assert.rejects(model.restore(faces[0]!, { fidelity: 1.5 }), /fidelity must be a number in \[0, 1\]/);
  await assert.rejects(model.restorePhoto(faces[0]!, { fidelity: -0.1 }), /OSDFace.restorePhoto: fidelity must be/);
  const r = spawnSync(process.execPath, [cli, 'restore', path.join(realLq, 'x.png'), '-o', path.join(work, 'out'), '--model', modelDir, '--fidelity', '2'], { encoding: 'utf8' });
  assert.equal(r.status, 2, r.stderr);
  assert.match(r.stderr, /--fidelity must be a number from 0 \(the model as trained\) to 1 \(closest to the input\), got 2/);
});
