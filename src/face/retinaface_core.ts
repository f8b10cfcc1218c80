/**
 * RetinaFace-mobilenet0.25 detection with no I/O: the network input, the reference recipe
 * (priors, decoding, NMS: ./priors.ts), the image pyramid and tiles, the final faces. It runs on
 * any session of the graph (./session.ts's seam): onnxruntime-node (./retinaface.ts, which builds
 * the graph from the shipped weights) or onnxruntime-web (the browser app, on the same graph
 * built at build time). See ./retinaface.ts for the model and recipe.
 */
import type { RgbImage } from '../image/pixels.js';
import { resizePixels } from '../image/resize.js';
import type { InferenceSessionLike } from '../graph/session.js';
import { floatTensor, type FloatTensor } from '../tensor.js';
import { decodeCandidates, MNET_PRIORS, nms, type RawDetection, priorBoxes } from './priors.js';
import { padImage, type Box, type DetectedFace, type DetectOptions, type Landmarks5, type Point } from './types.js';

/**
 * Default score threshold: on bench/RESULTS.md's photos 0.5 lets through a hand, a newel-post knob
 * and watermark letters (0.50-0.93); 0.8 keeps every true face (the lowest real-lq one scores 0.978).
 */
export const RETINAFACE_MIN_SCORE = 0.8;

/** BGR mean the network subtracts (0..255 scale). */
export const RETINAFACE_MEAN_BGR = [104, 117, 123] as const;

/** The raw heads of one network pass. */
export interface RetinaFaceHeads {
  /** P x 4 box regressions. */
  loc: Float32Array;
  /** P x 2 softmax scores (column 1: face). */
  conf: Float32Array;
  /** P x 10 landmark regressions. */
  landms: Float32Array;
}

export interface RecipeOptions {
  /** Candidates above this score go into NMS (default 0.02). */
  confidence?: number;
  /** At most this many candidates, best first (default 5000). */
  topK?: number;
  /** NMS IoU threshold (default 0.4). */
  iou?: number;
  /** At most this many kept after NMS (default 750). */
  keepTopK?: number;
}

/** Levels larger than this (longer side) are searched in tiles of this side; single-scale search downscales to it. */
export const TILE_SIZE = 1024;
/** Overlap of neighbouring tiles: a face up to this size (more than FACE_RANGE's top) lies whole in some tile. */
export const TILE_OVERLAP = 192;
/** The pyramid halves the image until its longer side is at most this. */
export const COARSEST_SIDE = 320;
/**
 * Face sizes (box's longer side, in pixels of a pyramid level) taken from a level: larger faces
 * come from a coarser level (the network was trained on 300 px crops; on the real-lq crops, faces
 * of ~300 px put the 5 points 20 px from the template, at ~150 px 11 px), smaller ones from a
 * finer level. The finest level takes every smaller face, the coarsest every larger one.
 */
export const FACE_RANGE: readonly [number, number] = [32, 160];

/** Tile starts along one axis: `tile`-long windows overlapping by `overlap`, the last flush with the end. */
function tileStarts(size: number, tile: number, overlap: number): number[] {
  if (size <= tile) return [0];
  const n = Math.ceil((size - overlap) / (tile - overlap));
  const step = (size - tile) / (n - 1);
  return Array.from({ length: n }, (_, i) => Math.round(i * step));
}

function crop(img: RgbImage, x: number, y: number, w: number, h: number): RgbImage {
  if (x === 0 && y === 0 && w === img.width && h === img.height) return img;
  const data = new Uint8Array(w * h * 3);
  for (let r = 0; r < h; r++) data.set(img.data.subarray(3 * ((y + r) * img.width + x), 3 * ((y + r) * img.width + x + w)), 3 * r * w);
  return { data, width: w, height: h, channels: 3 };
}

/** The pyramid's levels: ../image/resize.ts's lanczos3 (the same pixels in Node and the browser). */
async function resize(img: RgbImage, width: number, height: number): Promise<RgbImage> {
  return { data: resizePixels(img, 3, width, height, 'lanczos3'), width, height, channels: 3 };
}

/** The pyramid scales searched for an image whose longer side is `side`: 1, 1/2, 1/4... down to `coarsest` px. */
export function pyramidScales(side: number, coarsest = COARSEST_SIDE): number[] {
  const scales = [1];
  while (side * scales[scales.length - 1]! > coarsest) scales.push(scales[scales.length - 1]! / 2);
  return scales;
}

/** RetinaFace on any session of its graph (Node: ./retinaface.ts loads one; the browser opens the prebuilt graph). */
export class RetinaFaceCore {
  readonly name = 'retinaface' as const;

  constructor(protected readonly session: InferenceSessionLike) {}

  /** The network input for an RGB image: (1, 3, H, W) BGR minus the mean, 0..255 scale. */
  static input(img: RgbImage): FloatTensor {
    const plane = img.width * img.height;
    const t = new Float32Array(3 * plane);
    for (let i = 0; i < plane; i++) {
      t[i] = img.data[3 * i + 2]! - RETINAFACE_MEAN_BGR[0];
      t[plane + i] = img.data[3 * i + 1]! - RETINAFACE_MEAN_BGR[1];
      t[2 * plane + i] = img.data[3 * i]! - RETINAFACE_MEAN_BGR[2];
    }
    return floatTensor([1, 3, img.height, img.width], t);
  }

  /** One network pass on a prepared input (see `input`). */
  async heads(input: FloatTensor): Promise<RetinaFaceHeads> {
    const out = await this.session.run({ image: input });
    return { loc: out['loc']!.data as Float32Array, conf: out['conf']!.data as Float32Array, landms: out['landms']!.data as Float32Array };
  }

  /** The reference recipe on `img` at its own size: boxes (x1, y1, x2, y2) and landmarks in its pixels, best first, before any score threshold. */
  async detectOnce(img: RgbImage, opts: RecipeOptions = {}): Promise<RawDetection[]> {
    const { loc, conf, landms } = await this.heads(RetinaFaceCore.input(img));
    const priors = priorBoxes(MNET_PRIORS, img.height, img.width);
    const cands = decodeCandidates(loc, conf, landms, priors, MNET_PRIORS, img.width, img.height, {
      confidence: opts.confidence ?? 0.02, topK: opts.topK ?? 5000,
    });
    return nms(cands, opts.iou ?? 0.4, opts.keepTopK ?? 750);
  }

  /**
   * Candidates from every pyramid level and tile of `img`, in its pixels (before the final NMS).
   * Multi-scale: the levels of `pyramidScales`, each face from the levels where its size is in
   * FACE_RANGE; levels larger than `tile` in overlapping tiles. Single-scale: the image at most
   * `tile` px on its longer side (downscaled if larger), every face.
   */
  async candidates(img: RgbImage, multiScale: boolean, tile = TILE_SIZE, overlap = TILE_OVERLAP, opts: RecipeOptions = {}): Promise<RawDetection[]> {
    const side = Math.max(img.width, img.height);
    const scales = multiScale ? pyramidScales(side) : [Math.min(1, tile / side)];
    const all: RawDetection[] = [];
    for (const [k, s] of scales.entries()) {
      const minFace = k > 0 ? FACE_RANGE[0] : 0;
      const maxFace = k < scales.length - 1 ? FACE_RANGE[1] : Infinity;
      const w = Math.max(1, Math.round(img.width * s));
      const h = Math.max(1, Math.round(img.height * s));
      const level = s === 1 ? img : await resize(img, w, h);
      const sx = img.width / w;
      const sy = img.height / h;
      const xs = tileStarts(w, tile, overlap);
      const ys = tileStarts(h, tile, overlap);
      for (const ty of ys) {
        for (const tx of xs) {
          const tw = Math.min(tile, w - tx);
          const th = Math.min(tile, h - ty);
          const dets = await this.detectOnce(crop(level, tx, ty, tw, th), { ...opts, iou: opts.iou ?? 0.4 });
          for (const d of dets) {
            // a face cut by a tile's inner edge is found whole in the neighbouring tile
            const [x1, y1, x2, y2] = d.box;
            if ((tx > 0 && x1 < 2) || (ty > 0 && y1 < 2) || (tx + tw < w && x2 > tw - 2) || (ty + th < h && y2 > th - 2)) continue;
            const size = Math.max(x2 - x1, y2 - y1);
            if (size < minFace || size >= maxFace) continue;
            all.push({
              score: d.score,
              box: [(x1 + tx) * sx, (y1 + ty) * sy, (x2 + tx) * sx, (y2 + ty) * sy],
              landmarks: d.landmarks.map(([x, y]) => [(x + tx) * sx, (y + ty) * sy] as [number, number]),
            });
          }
        }
      }
    }
    return all;
  }

  /**
   * Faces in `img`, best score first: boxes clipped to the image, the network's 5 landmarks.
   * `multiScale` (default true) searches the image and its halvings down to 320 px (levels over
   * 1024 px in tiles), so small faces are seen at full resolution and large ones at a size the
   * network places its landmarks well; false runs one pass at most 1024 px on the longer side.
   */
  async detect(img: RgbImage, opts: DetectOptions = {}): Promise<DetectedFace[]> {
    const padFrac = opts.pad ?? 0;
    const p = padFrac > 0 ? Math.round(padFrac * Math.max(img.width, img.height)) : 0;
    const src = p > 0 ? padImage(img, p, [135, 133, 132]) : img;
    const cands = await this.candidates(src, opts.multiScale ?? true);
    const minScore = opts.minScore ?? RETINAFACE_MIN_SCORE;
    const kept = nms(cands, opts.iou ?? 0.4, 750).filter((d) => d.score > minScore).slice(0, opts.maxFaces ?? 100);
    const faces: DetectedFace[] = [];
    for (const d of kept) {
      const x0 = Math.max(0, d.box[0] - p);
      const y0 = Math.max(0, d.box[1] - p);
      const x1 = Math.min(img.width, d.box[2] - p);
      const y1 = Math.min(img.height, d.box[3] - p);
      if (x1 - x0 < 1 || y1 - y0 < 1) continue; // entirely in the padding
      const box: Box = { x: x0, y: y0, width: x1 - x0, height: y1 - y0 };
      faces.push({ box, score: d.score, landmarks: d.landmarks.map(([x, y]) => [x - p, y - p] as Point) as Landmarks5 });
    }
    return faces;
  }

  async dispose(): Promise<void> {
    await this.session.release();
  }
}
