/**
 * What one queued image carries, and its job id. The id is derived from the image's bytes, its
 * output name and every setting that decides the output's bytes, so the same image submitted
 * again with the same options is the same job (BullMQ adds a job id only once).
 */
import crypto from 'node:crypto';
import path from 'node:path';
import type { ImageSettings } from '../cli/restore_options.js';
import type { ImageFormat } from '../image/io.js';

/**
 * The settings that decide one output's bytes: restore's (ImageSettings), for one image; with
 * --latent sample, `seed` is this image's seed (the submitted seed + its place in the list, as restore does).
 */
export type JobSettings = ImageSettings;

export interface JobData {
  /** Layout version of this object. */
  v: 1;
  /** The output's file name: `<input base name>.<format>`. */
  name: string;
  /** The input as it was given to submit (for messages). */
  input: string;
  /** sha256 (hex) of the image bytes. */
  sha256: string;
  /** The image bytes, base64 (images sent inside the job). */
  image?: string;
  /** The image's path relative to the shared storage (--shared-path), with '/' separators. */
  shared?: string;
  settings: JobSettings;
  /** Seconds the result is kept in Redis. */
  resultTtl: number;
}

/** The job's result summary, stored beside the output bytes (and what `collect` checks). */
export interface ResultMeta {
  name: string;
  input: string;
  /** sha256 (hex) of the output bytes. */
  sha256: string;
  bytes: number;
  /** Faces restored (1 for an aligned crop), faces found (photos), notices. */
  faces: number;
  detected?: number;
  notices: string[];
  seed?: number;
  seconds: number;
  /** The worker that restored it: `<host>:<pid>`. */
  worker: string;
  /** When it was stored, ms since the epoch. */
  at: number;
}

export const sha256 = (bytes: Uint8Array): string => crypto.createHash('sha256').update(bytes).digest('hex');

/** Settings with their keys in a fixed order and absent values left out, for hashing. */
function canonical(s: JobSettings): string {
  const keys = Object.keys(s).sort() as (keyof JobSettings)[];
  return JSON.stringify(keys.filter((k) => s[k] !== undefined).map((k) => [k, s[k]]));
}

/**
 * `img-` and 40 hex digits of sha256(image sha256, output name, settings). BullMQ ids must not
 * be whole numbers nor hold ':'.
 */
export function jobId(imageSha256: string, name: string, settings: JobSettings): string {
  const h = crypto.createHash('sha256').update(`osdface-queue-v1\n${imageSha256}\n${name}\n${canonical(settings)}`).digest('hex');
  return `img-${h.slice(0, 40)}`;
}

/** The output name of `input` in `format`, as `osdface restore` names it. */
export function outputName(input: string, format: ImageFormat): string {
  return `${path.parse(input).name}.${format}`;
}
