/**
 * `npm run bench [-- --json] [--runs N] [--threads N] [--fp32-only] [--default-only] [--no-quality]`:
 * the packaged default model (osdface-small) and its int8 version, then full-size OSDFace (random
 * weights from the full-size configs) on one 512x512 face, batch 1, in fp32 (its default low-memory
 * mode, and with the UNet kept loaded) and int8; then each int8 model's PSNR against its fp32 one
 * on real faces. `default_vs_fp32` is the default model's restore time (restore_s: with what its
 * model directory adds, such as the input's low frequencies) over the full-size fp32 restore time
 * of the same run. The converted models are cached in bench/.cache.
 *
 * int8 calibration: the first CALIBRATION_IMAGES of ../shared/data/faces-hq/train; quality is
 * measured on ../shared/data/real-lq and faces-hq/test (disjoint from the calibration set).
 */
import fs from 'node:fs';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { sha256, writeModelDir } from '../src/pipeline/convert.js';
import { outputSettings, readManifest } from '../src/pipeline/manifest.js';
import { writeInt8ModelDir } from '../src/pipeline/quantize_model.js';
import { listImages } from '../src/degrade/args.js';
import { prepareOptimized } from '../src/pipeline/model.js';
import { randomRelease } from './random_release.js';
import { PACKAGE_VERSION } from '../src/version.js';
import { defaultModelDir } from '../src/pipeline/default_model.js';
import { trainedNetworks } from '../src/train/export.js';
import { exportWeights } from '../recipes/osdface-small/train.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, '../..');
const fullSize = path.resolve(repo, '../shared/fixtures/full-size');
const cacheDir = path.join(repo, 'bench/.cache');
const data = path.resolve(repo, '../shared/data');
const CALIBRATION_IMAGES = 12;
const QUALITY_IMAGES = 4;

function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(name);
  return i >= 0 ? Number(process.argv[i + 1]) : fallback;
}

async function ensureModel(dtype: 'fp32' | 'int8'): Promise<string> {
  const dir = path.join(cacheDir, `fullsize-${dtype}`);
  const manifestFile = path.join(dir, "manifest.json");
  if (fs.existsSync(manifestFile) && (JSON.parse(fs.readFileSync(manifestFile, 'utf8')) as { packageVersion: string }).packageVersion === PACKAGE_VERSION &&
    fs.statSync(manifestFile).mtimeMs > newestSource()) return dir;
  process.stderr.write(`bench: writing the full-size ${dtype} model with random weights to ${dir} (once)...\n`);
  const onProgress = (step: string, done: number, total: number) => process.stderr.write(`  [${done}/${total}] ${step}\n`);
  const release = randomRelease(fullSize);
  const manifest = dtype === 'int8'
    ? await writeInt8ModelDir(release, { out: dir, force: true, onProgress, threads: arg('--threads', 2), calibration: listImages(path.join(data, 'faces-hq/train')).slice(0, CALIBRATION_IMAGES) })
    : writeModelDir(release, { out: dir, force: true, onProgress });
  await prepareOptimized(dir, manifest, (step) => process.stderr.write(`  ${step}\n`));
  return dir;
}

/** The cached model is rebuilt when the code that emits graphs changed. */
function newestSource(): number {
  let newest = 0;
  for (const sub of ['dist/src/graph', 'dist/src/nn', 'dist/src/models', 'dist/src/pipeline']) {
    for (const f of fs.readdirSync(path.join(repo, sub), { recursive: true }) as string[]) {
      if (f.endsWith('.js')) newest = Math.max(newest, fs.statSync(path.join(repo, sub, f)).mtimeMs);
    }
  }
  return newest;
}

const json = process.argv.includes('--json');
const runs = arg('--runs', 3);
const threads = arg('--threads', 2);
const results: Record<string, unknown> = {};
const dtypes = process.argv.includes('--fp32-only') ? ['fp32'] as const : ['fp32', 'int8'] as const;
const dirs: Record<string, string> = {};
function time(dir: string, mode?: 'no-low-memory'): unknown {
  const r = spawnSync(process.execPath, [path.join(here, 'time.js'), dir, String(threads), String(runs), ...(mode ? [mode] : [])], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
  if (r.status !== 0) throw new Error(`timing ${dir} ${mode ?? ''} failed (exit ${r.status})`);
  return JSON.parse(r.stdout.trim().split('\n').pop()!);
}
/**
 * The packaged default model, and its int8 version (built from the recipe's exported weights, the
 * same blend as the packaged model's, calibrated on the same faces as the full-size int8 model).
 */
async function ensureDefaultInt8(): Promise<string> {
  const dir = path.join(cacheDir, 'default-int8');
  const manifestFile = path.join(dir, 'manifest.json');
  const packaged = path.join(defaultModelDir(), 'manifest.json');
  // int8 against fp32 must compare one model's weights: this bench once quantised another stage's
  // and reported the gap between two models as quantisation error.
  const { weights, config } = exportWeights();
  if (!readManifest(defaultModelDir()).sources.some((s) => s.sha256 === sha256(weights))) {
    throw new Error(`bench: the packaged model was not exported from the recipe's EXPORT_BLEND (${weights}); run node dist/recipes/osdface-small/train.js --export-only first`);
  }
  if (fs.existsSync(manifestFile) && fs.statSync(manifestFile).mtimeMs > Math.max(fs.statSync(packaged).mtimeMs, newestSource())) return dir;
  process.stderr.write(`bench: writing the default model in int8 to ${dir}...\n`);
  const nets = trainedNetworks(weights, 'osdface-small', config);
  // The packaged model's post-network settings too, so that only quantisation differs.
  await writeInt8ModelDir(nets, {
    output: outputSettings(readManifest(defaultModelDir()).settings),
    out: dir, force: true, threads: arg('--threads', 2), calibration: listImages(path.join(data, 'faces-hq/train')).slice(0, CALIBRATION_IMAGES),
    onProgress: (step, done, total) => process.stderr.write(`  [${done}/${total}] ${step}\n`),
  });
  return dir;
}

const defaultOnly = process.argv.includes('--default-only');
dirs['default'] = defaultModelDir();
results['default'] = time(dirs['default']);
if (!process.argv.includes('--fp32-only')) results['default_int8'] = time((dirs['default_int8'] = await ensureDefaultInt8()));
if (!defaultOnly) {
  for (const dtype of dtypes) {
    const dir = (dirs[dtype] = await ensureModel(dtype));
    results[dtype] = time(dir);
  }
  results['default_vs_fp32'] = (results['default'] as { restore_s: number }).restore_s / (results['fp32'] as { restore_s: number }).restore_s;
  // fp32 with the UNet kept loaded between calls: faster, and a higher peak RSS than the default.
  results['fp32_no_low_memory'] = time(dirs['fp32']!, 'no-low-memory');
}
if (dirs['int8'] && !process.argv.includes('--no-quality')) {
  const faces = [...listImages(path.join(data, 'real-lq')).slice(0, QUALITY_IMAGES), ...listImages(path.join(data, 'faces-hq/test')).slice(0, QUALITY_IMAGES)];
  const r = spawnSync(process.execPath, [path.join(here, 'int8_quality.js'), dirs['fp32']!, dirs['int8'], String(threads), ...faces], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
  if (r.status !== 0) throw new Error(`int8 quality check failed (exit ${r.status})`);
  Object.assign(results['int8'] as object, JSON.parse(r.stdout.trim().split('\n').pop()!));
}
if (dirs['default_int8'] && !process.argv.includes('--no-quality')) {
  // With trained weights this comparison means something: 12 real faces.
  const faces = listImages(path.join(data, 'real-lq')).slice(0, 12);
  const r = spawnSync(process.execPath, [path.join(here, 'int8_quality.js'), dirs['default']!, dirs['default_int8'], String(threads), ...faces], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
  if (r.status !== 0) throw new Error(`default int8 quality check failed (exit ${r.status})`);
  Object.assign(results['default_int8'] as object, JSON.parse(r.stdout.trim().split('\n').pop()!));
}
const reference = JSON.parse(fs.readFileSync(path.join(fullSize, 'reference-cpu-timing.json'), 'utf8')) as { median_seconds: Record<string, number>; peak_rss_mb: number };
if (json) {
  process.stdout.write(JSON.stringify(results) + '\n');
} else {
  const ref = reference.median_seconds;
  const refKeys: Record<string, string> = { vre_s: 'vre', vae_encode_s: 'vae_encode', unet_s: 'unet', vae_decode_s: 'vae_decode', total_s: 'total' };
  if (!defaultOnly) process.stdout.write(`default model / full-size fp32 time: ${(results['default_vs_fp32'] as number).toFixed(3)}x (goal <= 0.08)\n`);
  for (const [dtype, r] of Object.entries(results).filter(([, v]) => typeof v === 'object') as [string, Record<string, number>][]) {
    process.stdout.write(`${dtype}: ${threads} threads, median of ${runs} runs after 1 warm-up, 512x512, batch 1\n`);
    for (const [k, name] of Object.entries(refKeys)) {
      process.stdout.write(`  ${name.padEnd(11)} ${r[k]!.toFixed(2).padStart(7)} s   reference ${ref[name]!.toFixed(2).padStart(6)} s   ratio ${(r[k]! / ref[name]!).toFixed(2)}\n`);
    }
    const extras = [r['mirror_ensemble'] ? 'two passes: the mirror ensemble' : 'one pass', ...(r['low_frequency'] ? ['the input\'s low frequencies'] : [])];
    process.stdout.write(`  restore()   ${r['restore_s']!.toFixed(2).padStart(7)} s   (what a user waits for: ${extras.join(', ')})\n`);
    process.stdout.write(`  load        ${r['load_s']!.toFixed(2).padStart(7)} s\n  peak RSS    ${r['peak_rss_mb']!.toFixed(0).padStart(7)} MB  reference ${reference.peak_rss_mb.toFixed(0)} MB\n`);
    if (r['psnr_vs_fp32_db'] !== undefined) {
      process.stdout.write(`  PSNR vs fp32 ${r['psnr_vs_fp32_db']!.toFixed(2)} dB mean over ${r['quality_images']} real faces (min ${r['psnr_vs_fp32_min_db']!.toFixed(2)} dB)\n`);
    }
  }
}
