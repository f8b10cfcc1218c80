/**
 * LPIPS v0.1 (Zhang et al. 2018, "The Unreasonable Effectiveness of Deep Features as a Perceptual
 * Metric"), as the `lpips` package (richzhang/PerceptualSimilarity, lpips/lpips.py and
 * pretrained_networks.py) computes it, in our graph IR on ONNX Runtime:
 *
 *   x in [-1, 1] -> (x - shift) / scale, shift = (-.030, -.088, -.188), scale = (.458, .448, .450)
 *   five ReLU outputs of an ImageNet backbone (torchvision `features`):
 *     alex: after features.1, .4, .7, .9, .11 (conv1..conv5; 64, 192, 384, 256, 256 channels)
 *     vgg:  after features.3, .8, .15, .22, .29 (relu1_2..relu5_3; 64, 128, 256, 512, 512)
 *   each unit-normalised over channels, f / (sqrt(sum_c f²) + 1e-10)
 *   d_k = (f0_k - f1_k)², then a 1x1 convolution to one channel without bias (the "lin" layers,
 *   lin<k>.model.1.weight of alex.pth / vgg.pth; model.0 is a parameter-free Dropout)
 *   LPIPS = sum_k mean over space of lin_k(d_k)
 *
 * Parameter names are those of the checkpoints: `features.<i>.weight|bias` (torchvision
 * alexnet-owt-7be5be79.pth / vgg16-397923af.pth) and `lin<k>.model.1.weight` (LPIPS v0.1). Keys as
 * the `lpips` / pyiqa LPIPS modules save them (`net.slice<n>.<i>.*`, `lins.<k>.model.1.weight`) are
 * accepted too.
 */
import { Graph, type Value } from '../graph/ir.js';
import * as op from '../graph/ops.js';
import { emitOnnx } from '../graph/emit.js';
import { OnnxSession } from '../graph/runtime.js';
import { Module, ModuleList } from '../nn/module.js';
import { Conv2d } from '../nn/layers.js';
import type { RgbImage } from '../image/io.js';
import { floatTensor } from '../tensor.js';
import { METRIC_REQUIREMENTS, requireWeightFiles } from './unavailable.js';
import { mapWeightSource, pickParameters, readTensorFiles } from './weight_files.js';

export type LpipsNet = 'alex' | 'vgg';

/** LPIPS v0.1 ScalingLayer constants (lpips/lpips.py). */
export const LPIPS_SHIFT = [-0.03, -0.088, -0.188];
export const LPIPS_SCALE = [0.458, 0.448, 0.45];

/** A parameter-free layer (ReLU, pooling, dropout) that keeps the checkpoint's indices. */
class Placeholder extends Module {}

/** One backbone layer of torchvision's `features`, or null for ReLU / pooling. */
type LayerSpec = { conv: [cin: number, cout: number, kernel: number, stride: number, pad: number] } | { pool: [kernel: number, stride: number] } | { relu: true };

/** torchvision AlexNet `features` up to conv5's ReLU (index 11). */
const ALEX_LAYERS: LayerSpec[] = [
  { conv: [3, 64, 11, 4, 2] }, { relu: true }, { pool: [3, 2] },
  { conv: [64, 192, 5, 1, 2] }, { relu: true }, { pool: [3, 2] },
  { conv: [192, 384, 3, 1, 1] }, { relu: true },
  { conv: [384, 256, 3, 1, 1] }, { relu: true },
  { conv: [256, 256, 3, 1, 1] }, { relu: true },
];
const ALEX_TAPS = [1, 4, 7, 9, 11];

/** torchvision VGG16 `features` up to relu5_3 (index 29). */
const VGG_LAYERS: LayerSpec[] = (() => {
  const cfg: (number | 'M')[] = [64, 64, 'M', 128, 128, 'M', 256, 256, 256, 'M', 512, 512, 512, 'M', 512, 512, 512];
  const out: LayerSpec[] = [];
  let cin = 3;
  for (const c of cfg) {
    if (c === 'M') out.push({ pool: [2, 2] });
    else {
      out.push({ conv: [cin, c, 3, 1, 1] }, { relu: true });
      cin = c;
    }
  }
  return out;
})();
const VGG_TAPS = [3, 8, 15, 22, 29];

export const LPIPS_CHANNELS: Readonly<Record<LpipsNet, number[]>> = { alex: [64, 192, 384, 256, 256], vgg: [64, 128, 256, 512, 512] };

/** A torchvision `features` Sequential that returns the ReLU outputs at `taps`. */
export class TorchvisionFeatures extends Module {
  private readonly list: ModuleList<Module>;

  constructor(private readonly layers: readonly LayerSpec[], private readonly taps: readonly number[]) {
    super();
    this.list = this.addModule('features', new ModuleList<Module>());
    for (const l of layers) {
      if ('conv' in l) {
        const [cin, cout, k, stride, padding] = l.conv;
        this.list.push(new Conv2d(cin, cout, k, { stride, padding }));
      } else this.list.push(new Placeholder());
    }
  }

  forward(g: Graph, x: Value): Value[] {
    const out: Value[] = [];
    let h = x;
    const last = Math.max(...this.taps);
    for (let i = 0; i <= last; i++) {
      const l = this.layers[i]!;
      if ('conv' in l) h = (this.list.items[i] as Conv2d).forward(g, h);
      else if ('pool' in l) h = op.maxPool2d(h, l.pool[0], l.pool[1]);
      else h = op.relu(h);
      if (this.taps.includes(i)) out.push(h);
    }
    return out;
  }
}

export function alexnetFeatures(): TorchvisionFeatures {
  return new TorchvisionFeatures(ALEX_LAYERS, ALEX_TAPS);
}

export function vgg16Features(): TorchvisionFeatures {
  return new TorchvisionFeatures(VGG_LAYERS, VGG_TAPS);
}

/** NetLinLayer: Sequential(Dropout, Conv2d(c, 1, 1, bias=False)); only model.1 has a weight. */
class LinLayer extends Module {
  readonly conv: Conv2d;
  constructor(channels: number) {
    super();
    const model = this.addModule('model', new ModuleList<Module>());
    model.push(new Placeholder());
    this.conv = new Conv2d(channels, 1, 1, { bias: false });
    model.push(this.conv);
  }
}

/** Channel-wise unit normalisation of lpips.normalize_tensor: f / (||f||_2 over channels + 1e-10). */
function unitNormalise(f: Value): Value {
  return op.div(f, op.add(op.sqrt(op.reduceSum(op.mul(f, f), [1])), 1e-10));
}

export class LpipsNetwork extends Module {
  readonly backbone: TorchvisionFeatures;
  readonly lins: LinLayer[] = [];

  constructor(readonly net: LpipsNet = 'alex') {
    super();
    // The backbone is the root's own `features` (torchvision's keys); lin layers follow.
    this.backbone = this.addModule('', net === 'alex' ? alexnetFeatures() : vgg16Features());
    LPIPS_CHANNELS[net].forEach((c, k) => this.lins.push(this.addModule(`lin${k}`, new LinLayer(c))));
  }

  /** LPIPS distance per image, shape (B), for images in [-1, 1] of shape (B, 3, H, W). */
  forward(g: Graph, x: Value, y: Value): Value {
    const shift = op.floatConst(g, [1, 3, 1, 1], Float32Array.from(LPIPS_SHIFT), 'lpips_shift');
    const scale = op.floatConst(g, [1, 3, 1, 1], Float32Array.from(LPIPS_SCALE), 'lpips_scale');
    const f0 = this.backbone.forward(g, op.div(op.sub(x, shift), scale));
    const f1 = this.backbone.forward(g, op.div(op.sub(y, shift), scale));
    let total: Value | undefined;
    f0.forEach((a, k) => {
      const d = op.sub(unitNormalise(a), unitNormalise(f1[k]!));
      const term = op.reduceMean(this.lins[k]!.conv.forward(g, op.mul(d, d)), [1, 2, 3], false);
      total = total ? op.add(total, term) : term;
    });
    return total!;
  }
}

/**
 * Our parameter name for a key of a torchvision backbone file or an LPIPS file, or undefined.
 * `net.slice<n>.<i>.*` (lpips.pn.alexnet/vgg16 keep torchvision's index i in their slices) ->
 * `features.<i>.*`; `lins.<k>.*` -> `lin<k>.*`.
 */
export function lpipsKey(key: string): string | undefined {
  let m = /^(?:module\.)?(?:net\.)?slice\d+\.(\d+)\.(weight|bias)$/.exec(key);
  if (m) return `features.${m[1]}.${m[2]}`;
  m = /^(?:module\.)?lins\.(\d+)\.model\.1\.weight$/.exec(key);
  if (m) return `lin${m[1]}.model.1.weight`;
  m = /^(?:module\.)?(features\.\d+\.(?:weight|bias)|lin\d\.model\.1\.weight)$/.exec(key);
  return m ? m[1] : undefined;
}

export interface LpipsOptions {
  net?: LpipsNet;
  /** torchvision ImageNet weights of the backbone (alexnet-owt-7be5be79.pth / vgg16-397923af.pth). */
  backbone?: string;
  /** LPIPS v0.1 linear layers (alex.pth / vgg.pth). */
  lin?: string;
  threads?: number;
}

/** The LPIPS graph: inputs `x`, `y` (batch, 3, height, width) in [-1, 1], output `distance` (batch). */
export function lpipsGraph(net: LpipsNet, example = 64): { graph: Graph; model: LpipsNetwork } {
  const g = new Graph(`lpips_${net}`);
  const x = g.input('x', 'float32', ['batch', 3, 'height', 'width'], [1, 3, example, example]);
  const y = g.input('y', 'float32', ['batch', 3, 'height', 'width'], [1, 3, example, example]);
  const model = new LpipsNetwork(net);
  g.output(model.forward(g, x, y), 'distance');
  return { graph: g, model };
}

/** 8-bit RGB (HWC) to a (1, 3, H, W) tensor in [-1, 1] (lpips.im2tensor: x / 127.5 - 1). */
export function toMinusOneOne(img: RgbImage): Float32Array {
  const { width: w, height: h, data } = img;
  const out = new Float32Array(3 * w * h);
  for (let i = 0; i < w * h; i++) for (let c = 0; c < 3; c++) out[c * w * h + i] = data[i * 3 + c]! / 127.5 - 1;
  return out;
}

/** LPIPS on ONNX Runtime with the user's weight files. */
export class LpipsMetric {
  private constructor(private readonly session: OnnxSession, readonly net: LpipsNet) {}

  static async load(opts: LpipsOptions): Promise<LpipsMetric> {
    const net = opts.net ?? 'alex';
    const files = requireWeightFiles('lpips', [opts.backbone, opts.lin], 'the backbone (--lpips-backbone) and the linear layers (--lpips-lin)');
    const weights = loadLpipsWeights(net, files);
    return LpipsMetric.fromWeights(net, weights, opts.threads);
  }

  /** From parameters already keyed like LpipsNetwork.namedParameters() (tests use synthetic ones). */
  static async fromWeights(net: LpipsNet, weights: ReadonlyMap<string, Float32Array>, threads?: number): Promise<LpipsMetric> {
    const { graph } = lpipsGraph(net);
    const onnx = emitOnnx(graph, { weights: mapWeightSource(weights), producerVersion: 'osdface-lpips' });
    return new LpipsMetric(await OnnxSession.create(onnx, { threads }), net);
  }

  /** LPIPS between two 8-bit images of the same size (lower: more similar). */
  async distance(a: RgbImage, b: RgbImage): Promise<number> {
    if (a.width !== b.width || a.height !== b.height) throw new Error(`lpips: sizes differ (${a.width}x${a.height} vs ${b.width}x${b.height})`);
    const shape = [1, 3, a.height, a.width];
    const out = await this.session.run({ x: floatTensor(shape, toMinusOneOne(a)), y: floatTensor(shape, toMinusOneOne(b)) });
    return out.distance!.data[0] as number;
  }

  async dispose(): Promise<void> {
    await this.session.release();
  }
}

/** The LPIPS parameters from the backbone and lin files (either order; or one file holding both). */
export function loadLpipsWeights(net: LpipsNet, files: readonly string[]): Map<string, Float32Array> {
  const expected = new LpipsNetwork(net).namedParameters();
  return pickParameters(files, readTensorFiles(files), expected, lpipsKey, `LPIPS-${net}: ${METRIC_REQUIREMENTS.lpips}`);
}
