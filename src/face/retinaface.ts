/**
 * RetinaFace-mobilenet0.25 face detection (biubug6/Face-Detector-1MB-with-landmark, MIT, trained
 * on WIDER FACE) with its native 5 landmarks (left eye, right eye, nose, left and right mouth
 * corner: the FFHQ template's points). The weights ship in the package
 * (`weights/retinaface/mobilenet0.25_Final.pth`, read through the restricted unpickler); the
 * network is built as our graph (./retinaface_net.ts) and run on ONNX Runtime at any input size.
 *
 * One pass follows the reference test recipe: BGR minus (104, 117, 123), candidates scoring above
 * 0.02 (at most 5000, best first), NMS at IoU 0.4 (+1 pixel convention), at most 750 kept, then the
 * score threshold. Large images are searched at several scales (`detect`, `multiScale`): an image
 * pyramid halving from full resolution, each level cut into overlapping tiles, one NMS over all.
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { OnnxSession } from '../graph/runtime.js';
import { loadTorchCheckpoint } from '../weights/torch.js';
import { buildRetinaFaceMnet } from './retinaface_net.js';
import { RetinaFaceCore } from './retinaface_core.js';

export {
  COARSEST_SIDE, FACE_RANGE, pyramidScales, RETINAFACE_MEAN_BGR, RETINAFACE_MIN_SCORE, TILE_OVERLAP, TILE_SIZE,
  type RecipeOptions, type RetinaFaceHeads,
} from './retinaface_core.js';

/** `<package root>/weights/retinaface/mobilenet0.25_Final.pth` (from dist/src/face/retinaface.js). */
export function defaultRetinaFaceWeights(): string {
  return path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../weights/retinaface/mobilenet0.25_Final.pth');
}

export interface RetinaFaceOptions {
  /** The mobilenet0.25_Final.pth state dict; default: the one shipped in the package. */
  weights?: string;
  /** ONNX Runtime intra-op threads; default: ONNX Runtime's choice. */
  threads?: number;
}

/** RetinaFace in Node: the shipped weights built into a graph, run on onnxruntime-node (the detection itself: ./retinaface_core.ts). */
export class RetinaFaceDetector extends RetinaFaceCore {
  /** Reads the weights, builds the graph (about 0.1 s) and opens an ONNX Runtime session. */
  static async load(opts: RetinaFaceOptions = {}): Promise<RetinaFaceDetector> {
    const file = opts.weights ?? defaultRetinaFaceWeights();
    let sd;
    try {
      sd = loadTorchCheckpoint(file);
    } catch (e) {
      const reason = e instanceof Error ? e.message : String(e);
      throw new Error(`cannot read the RetinaFace weights ${file}: ${reason}${opts.weights ? '' : ' (they ship with osdface: reinstall it, or use --detector ssd)'}`);
    }
    const onnx = buildRetinaFaceMnet(sd, file);
    return new RetinaFaceDetector(await OnnxSession.create(onnx, { threads: opts.threads }));
  }

}
