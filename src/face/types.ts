/**
 * Face detection's shared vocabulary, with no I/O: the result types, the detector interface and
 * names, and image padding. Used by Node (./detector.ts, ./retinaface.ts, ./detectors.ts) and the
 * browser alike.
 */
import type { RgbImage } from '../image/pixels.js';

export type Point = [number, number];
/** Left eye, right eye, nose tip, left mouth corner, right mouth corner (image left/right), in pixels. */
export type Landmarks5 = [Point, Point, Point, Point, Point];

export interface Box {
  x: number;
  y: number;
  width: number;
  height: number;
}

export interface DetectedFace {
  /** The detector's box, in image pixels, clipped to the image. */
  box: Box;
  /** Detector confidence in [0, 1]. */
  score: number;
  /** The 5 alignment points, in image pixels. */
  landmarks: Landmarks5;
  /** All 68 points (iBUG 300-W order), in image pixels: face-api's detector only (RetinaFace has 5). */
  landmarks68?: Point[];
}

export interface DetectOptions {
  /** Keep detections scoring above this (default 0.8 for RetinaFace, 0.5 for face-api's SSD). */
  minScore?: number;
  /** At most this many faces, best first (default 100). */
  maxFaces?: number;
  /** Non-maximum suppression IoU (default 0.5). */
  iou?: number;
  /**
   * Pad the image on every side by this fraction of its longer side (filled with the FFHQ border
   * grey) before detecting: helps when a face fills the whole frame (aligned crops, close-ups),
   * which the detector was not trained on. Default 0.
   */
  pad?: number;
  /**
   * RetinaFace only: search the image at several scales (full resolution, in overlapping
   * 1024-px tiles when larger, and halvings down to 320 px), taking each face from the scales
   * where it is 32-160 px: finds small faces in large photos and places the landmarks of large
   * faces better. Default true; false runs one pass on the image downscaled to at most 1024 px.
   */
  multiScale?: boolean;
}

export const DETECTOR_NAMES = ['retinaface', 'ssd'] as const;
export type DetectorName = (typeof DETECTOR_NAMES)[number];

/** The detector used when none is named (chosen on the numbers in bench/RESULTS.md). */
export const DEFAULT_DETECTOR: DetectorName = 'retinaface';

/** What every detector offers. */
export interface Detector {
  readonly name: DetectorName;
  /** Faces in `img`, best score first, with the 5 alignment landmarks in its pixels. */
  detect(img: RgbImage, opts?: DetectOptions): Promise<DetectedFace[]>;
  dispose(): Promise<void>;
}

export function isDetectorName(s: unknown): s is DetectorName {
  return typeof s === 'string' && (DETECTOR_NAMES as readonly string[]).includes(s);
}

/** `s` as a detector name, or an error that lists the names. */
export function parseDetectorName(s: unknown, what = 'detector'): DetectorName {
  if (isDetectorName(s)) return s;
  throw new RangeError(`${what}: unknown face detector '${String(s)}'; use one of: ${DETECTOR_NAMES.join(', ')} (default ${DEFAULT_DETECTOR})`);
}

/** Pads an image by `p` pixels on every side with a constant colour. */
export function padImage(img: RgbImage, p: number, fill: readonly [number, number, number]): RgbImage {
  const W = img.width + 2 * p;
  const H = img.height + 2 * p;
  const data = new Uint8Array(W * H * 3);
  for (let i = 0; i < W * H; i++) {
    data[3 * i] = fill[0];
    data[3 * i + 1] = fill[1];
    data[3 * i + 2] = fill[2];
  }
  for (let y = 0; y < img.height; y++) data.set(img.data.subarray(3 * y * img.width, 3 * (y + 1) * img.width), 3 * ((y + p) * W + p));
  return { data, width: W, height: H, channels: 3 };
}

