/**
 * The model that ships inside the package (`models/osdface-small/`), used whenever no model
 * directory is given: `OSDFace.load()` with no directory, and every command without `--model`.
 */
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { MANIFEST_FILE, ModelDirError, readManifest } from './manifest.js';

export const DEFAULT_MODEL_NAME = 'osdface-small';

/** `<package root>/models/osdface-small` (from dist/src/pipeline/default_model.js). */
export function defaultModelDir(): string {
  return path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../models', DEFAULT_MODEL_NAME);
}

export const REINSTALL_HINT = 'reinstall osdface (`npm install osdface --onnxruntime-node-install=skip`; in a clone, `git checkout models/` then `npm ci`), or give a converted model directory with --model';

/** The model directory to load: the one given, or the packaged default (checked to be whole, with a repair hint). */
export function resolveModelDir(dir?: string): string {
  if (dir !== undefined) return path.resolve(dir);
  const d = defaultModelDir();
  if (!fs.existsSync(path.join(d, MANIFEST_FILE))) {
    throw new ModelDirError(d, `the default model ${DEFAULT_MODEL_NAME} is missing from this installation; ${REINSTALL_HINT}`);
  }
  try {
    readManifest(d);
  } catch (e) {
    throw damagedDefault(d, e);
  }
  return d;
}

export function isDefaultModelDir(dir: string): boolean {
  return path.resolve(dir) === defaultModelDir();
}

/** A failure to read or load the packaged model, as an error that says how to repair it. */
export function damagedDefault(dir: string, e: unknown): ModelDirError {
  const detail = (e instanceof Error ? e.message : String(e)).replace(`${dir}: `, '').replace(/; convert the model again$/, '');
  return new ModelDirError(dir, `the default model ${DEFAULT_MODEL_NAME} is damaged (${detail}); ${REINSTALL_HINT}`);
}
