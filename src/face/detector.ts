/**
 * Face detection with 5 landmarks (left eye, right eye, nose tip, left mouth corner, right mouth
 * corner; "left" = image left), on ONNX Runtime.
 *
 * Models: @vladmandic/face-api's SSD MobileNet V1 face detector and its 68-point landmark net
 * (MIT; weights shipped inside the npm package), rebuilt as ONNX graphs at load time
 * (src/face/nets.ts). The 5 points come from the 68: eye centres are the means of the six
 * eye-contour points, the nose tip is point 30, the mouth corners are points 48 and 54.
 * bench/RESULTS.md ("Face detection") has the evaluation that picked them among face-api's
 * detectors; since then RetinaFace (./retinaface.ts) is the default and this one is `--detector ssd`
 * (./detectors.ts).
 */
import path from 'node:path';
import { createRequire } from 'node:module';
import type { RgbImage } from '../image/io.js';
import { padImage, type Box, type DetectedFace, type DetectOptions, type Landmarks5, type Point } from './types.js';
import { OnnxSession } from '../graph/runtime.js';
import { floatTensor } from '../tensor.js';
import { readTfjsWeights } from './tfjs_weights.js';
import { buildLandmark68, buildSsdMobilenetV1, LANDMARK_INPUT, LANDMARK_MEAN_RGB, SSD_ANCHORS, SSD_INPUT } from './nets.js';

export { padImage, type Box, type DetectedFace, type DetectOptions, type Landmarks5, type Point } from './types.js';

export interface FaceDetectorOptions {
  /** Folder holding the face-api weight files; default: the @vladmandic/face-api package's `model/`. */
  modelDir?: string;
  /** ONNX Runtime intra-op threads; default: ONNX Runtime's choice. */
  threads?: number;
}

/** The face-api model folder inside its npm package. */
export function defaultFaceModelDir(): string {
  const require = createRequire(import.meta.url);
  return path.join(path.dirname(require.resolve('@vladmandic/face-api/package.json')), 'model');
}

/** Eye centres (mean of the six contour points), nose tip, mouth corners from 68 iBUG points. */
export function fivePointsFrom68(p: readonly Point[]): Landmarks5 {
  if (p.length !== 68) throw new Error(`fivePointsFrom68: expected 68 points, got ${p.length}`);
  const mean = (a: number, b: number): Point => {
    let x = 0;
    let y = 0;
    for (let i = a; i <= b; i++) {
      x += p[i]![0];
      y += p[i]![1];
    }
    return [x / (b - a + 1), y / (b - a + 1)];
  };
  return [mean(36, 41), mean(42, 47), [...p[30]!], [...p[48]!], [...p[54]!]];
}

/**
 * Samples the square [left, left+side) x [top, top+side) of `img` at out x out with TF's legacy
 * bilinear rule (source = dest * side / out, no half-pixel offset), as CHW floats `(v + add) * mul`.
 * Pixels outside `valid` (a rectangle of the image) count as 0.
 */
function sampleSquare(img: RgbImage, left: number, top: number, side: number, out: number, valid: Box, add: readonly number[], mul: number): Float32Array {
  const { width: w, data } = img;
  const res = new Float32Array(3 * out * out);
  const plane = out * out;
  const x0v = valid.x;
  const y0v = valid.y;
  const x1v = valid.x + valid.width;
  const y1v = valid.y + valid.height;
  const px = (sx: number, sy: number, c: number): number => {
    const ix = left + sx;
    const iy = top + sy;
    if (ix < x0v || ix >= x1v || iy < y0v || iy >= y1v) return 0;
    return data[3 * (iy * w + ix) + c]!;
  };
  const scale = side / out;
  for (let oy = 0; oy < out; oy++) {
    const fy = oy * scale;
    const y0 = Math.floor(fy);
    const y1 = Math.min(y0 + 1, side - 1);
    const dy = fy - y0;
    for (let ox = 0; ox < out; ox++) {
      const fx = ox * scale;
      const x0 = Math.floor(fx);
      const x1 = Math.min(x0 + 1, side - 1);
      const dx = fx - x0;
      for (let c = 0; c < 3; c++) {
        const top_ = px(x0, y0, c) + (px(x1, y0, c) - px(x0, y0, c)) * dx;
        const bot = px(x0, y1, c) + (px(x1, y1, c) - px(x0, y1, c)) * dx;
        res[c * plane + oy * out + ox] = (top_ + (bot - top_) * dy + add[c]!) * mul;
      }
    }
  }
  return res;
}

function iou(a: Box, b: Box): number {
  const ix = Math.max(0, Math.min(a.x + a.width, b.x + b.width) - Math.max(a.x, b.x));
  const iy = Math.max(0, Math.min(a.y + a.height, b.y + b.height) - Math.max(a.y, b.y));
  const inter = ix * iy;
  const union = a.width * a.height + b.width * b.height - inter;
  return union > 0 ? inter / union : 0;
}

/** face-api's SSD MobileNet V1 detector with the 68-point landmark net (`--detector ssd`). */
export class FaceDetector {
  readonly name = 'ssd' as const;

  private constructor(
    private readonly ssd: OnnxSession,
    private readonly anchors: Float32Array,
    private readonly landmarkNet: OnnxSession,
  ) {}

  /** Builds both networks from the weight files (about 0.3 s) and opens ONNX Runtime sessions. */
  static async load(opts: FaceDetectorOptions = {}): Promise<FaceDetector> {
    const dir = opts.modelDir ?? defaultFaceModelDir();
    const ssdW = readTfjsWeights(dir, 'ssd_mobilenetv1_model');
    const { onnx, anchors } = buildSsdMobilenetV1(ssdW, path.join(dir, 'ssd_mobilenetv1_model-weights_manifest.json'));
    const lmOnnx = buildLandmark68(readTfjsWeights(dir, 'face_landmark_68_model'), path.join(dir, 'face_landmark_68_model-weights_manifest.json'));
    const runtime = { threads: opts.threads };
    const [ssd, lm] = await Promise.all([OnnxSession.create(onnx, runtime), OnnxSession.create(lmOnnx, runtime)]);
    return new FaceDetector(ssd, anchors, lm);
  }

  /** Faces in `img`, best score first. */
  async detect(img: RgbImage, opts: DetectOptions = {}): Promise<DetectedFace[]> {
    const padFrac = opts.pad ?? 0;
    if (padFrac > 0) {
      const p = Math.round(padFrac * Math.max(img.width, img.height));
      const faces = await this.detect(padImage(img, p, [135, 133, 132]), { ...opts, pad: 0 });
      const shift = (q: Point): Point => [q[0] - p, q[1] - p];
      return faces.map((f) => {
        const x0 = Math.max(0, f.box.x - p);
        const y0 = Math.max(0, f.box.y - p);
        const x1 = Math.min(img.width, f.box.x + f.box.width - p);
        const y1 = Math.min(img.height, f.box.y + f.box.height - p);
        return {
          ...f,
          box: { x: x0, y: y0, width: Math.max(0, x1 - x0), height: Math.max(0, y1 - y0) },
          landmarks: f.landmarks.map(shift) as Landmarks5,
          landmarks68: f.landmarks68!.map(shift),
        };
      });
    }
    const boxes = await this.detectBoxes(img, opts);
    const faces: DetectedFace[] = [];
    for (const { box, score } of boxes) {
      const landmarks68 = await this.landmarks68(img, box);
      faces.push({ box, score, landmarks: fivePointsFrom68(landmarks68), landmarks68 });
    }
    return faces;
  }

  /** The detector alone: boxes (image pixels, clipped) and scores, after NMS, best first. */
  async detectBoxes(img: RgbImage, opts: DetectOptions = {}): Promise<{ box: Box; score: number }[]> {
    const minScore = opts.minScore ?? 0.5;
    const maxFaces = opts.maxFaces ?? 100;
    const iouMax = opts.iou ?? 0.5;
    const S = Math.max(img.width, img.height);
    const whole: Box = { x: 0, y: 0, width: img.width, height: img.height };
    const input = sampleSquare(img, 0, 0, S, SSD_INPUT, whole, [0, 0, 0], 1 / 127.5);
    for (let i = 0; i < input.length; i++) input[i] = input[i]! - 1;
    const out = await this.ssd.run({ image: floatTensor([1, 3, SSD_INPUT, SSD_INPUT], input) });
    const enc = out['boxes']!.data as Float32Array;
    const logits = out['logits']!.data as Float32Array;
    const a = this.anchors;
    const cands: { box: Box; score: number }[] = [];
    for (let i = 0; i < SSD_ANCHORS; i++) {
      const score = 1 / (1 + Math.exp(-logits[3 * i + 1]!));
      if (!(score > minScore)) continue;
      const ha = a[4 * i + 2]! - a[4 * i]!;
      const wa = a[4 * i + 3]! - a[4 * i + 1]!;
      const cy = (enc[4 * i]! / 10) * ha + a[4 * i]! + ha / 2;
      const cx = (enc[4 * i + 1]! / 10) * wa + a[4 * i + 1]! + wa / 2;
      const h = Math.exp(enc[4 * i + 2]! / 5) * ha;
      const w = Math.exp(enc[4 * i + 3]! / 5) * wa;
      const x0 = Math.max(0, (cx - w / 2) * S);
      const y0 = Math.max(0, (cy - h / 2) * S);
      const x1 = Math.min(img.width, (cx + w / 2) * S);
      const y1 = Math.min(img.height, (cy + h / 2) * S);
      if (x1 - x0 < 1 || y1 - y0 < 1) continue;
      cands.push({ box: { x: x0, y: y0, width: x1 - x0, height: y1 - y0 }, score });
    }
    cands.sort((p, q) => q.score - p.score);
    const kept: { box: Box; score: number }[] = [];
    for (const c of cands) {
      if (kept.length >= maxFaces) break;
      if (kept.every((k) => iou(k.box, c.box) <= iouMax)) kept.push(c);
    }
    return kept;
  }

  /** The 68 landmarks of the face in `box` (image pixels). */
  async landmarks68(img: RgbImage, box: Box): Promise<Point[]> {
    // integer crop inside the image, zero-padded to a centred square, as the net was used upstream
    const x = Math.floor(Math.max(0, box.x));
    const y = Math.floor(Math.max(0, box.y));
    const w = Math.max(1, Math.floor(Math.min(box.x + box.width, img.width) - x));
    const h = Math.max(1, Math.floor(Math.min(box.y + box.height, img.height) - y));
    const side = Math.max(w, h);
    const diff = side - Math.min(w, h);
    const before = diff - Math.round(diff * 0.5);
    const left = w < h ? x - before : x;
    const top = h < w ? y - before : y;
    const add = LANDMARK_MEAN_RGB.map((m) => -m);
    const input = sampleSquare(img, left, top, side, LANDMARK_INPUT, { x, y, width: w, height: h }, add, 1 / 255);
    const out = await this.landmarkNet.run({ image: floatTensor([1, 3, LANDMARK_INPUT, LANDMARK_INPUT], input) });
    const v = out['landmarks']!.data as Float32Array;
    const pts: Point[] = [];
    for (let i = 0; i < 68; i++) pts.push([left + v[2 * i]! * side, top + v[2 * i + 1]! * side]);
    return pts;
  }

  async dispose(): Promise<void> {
    await Promise.all([this.ssd.release(), this.landmarkNet.release()]);
  }
}
