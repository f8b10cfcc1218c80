/**
 * VAE tiling through the public surfaces: the `vaeTiling` load option of OSDFace and the
 * `osdface restore` flags --vae-tile / --no-vae-tiling, on a tiny model converted from parity-a.
 * Tiling is exact, so tiled and untiled restores agree to 8-bit rounding.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { OSDFace, type RgbImage } from '../src/index.js';
import { convertParityA, noFixtures, repoRoot, shared } from './helpers.js';

const cli = path.join(repoRoot, 'dist/src/cli/main.js');
const face = path.join(shared, 'data/real-lq/codeformer-gray_067_David_Beckham_00.png');
const skip = noFixtures || (fs.existsSync(face) ? false : `face image not found: ${face}`);

let work = '';
let modelDir = '';

before(async () => {
  if (skip) return;
  work = fs.mkdtempSync(path.join(os.tmpdir(), 'osdface-vae-tiling-'));
  modelDir = path.join(work, 'model');
  await convertParityA(modelDir);
});

after(() => {
  if (work) fs.rmSync(work, { recursive: true, force: true });
});

/** Largest difference of two same-size 8-bit images, in levels. */
function maxLevelDiff(a: Uint8Array | Buffer, b: Uint8Array | Buffer): number {
  assert.equal(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

test('vaeTiling load option: tiled restores match untiled ones to 8-bit rounding; bad options are refused', { skip }, async () => {
  // The tiny model restores at 64 x 64: 16-pixel tiles with threshold 0 tile both VAE runs (4 x 4 tiles).
  const tiled = await OSDFace.load(modelDir, { threads: 2, vaeTiling: { tileSize: 16, threshold: 0 } });
  const independent = await OSDFace.load(modelDir, { threads: 2, vaeTiling: { tileSize: 16, threshold: 0, independent: true } });
  const plain = await OSDFace.load(modelDir, { threads: 2, vaeTiling: false });
  const byDefault = await OSDFace.load(modelDir, { threads: 2 });
  try {
    const [t, i, p, d] = [await tiled.restore(face), await independent.restore(face), await plain.restore(face), await byDefault.restore(face)] as RgbImage[];
    assert.ok(maxLevelDiff(t!.data, p!.data) <= 1, `tiled vs untiled: ${maxLevelDiff(t!.data, p!.data)} levels`);
    // 64 x 64 is below statsPixels: independent tiles get the exact statistics too.
    assert.ok(maxLevelDiff(i!.data, p!.data) <= 1, `independent tiles vs untiled: ${maxLevelDiff(i!.data, p!.data)} levels`);
    assert.deepEqual(d!.data, p!.data, 'the default does not tile the process size');
  } finally {
    await Promise.all([tiled.dispose(), independent.dispose(), plain.dispose(), byDefault.dispose()]);
  }
  await assert.rejects(OSDFace.load(modelDir, { vaeTiling: { tileSize: 4 } }), /OSDFace.load: vaeTiling: VAE tile size must be an integer of at least 8/);
  await assert.rejects(OSDFace.load(modelDir, { vaeTiling: { overlap: 32 } }), /overlap applies to independent tiles/);
  await assert.rejects(OSDFace.load(modelDir, { vaeTiling: { blend: 32 } as never }), /unknown VAE tiling option 'blend'/);
  await assert.rejects(OSDFace.load(modelDir, { vaeTiling: { threshold: -1 } }), /threshold must be a non-negative/);
});

test('osdface restore --vae-tile [--vae-independent] / --no-vae-tiling: same pixels to 8-bit rounding; contradictions are usage errors', { skip }, async () => {
  const run = (...args: string[]) => spawnSync(process.execPath, [cli, 'restore', face, '--model', modelDir, '--aligned', '--threads', '2', ...args], { encoding: 'utf8', cwd: work });
  const outs: Record<string, Buffer> = {};
  for (const [name, flags] of [['tiled', ['--vae-tile', '16']], ['independent', ['--vae-tile', '16', '--vae-independent', '--vae-overlap', '64']], ['untiled', ['--no-vae-tiling']]] as const) {
    const out = path.join(work, `cli-${name}`);
    const r = run('-o', out, ...flags);
    assert.equal(r.status, 0, r.stderr);
    outs[name] = await sharp(path.join(out, path.basename(face))).raw().toBuffer();
  }
  assert.ok(maxLevelDiff(outs['tiled']!, outs['untiled']!) <= 1);
  assert.ok(maxLevelDiff(outs['independent']!, outs['untiled']!) <= 1);
  const overlapAlone = run('-o', path.join(work, 'cli-eo'), '--vae-overlap', '8');
  assert.equal(overlapAlone.status, 2);
  assert.match(overlapAlone.stderr, /--vae-overlap applies to independent tiles: add --vae-independent/);
  const both = run('-o', path.join(work, 'cli-both'), '--vae-tile', '16', '--no-vae-tiling');
  assert.equal(both.status, 2);
  assert.match(both.stderr, /--vae-tile and --no-vae-tiling contradict/);
  const small = run('-o', path.join(work, 'cli-small'), '--vae-tile', '4');
  assert.equal(small.status, 2);
  assert.match(small.stderr, /--vae-tile must be at least 8/);
});
