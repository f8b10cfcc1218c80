/**
 * Restores one queued image into the bytes `osdface restore` writes for it with the same options
 * (the same OSDFace calls, and encodeRestored).
 */
import type { OSDFace } from '../osdface.js';
import { decodeImage, type DecodedImage } from '../image/io.js';
import { encodeRestored } from '../cli/restore_options.js';
import type { JobSettings } from './job.js';

export interface RestoredJob {
  bytes: Buffer;
  faces: number;
  detected?: number;
  notices: string[];
}

/** The image's pixels; an unreadable image fails with its input name and the reason. */
export async function decodeJobImage(bytes: Uint8Array, input: string): Promise<DecodedImage> {
  try {
    return await decodeImage(bytes);
  } catch (e) {
    const msg = e instanceof Error ? e.message : String(e);
    throw new Error(`${input}: ${msg.replace(/^<image bytes>: /, '')}`);
  }
}

export async function restoreJob(model: OSDFace, image: DecodedImage, s: JobSettings): Promise<RestoredJob> {
  if (s.mode === 'aligned') {
    const opts = { latent: s.latent, fidelity: s.fidelity ?? 0, ...(s.size !== undefined ? { size: s.size } : {}) };
    const [res] = await model.restore([image], s.latent === 'sample' ? { ...opts, seed: [s.seed!] } : opts);
    return { bytes: await encodeRestored(res!, s.format), faces: 1, notices: [] };
  }
  const res = await model.restorePhoto(image, {
    latent: s.latent,
    fidelity: s.fidelity ?? 0,
    ...(s.seed !== undefined ? { seed: s.seed } : {}),
    batch: 1,
    upscale: s.upscale,
    background: s.background,
    onlyCenterFace: s.onlyCenterFace,
    saveFaces: false,
    ...(s.maxFaces !== undefined ? { maxFaces: s.maxFaces } : {}),
    ...(s.minEyeDistance !== undefined ? { minEyeDistance: s.minEyeDistance } : {}),
  });
  return {
    bytes: await encodeRestored(res.image, s.format),
    faces: res.faces.filter((f) => f.status === 'restored').length,
    detected: res.faces.length,
    notices: res.faces.length === 0
      ? res.notices.map((n) => `${n} (a face crop that fills the frame is restored with --aligned)`)
      : res.notices,
  };
}
