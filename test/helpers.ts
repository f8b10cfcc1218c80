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
