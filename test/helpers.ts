import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { WeightFileError } from '../src/weights/errors.js';
import { convertRelease, type ConvertOptions } from '../src/pipeline/convert.js';
import type { Manifest } from '../src/pipeline/manifest.js';
import sharp from 'sharp';
import type { RgbImage } from '../src/image/io.js';
import { toSquareTensor } from '../src/image/pixels.js';
import type { FloatTensor } from '../src/tensor.js';
import { parseTrainConfig, type TrainConfig } from '../src/train/config.js';
import { TAEF2_CONFIG } from '../src/models/autoencoder_tiny.js';

/** The weight source of a graph with no parameters (losses, metrics): emitOnnx never reads it. */
export const noWeights = { read: (): Float32Array => { throw new Error('no weights'); } };

/** Repository root, from dist/test/helpers.js. */
export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
/** The shared fixtures and data, beside the repository (never copied into it). */
export const shared = path.resolve(repoRoot, '../shared');
export const parityA = path.join(shared, 'fixtures/parity-a');
export const fullSize = path.join(shared, 'fixtures/full-size');

/** `skip` value for tests that need parity-a: false when it is there, else the reason. */
export const noFixtures: string | false = fs.existsSync(parityA) ? false : `fixtures not found at ${parityA}`;

/** Converts the tiny parity-a release into a model directory at `out`, as `osdface convert` does. */
export function convertParityA(out: string, opts: Omit<ConvertOptions, 'sd' | 'osdface' | 'out'> = {}): Promise<Manifest> {
  return convertRelease({ ...opts, sd: path.join(parityA, 'sd'), osdface: path.join(parityA, 'osdface'), out });
}

/** The real degraded crops of ../shared/data/real-lq. */
export const realLq = path.join(shared, 'data/real-lq');

/** The first real degraded crop at `size` px (the tiny parity-a model's process size: 64), as pixels and as the pipeline's tensor. */
export async function realFace(size = 64): Promise<{ rgb: RgbImage; face: FloatTensor }> {
  const file = path.join(realLq, fs.readdirSync(realLq).filter((f) => f.endsWith('.png')).sort()[0]!);
  const data = await sharp(file).resize(size, size).removeAlpha().raw().toBuffer();
  const rgb: RgbImage = { data: new Uint8Array(data), width: size, height: size, channels: 3 };
  return { rgb, face: toSquareTensor(rgb).tensor };
}

/** The first HQ training face at `size` px, through `change` (a blur, say), as a (1, 3, size, size) tensor of values in [0, 1]. */
export async function trainingFace(size: number, change: (s: sharp.Sharp) => sharp.Sharp = (s) => s): Promise<FloatTensor> {
  const faces = path.join(shared, 'data/faces-hq/train');
  const file = path.join(faces, fs.readdirSync(faces).filter((f) => f.endsWith('.png')).sort()[0]!);
  const data = await change(sharp(file).resize(size, size).removeAlpha()).raw().toBuffer();
  return toSquareTensor({ data: new Uint8Array(data), width: size, height: size, channels: 3 }).tensor;
}

/** A copy of the model directory `dir` at `out`, with `settings` merged into its manifest's settings. */
export function withManifestSettings(dir: string, out: string, settings: Record<string, unknown>): string {
  fs.cpSync(dir, out, { recursive: true });
  const manifestFile = path.join(out, 'manifest.json');
  const manifest = JSON.parse(fs.readFileSync(manifestFile, 'utf8')) as { settings: Record<string, unknown> };
  Object.assign(manifest.settings, settings);
  fs.writeFileSync(manifestFile, JSON.stringify(manifest));
  return out;
}

/** A fresh temporary folder `<tmp>/<prefix>XXXXXX`, removed when the test `t` ends. */
export function tempDir(t: { after(fn: () => void): void }, prefix = 'osdface-test-'): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function expectWeightError(fn: () => unknown, file: string, fragments: string[], fileFirst: boolean): WeightFileError {
  let caught: unknown;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  assert.ok(caught instanceof WeightFileError, `expected WeightFileError, got ${String(caught)}`);
  assert.equal(caught.file, file);
  if (fileFirst) {
    assert.ok(caught.message.startsWith(`${file}: `), `message should start with the file: ${caught.message}`);
  } else {
    assert.ok(caught.message.includes(file), `message should name the file: ${caught.message}`);
  }
  for (const f of fragments) assert.ok(caught.message.includes(f), `message should contain '${f}': ${caught.message}`);
  return caught;
}

/**
 * Asserts `fn` throws a WeightFileError for `file` whose message starts with `<file>: ` and
 * contains every fragment; returns the error.
 */
export function throwsWeightError(fn: () => unknown, file: string, ...fragments: string[]): WeightFileError {
  return expectWeightError(fn, file, fragments, true);
}

/** Like throwsWeightError, but the message need only mention `file` somewhere. */
export function throwsWeightErrorNamingFile(fn: () => unknown, file: string, ...fragments: string[]): WeightFileError {
  return expectWeightError(fn, file, fragments, false);
}

/** The pretrained TAEF2 autoencoder (MIT) and its reference outputs, beside the repository. */
export const taef2Weights = path.join(shared, 'weights/taef2');
export const taef2Fixture = path.join(shared, 'fixtures/taef2');

/**
 * Four training faces copied into `root`, and a config of a tiny UNet and VRE around TAEF2 (32-pixel
 * faces), with `settings` over it (`settings.data` over its data section, key by key).
 */
export function tinyTaef2Config(root: string): (settings: Record<string, unknown>) => TrainConfig {
  const faces = path.join(shared, 'data/faces-hq/train');
  const trainDir = path.join(root, 'train');
  fs.mkdirSync(trainDir);
  for (const n of fs.readdirSync(faces).filter((f) => f.startsWith('dmdnet_')).slice(0, 4)) fs.copyFileSync(path.join(faces, n), path.join(trainDir, n));
  return ({ data, ...settings }) => parseTrainConfig({
    data: { train: trainDir, holdout: 1, valImages: 1, size: 32, batch: 1, degradation: 'mild', ...(data as Record<string, unknown> | undefined) },
    model: {
      vae: TAEF2_CONFIG,
      unet: { in_channels: 32, out_channels: 32, block_out_channels: [16, 32], attention_head_dim: [2, 2], cross_attention_dim: 32, norm_num_groups: 4 },
      vre: { ch: 8, ch_mult: [1, 2], attn_resolutions: [16], z_channels: 16, n_embed: 32, embed_dim: 16, n_min: 8, norm_num_groups: 4, resolution: 32 },
      promptChannels: 32,
    },
    init: { vae: taef2Weights }, optim: { lr: 0.003, warmupSteps: 0, schedule: 'constant' },
    steps: 2, seed: 1, threads: 1, out: path.join(root, 'run'), checkpointEvery: 2, sampleEvery: 2, evalEvery: 2,
    ...settings,
  }, path.join(root, 'config.json'));
}
