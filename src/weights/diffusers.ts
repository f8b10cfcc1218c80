/**
 * Access to a diffusers model folder (as stabilityai/stable-diffusion-2-1-base ships it):
 * `<folder>/{unet,vae}/config.json` + `diffusion_pytorch_model[.fp16].safetensors`, and
 * `<folder>/scheduler/scheduler_config.json`.
 *
 * Also helpers for VAE files saved by old diffusers versions, whose mid-block attention
 * used `query/key/value/proj_attn` (sometimes stored as 1x1 conv weights) instead of
 * today's `to_q/to_k/to_v/to_out.0` linear layers.
 */

import * as fs from 'node:fs';
import * as path from 'node:path';
import { type Tensor, numel } from '../tensor.js';
import { WeightFileError } from './errors.js';
import { SafetensorsFile } from './safetensors.js';

export type DiffusersSubfolder = 'unet' | 'vae';

export interface DiffusersModel {
  /** Parsed config.json (missing keys mean diffusers defaults). */
  config: Record<string, unknown>;
  /** Opened weight file; the caller closes it when done. */
  weights: SafetensorsFile;
  /** Path of the weight file that was opened. */
  path: string;
}

const EXPECTED_LAYOUT =
  'this must be a diffusers SD-2.1-base folder: unet/ and vae/ with config.json and diffusion_pytorch_model.safetensors, scheduler/ with scheduler_config.json';

/** Weight file names tried in order: full precision first, then the fp16 variant. */
const WEIGHT_FILES = ['diffusion_pytorch_model.safetensors', 'diffusion_pytorch_model.fp16.safetensors'];

/** Opens `<folder>/<subfolder>`: parses its config.json and opens its safetensors weights. */
export function loadDiffusersModel(folder: string, subfolder: DiffusersSubfolder): DiffusersModel {
  requireDir(folder, 'model folder');
  const dir = path.join(folder, subfolder);
  requireDir(dir, `'${subfolder}' subfolder`);
  const config = readJsonObject(path.join(dir, 'config.json'));

  for (const name of WEIGHT_FILES) {
    const p = path.join(dir, name);
    if (fs.existsSync(p)) return { config, weights: SafetensorsFile.open(p), path: p };
  }
  const present = fs.readdirSync(dir);
  const hasBin = present.some((f) => f.endsWith('.bin') || f.endsWith('.ckpt') || f.endsWith('.pt'));
  throw new WeightFileError(path.join(dir, WEIGHT_FILES[0]), 'weight file does not exist', {
    expected: `${WEIGHT_FILES.join(' or ')} in ${dir}`,
    found: present.length > 0 ? present.join(', ') : '(empty folder)',
    hint: hasBin
      ? `only safetensors weights are read: convert the PyTorch .bin/.ckpt weights to safetensors; ${EXPECTED_LAYOUT}`
      : EXPECTED_LAYOUT,
  });
}

/** Reads `<folder>/scheduler/scheduler_config.json`. */
export function loadSchedulerConfig(folder: string): Record<string, unknown> {
  requireDir(folder, 'model folder');
  return readJsonObject(path.join(folder, 'scheduler', 'scheduler_config.json'));
}

function requireDir(dir: string, what: string): void {
  let st: fs.Stats;
  try {
    st = fs.statSync(dir);
  } catch (e) {
    throw new WeightFileError(dir, `${what} does not exist`, { cause: e, hint: EXPECTED_LAYOUT });
  }
  if (!st.isDirectory()) throw new WeightFileError(dir, `${what} is not a directory`, { hint: EXPECTED_LAYOUT });
}

/** Parses a JSON object file; syntax errors name the line and column. */
export function readJsonObject(file: string): Record<string, unknown> {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new WeightFileError(file, code === 'ENOENT' ? 'file does not exist' : `cannot read file (${code ?? String(e)})`, {
      cause: e,
      hint: EXPECTED_LAYOUT,
    });
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    const msg = (e as Error).message;
    const m = /position (\d+)/.exec(msg);
    const where = m ? lineColumn(text, Number(m[1])) : '';
    throw new WeightFileError(file, `invalid JSON${where} (${msg})`, { cause: e });
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new WeightFileError(file, 'is not a JSON object', { expected: 'an object of config values', found: Array.isArray(value) ? 'an array' : String(value) });
  }
  return value as Record<string, unknown>;
}

function lineColumn(text: string, pos: number): string {
  let line = 1;
  let lineStart = 0;
  for (let i = 0; i < pos && i < text.length; i++) {
    if (text.charCodeAt(i) === 0x0a) {
      line++;
      lineStart = i + 1;
    }
  }
  return ` at line ${line}, column ${pos - lineStart + 1}`;
}

const LEGACY_ATTENTION: Readonly<Record<string, string>> = {
  query: 'to_q',
  key: 'to_k',
  value: 'to_v',
  proj_attn: 'to_out.0',
};

/**
 * Maps an old diffusers VAE attention key to today's name, e.g.
 * `encoder.mid_block.attentions.0.query.weight` -> `encoder.mid_block.attentions.0.to_q.weight`.
 * Only keys directly inside `mid_block.attentions.N.` are renamed; anything else is returned as is.
 */
export function renameLegacyVaeAttention(key: string): string {
  const m = /^(.*\bmid_block\.attentions\.\d+\.)(query|key|value|proj_attn)\.(weight|bias)$/.exec(key);
  return m ? `${m[1]}${LEGACY_ATTENTION[m[2]]}.${m[3]}` : key;
}

/**
 * Old VAE files may hold the attention projections as 1x1 conv weights (out, in, 1, 1)
 * where the current model has linear weights (out, in). When `expectedShape` is 2-D, the
 * tensor is 4-D with trailing 1x1 and the element counts agree, returns the same data with
 * the 2-D shape (no copy); otherwise returns `t` unchanged, leaving shape checks to the caller.
 */
export function reshapeLegacyAttentionWeight(t: Tensor, expectedShape: readonly number[]): Tensor {
  if (
    expectedShape.length === 2 &&
    t.shape.length === 4 &&
    t.shape[2] === 1 &&
    t.shape[3] === 1 &&
    t.shape[0] === expectedShape[0] &&
    numel(t.shape) === numel(expectedShape)
  ) {
    return { ...t, shape: [...expectedShape] };
  }
  return t;
}
