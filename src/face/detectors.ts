/**
 * The face detectors osdface can use, by name, and the default one. `restore`, `detect`, the
 * library's `restorePhoto` (and anything else that finds faces) load theirs through
 * `loadDetector`, so the choice made in bench/RESULTS.md ("Face detection") lives here only.
 *
 * - `retinaface`: RetinaFace-mobilenet0.25 (WIDER FACE, native 5 landmarks; ./retinaface.ts).
 * - `ssd`: face-api's SSD MobileNet V1 + its 68-point landmark net (./detector.ts).
 */
import { FaceDetector } from './detector.js';
import { parseDetectorName, DEFAULT_DETECTOR, type Detector, type DetectorName } from './types.js';
import { RetinaFaceDetector } from './retinaface.js';

export { DEFAULT_DETECTOR, DETECTOR_NAMES, isDetectorName, parseDetectorName, type Detector, type DetectorName } from './types.js';

export interface LoadDetectorOptions {
  /** ONNX Runtime intra-op threads. */
  threads?: number;
  /** A weight file (retinaface) or folder (ssd: face-api's model folder) instead of the shipped one. */
  weights?: string;
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
