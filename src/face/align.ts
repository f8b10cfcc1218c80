/**
 * Face alignment to the FFHQ 5-point template: a least-squares similarity transform (Umeyama's
 * estimate; in 2-D it has the closed form below and can never reflect), optionally dropping one
 * outlying landmark, the bilinear warp with a constant border fill, and the inverse transform.
 *
 * Coordinates: pixel (i, j) has its centre at (i, j), as in OpenCV's warpAffine, for the crop
 * and the image alike; the same convention is used both ways, so align-then-paste is consistent.
 */
import type { RgbImage } from '../image/io.js';
import type { Landmarks5, Point } from './detector.js';

/** A 2x3 affine matrix [a, b, c, d, e, f]: x' = a x + b y + c, y' = d x + e y + f. */
export type Affine = [number, number, number, number, number, number];

/** The FFHQ 5-point template for a 512x512 crop (left eye, right eye, nose, left / right mouth corner). */
export const FFHQ_TEMPLATE_512: Landmarks5 = [
  [192.98138, 239.94708],
  [318.90277, 240.1936],
  [256.63416, 314.01935],
  [201.26117, 371.41043],
  [313.08905, 371.15118],
];

/** Border fill of aligned crops (the FFHQ-alignment grey). */
export const FFHQ_BORDER_FILL: [number, number, number] = [135, 133, 132];

/** The template scaled to a size x size crop. */
export function templateFor(size: number): Landmarks5 {
  const s = size / 512;
  return FFHQ_TEMPLATE_512.map(([x, y]) => [x * s, y * s]) as Landmarks5;
}

export function applyAffine(m: Affine, p: Point): Point {
  return [m[0] * p[0] + m[1] * p[1] + m[2], m[3] * p[0] + m[4] * p[1] + m[5]];
}

export function invertAffine(m: Affine): Affine {
  const [a, b, c, d, e, f] = m;
  const det = a * e - b * d;
  if (!Number.isFinite(det) || Math.abs(det) < 1e-12) throw new Error('invertAffine: the matrix is singular');
  const ia = e / det;
  const ib = -b / det;
  const id = -d / det;
  const ie = a / det;
  return [ia, ib, -(ia * c + ib * f), id, ie, -(id * c + ie * f)];
}

/** `outer` after `inner`: p -> outer(inner(p)). */
export function composeAffine(outer: Affine, inner: Affine): Affine {
  const [a, b, c, d, e, f] = outer;
  const [A, B, C, D, E, F] = inner;
  return [a * A + b * D, a * B + b * E, a * C + b * F + c, d * A + e * D, d * B + e * E, d * C + e * F + f];
}

/** The scale factor of a similarity (or the square root of |det| of an affine). */
export function affineScale(m: Affine): number {
  return Math.sqrt(Math.abs(m[0] * m[4] - m[1] * m[3]));
}

export interface SimilarityFit {
  /** Maps `src` points onto `dst`. */
  matrix: Affine;
  /** Which points the final fit used. */
  inliers: boolean[];
  /** Distance of each mapped src point to its dst point (all points, inliers or not). */
  residuals: number[];
  /** Root mean square residual over the inliers. */
  rms: number;
}

function fitSimilarity(src: readonly Point[], dst: readonly Point[], use: readonly boolean[]): Affine {
  let n = 0;
  let msx = 0, msy = 0, mdx = 0, mdy = 0;
  for (let i = 0; i < src.length; i++) {
    if (!use[i]) continue;
    n++;
    msx += src[i]![0]; msy += src[i]![1];
    mdx += dst[i]![0]; mdy += dst[i]![1];
  }
  msx /= n; msy /= n; mdx /= n; mdy /= n;
  let ss = 0, pa = 0, pb = 0;
  for (let i = 0; i < src.length; i++) {
    if (!use[i]) continue;
    const sx = src[i]![0] - msx, sy = src[i]![1] - msy;
    const dx = dst[i]![0] - mdx, dy = dst[i]![1] - mdy;
    ss += sx * sx + sy * sy;
    pa += sx * dx + sy * dy;
    pb += sx * dy - sy * dx;
  }
  if (!(ss > 1e-12)) throw new Error('estimateSimilarity: the source points coincide');
  // Least squares over [a, -b; b, a] (rotation times scale) and a translation; this is
  // Umeyama's solution restricted to proper rotations, which in 2-D is exact.
  const a = pa / ss;
  const b = pb / ss;
  return [a, -b, mdx - (a * msx - b * msy), b, a, mdy - (b * msx + a * msy)];
}

export interface EstimateOptions {
  /**
   * Drop the worst point and refit when its residual is more than `outlierFactor` times the RMS
   * residual of the others and more than `minOutlierPx` (in dst units). Default true.
   */
  robust?: boolean;
  outlierFactor?: number;
  minOutlierPx?: number;
}

/** Least-squares similarity transform taking `src` onto `dst` (at least 2 points). */
export function estimateSimilarity(src: readonly Point[], dst: readonly Point[], opts: EstimateOptions = {}): SimilarityFit {
  if (src.length !== dst.length || src.length < 2) throw new Error(`estimateSimilarity: need matching point lists of 2 or more, got ${src.length} and ${dst.length}`);
  for (const p of [...src, ...dst]) {
    if (!Number.isFinite(p[0]) || !Number.isFinite(p[1])) throw new Error('estimateSimilarity: points must be finite');
  }
  const use = src.map(() => true);
  const residualsOf = (m: Affine) => src.map((p, i) => {
    const q = applyAffine(m, p);
    return Math.hypot(q[0] - dst[i]![0], q[1] - dst[i]![1]);
  });
  let matrix = fitSimilarity(src, dst, use);
  let residuals = residualsOf(matrix);
  if ((opts.robust ?? true) && src.length >= 4) {
    const factor = opts.outlierFactor ?? 3;
    const minPx = opts.minOutlierPx ?? 0.08 * Math.hypot(dst[1]![0] - dst[0]![0], dst[1]![1] - dst[0]![1]);
    let worst = 0;
    for (let i = 1; i < residuals.length; i++) if (residuals[i]! > residuals[worst]!) worst = i;
    const trial = use.map((_, i) => i !== worst);
    const m2 = fitSimilarity(src, dst, trial);
    const r2 = residualsOf(m2);
    const others = r2.filter((_, i) => i !== worst);
    const rmsOthers = Math.sqrt(others.reduce((s, r) => s + r * r, 0) / others.length);
    if (r2[worst]! > minPx && r2[worst]! > factor * Math.max(rmsOthers, 1e-9)) {
      use[worst] = false;
      matrix = m2;
      residuals = r2;
    }
  }
  const inl = residuals.filter((_, i) => use[i]);
  const rms = Math.sqrt(inl.reduce((s, r) => s + r * r, 0) / inl.length);
  return { matrix, inliers: use, residuals, rms };
}

/**
 * Samples `src` (interleaved, `channels` per pixel) through `toSrc` (output pixel -> source
 * pixel) into a width x height image, bilinear; source pixels outside the image count as `fill`.
 */
export function warpPixels(
  src: Uint8Array, srcW: number, srcH: number, channels: number,
  toSrc: Affine, width: number, height: number, fill: readonly number[],
): Uint8Array {
  const out = new Uint8Array(width * height * channels);
  const [a, b, c, d, e, f] = toSrc;
  const px = new Float64Array(channels);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const sx = a * x + b * y + c;
      const sy = d * x + e * y + f;
      const o = (y * width + x) * channels;
      const x0 = Math.floor(sx);
      const y0 = Math.floor(sy);
      if (x0 < -1 || y0 < -1 || x0 >= srcW || y0 >= srcH || !Number.isFinite(sx) || !Number.isFinite(sy)) {
        for (let k = 0; k < channels; k++) out[o + k] = fill[k]!;
        continue;
      }
      const fx = sx - x0;
      const fy = sy - y0;
      px.fill(0);
      for (let j = 0; j < 2; j++) {
        const yy = y0 + j;
        const wy = j === 0 ? 1 - fy : fy;
        if (wy === 0) continue;
        for (let i = 0; i < 2; i++) {
          const xx = x0 + i;
          const w = wy * (i === 0 ? 1 - fx : fx);
          if (w === 0) continue;
          if (xx < 0 || yy < 0 || xx >= srcW || yy >= srcH) {
            for (let k = 0; k < channels; k++) px[k] += w * fill[k]!;
          } else {
            const s = (yy * srcW + xx) * channels;
            for (let k = 0; k < channels; k++) px[k] += w * src[s + k]!;
          }
        }
      }
      for (let k = 0; k < channels; k++) out[o + k] = Math.min(255, Math.max(0, Math.round(px[k]!)));
    }
  }
  return out;
}

/** Warps `img` with `m` (image -> output coordinates) into a width x height RGB image. */
export function warpAffine(img: RgbImage, m: Affine, width: number, height: number, fill: readonly [number, number, number] = FFHQ_BORDER_FILL): RgbImage {
  const data = warpPixels(img.data, img.width, img.height, 3, invertAffine(m), width, height, fill);
  return { data, width, height, channels: 3 };
}

export interface AlignedFace {
  /** The size x size aligned crop. */
  crop: RgbImage;
  /** Image -> crop. */
  matrix: Affine;
  /** Crop -> image. */
  inverse: Affine;
  /** The similarity fit (residuals in crop pixels). */
  fit: SimilarityFit;
}

export interface AlignOptions extends EstimateOptions {
  /** Crop side in pixels (default 512). */
  size?: number;
  /** Border fill (default (135, 133, 132)). */
  fill?: [number, number, number];
}

/** Aligns the face with these 5 landmarks to the FFHQ template at `size`. */
export function alignFace(img: RgbImage, landmarks: Landmarks5, opts: AlignOptions = {}): AlignedFace {
  const size = opts.size ?? 512;
  if (!Number.isInteger(size) || size < 1) throw new Error(`alignFace: size must be a positive integer, got ${size}`);
  const fit = estimateSimilarity(landmarks, templateFor(size), opts);
  const crop = warpAffine(img, fit.matrix, size, size, opts.fill ?? FFHQ_BORDER_FILL);
  return { crop, matrix: fit.matrix, inverse: invertAffine(fit.matrix), fit };
}
