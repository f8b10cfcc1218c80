/**
 * `osdface restore` on whole photos (the default mode), `osdface detect` / `degrade` / `eval`
 * through the main command, and `model.restorePhoto` against the CLI. Tiny model converted from
 * parity-a (process size 64); photos from ../shared/data/whole, read (and downscaled into a
 * temporary folder) at test time.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync, type SpawnSyncReturns } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { OSDFace } from '../src/index.js';
import { decodeImage } from '../src/image/io.js';
import { convertParityA, noFixtures, repoRoot, shared } from './helpers.js';

const cli = path.join(repoRoot, 'dist/src/cli/main.js');
const whole = path.join(shared, 'data/whole');
/** 248 x 189, four faces (eye distances about 20 px) and a hand the detector takes for a face (4.7 px). */
const GROUP = 'codeformer_01.jpg';
/** 726 x 838, two large faces: downscaled to 363 x 419 here, with an alpha ramp added. */
const PORTRAIT = 'codeformer_06.png';
const skip = noFixtures || ([GROUP, PORTRAIT].every((f) => fs.existsSync(path.join(whole, f))) ? false : `photos not found in ${whole}`);

let work = '';
let modelDir = '';
let inputs = '';

interface Entry {
  input: string;
  output: string | null;
  status: 'ok' | 'unchanged' | 'failed' | 'skipped';
  faces?: number;
  detected?: number;
  notices?: string[];
  compare?: string;
  error?: string;
}
interface Summary {
  mode: 'photo' | 'aligned';
  images: Entry[];
  ok: number;
  unchanged: number;
  failed: number;
  skipped: number;
}

function osdface(...args: string[]): SpawnSyncReturns<string> {
  return spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8', cwd: work || undefined });
}

/** Raw RGB (and alpha) of an image file as sharp decodes it, EXIF applied. */
async function pixels(file: string): Promise<{ rgb: Buffer; alpha: Buffer | null; width: number; height: number }> {
  const img = sharp(file).rotate();
  const meta = await sharp(file).metadata();
  const { data, info } = await img.clone().removeAlpha().toColourspace('srgb').raw().toBuffer({ resolveWithObject: true });
  const alpha = meta.hasAlpha ? await sharp(file).extractChannel(3).raw().toBuffer() : null;
  return { rgb: data, alpha, width: info.width, height: info.height };
}

before(async () => {
  if (skip) return;
  work = fs.mkdtempSync(path.join(os.tmpdir(), 'osdface-cli-photo-'));
  modelDir = path.join(work, 'model');
  await convertParityA(modelDir);
  inputs = path.join(work, 'in');
  fs.mkdirSync(inputs);
  fs.copyFileSync(path.join(whole, GROUP), path.join(inputs, 'group.jpg'));
  // the portrait at half size, with an alpha ramp (0 at the left edge, 255 at the right)
  const { data } = await sharp(path.join(whole, PORTRAIT)).resize(363, 419).removeAlpha().raw().toBuffer({ resolveWithObject: true });
  const rgba = Buffer.alloc(363 * 419 * 4);
  for (let i = 0; i < 363 * 419; i++) {
    data.copy(rgba, 4 * i, 3 * i, 3 * i + 3);
    rgba[4 * i + 3] = Math.round(((i % 363) * 255) / 362);
  }
  await sharp(rgba, { raw: { width: 363, height: 419, channels: 4 } }).png().toFile(path.join(inputs, 'portrait.png'));
  // no face: an 8-bit RGB gradient, a 16-bit grey one, and a JPEG with EXIF orientation 6
  const grey = Buffer.alloc(160 * 120);
  const rgb = Buffer.alloc(160 * 120 * 3);
  for (let y = 0; y < 120; y++) {
    for (let x = 0; x < 160; x++) {
      grey[y * 160 + x] = Math.round(((x + y) * 255) / 278);
      rgb.set([Math.round((x * 255) / 159), Math.round((y * 255) / 119), 128], 3 * (y * 160 + x));
    }
  }
  await sharp(rgb, { raw: { width: 160, height: 120, channels: 3 } }).png().toFile(path.join(inputs, 'gradient.png'));
  await sharp(grey, { raw: { width: 160, height: 120, channels: 1 } }).toColourspace('grey16').png().toFile(path.join(inputs, 'grey16.png'));
  await sharp(grey, { raw: { width: 160, height: 120, channels: 1 } }).jpeg().withMetadata({ orientation: 6 }).toFile(path.join(inputs, 'rotated.jpg'));
});

after(() => {
  if (work) fs.rmSync(work, { recursive: true, force: true });
});

test('usage: detect / degrade / eval are commands; photo-only flags, --size and --bg-upsampler are checked', { skip }, () => {
  const help = osdface('--help');
  assert.equal(help.status, 0);
  for (const c of ['restore', 'detect', 'convert', 'degrade', 'eval', 'parity', 'train']) assert.match(help.stdout, new RegExp(`osdface ${c} `));
  assert.match(osdface('help', 'detect').stdout, /usage: osdface detect <file \| folder \| glob>/);
  assert.match(osdface('degrade', '--help').stdout, /usage: osdface degrade/);
  assert.match(osdface('eval', '--help').stdout, /usage: osdface eval/);
  const restoreHelp = osdface('restore', '--help').stdout;
  for (const flag of ['--aligned', '--upscale 1|2|4', '--bg-upsampler lanczos|esrgan|none', '--only-center-face', '--max-faces', '--min-eye-distance', '--save-faces', '--compare']) {
    assert.ok(restoreHelp.includes(flag), `restore --help mentions ${flag}`);
  }
  assert.match(restoreHelp, /@upscalerjs\/esrgan-slim/);

  const photo = path.join(inputs, 'group.jpg');
  const out = path.join(work, 'unused');
  const other = osdface('restore', photo, '-o', out, '--model', modelDir, '--bg-upsampler', 'bicubic');
  assert.equal(other.status, 2);
  assert.match(other.stderr, /--bg-upsampler must be one of lanczos, esrgan, none, got 'bicubic'/);
  const three = osdface('restore', photo, '-o', out, '--model', modelDir, '--upscale', '3');
  assert.equal(three.status, 2);
  assert.match(three.stderr, /--upscale must be one of 1, 2, 4, got '3'/);
  const alignedFaces = osdface('restore', photo, '-o', out, '--model', modelDir, '--aligned', '--save-faces');
  assert.equal(alignedFaces.status, 2);
  assert.match(alignedFaces.stderr, /--save-faces applies to whole photos, not to --aligned face crops/);
  const size = osdface('restore', photo, '-o', out, '--model', modelDir, '--size', '96');
  assert.equal(size.status, 2);
  assert.match(size.stderr, /--size applies to --aligned face crops/);
  assert.equal(fs.existsSync(out), false, 'nothing was written');
});

test('a multi-face photo: as many faces restored as detect finds, output x2, --save-faces and --compare written', { skip }, async () => {
  const photo = path.join(inputs, 'group.jpg');
  // face-api's SSD (not the default RetinaFace, which finds only the four faces) also takes a hand
  // for a face here: this test uses it for a detection under the eye-distance bound
  const det = osdface('detect', photo, '--json', '--detector', 'ssd');
  assert.equal(det.status, 0, det.stderr);
  const [found] = JSON.parse(det.stdout) as { faces: { landmarks: [number, number][] }[] }[];
  const eye = (f: { landmarks: [number, number][] }) => Math.hypot(f.landmarks[0]![0] - f.landmarks[1]![0], f.landmarks[0]![1] - f.landmarks[1]![1]);
  const large = found!.faces.filter((f) => eye(f) >= 10).length;
  assert.equal(found!.faces.length, 5, 'four faces and the hand');
  assert.equal(large, 4);

  const out = path.join(work, 'out-group');
  const r = osdface('restore', photo, '-o', out, '--model', modelDir, '--detector', 'ssd', '--upscale', '2', '--min-eye-distance', '10', '--save-faces', '--compare', '--json', '--threads', '2');
  assert.equal(r.status, 0, r.stderr);
  const summary = JSON.parse(r.stdout) as Summary;
  assert.equal(summary.mode, 'photo');
  const e = summary.images[0]!;
  assert.equal(e.status, 'ok');
  assert.equal(e.faces, large, 'every detected face above the eye-distance bound is restored');
  assert.equal(e.detected, found!.faces.length);
  assert.equal(e.notices!.length, 1);
  assert.match(e.notices![0]!, /face 4 left as it is: eye distance 4\.7 px < 10 px/);
  assert.match(r.stderr, /4 of 5 faces restored/);
  assert.match(r.stderr, /note: .*group\.jpg: face 4 left as it is/);

  const meta = await sharp(e.output!).metadata();
  assert.deepEqual([meta.width, meta.height], [2 * 248, 2 * 189]);
  const faces = fs.readdirSync(path.join(out, 'faces')).sort();
  assert.deepEqual(faces, [0, 1, 2, 3].flatMap((k) => [`group_${k}_lq.png`, `group_${k}_restored.png`]));
  for (const f of faces) {
    const m = await sharp(path.join(out, 'faces', f)).metadata();
    assert.deepEqual([m.width, m.height], [64, 64], `${f}: aligned at the model's process size`);
  }
  assert.equal(e.compare, path.join(out, 'group_compare.png'));
  const cmp = await pixels(e.compare!);
  assert.deepEqual([cmp.width, cmp.height], [2 * 496, 378], 'input | output, the input resized to the output height');
  const res = await pixels(e.output!);
  for (const y of [0, 100, 377]) {
    const row = cmp.rgb.subarray(3 * (y * 992 + 496), 3 * (y * 992 + 992));
    assert.ok(row.equals(res.rgb.subarray(3 * y * 496, 3 * (y + 1) * 496)), `row ${y}: the right half is the output`);
  }
});

test('no face (RGB, 16-bit grey, EXIF-rotated): written unchanged with a notice; RGBA photo: alpha kept, --max-faces; API pixels equal', { skip }, async () => {
  const out = path.join(work, 'out-mixed');
  const names = ['gradient.png', 'grey16.png', 'portrait.png', 'rotated.jpg'];
  const r = osdface('restore', ...names.map((n) => path.join(inputs, n)), '-o', out, '--model', modelDir, '--max-faces', '1', '--json', '--threads', '2');
  assert.equal(r.status, 0, r.stderr);
  const summary = JSON.parse(r.stdout) as Summary;
  // A photo in which no face is restored is 'unchanged', not 'ok'.
  assert.deepEqual([summary.ok, summary.unchanged, summary.failed], [1, 3, 0]);
  assert.match(r.stderr, /1 restored \(1 face\), 3 unchanged/);
  const by = new Map(summary.images.map((i) => [path.basename(i.input), i]));

  for (const n of ['gradient.png', 'grey16.png', 'rotated.jpg']) {
    const e = by.get(n)!;
    assert.equal(e.faces, 0, n);
    assert.equal(e.status, 'unchanged', n);
    assert.equal(e.detected, 0, n);
    assert.equal(e.notices!.length, 1, n);
    assert.match(e.notices![0]!, /no face found: the image is returned unchanged/);
    assert.match(r.stderr, new RegExp(`note: .*${n.replace('.', '\\.')}: no face found`));
    const src = await decodeImage(path.join(inputs, n));
    const dst = await pixels(e.output!);
    assert.deepEqual([dst.width, dst.height], [src.width, src.height], n);
    assert.ok(dst.rgb.equals(Buffer.from(src.data)), `${n}: pixels unchanged`);
  }
  assert.deepEqual([(await decodeImage(path.join(inputs, 'rotated.jpg'))).width, (await pixels(by.get('rotated.jpg')!.output!)).height], [120, 160], 'EXIF orientation applied');

  const p = by.get('portrait.png')!;
  assert.deepEqual([p.faces, p.detected], [1, 2]);
  assert.match(p.notices!.join('\n'), /1 face over the limit of 1 \(--max-faces \/ maxFaces\) left as it is/);
  const cliOut = await pixels(p.output!);
  const input = await pixels(path.join(inputs, 'portrait.png'));
  assert.deepEqual([cliOut.width, cliOut.height], [363, 419]);
  assert.ok(cliOut.alpha && cliOut.alpha.equals(input.alpha!), 'the alpha channel is kept as it was');
  let changed = 0;
  for (let i = 0; i < cliOut.rgb.length; i++) if (cliOut.rgb[i] !== input.rgb[i]) changed++;
  assert.ok(changed > 1000 && changed < cliOut.rgb.length / 2, `${changed} bytes changed: one face, not the whole photo`);

  const model = await OSDFace.load(modelDir, { threads: 2 });
  try {
    const api = await model.restorePhoto(path.join(inputs, 'portrait.png'), { maxFaces: 1 });
    assert.deepEqual([api.image.width, api.image.height], [363, 419]);
    assert.deepEqual(api.faces.map((f) => f.status).sort(), ['over-max-faces', 'restored']);
    assert.ok(Buffer.from(api.image.data).equals(cliOut.rgb), 'CLI and API pixels are identical');
    assert.ok(Buffer.from(api.image.alpha!).equals(cliOut.alpha), 'and so is the alpha channel');
    const none = await model.restorePhoto(path.join(inputs, 'gradient.png'), { upscale: 2, background: 'none' });
    assert.deepEqual([none.image.width, none.image.height, none.faces.length], [320, 240, 0]);
    assert.match(none.notices[0]!, /no face found: the image is returned upscaled x2 only/);
    await assert.rejects(model.restorePhoto(path.join(inputs, 'gradient.png'), { seed: 3 }), /seed is only used with latent: 'sample'/);
    await assert.rejects(model.restorePhoto(path.join(inputs, 'gradient.png'), { batch: 0 }), /batch must be a positive integer/);
  } finally {
    await model.dispose();
  }
  await assert.rejects(model.restorePhoto(path.join(inputs, 'gradient.png')), /was disposed/);
});

test("API restorePhoto: latent 'sample' with a seed gives face k seed + k, whatever the batch; faces can be given", { skip }, async () => {
  const model = await OSDFace.load(modelDir, { threads: 2 });
  try {
    const file = path.join(inputs, 'portrait.png');
    const one = await model.restorePhoto(file, { latent: 'sample', seed: 5, batch: 1, saveFaces: true });
    const two = await model.restorePhoto(file, { latent: 'sample', seed: 5, batch: 2 });
    assert.equal(one.seed, 5);
    assert.deepEqual(one.faces.map((f) => f.status), ['restored', 'restored']);
    assert.ok(Buffer.from(one.image.data).equals(Buffer.from(two.image.data)), 'batching does not change the pixels');
    // face 1 alone, given by its landmarks, with seed 6: the same restored crop as above
    const f1 = one.faces[1]!;
    const alone = await model.restorePhoto(file, { latent: 'sample', seed: 6, faces: [{ landmarks: f1.landmarks }], saveFaces: true });
    assert.ok(Buffer.from(alone.faces[0]!.restoredCrop!.data).equals(Buffer.from(f1.restoredCrop!.data)), 'the k-th restored face uses seed + k');
    const mode = await model.restorePhoto(file, { faces: [{ landmarks: f1.landmarks }], saveFaces: true });
    assert.ok(!Buffer.from(mode.faces[0]!.restoredCrop!.data).equals(Buffer.from(f1.restoredCrop!.data)), 'the mode path differs');
    assert.equal(mode.seed, undefined);
  } finally {
    await model.dispose();
  }
});

test('--upscale 2 --bg-upsampler esrgan on a photo without a face: an image of twice the size, close to lanczos', { skip }, async () => {
  const out = path.join(work, 'esrgan');
  const r = osdface('restore', path.join(inputs, 'gradient.png'), '-o', out, '--model', modelDir, '--upscale', '2', '--bg-upsampler', 'esrgan', '--threads', '2', '--json');
  assert.equal(r.status, 0, r.stderr);
  const summary = JSON.parse(r.stdout) as Summary;
  assert.equal(summary.unchanged, 1, 'no face: upscaled only');
  const e = summary.images[0]!;
  assert.match(e.notices![0]!, /no face found: the image is returned upscaled x2 only/);
  const img = await pixels(e.output!);
  assert.deepEqual([img.width, img.height], [320, 240]);
  // a smooth gradient: the network's x2 stays near lanczos (mean absolute difference, 0..255)
  const lanczos = await sharp(path.join(inputs, 'gradient.png')).resize(320, 240, { kernel: 'lanczos3', fit: 'fill' }).raw().toBuffer();
  let sum = 0;
  for (let i = 0; i < lanczos.length; i++) sum += Math.abs(lanczos[i]! - img.rgb[i]!);
  assert.ok(sum / lanczos.length < 8, `mean |esrgan - lanczos| ${(sum / lanczos.length).toFixed(2)}`);
});
