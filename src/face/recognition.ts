/**
 * Face recognition for the identity loss (training) and the identity similarity metric (IDS /
 * Deg): @vladmandic/face-api's FaceRecognitionNet (MIT; the dlib-style ResNet-34-like network that
 * maps a 150x150 face to a 128-d descriptor), rebuilt with our modules from the package's
 * `face_recognition_model` weight files, so it runs as ONNX on ONNX Runtime and can be
 * differentiated by src/graph/autodiff.ts. No TensorFlow.js is needed.
 *
 * The computation follows face-api 1.7.15 (src/faceRecognitionNet/*.ts, NetInput.toBatchTensor):
 * - preprocessing: pad to a square with zeros (centred; `round(diff / 2)` after, the rest before),
 *   bilinear resize to 150x150 with TF's legacy coordinates (alignCorners = halfPixelCenters =
 *   false, i.e. ONNX 'asymmetric'), values in 0..255, minus the mean RGB (122.782, 117.001,
 *   104.298), divided by 255;
 * - a conv layer is conv (TF 'same' or 'valid' padding) + bias, then a per-channel scale layer
 *   (x * weights + biases), then ReLU where face-api has one;
 * - 7x7 stride-2 'valid' conv, 3x3 stride-2 'valid' max pool, residual blocks (32 x3, 64 down + x3,
 *   128 down + x2, 256 down + x2, 256 down), mean over the spatial axes, 256 -> 128 matrix.
 *   A down block adds its strided-conv path to a 2x2 average pool of its input whose extra channels
 *   are zeros; where the conv path comes out one pixel smaller, it is padded with zeros at the end.
 *
 * Parameters are `face_recognition.<face-api path with dots>` (e.g.
 * `face_recognition.conv64_down.conv1.conv.weight`, OIHW) and `face_recognition.fc.weight`
 * ([256, 128], used as x @ W as face-api does). They are loaded from the package, never trained.
 */
import { Graph, type Value } from '../graph/ir.js';
import * as op from '../graph/ops.js';
import { emitOnnx, type WeightSource } from '../graph/emit.js';
import { OnnxSession } from '../graph/runtime.js';
import { Module } from '../nn/module.js';
import type { RgbImage } from '../image/io.js';
import { floatTensor } from '../tensor.js';
import { readTfjsWeights } from './tfjs_weights.js';
import { defaultFaceModelDir } from './detector.js';

/** Side of the network's square input. */
export const RECOGNITION_INPUT = 150;
/** Mean RGB (0..255) face-api subtracts before dividing by 255. */
export const RECOGNITION_MEAN_RGB: readonly [number, number, number] = [122.782, 117.001, 104.298];
/** Descriptor length. */
export const DESCRIPTOR_SIZE = 128;
/** Prefix of the network's parameter keys. */
export const RECOGNITION_PREFIX = 'face_recognition';
/** The weight files' name inside face-api's `model/` folder. */
export const RECOGNITION_WEIGHTS = 'face_recognition_model';

/** Gives a module a parent path without being a network itself. */
class Prefix extends Module {
  constructor(name: string, child: Module) {
    super();
    this.addModule(name, child);
  }
}

/** face-api's conv layer: conv + bias, per-channel scale (weights, biases), optional ReLU. */
class ScaledConv extends Module {
  constructor(readonly cin: number, readonly cout: number, readonly kernel: number, readonly stride: number, readonly same: boolean) {
    super();
    this.registerParam('conv.weight', [cout, cin, kernel, kernel]);
    this.registerParam('conv.bias', [cout]);
    this.registerParam('scale.weight', [cout]);
    this.registerParam('scale.bias', [cout]);
  }

  forward(g: Graph, x: Value, relu: boolean): Value {
    return this.scoped(g, () => {
      if (x.shape[1] !== this.cin) g.fail(`expects ${this.cin} channels, got [${x.shape.join(', ')}]`);
      // TF 'same' for an odd kernel at stride 1: (k - 1) / 2 on every side.
      const p = this.same ? (this.kernel - 1) / 2 : 0;
      const y = op.conv(x, this.p(g, 'conv.weight'), this.p(g, 'conv.bias'), { stride: [this.stride, this.stride], pads: [p, p, p, p] });
      const perChannel = (name: string) => op.reshape(this.p(g, name), [this.cout, 1, 1]);
      const scaled = op.add(op.mul(y, perChannel('scale.weight')), perChannel('scale.bias'));
      return relu ? op.relu(scaled) : scaled;
    });
  }
}

/** face-api's residual / residualDown. */
class Residual extends Module {
  readonly conv1: ScaledConv;
  readonly conv2: ScaledConv;

  constructor(readonly cin: number, readonly cout: number, readonly down: boolean) {
    super();
    this.conv1 = this.addModule('conv1', new ScaledConv(cin, cout, 3, down ? 2 : 1, !down));
    this.conv2 = this.addModule('conv2', new ScaledConv(cout, cout, 3, 1, true));
  }

  forward(g: Graph, x: Value): Value {
    let out = this.conv2.forward(g, this.conv1.forward(g, x, true), false);
    return this.scoped(g, () => {
      let skip = x;
      if (this.down) {
        skip = op.avgPool2d(x, 2, 2);
        const dh = skip.shape[2]! - out.shape[2]!;
        const dw = skip.shape[3]! - out.shape[3]!;
        if (dh < 0 || dw < 0) g.fail(`down block: conv path [${out.shape}] larger than the pooled input [${skip.shape}]`);
        if (dh > 0 || dw > 0) out = op.pad(out, [0, 0, 0, 0, 0, 0, dh, dw]);
        if (this.cout > this.cin) skip = op.pad(skip, [0, 0, 0, 0, 0, this.cout - this.cin, 0, 0]);
      }
      return op.relu(op.add(out, skip));
    });
  }
}

const BLOCKS: [name: string, cin: number, cout: number, down: boolean][] = [
  ['conv32_1', 32, 32, false], ['conv32_2', 32, 32, false], ['conv32_3', 32, 32, false],
  ['conv64_down', 32, 64, true], ['conv64_1', 64, 64, false], ['conv64_2', 64, 64, false], ['conv64_3', 64, 64, false],
  ['conv128_down', 64, 128, true], ['conv128_1', 128, 128, false], ['conv128_2', 128, 128, false],
  ['conv256_down', 128, 256, true], ['conv256_1', 256, 256, false], ['conv256_2', 256, 256, false],
  ['conv256_down_out', 256, 256, true],
];

/** face-api's FaceRecognitionNet as a module; parameters `<prefix>.<face-api path>`. */
export class FaceRecognitionNet extends Module {
  readonly stem: ScaledConv;
  readonly blocks: Residual[];

  constructor(prefix = RECOGNITION_PREFIX) {
    super();
    if (prefix) new Prefix(prefix, this);
    this.stem = this.addModule('conv32_down', new ScaledConv(3, 32, 7, 2, false));
    this.blocks = BLOCKS.map(([name, cin, cout, down]) => this.addModule(name, new Residual(cin, cout, down)));
    this.registerParam('fc.weight', [256, DESCRIPTOR_SIZE]);
  }

  /**
   * Descriptors (B, 128) of faces `image01` (B, 3, H, W), RGB in [0, 1], with face-api's
   * preprocessing (zero-pad to a square, bilinear resize to 150, mean/scale normalisation).
   */
  forward(g: Graph, image01: Value): Value {
    const x = this.scoped(g, () => {
      if (image01.rank !== 4 || image01.shape[1] !== 3) g.fail(`expects RGB images (B, 3, H, W), got [${image01.shape.join(', ')}]`);
      let img = image01;
      const [h, w] = [img.shape[2]!, img.shape[3]!];
      if (h !== w) {
        const diff = Math.abs(h - w);
        const after = Math.round(diff / 2);
        const axis = h > w ? 3 : 2;
        const pads = [0, 0, 0, 0, 0, 0, 0, 0];
        pads[axis] = diff - after;
        pads[axis + 4] = after;
        img = op.pad(img, pads);
      }
      let v = op.mul(img, 255);
      if (Math.max(h, w) !== RECOGNITION_INPUT) v = op.resize2dLinear(v, [RECOGNITION_INPUT, RECOGNITION_INPUT], 'asymmetric');
      const mean = op.floatConst(g, [3, 1, 1], Float32Array.from(RECOGNITION_MEAN_RGB), 'mean_rgb');
      return op.div(op.sub(v, mean), 255);
    });
    let out = this.stem.forward(g, x, true);
    out = this.scoped(g, () => op.maxPool2d(out, 3, 2));
    for (const b of this.blocks) out = b.forward(g, out);
    return this.scoped(g, () => op.matmul(op.reduceMean(out, [2, 3], false), this.p(g, 'fc.weight')));
  }
}

/**
 * The network's parameters (keys as FaceRecognitionNet with `prefix`) from face-api's
 * `face_recognition_model` weight files in `modelDir` (default: the npm package's `model/`).
 * Filters are converted from TF's HWIO to OIHW.
 */
export function loadRecognitionWeights(modelDir = defaultFaceModelDir(), prefix = RECOGNITION_PREFIX): Map<string, Float32Array> {
  const tf = readTfjsWeights(modelDir, RECOGNITION_WEIGHTS);
  const file = `${modelDir}/${RECOGNITION_WEIGHTS}-weights_manifest.json`;
  const net = new FaceRecognitionNet(prefix);
  const out = new Map<string, Float32Array>();
  const head = prefix ? `${prefix}.` : '';
  for (const [key, shape] of net.namedParameters()) {
    const local = key.slice(head.length);
    const m = /^(.*)\.(conv\.weight|conv\.bias|scale\.weight|scale\.bias)$/.exec(local);
    const tfName = local === 'fc.weight'
      ? 'fc'
      : `${m![1]!.replace(/\./g, '/')}/${{ 'conv.weight': 'conv/filters', 'conv.bias': 'conv/bias', 'scale.weight': 'scale/weights', 'scale.bias': 'scale/biases' }[m![2]!]}`;
    const w = tf.get(tfName);
    if (!w) throw new Error(`${file}: weight '${tfName}' is missing`);
    const expected = local.endsWith('conv.weight') ? [shape[2]!, shape[3]!, shape[1]!, shape[0]!] : shape;
    if (w.shape.length !== expected.length || w.shape.some((d, i) => d !== expected[i])) {
      throw new Error(`${file}: weight '${tfName}' has shape [${w.shape}], expected [${expected}]`);
    }
    if (local.endsWith('conv.weight')) {
      const [o, i, kh, kw] = shape as [number, number, number, number];
      const oihw = new Float32Array(w.data.length);
      for (let y = 0; y < kh; y++) for (let x = 0; x < kw; x++) for (let c = 0; c < i; c++) for (let k = 0; k < o; k++) {
        oihw[((k * i + c) * kh + y) * kw + x] = w.data[((y * kw + x) * i + c) * o + k]!;
      }
      out.set(key, oihw);
    } else {
      out.set(key, w.data);
    }
  }
  return out;
}

/** A WeightSource over loaded weights (for emitOnnx). */
export function weightSource(weights: ReadonlyMap<string, Float32Array>, fallback?: WeightSource): WeightSource {
  return {
    read: (key, shape) => {
      const w = weights.get(key);
      if (w) return w;
      if (fallback) return fallback.read(key, shape);
      throw new Error(`no weight '${key}'`);
    },
  };
}

/** Whether a graph parameter key belongs to the recognition network (frozen in training). */
export const isRecognitionParam = (key: string): boolean => key.startsWith(`${RECOGNITION_PREFIX}.`);

/** Per-sample cosine similarity (B,) of two (B, D) descriptor batches. */
export function cosineSimilarityGraph(a: Value, b: Value): Value {
  const dot = op.reduceSum(op.mul(a, b), [1], false);
  const na = op.sqrt(op.reduceSum(op.mul(a, a), [1], false));
  const nb = op.sqrt(op.reduceSum(op.mul(b, b), [1], false));
  return op.div(dot, op.add(op.mul(na, nb), 1e-8));
}

/**
 * Identity loss: 1 - cosine similarity of the recognition descriptors of `restored01` and
 * `target01` (both (B, 3, H, W) in [0, 1]), averaged over the batch; a scalar. The network's
 * parameters are `face_recognition.*` graph parameters: feed them from loadRecognitionWeights()
 * and leave them out of the trained set.
 */
export function identityLoss(g: Graph, restored01: Value, target01: Value): Value {
  const net = new FaceRecognitionNet();
  const a = net.forward(g, restored01);
  const b = net.forward(g, target01);
  return op.sub(op.scalar(g, 1), op.reduceMean(cosineSimilarityGraph(a, b), [0], false));
}

/** Cosine similarity of two descriptors (float64 sums). */
export function cosineSimilarity(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`cosineSimilarity: lengths ${a.length} and ${b.length} differ`);
  let dot = 0;
  let na = 0;
  let nb = 0;
  for (let i = 0; i < a.length; i++) {
    dot += a[i]! * b[i]!;
    na += a[i]! * a[i]!;
    nb += b[i]! * b[i]!;
  }
  return dot / (Math.sqrt(na * nb) || 1);
}

export interface FaceRecognizerOptions {
  /** Folder holding face-api's weight files; default: the @vladmandic/face-api package's `model/`. */
  modelDir?: string;
  /** ONNX Runtime intra-op threads; default: ONNX Runtime's choice. */
  threads?: number;
}

/**
 * The (B, 3, S, S) tensor face-api builds from an image before its resize: RGB / 255, zero-padded
 * to a square as face-api's padToSquare(…, isCenterImage = true) does.
 */
export function recognitionInput(img: RgbImage): { shape: number[]; data: Float32Array } {
  const { width: w, height: h, data } = img;
  if (data.length !== w * h * 3) throw new Error(`recognitionInput: ${data.length} bytes for a ${w}x${h} RGB image`);
  const s = Math.max(w, h);
  const diff = s - Math.min(w, h);
  const before = diff - Math.round(diff / 2);
  const left = w < h ? before : 0;
  const top = h < w ? before : 0;
  const out = new Float32Array(3 * s * s);
  const plane = s * s;
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const i = 3 * (y * w + x);
      const o = (y + top) * s + x + left;
      out[o] = data[i]! / 255;
      out[plane + o] = data[i + 1]! / 255;
      out[2 * plane + o] = data[i + 2]! / 255;
    }
  }
  return { shape: [1, 3, s, s], data: out };
}

/** The descriptor graph for host-side use: input `image` (batch, 3, size, size) in [0, 1], output `descriptor`. */
export function recognitionGraph(): Graph {
  const g = new Graph('face_recognition');
  // An example size other than 150 keeps the Resize node; at 150 it copies its input exactly.
  const image = g.input('image', 'float32', ['batch', 3, 'size', 'size'], [1, 3, 160, 160]);
  g.output(new FaceRecognitionNet().forward(g, image), 'descriptor');
  return g;
}

/** Host-side descriptors and identity similarity on ONNX Runtime. */
export class FaceRecognizer {
  private constructor(private readonly session: OnnxSession) {}

  static async create(opts: FaceRecognizerOptions = {}): Promise<FaceRecognizer> {
    const weights = loadRecognitionWeights(opts.modelDir ?? defaultFaceModelDir());
    const onnx = emitOnnx(recognitionGraph(), { weights: weightSource(weights), producerVersion: 'osdface-face' });
    return new FaceRecognizer(await OnnxSession.create(onnx, { threads: opts.threads }));
  }

  /** The 128-d descriptor of a face image (any size; face-api pads it to a square and resizes to 150). */
  async descriptor(img: RgbImage): Promise<Float32Array> {
    const input = recognitionInput(img);
    const out = await this.session.run({ image: floatTensor(input.shape, input.data) });
    return out.descriptor!.data as Float32Array;
  }

  /** Cosine similarity of the two faces' descriptors (IDS; 1 - IDS is a "Deg"-style distance). */
  async similarity(a: RgbImage, b: RgbImage): Promise<number> {
    return cosineSimilarity(await this.descriptor(a), await this.descriptor(b));
  }

  async dispose(): Promise<void> {
    await this.session.release();
  }
}

let shared: Promise<FaceRecognizer> | undefined;

/**
 * Identity similarity (IDS) of two face images: the cosine of their face-api recognition
 * descriptors, in [-1, 1] (1: same descriptor). Uses one FaceRecognizer shared by the process,
 * created on first use from the npm package's weights.
 */
export async function identitySimilarity(a: RgbImage, b: RgbImage): Promise<number> {
  shared ??= FaceRecognizer.create().catch((e: unknown) => {
    shared = undefined;
    throw e;
  });
  return (await shared).similarity(a, b);
}
