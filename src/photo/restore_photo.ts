/**
 * Whole-photo face restoration in Node: ./photo_core.ts (detection post-processing, alignment,
 * masks, paste-back) with the detectors loaded by name and the background upscaled by sharp or
 * ESRGAN. See ./photo_core.ts for the method.
 */
import sharp from 'sharp';
import { EsrganUpscaler, type EsrganScale, type EsrganTileOptions } from './esrgan.js';
import { loadDetector, parseDetectorName } from '../face/detectors.js';
import { restorePhotoWith, type BackgroundUpsampler, type PhotoImage, type RestoreCrops, type RestorePhotoOptions, type RestorePhotoResult } from './photo_core.js';

export {
  DEFAULT_MIN_EYE_DISTANCE, pasteFace, restorePhotoWith, upscaleWithResize, type BackgroundUpsampler, type FaceStatus, type PasteOptions,
  type PhotoFace, type PhotoImage, type PhotoIo, type RestoreCrops, type RestorePhotoOptions, type RestorePhotoResult,
} from './photo_core.js';

/** Resizes interleaved 8-bit pixels with sharp ('lanczos3' or 'nearest'). */
async function resizePixels(data: Uint8Array, width: number, height: number, channels: 1 | 3, outW: number, outH: number, kernel: 'lanczos3' | 'nearest'): Promise<Uint8Array> {
  const buf = await sharp(data, { raw: { width, height, channels } })
    .resize(outW, outH, { kernel, fit: 'fill' })
    .raw()
    .toBuffer();
  // sharp gives 3 bands for a 1-band raw input in some builds; keep the first
  if (buf.length === outW * outH * channels) return new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
  const bands = buf.length / (outW * outH);
  const out = new Uint8Array(outW * outH * channels);
  for (let i = 0; i < outW * outH; i++) for (let k = 0; k < channels; k++) out[i * channels + k] = buf[i * bands + k]!;
  return out;
}

export interface UpscaleBackgroundOptions extends EsrganTileOptions {
  /** ONNX Runtime threads for 'esrgan' (default: all cores). */
  threads?: number;
}

/**
 * Upscales `img` (and its alpha) by `factor`. With 'esrgan' the RGB goes through the ESRGAN-slim
 * network of that scale (x2 or x4; other factors: x4, then lanczos3 to the size), tiled
 * (`opts.tile`, `opts.overlap`); the alpha channel is resized with lanczos3.
 */
export async function upscaleBackground(img: PhotoImage, factor: number, how: BackgroundUpsampler = 'lanczos', opts: UpscaleBackgroundOptions = {}): Promise<PhotoImage> {
  if (factor === 1) return { data: Uint8Array.from(img.data), width: img.width, height: img.height, channels: 3, ...(img.alpha ? { alpha: Uint8Array.from(img.alpha) } : {}) };
  const W = img.width * factor;
  const H = img.height * factor;
  const kernel = how === 'none' ? 'nearest' : 'lanczos3';
  let data: Uint8Array;
  if (how === 'esrgan') {
    const scale: EsrganScale = factor === 2 ? 2 : 4;
    const net = await EsrganUpscaler.load(scale, opts.threads !== undefined ? { threads: opts.threads } : {});
    try {
      const tiles: EsrganTileOptions = {};
      if (opts.tile !== undefined) tiles.tile = opts.tile;
      if (opts.overlap !== undefined) tiles.overlap = opts.overlap;
      const up = await net.upscale(img, tiles);
      data = up.width === W && up.height === H ? up.data : await resizePixels(up.data, up.width, up.height, 3, W, H, 'lanczos3');
    } finally {
      await net.dispose();
    }
  } else {
    data = await resizePixels(img.data, img.width, img.height, 3, W, H, kernel);
  }
  const alpha = img.alpha ? await resizePixels(img.alpha, img.width, img.height, 1, W, H, kernel) : undefined;
  return alpha ? { data, width: W, height: H, channels: 3, alpha } : { data, width: W, height: H, channels: 3 };
}

/**
 * Detects the faces of `image`, restores them with `restoreCrops` and pastes them back. The
 * result has the input's size times `upscale`, and its alpha channel (upscaled the same way).
 */
export async function restorePhoto(image: PhotoImage, restoreCrops: RestoreCrops, opts: RestorePhotoOptions = {}): Promise<RestorePhotoResult> {
  return restorePhotoWith(image, restoreCrops, opts, {
    detect: async (img, detectOpts) => {
      const given = typeof opts.detector === 'object' ? opts.detector : undefined;
      const detector = given ?? (await loadDetector(opts.detector === undefined ? undefined : parseDetectorName(opts.detector, 'restorePhoto: detector'), opts.threads !== undefined ? { threads: opts.threads } : {}));
      try {
        return await detector.detect(img, detectOpts);
      } finally {
        if (!given) await detector.dispose();
      }
    },
    upscale: (img, factor) => upscaleBackground(img, factor, opts.background ?? 'lanczos', opts.threads !== undefined ? { threads: opts.threads } : {}),
  });
}
