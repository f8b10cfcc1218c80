/**
 * Whole-photo face restoration, with no I/O (shared by Node's ./restore_photo.ts and the browser): detect faces, align each to the FFHQ template, hand the aligned
 * crops to a caller-supplied restorer (the OSDFace model, or anything else that maps crops to
 * crops), and paste the restored faces back into the (optionally upscaled) photo with soft masks.
 *
 * Paste-back: each restored crop is warped back with the inverse similarity (bilinear). Its mask
 * is the crop square, eroded and feathered: a pixel's weight depends on its distance to the crop
 * edge, measured in output pixels, 0 within `erosion` of the edge and rising to 1 over `feather`
 * pixels (a smoothstep). Both scale with the face: erosion = 2 * upscale + face side / 64,
 * feather = face side / 10 (the face side being the crop's side in output pixels), which is the
 * erode-then-blur mask of the usual face helpers, computed in closed form. Pixels outside every
 * mask are the background's, byte for byte.
 */
import type { RgbImage } from '../image/pixels.js';
import { resizePixels } from '../image/resize.js';
import type { Box, DetectOptions, Landmarks5 } from '../face/types.js';
import type { Detector, DetectorName } from '../face/types.js';
import { affineScale, alignFace, applyAffine, composeAffine, FFHQ_BORDER_FILL, invertAffine, type Affine } from '../face/align.js';

/** Restores aligned face crops; must return one image per crop (any square size). */
export type RestoreCrops = (crops: RgbImage[]) => Promise<RgbImage[]>;

/** An RGB image with an optional alpha channel (width*height values, not applied to `data`). */
export interface PhotoImage extends RgbImage {
  alpha?: Uint8Array;
}

export type BackgroundUpsampler = 'esrgan' | 'lanczos' | 'none';

export interface RestorePhotoOptions {
  /** Output scale (default 1). */
  upscale?: 1 | 2 | 4;
  /**
   * How the background is upscaled when upscale > 1: 'lanczos' (sharp's lanczos3, default),
   * 'esrgan' (the x2 / x4 ESRGAN-slim network of @upscalerjs/esrgan-slim, tiled; src/photo/esrgan.ts)
   * or 'none' (nearest neighbour, so the background pixels are only repeated).
   */
  background?: BackgroundUpsampler;
  /** ONNX Runtime threads for the 'esrgan' background and a detector loaded by name (default: all cores). */
  threads?: number;
  /** Restore only the face nearest the image centre. */
  onlyCenterFace?: boolean;
  /** Restore at most this many faces, the largest first (by eye distance); the rest are reported. */
  maxFaces?: number;
  /** Faces whose eye distance is below this many input pixels are left as they are (default DEFAULT_MIN_EYE_DISTANCE, 10). */
  minEyeDistance?: number;
  /** Keep each face's aligned crop and restored crop in the result. */
  saveFaces?: boolean;
  /** Side of the aligned crops handed to `restoreCrops` (default 512). */
  faceSize?: number;
  /**
   * A loaded detector to use, or the name of one to load for this call and release after
   * ('retinaface' or 'ssd'; default `DEFAULT_DETECTOR`, 'retinaface').
   */
  detector?: Detector | DetectorName;
  /** Detector options (score threshold...). */
  detect?: DetectOptions;
  /** Use these faces instead of detecting (landmarks in input pixels). */
  faces?: { landmarks: Landmarks5; box?: Box; score?: number }[];
}

export type FaceStatus = 'restored' | 'too-small' | 'not-center' | 'over-max-faces';

export interface PhotoFace {
  /** Index in detection order (best score first). */
  index: number;
  box?: Box;
  score?: number;
  /** In input pixels. */
  landmarks: Landmarks5;
  /** Distance between the eye centres, input pixels. */
  eyeDistance: number;
  status: FaceStatus;
  /** Image (input pixels) -> aligned crop. */
  matrix: Affine;
  /** With `saveFaces`: the aligned crop given to the restorer. */
  crop?: RgbImage;
  /** With `saveFaces`: what the restorer returned for it. */
  restoredCrop?: RgbImage;
}

export interface RestorePhotoResult {
  image: PhotoImage;
  faces: PhotoFace[];
  /** Human-readable remarks: no face found, faces left as they are, and why. */
  notices: string[];
}

function checkImage(img: RgbImage, what: string): void {
  if (!Number.isInteger(img.width) || !Number.isInteger(img.height) || img.width < 1 || img.height < 1 || img.data.length !== img.width * img.height * 3) {
    throw new Error(`${what}: expected ${img.width}x${img.height} RGB pixels (${img.width * img.height * 3} bytes), got ${img.data.length} bytes`);
  }
}

function smoothstep(t: number): number {
  if (t <= 0) return 0;
  if (t >= 1) return 1;
  return t * t * (3 - 2 * t);
}

export interface PasteOptions {
  /** Erosion of the mask from the crop's edge, output pixels (default 2 * upscale + side / 64). */
  erosion?: number;
  /** Width of the soft ramp, output pixels (default side / 10). */
  feather?: number;
  /** Output pixels per input pixel (default 1): only used for the default erosion. */
  upscale?: number;
}

/**
 * Blends `face` (a restored aligned crop) into `target` in place. `cropToTarget` maps crop pixels
 * to target pixels (for a crop of `face`'s size). Returns the number of target pixels changed.
 */
export function pasteFace(target: RgbImage, face: RgbImage, cropToTarget: Affine, opts: PasteOptions = {}): number {
  checkImage(target, 'pasteFace target');
  checkImage(face, 'pasteFace face');
  const toCrop = invertAffine(cropToTarget);
  const s = affineScale(cropToTarget); // target pixels per crop pixel
  const sideOut = s * Math.max(face.width, face.height);
  const erosion = opts.erosion ?? 2 * (opts.upscale ?? 1) + sideOut / 64;
  const feather = Math.max(1e-6, opts.feather ?? sideOut / 10);
  // bounding box of the warped crop in the target
  const corners = [[0, 0], [face.width - 1, 0], [0, face.height - 1], [face.width - 1, face.height - 1]].map((p) => applyAffine(cropToTarget, p as [number, number]));
  const x0 = Math.max(0, Math.floor(Math.min(...corners.map((p) => p[0]))));
  const x1 = Math.min(target.width - 1, Math.ceil(Math.max(...corners.map((p) => p[0]))));
  const y0 = Math.max(0, Math.floor(Math.min(...corners.map((p) => p[1]))));
  const y1 = Math.min(target.height - 1, Math.ceil(Math.max(...corners.map((p) => p[1]))));
  const [a, b, c, d, e, f] = toCrop;
  const fw = face.width;
  const fh = face.height;
  const fd = face.data;
  const td = target.data;
  let changed = 0;
  for (let y = y0; y <= y1; y++) {
    for (let x = x0; x <= x1; x++) {
      const u = a * x + b * y + c;
      const v = d * x + e * y + f;
      // distance to the crop's edge, in target pixels
      const dist = Math.min(u, v, fw - 1 - u, fh - 1 - v) * s;
      const m = smoothstep((dist - erosion) / feather);
      if (m <= 0) continue;
      // bilinear sample of the face (u, v are inside the crop here)
      const ux = Math.min(Math.max(u, 0), fw - 1);
      const vy = Math.min(Math.max(v, 0), fh - 1);
      const ix = Math.min(Math.floor(ux), fw - 2);
      const iy = Math.min(Math.floor(vy), fh - 2);
      const gx = ux - ix;
      const gy = vy - iy;
      const o = (y * target.width + x) * 3;
      for (let k = 0; k < 3; k++) {
        const p00 = fd[(iy * fw + ix) * 3 + k]!;
        const p10 = fd[(iy * fw + ix + 1) * 3 + k]!;
        const p01 = fd[((iy + 1) * fw + ix) * 3 + k]!;
        const p11 = fd[((iy + 1) * fw + ix + 1) * 3 + k]!;
        const val = (p00 * (1 - gx) + p10 * gx) * (1 - gy) + (p01 * (1 - gx) + p11 * gx) * gy;
        const blended = m * val + (1 - m) * td[o + k]!;
        td[o + k] = Math.min(255, Math.max(0, Math.round(blended)));
      }
      changed++;
    }
  }
  return changed;
}

const dist2 = (p: [number, number], q: [number, number]) => Math.hypot(p[0] - q[0], p[1] - q[1]);

/**
 * Faces whose eyes are closer than this many input pixels are left as they are by default. Chosen
 * on the sample photos of ../shared/data/whole: their 24 real faces have eye distances from 14.7
 * to 103 px and all align into usable crops; the one false detection (a hand) measures 4.7 px.
 * CodeFormer's own default is 5.
 */
export const DEFAULT_MIN_EYE_DISTANCE = 10;

const plural = (n: number, word: string): string => `${n} ${word}${n === 1 ? '' : 's'}`;

/** The I/O restorePhotoWith leaves to its caller: finding faces and upscaling the background. */
export interface PhotoIo {
  /** The faces of `image` (landmarks in its pixels), best first; not called when `opts.faces` is given. */
  detect(image: RgbImage, opts?: DetectOptions): Promise<{ landmarks: Landmarks5; box?: Box; score?: number }[]>;
  /** `image` (and its alpha) upscaled by `factor` (1: a copy). */
  upscale(image: PhotoImage, factor: number): Promise<PhotoImage>;
}

/** Upscales with ../image/resize.ts (lanczos3, or nearest for 'none'); the background of the browser app. */
export async function upscaleWithResize(img: PhotoImage, factor: number, how: 'lanczos' | 'none' = 'lanczos'): Promise<PhotoImage> {
  const W = img.width * factor;
  const H = img.height * factor;
  const kernel = how === 'none' ? 'nearest' : 'lanczos3';
  const data = factor === 1 ? Uint8Array.from(img.data) : resizePixels(img, 3, W, H, kernel);
  if (!img.alpha) return { data, width: W, height: H, channels: 3 };
  const alpha = factor === 1 ? Uint8Array.from(img.alpha) : resizePixels({ data: img.alpha, width: img.width, height: img.height }, 1, W, H, kernel);
  return { data, width: W, height: H, channels: 3, alpha };
}

/**
 * Detects the faces of `image` (`io.detect`), restores them with `restoreCrops` and pastes them back
 * into the background (`io.upscale`: the photo upscaled by `opts.upscale`). The
 * result has the input's size times `upscale`, and its alpha channel (upscaled the same way).
 */
export async function restorePhotoWith(image: PhotoImage, restoreCrops: RestoreCrops, opts: RestorePhotoOptions, io: PhotoIo): Promise<RestorePhotoResult> {
  checkImage(image, 'restorePhoto');
  const upscale = opts.upscale ?? 1;
  if (upscale !== 1 && upscale !== 2 && upscale !== 4) throw new Error(`restorePhoto: upscale must be 1, 2 or 4, got ${String(upscale)}`);
  if (image.alpha && image.alpha.length !== image.width * image.height) throw new Error(`restorePhoto: alpha has ${image.alpha.length} values, expected ${image.width * image.height}`);
  const minEye = opts.minEyeDistance ?? DEFAULT_MIN_EYE_DISTANCE;
  const faceSize = opts.faceSize ?? 512;
  const notices: string[] = [];

  let found: { landmarks: Landmarks5; box?: Box; score?: number }[];
  if (opts.faces) {
    found = opts.faces;
  } else {
    found = await io.detect(image, opts.detect);
  }

  const faces: PhotoFace[] = found.map((f, index) => {
    const eyeDistance = dist2(f.landmarks[0], f.landmarks[1]);
    return { index, landmarks: f.landmarks, eyeDistance, status: 'restored' as FaceStatus, matrix: [1, 0, 0, 0, 1, 0] as Affine, ...(f.box ? { box: f.box } : {}), ...(f.score !== undefined ? { score: f.score } : {}) };
  });
  if (faces.length === 0) notices.push('no face found: the image is returned ' + (upscale > 1 ? `upscaled x${upscale} only` : 'unchanged'));

  for (const f of faces) {
    if (f.eyeDistance < minEye) {
      f.status = 'too-small';
      notices.push(`face ${f.index} left as it is: eye distance ${f.eyeDistance.toFixed(1)} px < ${minEye} px (--min-eye-distance / minEyeDistance sets the limit)`);
    }
  }
  if (opts.onlyCenterFace) {
    const cx = image.width / 2;
    const cy = image.height / 2;
    const center = (f: PhotoFace): [number, number] => (f.box ? [f.box.x + f.box.width / 2, f.box.y + f.box.height / 2] : f.landmarks[2]);
    const candidates = faces.filter((f) => f.status === 'restored');
    candidates.sort((p, q) => dist2(center(p), [cx, cy]) - dist2(center(q), [cx, cy]));
    for (const f of candidates.slice(1)) f.status = 'not-center';
    if (candidates.length > 1) notices.push(`only the centre face (face ${candidates[0]!.index}) restored (--only-center-face / onlyCenterFace); ${plural(candidates.length - 1, 'other face')} left as ${candidates.length === 2 ? 'it is' : 'they are'}`);
  }
  if (opts.maxFaces !== undefined) {
    if (!Number.isInteger(opts.maxFaces) || opts.maxFaces < 0) throw new Error(`restorePhoto: maxFaces must be a non-negative integer, got ${opts.maxFaces}`);
    const candidates = faces.filter((f) => f.status === 'restored').sort((p, q) => q.eyeDistance - p.eyeDistance);
    for (const f of candidates.slice(opts.maxFaces)) f.status = 'over-max-faces';
    if (candidates.length > opts.maxFaces) notices.push(`${plural(candidates.length - opts.maxFaces, 'face')} over the limit of ${opts.maxFaces} (--max-faces / maxFaces) left as ${candidates.length - opts.maxFaces === 1 ? 'it is' : 'they are'}`);
  }

  const todo = faces.filter((f) => f.status === 'restored');
  const crops: RgbImage[] = [];
  for (const f of todo) {
    const aligned = alignFace(image, f.landmarks, { size: faceSize, fill: FFHQ_BORDER_FILL });
    f.matrix = aligned.matrix;
    crops.push(aligned.crop);
    if (opts.saveFaces) f.crop = aligned.crop;
  }
  const restored = todo.length > 0 ? await restoreCrops(crops) : [];
  if (!Array.isArray(restored) || restored.length !== crops.length) {
    throw new Error(`restorePhoto: restoreCrops returned ${Array.isArray(restored) ? restored.length : typeof restored} image(s) for ${crops.length} crop(s)`);
  }

  const out = await io.upscale(image, upscale);
  // pixel centres: output pixel X covers input (X + 0.5) / upscale - 0.5, as sharp resizes
  const toOut: Affine = [upscale, 0, 0.5 * upscale - 0.5, 0, upscale, 0.5 * upscale - 0.5];
  todo.forEach((f, i) => {
    const r = restored[i]!;
    checkImage(r, `restorePhoto: restored face ${f.index}`);
    if (r.width < 2 || r.height < 2) throw new Error(`restorePhoto: restored face ${f.index} is ${r.width}x${r.height}`);
    // restored crop pixels -> aligned crop pixels (when the restorer changed the size) -> input -> output
    const sx = faceSize / r.width;
    const sy = faceSize / r.height;
    const rToCrop: Affine = [sx, 0, 0.5 * sx - 0.5, 0, sy, 0.5 * sy - 0.5];
    const cropToOut = composeAffine(toOut, composeAffine(invertAffine(f.matrix), rToCrop));
    pasteFace(out, r, cropToOut, { upscale });
    if (opts.saveFaces) f.restoredCrop = r;
  });
  return { image: out, faces, notices };
}
