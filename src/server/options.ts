/**
 * The options of `POST /v1/restore` (query parameters, or multipart fields): their JSON schema
 * (validated by Fastify for the query, by the same compiled schema for multipart fields, and
 * published in the OpenAPI document) and the checks between them, which mirror `osdface restore`.
 */
import { Ajv, type ErrorObject } from 'ajv';
import type { BackgroundUpsampler } from '../photo/restore_photo.js';
import type { ImageFormat } from '../image/io.js';
import { HttpError } from './errors.js';

export const SEED_LIMIT = 2 ** 32;

/** JSON schema of the options; every value arrives as a string and is coerced. */
export const OPTIONS_SCHEMA = {
  type: 'object',
  additionalProperties: false,
  properties: {
    mode: { type: 'string', enum: ['photo', 'aligned'], default: 'photo', description: 'photo: find, restore and paste back every face; aligned: the image is one face crop aligned to the FFHQ template' },
    upscale: { type: 'integer', enum: [1, 2, 4], default: 1, description: 'photo: output scale' },
    background: { type: 'string', enum: ['lanczos', 'esrgan', 'none'], default: 'lanczos', description: 'photo: how the background is upscaled' },
    only_center_face: { type: 'boolean', default: false, description: 'photo: restore only the face nearest the centre' },
    max_faces: { type: 'integer', minimum: 1, description: 'photo: restore at most this many faces, the largest first' },
    format: { type: 'string', enum: ['png', 'jpg', 'webp'], default: 'png', description: 'output format (png and webp keep an alpha channel)' },
    latent: { type: 'string', enum: ['mode', 'sample'], default: 'mode', description: 'VAE posterior mean, or a sample of it drawn from seed' },
    seed: { type: 'integer', minimum: 0, maximum: SEED_LIMIT - 1, description: 'noise seed for latent=sample (default: random, returned in X-Seed)' },
    fidelity: { type: 'number', minimum: 0, maximum: 1, default: 0, description: 'fidelity to the input: 0 the model as trained, 1 closest to the input' },
  },
} as const;

export const OPTION_NAMES = Object.keys(OPTIONS_SCHEMA.properties);

const PHOTO_ONLY = ['upscale', 'background', 'only_center_face', 'max_faces'] as const;

/** The restore options a request asks for, checked. */
export interface RestoreOptions {
  mode: 'photo' | 'aligned';
  format: ImageFormat;
  latent: 'mode' | 'sample';
  /** Only with latent 'sample' (drawn when not given). */
  seed?: number;
  fidelity: number;
  upscale: 1 | 2 | 4;
  background: BackgroundUpsampler;
  onlyCenterFace: boolean;
  maxFaces?: number;
}

/** The same validator for multipart fields that Fastify applies to the query string. */
const ajv = new Ajv({ coerceTypes: true, allErrors: false, useDefaults: false, removeAdditional: false });
const validateFields = ajv.compile(OPTIONS_SCHEMA);

/** Ajv errors (from Fastify's query validation or ours) to one sentence naming the option. */
export function describeValidation(errors: readonly Pick<ErrorObject, 'keyword' | 'instancePath' | 'params' | 'message'>[], where: string): string {
  const e = errors[0];
  if (!e) return `invalid ${where}`;
  if (e.keyword === 'additionalProperties') {
    const name = String((e.params as { additionalProperty?: string }).additionalProperty);
    return `unknown option '${name}' in the ${where}; the options are ${OPTION_NAMES.join(', ')}`;
  }
  const name = e.instancePath.replace(/^\//, '') || where;
  const prop = (OPTIONS_SCHEMA.properties as Record<string, { enum?: readonly unknown[]; type: string; minimum?: number; maximum?: number }>)[name];
  let want = e.message ?? 'is invalid';
  if (prop?.enum) want = `must be one of ${prop.enum.join(', ')}`;
  else if (prop?.type === 'integer') want = `must be an integer${prop.minimum !== undefined ? ` from ${prop.minimum}` : ''}${prop.maximum !== undefined ? ` to ${prop.maximum}` : ''}`;
  else if (prop?.type === 'boolean') want = 'must be true or false';
  return `option '${name}' ${want} (in the ${where})`;
}

const invalid = (msg: string) => new HttpError(400, 'invalid_option', msg);

/** Multipart fields to a raw options object, checked against the schema (values coerced). */
export function validateMultipartFields(fields: Record<string, string>): Record<string, unknown> {
  const copy: Record<string, unknown> = { ...fields };
  if (!validateFields(copy)) throw invalid(describeValidation(validateFields.errors ?? [], 'multipart fields'));
  return copy;
}

/**
 * The query options (already validated and coerced by Fastify) merged with the multipart fields,
 * then the checks between options, as `osdface restore` makes them.
 */
export function resolveOptions(query: Record<string, unknown>, fields: Record<string, unknown> = {}): RestoreOptions {
  for (const k of Object.keys(fields)) {
    if (k in query) throw invalid(`option '${k}' is given both in the query string and as a multipart field; give it once`);
  }
  const o = { ...query, ...fields } as Record<string, unknown>;
  const mode = (o.mode ?? 'photo') as RestoreOptions['mode'];
  if (mode === 'aligned') {
    const photoOnly = PHOTO_ONLY.filter((k) => o[k] !== undefined);
    if (photoOnly.length > 0) throw invalid(`option '${photoOnly[0]}' applies to whole photos (mode=photo), not to mode=aligned face crops`);
  }
  const latent = (o.latent ?? 'mode') as RestoreOptions['latent'];
  if (o.seed !== undefined && latent !== 'sample') throw invalid("option 'seed' only applies with latent=sample (the default mode path has no noise)");
  const out: RestoreOptions = {
    mode,
    format: (o.format ?? 'png') as ImageFormat,
    latent,
    fidelity: (o.fidelity ?? 0) as number,
    upscale: (o.upscale ?? 1) as 1 | 2 | 4,
    background: (o.background ?? 'lanczos') as BackgroundUpsampler,
    onlyCenterFace: o.only_center_face === true,
  };
  if (o.seed !== undefined) out.seed = o.seed as number;
  if (o.max_faces !== undefined) out.maxFaces = o.max_faces as number;
  return out;
}
