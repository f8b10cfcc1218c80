/**
 * RetinaFace's anchors ("priors"), the decoding of its box and landmark regressions, and the
 * non-maximum suppression of its test script, as in biubug6/Face-Detector-1MB-with-landmark
 * (`layers/functions/prior_box.py`, `utils/box_utils.py`, `utils/nms/py_cpu_nms.py`, `detect.py`).
 *
 * Priors: for each feature level k (stride `steps[k]`, map of ceil(H / step) x ceil(W / step)),
 * row-major over the map, one prior per `minSizes[k]` entry: centre ((j + 0.5) step / W,
 * (i + 0.5) step / H), size (min / W, min / H), all relative to the input.
 * Decoding (variances v0, v1): centre = prior centre + d * v0 * prior size; size = prior size *
 * exp(d * v1); landmarks = prior centre + d * v0 * prior size; then scaled by the input's W, H.
 */

export interface PriorConfig {
  /** Prior sides in input pixels, per feature level. */
  minSizes: number[][];
  /** Feature strides, per level. */
  steps: number[];
  /** Centre and size variances. */
  variance: [number, number];
}

/** `cfg_mnet` of the source repository (RetinaFace with the MobileNet-0.25 backbone). */
export const MNET_PRIORS: PriorConfig = {
  minSizes: [[10, 20], [32, 64], [128, 256]],
  steps: [8, 16, 32],
  variance: [0.1, 0.2],
};

/** Number of priors for an H x W input. */
export function priorCount(cfg: PriorConfig, height: number, width: number): number {
  let n = 0;
  cfg.steps.forEach((step, k) => {
    n += Math.ceil(height / step) * Math.ceil(width / step) * cfg.minSizes[k]!.length;
  });
  return n;
}

/** Priors (cx, cy, w, h relative to the input), P x 4, in the network's output order. */
export function priorBoxes(cfg: PriorConfig, height: number, width: number): Float32Array {
  const out = new Float32Array(4 * priorCount(cfg, height, width));
  let o = 0;
  cfg.steps.forEach((step, k) => {
    const fh = Math.ceil(height / step);
    const fw = Math.ceil(width / step);
    for (let i = 0; i < fh; i++) {
      for (let j = 0; j < fw; j++) {
        for (const m of cfg.minSizes[k]!) {
          out[o++] = ((j + 0.5) * step) / width;
          out[o++] = ((i + 0.5) * step) / height;
          out[o++] = m / width;
          out[o++] = m / height;
        }
      }
    }
  });
  return out;
}

/** One decoded detection, in input pixels. */
export interface RawDetection {
  /** x1, y1, x2, y2. */
  box: [number, number, number, number];
  score: number;
  /** Left eye, right eye, nose, left and right mouth corner (x, y). */
  landmarks: [number, number][];
}

/**
 * Decodes prior `i` of the heads: `loc` (P x 4), `landms` (P x 10) against `priors`, scaled to a
 * W x H input. Arithmetic in float32 order as the reference (torch float32) does it.
 */
export function decodePrior(i: number, loc: Float32Array, landms: Float32Array, priors: Float32Array, cfg: PriorConfig, width: number, height: number): Omit<RawDetection, 'score'> {
  const f = Math.fround;
  const [v0, v1] = cfg.variance;
  const pcx = priors[4 * i]!;
  const pcy = priors[4 * i + 1]!;
  const pw = priors[4 * i + 2]!;
  const ph = priors[4 * i + 3]!;
  const cx = f(pcx + f(f(loc[4 * i]! * v0) * pw));
  const cy = f(pcy + f(f(loc[4 * i + 1]! * v0) * ph));
  const w = f(pw * f(Math.exp(f(loc[4 * i + 2]! * v1))));
  const h = f(ph * f(Math.exp(f(loc[4 * i + 3]! * v1))));
  const x1 = f(cx - f(w / 2));
  const y1 = f(cy - f(h / 2));
  const box: [number, number, number, number] = [f(x1 * width), f(y1 * height), f(f(w + x1) * width), f(f(h + y1) * height)];
  const landmarks: [number, number][] = [];
  for (let k = 0; k < 5; k++) {
    landmarks.push([
      f(f(pcx + f(f(landms[10 * i + 2 * k]! * v0) * pw)) * width),
      f(f(pcy + f(f(landms[10 * i + 2 * k + 1]! * v0) * ph)) * height),
    ]);
  }
  return { box, landmarks };
}

/** IoU with the reference NMS's "+1" pixel convention (areas (x2 - x1 + 1) (y2 - y1 + 1)). */
export function iouPlusOne(a: readonly number[], b: readonly number[]): number {
  const w = Math.max(0, Math.min(a[2]!, b[2]!) - Math.max(a[0]!, b[0]!) + 1);
  const h = Math.max(0, Math.min(a[3]!, b[3]!) - Math.max(a[1]!, b[1]!) + 1);
  const inter = w * h;
  const areaA = (a[2]! - a[0]! + 1) * (a[3]! - a[1]! + 1);
  const areaB = (b[2]! - b[0]! + 1) * (b[3]! - b[1]! + 1);
  return inter / (areaA + areaB - inter);
}

/**
 * Greedy NMS: highest score first (ties keep the earlier index), dropping every later box whose
 * IoU with a kept one is above `threshold`; at most `keep` boxes.
 */
export function nms<T extends { box: readonly number[]; score: number }>(dets: T[], threshold: number, keep = Infinity): T[] {
  const order = dets.map((_, i) => i).sort((p, q) => dets[q]!.score - dets[p]!.score || p - q);
  const kept: T[] = [];
  const removed = new Uint8Array(dets.length);
  for (let a = 0; a < order.length && kept.length < keep; a++) {
    const i = order[a]!;
    if (removed[i]) continue;
    kept.push(dets[i]!);
    for (let b = a + 1; b < order.length; b++) {
      const j = order[b]!;
      if (!removed[j] && iouPlusOne(dets[i]!.box, dets[j]!.box) > threshold) removed[j] = 1;
    }
  }
  return kept;
}

export interface DecodeOptions {
  /** Keep priors scoring above this before NMS (the reference: 0.02). */
  confidence?: number;
  /** At most this many candidates go into NMS, best first (the reference: 5000). */
  topK?: number;
}

/**
 * All priors scoring above `confidence` (face = column 1 of `conf`, P x 2 softmax), decoded,
 * best first, at most `topK` (the reference's pre-NMS candidates).
 */
export function decodeCandidates(
  loc: Float32Array, conf: Float32Array, landms: Float32Array, priors: Float32Array, cfg: PriorConfig,
  width: number, height: number, opts: DecodeOptions = {},
): RawDetection[] {
  const confidence = opts.confidence ?? 0.02;
  const topK = opts.topK ?? 5000;
  const P = priors.length / 4;
  const idx: number[] = [];
  for (let i = 0; i < P; i++) if (conf[2 * i + 1]! > confidence) idx.push(i);
  idx.sort((p, q) => conf[2 * q + 1]! - conf[2 * p + 1]! || p - q);
  return idx.slice(0, topK).map((i) => ({ ...decodePrior(i, loc, landms, priors, cfg, width, height), score: conf[2 * i + 1]! }));
}
