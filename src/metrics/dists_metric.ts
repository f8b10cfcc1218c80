/**
 * DISTS as an evaluation metric: the network of ../train/dists.ts (the same graph the training loss
 * differentiates), forward only, on ONNX Runtime, with the user's VGG16 and alpha/beta files.
 *
 * Inputs are the 8-bit images divided by 255 ([0, 1], RGB), at their own size. The DISTS authors'
 * command-line script (dingkeyan93/DISTS, DISTS_pytorch/DISTS_pt.py `prepare_image`) first resizes
 * images whose shorter side exceeds 256 down to 256; pyiqa's `dists` (IQA-PyTorch,
 * pyiqa/archs/dists_arch.py) does not, and its calibration table reproduces the original model's
 * numbers that way. We follow pyiqa: no resize, so 512x512 faces are compared at 512x512.
 *
 * The graph's L2 pooling reshapes with the image size fixed, so one session is built per size and
 * kept (evaluation sets are normally a single size).
 */
import { Graph } from '../graph/ir.js';
import { emitOnnx } from '../graph/emit.js';
import { OnnxSession } from '../graph/runtime.js';
import type { RgbImage } from '../image/io.js';
import { floatTensor } from '../tensor.js';
import { Dists, loadDistsWeights } from '../train/dists.js';
import { requireWeightFiles } from './unavailable.js';
import { mapWeightSource } from './weight_files.js';

/** The DISTS graph for one image size: inputs `x`, `y` (batch, 3, h, w) in [0, 1], output `distance` (batch). */
export function distsGraph(height: number, width: number): Graph {
  const g = new Graph('dists');
  const x = g.input('x', 'float32', ['batch', 3, height, width], [1, 3, height, width]);
  const y = g.input('y', 'float32', ['batch', 3, height, width], [1, 3, height, width]);
  g.output(new Dists().forward(g, x, y), 'distance');
  return g;
}

/** 8-bit RGB (HWC) to a (1, 3, H, W) tensor in [0, 1]. */
export function toUnitRange(img: RgbImage): Float32Array {
  const { width: w, height: h, data } = img;
  const out = new Float32Array(3 * w * h);
  for (let i = 0; i < w * h; i++) for (let c = 0; c < 3; c++) out[c * w * h + i] = data[i * 3 + c]! / 255;
  return out;
}

export interface DistsOptions {
  /** torchvision VGG16 ImageNet weights (vgg16-397923af.pth) and the DISTS alpha/beta file (weights.pt); or one file with both. */
  weights?: readonly string[];
  threads?: number;
}

export class DistsMetric {
  private readonly sessions = new Map<string, OnnxSession>();

  private constructor(private readonly weights: ReadonlyMap<string, Float32Array>, private readonly threads?: number) {}

  static async load(opts: DistsOptions): Promise<DistsMetric> {
    const files = requireWeightFiles('dists', opts.weights && opts.weights.length > 0 ? opts.weights : [undefined], 'the VGG16 and DISTS alpha/beta weights (--dists-weights)');
    return new DistsMetric(await loadDistsWeights(files), opts.threads);
  }

  /** From parameters keyed like Dists.namedParameters() (tests use synthetic ones). */
  static fromWeights(weights: ReadonlyMap<string, Float32Array>, threads?: number): DistsMetric {
    return new DistsMetric(weights, threads);
  }

  private async session(h: number, w: number): Promise<OnnxSession> {
    const key = `${h}x${w}`;
    let s = this.sessions.get(key);
    if (!s) {
      // The VGG stages pool four times; below 16 pixels a stage would vanish.
      if (h < 16 || w < 16) throw new Error(`dists: images must be at least 16x16, got ${w}x${h}`);
      const onnx = emitOnnx(distsGraph(h, w), { weights: mapWeightSource(this.weights), producerVersion: 'osdface-dists' });
      s = await OnnxSession.create(onnx, { threads: this.threads });
      this.sessions.set(key, s);
    }
    return s;
  }

  /** DISTS between two 8-bit images of the same size (0 for identical images; lower: more similar). */
  async distance(a: RgbImage, b: RgbImage): Promise<number> {
    if (a.width !== b.width || a.height !== b.height) throw new Error(`dists: sizes differ (${a.width}x${a.height} vs ${b.width}x${b.height})`);
    const s = await this.session(a.height, a.width);
    const shape = [1, 3, a.height, a.width];
    const out = await s.run({ x: floatTensor(shape, toUnitRange(a)), y: floatTensor(shape, toUnitRange(b)) });
    return out.distance!.data[0] as number;
  }

  async dispose(): Promise<void> {
    for (const s of this.sessions.values()) await s.release();
    this.sessions.clear();
  }
}
