/**
 * One restore request as a worker runs it: the decoded image through the model, then encoded,
 * exactly as `osdface restore` does for one input (same calls, same options, same encoder), so the
 * bytes are the command's for the same input, options and seed.
 */
import crypto from 'node:crypto';
import type { OSDFace } from '../osdface.js';
import type { Detector } from '../face/detectors.js';
import { encodeImage, type DecodedImage } from '../image/io.js';
import { SEED_LIMIT, type RestoreOptions } from './options.js';

/** What the server sends a worker: pixels decoded in the server (so bad images never reach a worker), and the options. */
export interface JobInput {
  image: Pick<DecodedImage, 'data' | 'width' | 'height' | 'channels' | 'alpha' | 'sourceFormat'>;
  options: RestoreOptions;
}

export interface JobFace {
  box: { x: number; y: number; width: number; height: number } | null;
  score: number | null;
  /** 5 points (left eye, right eye, nose, mouth corners), input pixels. */
  landmarks: [number, number][];
  status: string;
}

export interface JobResult {
  /** The encoded output image. */
  bytes: Uint8Array;
  width: number;
  height: number;
  /** Faces restored (1 for an aligned crop). */
  facesRestored: number;
  /** Every face found (photos; empty for an aligned crop, which is one face by definition). */
  faces: JobFace[];
  notices: string[];
  /** The noise seed used (latent 'sample'). */
  seed?: number;
}

const r2 = (v: number) => Math.round(v * 100) / 100;

export async function runJob(model: OSDFace, detector: Detector, input: JobInput): Promise<JobResult> {
  const o = input.options;
  const image: DecodedImage = { ...input.image };
  const seed = o.latent === 'sample' ? (o.seed ?? crypto.randomInt(0, SEED_LIMIT - 1)) : undefined;
  if (o.mode === 'aligned') {
    // `osdface restore --aligned`: model.restore([image], { latent, seed: [seed] })
    const [res] = await model.restore([image], seed === undefined ? { latent: o.latent, fidelity: o.fidelity } : { latent: o.latent, fidelity: o.fidelity, seed: [seed] });
    const bytes = await encodeImage(res!, o.format, o.format === 'jpg' ? undefined : res!.alpha);
    return { bytes, width: res!.width, height: res!.height, facesRestored: 1, faces: [], notices: [], ...(seed !== undefined ? { seed } : {}) };
  }
  const res = await model.restorePhoto(image, {
    detector,
    latent: o.latent,
    fidelity: o.fidelity,
    ...(seed !== undefined ? { seed } : {}),
    batch: 1,
    upscale: o.upscale,
    background: o.background,
    onlyCenterFace: o.onlyCenterFace,
    saveFaces: false,
    ...(o.maxFaces !== undefined ? { maxFaces: o.maxFaces } : {}),
  });
  const bytes = await encodeImage(res.image, o.format, o.format === 'jpg' ? undefined : res.image.alpha);
  const faces = res.faces.map((f) => ({
    box: f.box ? { x: r2(f.box.x), y: r2(f.box.y), width: r2(f.box.width), height: r2(f.box.height) } : null,
    score: f.score !== undefined ? Math.round(f.score * 10000) / 10000 : null,
    landmarks: f.landmarks.map(([x, y]) => [r2(x), r2(y)] as [number, number]),
    status: f.status,
  }));
  const notices = res.faces.length === 0 ? res.notices.map((n) => `${n} (a face crop that fills the frame is restored with mode=aligned)`) : res.notices;
  return {
    bytes, width: res.image.width, height: res.image.height,
    facesRestored: res.faces.filter((f) => f.status === 'restored').length,
    faces, notices, ...(seed !== undefined ? { seed } : {}),
  };
}
