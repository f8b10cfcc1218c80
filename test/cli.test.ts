/**
 * The osdface command end to end (spawned as `node dist/src/cli/main.js ...`), on a tiny model
 * converted from parity-a and face images copied from ../shared/data/real-lq at test time. The
 * restores here are of aligned crops (--aligned); whole photos are in cli-photo.test.ts.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type SpawnSyncReturns } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { OSDFace } from '../src/index.js';
import { PACKAGE_VERSION } from '../src/version.js';
import { convertParityA, noFixtures, parityA, realLq, repoRoot, shared } from './helpers.js';

const cli = path.join(repoRoot, 'dist/src/cli/main.js');
/** A square RGB png, a square RGBA png and a non-square jpg (351 x 365). */
const FACES = ['codeformer-gray_067_David_Beckham_00.png', 'codeformer-gray_Einstein02.png', 'diffbir_hermione.jpg'];
const skip = noFixtures || (FACES.every((f) => fs.existsSync(path.join(realLq, f))) ? false : `face images not found in ${realLq}`);

let work = '';
let modelDir = '';
let faces = '';

before(async () => {
  if (skip) return;
  work = fs.mkdtempSync(path.join(os.tmpdir(), 'osdface-cli-'));
  modelDir = path.join(work, 'model');
  await convertParityA(modelDir);
  faces = path.join(work, 'faces');
  fs.mkdirSync(faces);
  for (const f of FACES) fs.copyFileSync(path.join(realLq, f), path.join(faces, f));
  fs.writeFileSync(path.join(faces, 'broken.png'), Buffer.concat([fs.readFileSync(path.join(realLq, FACES[0]!)).subarray(0, 200)]));
  fs.writeFileSync(path.join(faces, 'notes.txt'), 'not an image: folders expand to image files only');
});

after(() => {
  if (work) fs.rmSync(work, { recursive: true, force: true });
});

function osdface(...args: string[]): SpawnSyncReturns<string> {
  return spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8', cwd: work || undefined });
}

interface Summary {
  model: string;
  mode: 'photo' | 'aligned';
  images: { input: string; output: string | null; status: 'ok' | 'failed' | 'skipped'; seconds?: number; error?: string; seed?: number; faces?: number; notices?: string[] }[];
  ok: number;
  failed: number;
  skipped: number;
}

/** Files and directories directly under `dir` whose name contains `.partial-` (convert's temporary directories). */
function partials(dir: string): string[] {
  return fs.existsSync(dir) ? fs.readdirSync(dir).filter((n) => n.includes('.partial-')) : [];
}

test('--help, --version, unknown flags and commands', { skip }, () => {
  const help = osdface('--help');
  assert.equal(help.status, 0);
  assert.match(help.stdout, /osdface restore <file \| folder \| glob>\.\.\. -o <out dir> \[--model <model dir>\]/);
  assert.equal(osdface('restore', '--help').status, 0);
  assert.match(osdface('convert', '--help').stdout, /--lora-rank <N>/);
  assert.equal(osdface('--version').stdout.trim(), `osdface ${PACKAGE_VERSION}`);
  const unknown = osdface('restore', 'x.png', '-o', 'out', '--model', modelDir, '--sharpen');
  assert.equal(unknown.status, 2);
  assert.match(unknown.stderr, /osdface restore: unknown option --sharpen/);
  assert.equal(unknown.stderr, "osdface restore: unknown option --sharpen\nRun 'osdface restore --help' for its options.\n");
  const badValue = osdface('restore', 'x.png', '-o', 'out', '--model', modelDir, '--latent', 'median');
  assert.equal(badValue.status, 2);
  assert.match(badValue.stderr, /--latent must be one of mode, sample, got 'median'/);
  assert.match(osdface('restore', 'x.png', '-o', 'out', '--model', modelDir, '--seed', '3').stderr, /--seed only applies to --latent sample/);
  const memory = osdface('restore', 'x.png', '-o', 'out', '--model', modelDir, '--low-memory', '--no-low-memory');
  assert.equal(memory.status, 2);
  assert.match(memory.stderr, /--low-memory and --no-low-memory contradict each other/);
  assert.equal(osdface('frobnicate').status, 2);
  const parity = osdface('parity');
  assert.equal(parity.status, 2);
  assert.match(parity.stderr, /osdface parity: no fixture directory given\nRun 'osdface parity --help'/);
});

test('restore: a --model folder without a manifest says how to convert the weights (exit 2)', { skip }, () => {
  const notModel = osdface('restore', faces, '-o', path.join(work, 'unused'), '--model', faces);
  assert.equal(notModel.status, 2);
  assert.match(notModel.stderr, /no manifest\.json: this is not a converted osdface model/);
  assert.match(notModel.stderr, /osdface convert/);
  assert.equal(fs.existsSync(path.join(work, 'unused')), false, 'nothing was written');
});

test('restore a folder: outputs at the inputs\' sizes, alpha kept, the corrupt file reported, exit 1, JSON summary', { skip }, async () => {
  const out = path.join(work, 'out-folder');
  const r = osdface('restore', faces, '-o', out, '--model', modelDir, '--aligned', '--json', '--threads', '2');
  assert.equal(r.status, 1, r.stderr);
  const summary = JSON.parse(r.stdout) as Summary;
  assert.deepEqual([summary.ok, summary.failed, summary.skipped], [3, 1, 0]);
  assert.equal(summary.model, modelDir);
  assert.equal(summary.mode, 'aligned');
  assert.deepEqual(summary.images.map((i) => [path.basename(i.input), i.status]), [
    ['broken.png', 'failed'], ...[...FACES].sort().map((f) => [f, 'ok']),
  ]);
  const broken = summary.images[0]!;
  assert.match(broken.error!, /cannot read image/);
  assert.match(r.stderr, new RegExp(`failed +${path.join(faces, 'broken.png').replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: cannot read image`));
  for (const img of summary.images.filter((i) => i.status === 'ok')) {
    assert.ok(img.seconds! > 0);
    assert.deepEqual([img.faces, img.notices], [1, []], 'an aligned crop is one face');
    assert.equal(path.dirname(img.output!), out);
    const src = await sharp(img.input).metadata();
    const dst = await sharp(img.output!).metadata();
    assert.equal(dst.format, 'png');
    assert.deepEqual([dst.width, dst.height], [src.width, src.height], img.input);
    assert.equal(dst.hasAlpha, src.hasAlpha, `${img.input}: alpha re-attached exactly when the input had one`);
  }
  assert.ok(FACES.some((f) => f.endsWith('.jpg')), 'a non-square jpg is among them');
  assert.deepEqual(fs.readdirSync(out).sort(), FACES.map((f) => f.replace(/\.\w+$/, '.png')).sort(), 'no stray temporary files');
});

test('restore --latent sample --seed: same bytes every run, and the same pixels as the API', { skip }, async () => {
  const file = path.join(faces, FACES[0]!);
  const a = path.join(work, 'seed-a');
  const b = path.join(work, 'seed-b');
  const r1 = osdface('restore', file, '-o', a, '--model', modelDir, '--aligned', '--latent', 'sample', '--seed', '1234');
  assert.equal(r1.status, 0, r1.stderr);
  // The second run names the file through a pattern the shell did not expand.
  const r2 = osdface('restore', path.join(faces, 'codeformer-gray_067_*_00.png'), '-o', b, '--model', modelDir, '--aligned', '--latent', 'sample', '--seed', '1234');
  assert.equal(r2.status, 0, r2.stderr);
  const outName = FACES[0]!;
  const bytesA = fs.readFileSync(path.join(a, outName));
  assert.ok(bytesA.equals(fs.readFileSync(path.join(b, outName))), 'identical output bytes');

  const model = await OSDFace.load(modelDir, { threads: 2 });
  try {
    const api = await model.restore(file, { latent: 'sample', seed: 1234 });
    const cliPixels = await sharp(bytesA).raw().toBuffer();
    assert.equal(cliPixels.length, api.data.length);
    assert.ok(cliPixels.equals(Buffer.from(api.data)), 'CLI and API pixels are identical');
    const mode = await model.restore(file);
    assert.ok(!cliPixels.equals(Buffer.from(mode.data)), 'the sample path differs from the mode path');
  } finally {
    await model.dispose();
  }

  // --skip-existing: nothing is rewritten, the model is not even loaded.
  const before = fs.statSync(path.join(a, outName)).mtimeMs;
  const r3 = osdface('restore', file, '-o', a, '--model', modelDir, '--aligned', '--latent', 'sample', '--seed', '1234', '--skip-existing', '--json');
  assert.equal(r3.status, 0, r3.stderr);
  const summary = JSON.parse(r3.stdout) as Summary;
  assert.deepEqual([summary.ok, summary.failed, summary.skipped], [0, 0, 1]);
  assert.equal(summary.images[0]!.status, 'skipped');
  assert.match(r3.stderr, /skipped/);
  assert.equal(fs.statSync(path.join(a, outName)).mtimeMs, before);
});

test('restore --size, --format webp (alpha kept), missing files and patterns that match nothing', { skip }, async () => {
  const out = path.join(work, 'out-webp');
  // A 400 x 300 face crop whose alpha fades from 0 (left) to 255 (right).
  const rgba = path.join(work, 'faded.png');
  const { data, info } = await sharp(path.join(faces, FACES[0]!)).extract({ left: 50, top: 100, width: 400, height: 300 }).removeAlpha().raw().toBuffer({ resolveWithObject: true });
  const pixels = Buffer.alloc(400 * 300 * 4);
  for (let i = 0; i < 400 * 300; i++) {
    data.copy(pixels, 4 * i, 3 * i, 3 * i + 3);
    pixels[4 * i + 3] = Math.round(((i % 400) * 255) / 399);
  }
  assert.equal(info.channels, 3);
  await sharp(pixels, { raw: { width: 400, height: 300, channels: 4 } }).png().toFile(rgba);
  const r = osdface('restore', rgba, path.join(work, 'nope.png'), path.join(work, 'nothing-*.png'), '-o', out, '--model', modelDir, '--aligned', '--size', '96', '--format', 'webp', '--json');
  assert.equal(r.status, 1, r.stderr);
  const summary = JSON.parse(r.stdout) as Summary;
  assert.deepEqual(summary.images.map((i) => [i.status, i.error ?? null]), [
    ['ok', null], ['failed', 'file does not exist'], ['failed', 'no files match this pattern'],
  ]);
  const webp = sharp(path.join(out, 'faded.webp'));
  const meta = await webp.metadata();
  assert.deepEqual([meta.format, meta.width, meta.height, meta.hasAlpha], ['webp', 96, 72, true]);
  const alpha = await webp.extractChannel(3).raw().toBuffer();
  const row = 36 * 96;
  assert.ok(alpha[row + 1]! < 16 && alpha[row + 94]! > 239, `alpha fades left to right: ${alpha[row + 1]} .. ${alpha[row + 94]}`);
});

test('convert: writes a model directory, prints it and a summary; refuses an existing directory without --force', { skip }, () => {
  const out = path.join(work, 'converted');
  const r = osdface('convert', '--sd', path.join(parityA, 'sd'), '--osdface', path.join(parityA, 'osdface'), '-o', out);
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout.split('\n')[0], out);
  assert.match(r.stdout, /fp32 model, process size 64, timestep 399, LoRA rank 4 alpha 8 merged into 166 modules/);
  assert.match(r.stderr, /\[\d+\/\d+\] writing unet\.onnx/);
  assert.ok(fs.existsSync(path.join(out, 'manifest.json')));

  const existing = path.join(work, 'existing');
  fs.mkdirSync(existing);
  fs.writeFileSync(path.join(existing, 'keep.txt'), 'mine');
  const again = osdface('convert', '--sd', path.join(parityA, 'sd'), '--osdface', path.join(parityA, 'osdface'), '-o', existing);
  assert.equal(again.status, 1);
  assert.match(again.stderr, /already exists; choose another output directory or pass --force/);
  assert.deepEqual(fs.readdirSync(existing), ['keep.txt']);
  assert.equal(fs.readFileSync(path.join(existing, 'keep.txt'), 'utf8'), 'mine');
  assert.deepEqual(partials(work), []);

  const usage = osdface('convert', '--sd', path.join(parityA, 'sd'), '-o', out);
  assert.equal(usage.status, 2);
  assert.match(usage.stderr, /--osdface <dir> is required/);
});

test('convert: a failure midway (a bad VAE tensor, read after 5 graphs are written) leaves nothing loadable and no temp dir', { skip }, async () => {
  // A copy of sd/ whose VAE decoder.conv_out.bias claims to be int32: the header is valid, the
  // tensor fails only when the decoder graph is written, after the other graphs.
  const sd = path.join(work, 'sd-bad-vae');
  fs.cpSync(path.join(parityA, 'sd'), sd, { recursive: true });
  const vae = path.join(sd, 'vae/diffusion_pytorch_model.safetensors');
  fs.chmodSync(path.dirname(vae), 0o755);
  fs.chmodSync(vae, 0o644);
  const bytes = fs.readFileSync(vae);
  const headerLength = Number(bytes.readBigUInt64LE(0));
  const header = bytes.subarray(8, 8 + headerLength).toString('utf8');
  const edited = header.replace(/("decoder\.conv_out\.bias":\{"dtype":")F32/, '$1I32');
  assert.notEqual(edited, header);
  bytes.write(edited, 8, 'utf8');
  fs.writeFileSync(vae, bytes);

  const parent = path.join(work, 'failed-convert');
  const out = path.join(parent, 'model');
  const r = osdface('convert', '--sd', sd, '--osdface', path.join(parityA, 'osdface'), '-o', out);
  assert.equal(r.status, 1, r.stderr);
  assert.match(r.stderr, /writing vae_decoder\.onnx/);
  assert.match(r.stderr, /failed: .*diffusion_pytorch_model\.safetensors: tensor 'decoder\.conv_out\.bias' is int32/);
  assert.equal(fs.existsSync(out), false);
  await assert.rejects(OSDFace.load(out), /model directory does not exist/);
  assert.deepEqual(fs.existsSync(parent) ? fs.readdirSync(parent) : [], [], 'no stray temporary directory');
});

test('convert: SIGTERM while the graphs are written stops it, removes the partial output, exit 143', { skip }, async () => {
  const parent = path.join(work, 'killed-convert');
  const out = path.join(parent, 'model');
  const child = spawn(process.execPath, [cli, 'convert', '--sd', path.join(parityA, 'sd'), '--osdface', path.join(parityA, 'osdface'), '-o', out]);
  let stderr = '';
  let sawPartial = false;
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (d: string) => {
    stderr += d;
    if (/writing vre\.onnx/.test(stderr) && child.exitCode === null && !child.killed) {
      sawPartial = partials(parent).length === 1;
      child.kill('SIGTERM');
    }
  });
  const code = await new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)));
  assert.ok(sawPartial, 'the temporary directory existed when the signal was sent');
  assert.equal(code, 143, stderr);
  assert.match(stderr, /SIGTERM: stopping the conversion/);
  assert.match(stderr, /removed the partial output .*\.model\.partial-/);
  assert.equal(fs.existsSync(out), false);
  await assert.rejects(OSDFace.load(out));
  assert.deepEqual(fs.readdirSync(parent), [], 'no stray temporary directory');
});
