/**
 * What a new user meets in the first hour: short usage errors, hints that work as printed (each
 * command shape the help and the errors print is run), detect taking what restore takes (folders,
 * globs with [...] classes), small faces restored by default, photos where no face was restored
 * reported as such, one progress sequence for convert, normal permissions on model directories,
 * skipped reasons and written files in --json, saveImage, the loss plot and the eval report.
 * Tiny model converted from parity-a; photos from ../shared/data/whole.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync, type SpawnSyncReturns } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { DEFAULT_MIN_EYE_DISTANCE, ModelDirError, OSDFace, saveImage } from '../src/index.js';
import { lossCurvePng } from '../src/train/plot.js';
import { writeReport } from '../src/metrics/report.js';
import { evaluatePairs, pairFolders } from '../src/metrics/evaluate.js';
import { convertParityA, noFixtures, parityA, repoRoot, shared } from './helpers.js';

const cli = path.join(repoRoot, 'dist/src/cli/main.js');
const whole = path.join(shared, 'data/whole');
/** 225 x 225, one face with an eye distance of 21.7 px (left alone by the old default of 24). */
const SMALL = 'codeformer_04.jpg';
/** 248 x 189: four faces of about 20 px and a hand taken for a face (4.7 px). */
const GROUP = 'codeformer_01.jpg';
const skip = noFixtures || ([SMALL, GROUP].every((f) => fs.existsSync(path.join(whole, f))) ? false : `photos not found in ${whole}`);

let work = '';
let modelDir = '';

function osdface(...args: string[]): SpawnSyncReturns<string> {
  return spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8', cwd: work || undefined });
}

before(async () => {
  if (skip) return;
  work = fs.mkdtempSync(path.join(os.tmpdir(), 'osdface-first-hour-'));
  modelDir = path.join(work, 'model');
  await convertParityA(modelDir);
});

after(() => {
  if (work) fs.rmSync(work, { recursive: true, force: true });
});

const COMMANDS = ['restore', 'detect', 'convert', 'degrade', 'eval', 'parity', 'train', 'export', 'serve', 'queue'];

test('a usage error is its message and a pointer to --help (which works), exit 2', { skip }, () => {
  for (const c of COMMANDS) {
    const r = osdface(c, '--bogus-flag');
    assert.equal(r.status, 2, `${c}: ${r.stderr}`);
    assert.equal(r.stderr, `osdface ${c}: unknown option --bogus-flag\nRun 'osdface ${c} --help' for its options.\n`, c);
    const help = osdface(c, '--help');
    assert.equal(help.status, 0, c);
    assert.match(help.stdout, new RegExp(`^usage: osdface ${c} `), c);
    assert.equal(osdface('help', c).stdout, help.stdout, `osdface help ${c}`);
  }
  for (const args of [[], ['frobnicate'], ['help', 'frobnicate']]) {
    const r = osdface(...args);
    assert.equal(r.status, 2, args.join(' '));
    assert.match(r.stderr, /^osdface: (no command given|unknown command 'frobnicate') \(commands: restore, detect, convert, degrade, eval, parity, train, export, serve, queue, web\)\nRun 'osdface --help' for the commands\.\n$/);
  }
});

/** Every `osdface ...` command shape in a help text: the usage lines. */
function usageShapes(text: string): string[] {
  return text.split('\n').map((l) => l.replace(/^usage:\s*/, '').replace(/^\s+/, '')).filter((l) => l.startsWith('osdface ') && !l.includes('--version'));
}

/** A command shape with its placeholders filled in: `<...>` -> a (missing) path or 1, optional groups kept, `a|b` -> a. */
function fill(shape: string, dir: string): string[] {
  let k = 0;
  const words = shape
    .replace(/^(npx )?osdface /, '')
    .replace(/\[options\]|\[\.\.\.\]|\.\.\./g, '')
    .replace(/<([^>]*)>/g, (_m, inner: string) => (/^(N|step|px|s|f|x)$/.test(inner) ? '1' : path.join(dir, `p${k++}`)))
    .replace(/[[\]]/g, ' ')
    .split(/\s+/)
    .filter((w) => w !== '' && w !== '|')
    .map((w) => (/^[a-z0-9]+(\|[a-z0-9]+)+$/.test(w) ? w.split('|')[0]! : w));
  return words;
}

test('every command shape printed by --help parses: no unknown option, missing value or missing flag', { skip }, () => {
  const texts = [osdface('--help').stdout, ...COMMANDS.map((c) => osdface(c, '--help').stdout)];
  const shapes = [...new Set(texts.flatMap(usageShapes))];
  assert.ok(shapes.length >= 8, shapes.join('\n'));
  const dir = path.join(work, 'shapes');
  for (const shape of shapes) {
    const args = fill(shape, dir);
    const r = spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8', cwd: work, timeout: 120_000 });
    assert.doesNotMatch(r.stderr, /unknown option|needs a value|is required|must be one of|takes no value|unexpected argument|no command given/, `${shape}\n-> ${args.join(' ')}\n${r.stderr}`);
  }
});

test('the convert hint of a missing model directory works as printed', { skip }, () => {
  const r = osdface('restore', path.join(whole, SMALL), '-o', path.join(work, 'unused'), '--model', path.join(work, 'no-model'));
  assert.equal(r.status, 2);
  const hint = /`npx (osdface convert [^`]*)`/.exec(r.stderr)?.[1];
  assert.ok(hint, r.stderr);
  const out = path.join(work, 'from-hint');
  const args = hint.split(' ').slice(1).join(' ')
    .replace('<stable-diffusion-2-1-base>', path.join(parityA, 'sd'))
    .replace('<OSDFace weights folder>', path.join(parityA, 'osdface'))
    .replace('<model dir>', out)
    .split(' ');
  const c = osdface(...args);
  assert.equal(c.status, 0, c.stderr);
  assert.ok(fs.existsSync(path.join(out, 'manifest.json')));
});

test('OSDFace.load(fp32 dir, { dtype: int8 }): a ModelDirError whose convert command (with --calibration) works as printed', { skip }, async () => {
  let err: unknown;
  try {
    await OSDFace.load(modelDir, { dtype: 'int8' });
  } catch (e) {
    err = e;
  }
  assert.ok(err instanceof ModelDirError, String(err));
  const hint = /`npx (osdface convert [^`]*)`/.exec(err.message)?.[1];
  assert.ok(hint?.includes('--calibration <folder of aligned face crops>'), err.message);
  const crops = path.join(work, 'crops');
  fs.mkdirSync(crops);
  for (const n of ['a', 'b']) await sharp(path.join(whole, SMALL)).resize(64, 64).png().toFile(path.join(crops, `${n}.png`));
  const out = path.join(work, 'int8');
  const args = hint!.replace('<folder of aligned face crops>', crops).replace('<new model dir>', out).split(' ').slice(1);
  const c = osdface(...args);
  assert.equal(c.status, 0, c.stderr);
  const m = await OSDFace.load(out, { dtype: 'int8' });
  assert.equal(m.manifest.dtype, 'int8');
  await m.dispose();
});

test('convert --help states the LoRA defaults as the code applies them (config.json, else 16)', { skip }, () => {
  const help = osdface('convert', '--help').stdout;
  assert.doesNotMatch(help, /the release's, 16/);
  assert.match(help, /--lora-rank <N> +LoRA rank \(default: "lora": \{"rank"\} in the --osdface folder's\n\s+config\.json, else 16\)/);
  // parity-a's osdface/config.json says rank 4, alpha 8: that is what gets merged.
  const cfg = JSON.parse(fs.readFileSync(path.join(parityA, 'osdface/config.json'), 'utf8')) as { lora: { rank: number; alpha: number } };
  const manifest = JSON.parse(fs.readFileSync(path.join(modelDir, 'manifest.json'), 'utf8')) as { lora: { rank: number; alpha: number } };
  assert.deepEqual([manifest.lora.rank, manifest.lora.alpha], [cfg.lora.rank, cfg.lora.alpha]);
});

test('convert: one step sequence up to a single "done"; the model directory gets normal permissions', { skip }, () => {
  const out = path.join(work, 'converted');
  const r = osdface('convert', '--sd', path.join(parityA, 'sd'), '--osdface', path.join(parityA, 'osdface'), '-o', out);
  assert.equal(r.status, 0, r.stderr);
  const lines = r.stderr.trim().split('\n');
  assert.ok(lines.every((l) => l.startsWith('osdface convert: ')), r.stderr);
  const steps = lines.slice(0, -1).map((l) => /\[(\d+)\/(\d+)\]/.exec(l));
  assert.ok(steps.every((m) => m !== null), r.stderr);
  const totals = new Set(steps.map((m) => m![2]));
  assert.equal(totals.size, 1, `one total: ${[...totals].join(', ')}`);
  assert.deepEqual(steps.map((m) => Number(m![1])), steps.map((_, i) => i + 1), 'counted once each, in order');
  assert.equal(Number([...totals][0]), steps.length, 'the last step is [n/n]');
  assert.match(lines.at(-1)!, /^osdface convert: done \(/);
  assert.match(r.stderr, /optimizing .* for this CPU/);
  const mode = 0o777 & ~process.umask();
  assert.equal(fs.statSync(out).mode & 0o777, mode, 'model directory');
  const cache = path.join(out, 'optimized');
  assert.equal(fs.statSync(cache).mode & 0o777, mode, 'optimized/');
  for (const d of fs.readdirSync(cache)) assert.equal(fs.statSync(path.join(cache, d)).mode & 0o777, mode, `optimized/${d}`);
});

test('detect takes folders and globs with [...] classes, like restore', { skip }, () => {
  const folder = path.join(work, 'photos');
  fs.mkdirSync(folder);
  for (const f of [SMALL, GROUP]) fs.copyFileSync(path.join(whole, f), path.join(folder, f));
  // The figures below are face-api SSD's (RetinaFace, the default, measures 21.64 px and finds no hand).
  const byFolder = osdface('detect', folder, '--json', '--detector', 'ssd');
  assert.equal(byFolder.status, 0, byFolder.stderr);
  assert.deepEqual((JSON.parse(byFolder.stdout) as { file: string }[]).map((f) => path.basename(f.file)), [GROUP, SMALL]);
  const byClass = osdface('detect', path.join(folder, 'codeformer_0[4-9].jpg'), path.join(folder, 'nothing-[ab].png'), '--json', '--detector', 'ssd');
  assert.equal(byClass.status, 1, 'a pattern that matches nothing is reported');
  const listed = JSON.parse(byClass.stdout) as { file: string; faces?: { eyeDistance: number }[]; error?: string }[];
  assert.equal(listed[0]!.faces![0]!.eyeDistance, 21.66, 'what --min-eye-distance compares');
  assert.deepEqual(listed.map((f) => [path.basename(f.file), f.error ?? null]), [[SMALL, null], ['nothing-[ab].png', 'no files match this pattern']]);
  assert.match(byClass.stderr, /osdface detect: .*nothing-\[ab\]\.png: no files match this pattern/);
  assert.match(osdface('detect', path.join(folder, SMALL), '--detector', 'ssd').stdout, /225x225, 1 face\n  0: score .* eye distance 21\.7 px/);
});

test(`small faces are restored by default (--min-eye-distance ${DEFAULT_MIN_EYE_DISTANCE}); a photo with none restored is "unchanged"; --json lists reasons and files`, { skip }, () => {
  assert.equal(DEFAULT_MIN_EYE_DISTANCE, 10);
  const out = path.join(work, 'out-photos');
  const small = path.join(whole, SMALL);
  const group = path.join(whole, GROUP);
  // With face-api's SSD, whose false positive (a hand, 4.7 px) shows the too-small notice.
  const r = osdface('restore', small, group, '-o', out, '--model', modelDir, '--detector', 'ssd', '--save-faces', '--compare', '--json', '--threads', '2');
  assert.equal(r.status, 0, r.stderr);
  const s = JSON.parse(r.stdout) as { ok: number; unchanged: number; images: { status: string; faces: number; detected: number; notices: string[]; savedFaces: string[]; compare: string }[] };
  assert.deepEqual([s.ok, s.unchanged], [2, 0]);
  assert.deepEqual(s.images.map((i) => [i.faces, i.detected]), [[1, 1], [4, 5]]);
  assert.match(s.images[1]!.notices[0]!, /face 4 left as it is: eye distance 4\.7 px < 10 px \(--min-eye-distance/);
  assert.match(r.stderr, /1 of 1 face restored\)/);
  assert.match(r.stderr, /2 restored \(5 faces\), 0 unchanged/);
  for (const i of s.images) {
    assert.ok(fs.existsSync(i.compare), i.compare);
    assert.equal(i.savedFaces.length, 2 * i.faces);
    for (const f of i.savedFaces) assert.ok(fs.existsSync(f), f);
  }
  assert.deepEqual(fs.readdirSync(path.join(out, 'faces')).sort(), s.images.flatMap((i) => i.savedFaces.map((f) => path.basename(f))).sort(), 'every written crop is listed');

  // A bound above the face: nothing restored, reported as unchanged (exit 0), and --skip-existing carries a reason.
  const out2 = path.join(work, 'out-unchanged');
  const u = osdface('restore', small, '-o', out2, '--model', modelDir, '--min-eye-distance', '30', '--json');
  assert.equal(u.status, 0, u.stderr);
  const su = JSON.parse(u.stdout) as { ok: number; unchanged: number; images: { status: string }[] };
  assert.deepEqual([su.ok, su.unchanged, su.images[0]!.status], [0, 1, 'unchanged']);
  assert.match(u.stderr, /\[1\/1\] unchanged .*0 of 1 face restored/);
  assert.match(u.stderr, /0 restored, 1 unchanged/);
  const sk = osdface('restore', small, '-o', out2, '--model', modelDir, '--skip-existing', '--json');
  const ss = JSON.parse(sk.stdout) as { images: { status: string; reason?: string; error?: string }[] };
  assert.equal(ss.images[0]!.status, 'skipped');
  assert.match(ss.images[0]!.reason!, /exists \(--skip-existing\)/);
  assert.equal(ss.images[0]!.error, undefined);
});

test('restore counts what was given and reports in input order (a clash after the file it clashes with)', { skip }, () => {
  const dir = path.join(work, 'clash');
  fs.mkdirSync(dir);
  fs.copyFileSync(path.join(whole, SMALL), path.join(dir, 'a.jpg'));
  fs.copyFileSync(path.join(whole, SMALL), path.join(dir, 'a.png'));
  const r = osdface('restore', path.join(dir, 'a.jpg'), path.join(dir, 'missing.png'), path.join(dir, 'a.png'), '-o', path.join(work, 'out-clash'), '--model', modelDir);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /restoring 1 photo into .* \(2 of the 3 inputs given failed or were skipped before restoring\)/);
  const progress = r.stderr.split('\n').filter((l) => /\[\d\/\d\]/.test(l));
  assert.deepEqual(progress.map((l) => /\[(\d)\/(\d)\] (\w+) +(\S+)/.exec(l)!.slice(1).join(' ')), [
    `1 3 ok ${path.join(dir, 'a.jpg')}`, `2 3 failed ${path.join(dir, 'missing.png')}:`, `3 3 failed ${path.join(dir, 'a.png')}:`,
  ]);
  assert.match(r.stderr, /a\.png: the output .*a\.png is already written for .*a\.jpg/);
});

test('degrade: [i/n] progress with the osdface degrade prefix, and [...] patterns', { skip }, () => {
  const out = path.join(work, 'degraded');
  const r = osdface('degrade', path.join(whole, 'codeformer_0[34].jpg'), '-o', out, '--seed', '1', '--size', '64');
  assert.equal(r.status, 0, r.stderr);
  const lines = r.stderr.trim().split('\n');
  assert.ok(lines.every((l) => l.startsWith('osdface degrade: ')), r.stderr);
  assert.match(lines[0]!, /\[1\/2\] ok .*codeformer_03\.jpg/);
  assert.match(lines[1]!, /\[2\/2\] ok .*codeformer_04\.jpg/);
});

test('saveImage writes the format its extension names, with alpha on png', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'osdface-save-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const img = { data: new Uint8Array(4 * 3 * 3).fill(200), width: 4, height: 3, channels: 3 as const, alpha: new Uint8Array(12).fill(128) };
  const png = await saveImage(img, path.join(dir, 'sub', 'x.png'));
  const meta = await sharp(png).metadata();
  assert.deepEqual([meta.format, meta.width, meta.height, meta.hasAlpha], ['png', 4, 3, true]);
  const jpg = await saveImage(img, path.join(dir, 'x.jpeg'));
  assert.equal((await sharp(jpg).metadata()).format, 'jpeg');
  await assert.rejects(saveImage(img, path.join(dir, 'x.gif')), /use \.png, \.jpg, \.jpeg or \.webp/);
  assert.deepEqual(fs.readdirSync(dir).sort(), ['sub', 'x.jpeg'], 'nothing half-written');
});

test('loss.png: a single validation point is drawn as a marker', async () => {
  const png = await lossCurvePng([
    { name: 'train loss', colour: '#1f77b4', points: Array.from({ length: 100 }, (_, i) => ({ step: i + 1, value: 1 / (i + 1) })) },
    { name: 'validation loss', colour: '#d62728', points: [{ step: 50, value: 0.05 }] },
  ], 't');
  const { data, info } = await sharp(png).removeAlpha().raw().toBuffer({ resolveWithObject: true });
  // Red pixels outside the legend (top-right corner) are the marker.
  let red = 0;
  for (let y = 0; y < info.height; y++) {
    for (let x = 0; x < info.width - 200; x++) {
      const i = 3 * (y * info.width + x);
      if (data[i]! > 180 && data[i + 1]! < 80 && data[i + 2]! < 80) red++;
    }
  }
  assert.ok(red >= 20, `${red} marker pixels`);
});

test('eval report: small HTML, the crops as files beside it, only the computed metrics described', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'osdface-report-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  for (const d of ['pred', 'gt']) {
    fs.mkdirSync(path.join(dir, d));
    for (const n of ['a', 'b']) await sharp({ create: { width: 300, height: 300, channels: 3, background: d === 'gt' ? '#808080' : '#7f8081' } }).png().toFile(path.join(dir, d, `${n}.png`));
  }
  const r = await evaluatePairs(pairFolders(path.join(dir, 'pred'), path.join(dir, 'gt')), { metrics: ['psnr'] });
  const file = path.join(dir, 'report.html');
  const images = await writeReport(file, r);
  assert.equal(images, path.join(dir, 'report_files'));
  const html = fs.readFileSync(file, 'utf8');
  assert.doesNotMatch(html, /data:image/);
  assert.ok(html.length < 20_000, `${html.length} bytes`);
  const srcs = [...html.matchAll(/<img src="([^"]+)"/g)].map((m) => m[1]!);
  assert.equal(srcs.length, 4);
  for (const s of srcs) assert.ok(fs.existsSync(path.join(dir, decodeURIComponent(s))), s);
  assert.match(html, /PSNR on RGB/);
  assert.doesNotMatch(html, /NIQE|LPIPS|DISTS|FID|SSIM/);
});
