/**
 * DISTS (Ding et al. 2020, "Image Quality Assessment: Unifying Structure and Texture Similarity") in
 * our graph IR, so it is differentiable: VGG16's conv stages with L2 pooling, then per-stage
 * structure and texture similarities weighted by the learned alpha/beta. Its weights are not
 * bundled: the user supplies torchvision's VGG16 (`features.N.weight/bias`) and the DISTS alpha/beta
 * tensors. OSDFace's edge-aware term is DISTS on the images plus DISTS on their Sobel edge maps.
 */
import type { Graph, Value } from '../graph/ir.js';
import * as op from '../graph/ops.js';
import { Module, ModuleList } from '../nn/module.js';
import { Conv2d } from '../nn/layers.js';

/** VGG16 `features` indices of the convolutions in each DISTS stage (ReLU after each). */
const STAGES = [[0, 2], [5, 7], [10, 12, 14], [17, 19, 21], [24, 26, 28]];
const CONV_SHAPES: Record<number, [number, number]> = {
  0: [3, 64], 2: [64, 64], 5: [64, 128], 7: [128, 128], 10: [128, 256], 12: [256, 256], 14: [256, 256],
  17: [256, 512], 19: [512, 512], 21: [512, 512], 24: [512, 512], 26: [512, 512], 28: [512, 512],
};
export const DISTS_CHANNELS = [3, 64, 128, 256, 512, 512];
const MEAN = [0.485, 0.456, 0.406];
const STD = [0.229, 0.224, 0.225];

/** torchvision VGG16 `features`: a ModuleList whose conv indices match the checkpoint keys. */
class VggFeatures extends Module {
  readonly convs = new Map<number, Conv2d>();

  constructor() {
    super();
    const list = this.addModule('features', new ModuleList<Module>());
    for (let i = 0; i <= 28; i++) {
      const shape = CONV_SHAPES[i];
      const m = shape ? new Conv2d(shape[0], shape[1], 3, { padding: 1 }) : new Placeholder();
      if (shape) this.convs.set(i, m as Conv2d);
      list.push(m);
    }
  }
}

/** A parameter-free layer (ReLU / pooling) that keeps torchvision's indices. */
class Placeholder extends Module {}

/**
 * L2 pooling: sqrt(conv(x^2, 3x3 Hann window, stride 2, pad 1) + 1e-12) per channel. Run as a
 * single-channel convolution over (B*C, 1, H, W) so it needs no grouped-convolution gradient.
 */
function l2pool(x: Value): Value {
  const g = x.graph;
  const a = [0.5, 1, 0.5];
  const w = new Float32Array(9);
  for (let i = 0; i < 3; i++) for (let j = 0; j < 3; j++) w[i * 3 + j] = (a[i]! * a[j]!) / 4;
  const kernel = op.floatConst(g, [1, 1, 3, 3], w, 'l2pool_window');
  const flat = op.reshape(op.mul(x, x), [-1, 1, x.shape[2]!, x.shape[3]!]);
  const pooled = op.conv(flat, kernel, null, { stride: [2, 2], pads: [1, 1, 1, 1] });
  const [b, c] = [x.shape[0]!, x.shape[1]!];
  return op.sqrt(op.add(op.reshape(pooled, [b, c, pooled.shape[2]!, pooled.shape[3]!]), 1e-12));
}

export class Dists extends Module {
  readonly vgg: VggFeatures;

  constructor() {
    super();
    this.vgg = this.addModule('vgg', new VggFeatures());
    this.registerParam('alpha', [1, DISTS_CHANNELS.reduce((s, c) => s + c, 0), 1, 1]);
    this.registerParam('beta', [1, DISTS_CHANNELS.reduce((s, c) => s + c, 0), 1, 1]);
  }

  private features(g: Graph, x: Value): Value[] {
    const mean = op.floatConst(g, [1, 3, 1, 1], Float32Array.from(MEAN), 'imagenet_mean');
    const std = op.floatConst(g, [1, 3, 1, 1], Float32Array.from(STD), 'imagenet_std');
    let h = op.div(op.sub(x, mean), std);
    const feats = [x];
    STAGES.forEach((convs, s) => {
      if (s > 0) h = l2pool(h);
      for (const i of convs) h = op.relu(this.vgg.convs.get(i)!.forward(g, h));
      feats.push(h);
    });
    return feats;
  }

  /** DISTS distance per image, (B,), for images in [0, 1] (1-channel inputs are repeated to 3). */
  forward(g: Graph, x: Value, y: Value): Value {
    return this.scoped(g, () => {
      const rgb = (v: Value) => (v.shape[1] === 1 ? op.concat([v, v, v], 1) : v);
      return structureTextureDistance(this.features(g, rgb(x)), this.features(g, rgb(y)), this.p(g, 'alpha'), this.p(g, 'beta'));
    });
  }
}

/**
 * DISTS's distance between two feature pyramids (B, C_k, H_k, W_k), per image (B,): one minus the
 * alpha-weighted texture similarity of the per-channel means plus the beta-weighted structure
 * similarity (the correlation), alpha and beta (1, sum of C_k, 1, 1) normalised by their joint sum.
 */
export function structureTextureDistance(f0: Value[], f1: Value[], alpha: Value, beta: Value): Value {
  const g = alpha.graph;
  const wSum = op.add(op.reduceSum(alpha, [0, 1, 2, 3], false), op.reduceSum(beta, [0, 1, 2, 3], false));
  const c = 1e-6;
  let dist: Value | undefined;
  let start = 0;
  f0.forEach((x, k) => {
    const y = f1[k]!;
    const ch = x.shape[1]!;
    const a = op.div(op.slice(alpha, 1, start, start + ch), wSum);
    const b = op.div(op.slice(beta, 1, start, start + ch), wSum);
    start += ch;
    const xm = op.reduceMean(x, [2, 3]);
    const ym = op.reduceMean(y, [2, 3]);
    const s1 = op.div(op.add(op.mul(op.mul(xm, ym), 2), c), op.add(op.add(op.mul(xm, xm), op.mul(ym, ym)), c));
    const xc = op.sub(x, xm);
    const yc = op.sub(y, ym);
    const xv = op.reduceMean(op.mul(xc, xc), [2, 3]);
    const yv = op.reduceMean(op.mul(yc, yc), [2, 3]);
    const cov = op.sub(op.reduceMean(op.mul(x, y), [2, 3]), op.mul(xm, ym));
    const s2 = op.div(op.add(op.mul(cov, 2), c), op.add(op.add(xv, yv), c));
    const term = op.add(op.reduceSum(op.mul(a, s1), [1, 2, 3], false), op.reduceSum(op.mul(b, s2), [1, 2, 3], false));
    dist = dist ? op.add(dist, term) : term;
  });
  if (start !== alpha.shape[1]) throw new Error(`DISTS weights cover ${alpha.shape[1]} channels, the features have ${start}`);
  return op.sub(op.scalar(g, 1), dist!);
}

/** Sobel gradient magnitude of the channel mean, sqrt(ex^2 + ey^2 + 1e-6): (B, 1, H, W). */
export function sobelEdges(x: Value): Value {
  const g = x.graph;
  const grey = op.reduceMean(x, [1]);
  const kx = op.floatConst(g, [1, 1, 3, 3], Float32Array.of(-1, 0, 1, -2, 0, 2, -1, 0, 1), 'sobel_x');
  const ky = op.floatConst(g, [1, 1, 3, 3], Float32Array.of(-1, -2, -1, 0, 0, 0, 1, 2, 1), 'sobel_y');
  const ex = op.conv(grey, kx, null, { pads: [1, 1, 1, 1] });
  const ey = op.conv(grey, ky, null, { pads: [1, 1, 1, 1] });
  return op.sqrt(op.add(op.add(op.mul(ex, ex), op.mul(ey, ey)), 1e-6));
}

/** OSDFace's edge-aware perceptual loss: mean over the batch of DISTS(x, y) + DISTS(edges(x), edges(y)). */
export function edgeAwareDists(dists: { forward(g: Graph, x: Value, y: Value): Value }, g: Graph, x: Value, y: Value): Value {
  const mean = (v: Value) => op.reduceMean(v, [0], false);
  return op.add(mean(dists.forward(g, x, y)), mean(dists.forward(g, sobelEdges(x), sobelEdges(y))));
}

/**
 * DISTS weights from the user's files: torchvision VGG16 (`features.N.weight/bias`, or already
 * `vgg.features...`, or pyiqa's `stage<n>.<i>.*`) and DISTS `alpha`/`beta` (1, 1475, 1, 1), each as
 * safetensors or a torch.save file (zip or legacy format); the two may also be one file. Returns tensors keyed like `Dists.namedParameters()`.
 */
export async function loadDistsWeights(files: string[]): Promise<Map<string, Float32Array>> {
  const { loadTorchCheckpoint } = await import('../weights/torch.js');
  const { SafetensorsFile } = await import('../weights/safetensors.js');
  const { WeightFileError } = await import('../weights/errors.js');
  const found = new Map<string, Float32Array>();
  const origin = new Map<string, string>();
  for (const file of files) {
    let tensors: Map<string, { data: unknown; shape: number[] }>;
    if (file.endsWith('.safetensors')) {
      const f = SafetensorsFile.open(file);
      tensors = f.readAll();
      f.close();
    } else tensors = loadTorchCheckpoint(file);
    for (const [k, t] of tensors) {
      // pyiqa's DISTS_weights file is the whole module: stage<n>.<i>.* keeps torchvision's index i.
      const stage = /^stage\d+\.(\d+)\.(weight|bias)$/.exec(k);
      const key = stage ? `vgg.features.${stage[1]}.${stage[2]}` : k.startsWith('features.') ? `vgg.${k}` : k;
      found.set(key, t.data as Float32Array);
      origin.set(key, file);
    }
  }
  const model = new Dists();
  for (const [key, shape] of model.namedParameters()) {
    const t = found.get(key);
    const n = shape.reduce((a, b) => a * b, 1);
    if (!t) {
      throw new WeightFileError(files.join(', '), `DISTS needs tensor '${key}' (shape [${shape}])`, {
        key, hint: 'pass torchvision VGG16 ImageNet weights (features.N.weight/bias, vgg16-397923af.pth) and the DISTS alpha/beta weights (weights.pt of dingkeyan93/DISTS), as safetensors or .pth',
      });
    }
    if (t.length !== n) throw new WeightFileError(origin.get(key)!, `tensor '${key}' has ${t.length} values`, { key, expected: `shape [${shape}]` });
  }
  return found;
}
