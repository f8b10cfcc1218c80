/**
 * LMD, landmark distance: the mean Euclidean distance, in pixels of the image, between the 68 facial
 * landmarks (iBUG 300-W order) found on the restored image and on the ground truth.
 *
 * The landmark model is the one the package already ships: face-api's 68-point net (weights inside
 * the @vladmandic/face-api npm package, rebuilt as ONNX by src/face/detector.ts). The face box is
 * found once, on the ground truth (SSD MobileNet V1, the image padded by 0.25 of its side with the
 * FFHQ border grey, as aligned crops need), and the landmark net is run on the same box in both
 * images, so the distance measures where the restored face puts its features, not detector jitter.
 *
 * Papers report LMD with other detectors (FAN of face_alignment, dlib), so absolute values are not
 * comparable with published tables; differences between methods measured here are. The net sees a
 * 112x112 crop: on 512x512 aligned faces one input pixel is about 3-4 image pixels, and its own
 * noise (about 9 px median against the FFHQ template on degraded crops, bench/RESULTS.md "Face
 * detection") bounds how small a difference means anything.
 */

import type { RgbImage } from '../image/io.js';
import { FaceDetector, type Box, type FaceDetectorOptions, type Point } from '../face/detector.js';

/** Mean Euclidean distance between corresponding points. */
export function meanPointDistance(a: readonly Point[], b: readonly Point[]): number {
  if (a.length !== b.length || a.length === 0) throw new Error(`meanPointDistance: ${a.length} vs ${b.length} points`);
  let s = 0;
  for (let i = 0; i < a.length; i++) s += Math.hypot(a[i]![0] - b[i]![0], a[i]![1] - b[i]![1]);
  return s / a.length;
}

export interface LandmarkDistanceResult {
  /** Mean distance over the 68 points, in pixels. */
  lmd: number;
  /** The face box found on the ground truth, used for both images. */
  box: Box;
  gt: Point[];
  pred: Point[];
}

export class LandmarkDistance {
  private constructor(private readonly detector: FaceDetector) {}

  /** Loads the face detector and the 68-point net (from the face-api package by default). */
  static async load(opts: FaceDetectorOptions = {}): Promise<LandmarkDistance> {
    return new LandmarkDistance(await FaceDetector.load(opts));
  }

  /** LMD between a restored image and its ground truth (same size). */
  async measure(pred: RgbImage, gt: RgbImage): Promise<LandmarkDistanceResult> {
    if (pred.width !== gt.width || pred.height !== gt.height) {
      throw new Error(`lmd: image sizes differ: ${pred.width}x${pred.height} vs ${gt.width}x${gt.height}`);
    }
    const faces = await this.detector.detect(gt, { pad: 0.25, maxFaces: 1 });
    if (faces.length === 0) throw new Error('lmd: no face found in the ground truth');
    const box = faces[0]!.box;
    const g = await this.detector.landmarks68(gt, box);
    const p = await this.detector.landmarks68(pred, box);
    return { lmd: meanPointDistance(p, g), box, gt: g, pred: p };
  }

  async dispose(): Promise<void> {
    await this.detector.dispose();
  }
}
