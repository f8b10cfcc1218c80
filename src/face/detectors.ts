/**
 * The face detectors osdface can use, by name, and the default one. `restore`, `detect`, the
 * library's `restorePhoto` (and anything else that finds faces) load theirs through
 * `loadDetector`, so the choice made in bench/RESULTS.md ("Face detection") lives here only.
 *
 * - `retinaface`: RetinaFace-mobilenet0.25 (WIDER FACE, native 5 landmarks; ./retinaface.ts).
 * - `ssd`: face-api's SSD MobileNet V1 + its 68-point landmark net (./detector.ts).
 */
import type { RgbImage } from '../image/io.js';
import { FaceDetector, type DetectedFace, type DetectOptions } from './detector.js';
import { RetinaFaceDetector } from './retinaface.js';

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

export interface LoadDetectorOptions {
  /** ONNX Runtime intra-op threads. */
  threads?: number;
  /** A weight file (retinaface) or folder (ssd: face-api's model folder) instead of the shipped one. */
  weights?: string;
}

export function isDetectorName(s: unknown): s is DetectorName {
  return typeof s === 'string' && (DETECTOR_NAMES as readonly string[]).includes(s);
}

/** `s` as a detector name, or an error that lists the names. */
export function parseDetectorName(s: unknown, what = 'detector'): DetectorName {
  if (isDetectorName(s)) return s;
  throw new RangeError(`${what}: unknown face detector '${String(s)}'; use one of: ${DETECTOR_NAMES.join(', ')} (default ${DEFAULT_DETECTOR})`);
}

/** Loads the named detector (default `DEFAULT_DETECTOR`). */
export async function loadDetector(name: DetectorName = DEFAULT_DETECTOR, opts: LoadDetectorOptions = {}): Promise<Detector> {
  const threads = opts.threads !== undefined ? { threads: opts.threads } : {};
  switch (parseDetectorName(name, 'loadDetector')) {
    case 'retinaface':
      return RetinaFaceDetector.load({ ...threads, ...(opts.weights !== undefined ? { weights: opts.weights } : {}) });
    case 'ssd':
      return FaceDetector.load({ ...threads, ...(opts.weights !== undefined ? { modelDir: opts.weights } : {}) });
  }
}
