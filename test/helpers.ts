import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { WeightFileError } from '../src/weights/errors.js';
import { convertRelease, type ConvertOptions } from '../src/pipeline/convert.js';
import type { Manifest } from '../src/pipeline/manifest.js';

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
