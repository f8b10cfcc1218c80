/**
 * The options of `osdface restore` (flags, checks, defaults) and how a restored image is encoded,
 * shared by `osdface restore` and `osdface queue` so that a queued image comes out with the same
 * bytes as one restored directly.
 */
import type { FlagSpec, Flags } from './args.js';
import { encodeImage, type ImageFormat } from '../image/io.js';
import type { RgbImage } from '../image/io.js';
import type { BackgroundUpsampler } from '../photo/restore_photo.js';
import type { VaeTiling } from '../pipeline/tiling.js';
import { DEFAULT_DETECTOR, DETECTOR_NAMES, isDetectorName, type DetectorName } from '../face/detectors.js';
import { DEVICES, type Device } from '../graph/device.js';
import type { OSDFaceLoadOptions } from '../osdface.js';

export const RESTORE_FLAGS: Record<string, FlagSpec> = {
  out: { kind: 'string', short: 'o' },
  model: { kind: 'string' },
  size: { kind: 'int' },
  latent: { kind: 'string', choices: ['mode', 'sample'] },
  seed: { kind: 'int' },
  fidelity: { kind: 'number' },
  'skip-existing': { kind: 'bool' },
  format: { kind: 'string', choices: ['png', 'jpg', 'jpeg', 'webp'] },
  json: { kind: 'bool' },
  threads: { kind: 'int' },
  device: { kind: 'string', choices: DEVICES },
  'low-memory': { kind: 'bool' },
  'no-low-memory': { kind: 'bool' },
  'vae-tile': { kind: 'int' },
  'no-vae-tiling': { kind: 'bool' },
  'vae-overlap': { kind: 'int' },
  'vae-independent': { kind: 'bool' },
  batch: { kind: 'int' },
  compare: { kind: 'bool' },
  aligned: { kind: 'bool' },
  upscale: { kind: 'string', choices: ['1', '2', '4'] },
  'bg-upsampler': { kind: 'string' },
  'only-center-face': { kind: 'bool' },
  detector: { kind: 'string' },
  'max-faces': { kind: 'int' },
  'min-eye-distance': { kind: 'number' },
  'save-faces': { kind: 'bool' },
  help: { kind: 'bool', short: 'h' },
};

/** The flags that decide an output's pixels and encoding (what a queued job carries). */
export const IMAGE_FLAGS = [
  'aligned', 'size', 'latent', 'seed', 'fidelity', 'format', 'upscale', 'bg-upsampler', 'only-center-face', 'max-faces', 'min-eye-distance',
] as const;

/** Flags that only apply to whole photos (not to --aligned crops). */
export const PHOTO_FLAGS = ['upscale', 'bg-upsampler', 'detector', 'only-center-face', 'max-faces', 'min-eye-distance', 'save-faces'] as const;

export const SEED_LIMIT = 2 ** 32;

export type Mode = 'photo' | 'aligned';

/** What decides an output's pixels and bytes (IMAGE_FLAGS, parsed). */
export interface ImageSettings {
  mode: Mode;
  latent: 'mode' | 'sample';
  /** --seed as given (image k of a list uses seed + k). */
  seed?: number;
  /** --fidelity: 0 (left out) the model as trained ... 1 closest to the input. */
  fidelity?: number;
  format: ImageFormat;
  /** --aligned: the output's longer side. */
  size?: number;
  upscale: 1 | 2 | 4;
  background: BackgroundUpsampler;
  onlyCenterFace: boolean;
  maxFaces?: number;
  minEyeDistance?: number;
}

/** Every restore option, parsed and checked. */
export interface RestoreSettings extends ImageSettings {
  /** --detector: which face detector finds the faces of whole photos. */
  detector: DetectorName;
  threads?: number;
  /** --device: where the networks run (OSDFace.load device; default cpu). */
  device?: Device;
  vaeTiling?: VaeTiling;
  lowMemory?: boolean;
  batch: number;
  compare: boolean;
  saveFaces: boolean;
  json: boolean;
  skipExisting: boolean;
}

/** How `osdface restore` loads the model (images and videos alike). */
export function modelLoadOptions(s: Pick<RestoreSettings, 'threads' | 'vaeTiling' | 'lowMemory' | 'device'>): OSDFaceLoadOptions {
  return {
    ...(s.threads !== undefined ? { threads: s.threads } : {}), ...(s.vaeTiling !== undefined ? { vaeTiling: s.vaeTiling } : {}),
    ...(s.lowMemory !== undefined ? { lowMemory: s.lowMemory } : {}), ...(s.device !== undefined ? { device: s.device } : {}),
  };
}

/** Checks the restore flags present in `flags` and fills in the defaults; `usage(msg)` makes the error thrown for a bad combination. */
export function parseRestoreSettings(flags: Flags, usage: (msg: string) => Error): RestoreSettings {
  const positive = (name: string): number | undefined => {
    const v = flags.get(name) as number | undefined;
    if (v !== undefined && !(v > 0)) throw usage(`--${name} must be greater than 0, got ${v}`);
    return v;
  };
  const mode: Mode = flags.has('aligned') ? 'aligned' : 'photo';
  if (mode === 'aligned') {
    const photoOnly = PHOTO_FLAGS.filter((f) => flags.has(f));
    if (photoOnly.length > 0) throw usage(`--${photoOnly[0]} applies to whole photos, not to --aligned face crops (use --size to scale aligned outputs)`);
  } else if (flags.has('size')) {
    throw usage('--size applies to --aligned face crops; a restored photo has the input\'s size times --upscale');
  }
  const bg = flags.get('bg-upsampler') as string | undefined;
  if (bg !== undefined && bg !== 'lanczos' && bg !== 'esrgan' && bg !== 'none') throw usage(`--bg-upsampler must be one of lanczos, esrgan, none, got '${bg}'`);
  const detector = flags.get('detector') ?? DEFAULT_DETECTOR;
  if (!isDetectorName(detector)) throw usage(`--detector must be one of ${DETECTOR_NAMES.join(', ')}, got '${String(detector)}'`);
  const size = positive('size');
  const threads = positive('threads');
  const vaeTile = positive('vae-tile');
  if (vaeTile !== undefined && flags.has('no-vae-tiling')) throw usage('--vae-tile and --no-vae-tiling contradict each other; give one');
  if (vaeTile !== undefined && vaeTile < 8) throw usage(`--vae-tile must be at least 8 pixels, got ${vaeTile}`);
  if (flags.has('low-memory') && flags.has('no-low-memory')) throw usage('--low-memory and --no-low-memory contradict each other; give one');
  const lowMemory = flags.has('low-memory') ? true : flags.has('no-low-memory') ? false : undefined;
  // A tile size asks for tiling whatever the image size (threshold 0); images within one tile still run untiled.
  const vaeOverlap = flags.get('vae-overlap') as number | undefined;
  if (vaeOverlap !== undefined && (!Number.isInteger(vaeOverlap) || vaeOverlap < 0)) throw usage(`--vae-overlap must be a non-negative number of pixels, got ${vaeOverlap}`);
  if (vaeOverlap !== undefined && !flags.has('vae-independent')) throw usage('--vae-overlap applies to independent tiles: add --vae-independent (exact tiles read the halo each convolution needs)');
  if (flags.has('no-vae-tiling') && flags.has('vae-independent')) throw usage('--no-vae-tiling contradicts --vae-independent; give one');
  const tileOptions = { ...(vaeOverlap !== undefined ? { overlap: vaeOverlap } : {}), ...(flags.has('vae-independent') ? { independent: true } : {}) };
  const vaeTiling = flags.has('no-vae-tiling') ? false : vaeTile !== undefined ? { tileSize: vaeTile, threshold: 0, ...tileOptions } : Object.keys(tileOptions).length > 0 ? tileOptions : undefined;
  const batch = positive('batch') ?? 1;
  const maxFaces = positive('max-faces');
  const minEyeDistance = flags.get('min-eye-distance') as number | undefined;
  if (minEyeDistance !== undefined && minEyeDistance < 0) throw usage(`--min-eye-distance must be 0 or more, got ${minEyeDistance}`);
  const latent = (flags.get('latent') ?? 'mode') as 'mode' | 'sample';
  const format: ImageFormat = flags.get('format') === 'jpeg' ? 'jpg' : ((flags.get('format') ?? 'png') as ImageFormat);
  const seed = flags.get('seed') as number | undefined;
  if (seed !== undefined && latent !== 'sample') throw usage('--seed only applies to --latent sample (the default mode path has no noise)');
  if (seed !== undefined && seed >= SEED_LIMIT) throw usage(`--seed must be below ${SEED_LIMIT}, got ${seed}`);
  const fidelity = (flags.get('fidelity') as number | undefined) ?? 0;
  if (!(fidelity >= 0 && fidelity <= 1)) throw usage(`--fidelity must be a number from 0 (the model as trained) to 1 (closest to the input), got ${fidelity}`);
  return {
    mode, latent, format, batch, detector,
    ...(fidelity > 0 ? { fidelity } : {}),
    upscale: Number(flags.get('upscale') ?? 1) as 1 | 2 | 4,
    background: (bg ?? 'lanczos') as BackgroundUpsampler,
    onlyCenterFace: flags.has('only-center-face'),
    compare: flags.has('compare'),
    saveFaces: flags.has('save-faces'),
    json: flags.has('json'),
    skipExisting: flags.has('skip-existing'),
    ...(seed !== undefined ? { seed } : {}),
    ...(size !== undefined ? { size } : {}),
    ...(threads !== undefined ? { threads } : {}),
    ...(flags.has('device') ? { device: flags.get('device') as Device } : {}),
    ...(vaeTiling !== undefined ? { vaeTiling } : {}),
    ...(lowMemory !== undefined ? { lowMemory } : {}),
    ...(maxFaces !== undefined ? { maxFaces } : {}),
    ...(minEyeDistance !== undefined ? { minEyeDistance } : {}),
  };
}

/** The bytes of a restored image as `osdface restore` writes them: `format`, with its alpha channel on png and webp. */
export function encodeRestored(img: RgbImage & { alpha?: Uint8Array }, format: ImageFormat): Promise<Buffer> {
  return encodeImage(img, format, format === 'jpg' ? undefined : img.alpha);
}
