/**
 * The Inception-v3 feature network of FID, as pytorch-fid builds it (mseitzer/pytorch-fid,
 * src/pytorch_fid/inception.py: `fid_inception_v3()` and InceptionV3 with output block 3), which
 * reproduces the TensorFlow Inception graph the FID paper used. It is torchvision's Inception3
 * (torchvision/models/inception.py) with the FID variants of some blocks:
 *
 * - Mixed_5b/5c/5d (FIDInceptionA) and Mixed_6b..6e (FIDInceptionC): the pooling branch averages
 *   with count_include_pad=False;
 * - Mixed_7b (FIDInceptionE_1): the same; Mixed_7c (FIDInceptionE_2): max pooling instead;
 * - everything else as torchvision: BasicConv2d = conv without bias, BatchNorm (eps 0.001), ReLU.
 *
 * Input: RGB in [0, 1], any size; bilinearly resized to 299x299 (F.interpolate, align_corners=False,
 * no antialiasing), scaled to [-1, 1], then Conv2d_1a..Mixed_7c and a global average pool: 2048
 * features per image (the "pool3" features). The classifier (fc, 1008 classes) is not used.
 *
 * Parameter names are those of pt_inception-2015-12-05-6726825d.pth: `<block>.<branch>.conv.weight`
 * and `<block>.<branch>.bn.{weight,bias,running_mean,running_var}`.
 */
import { Graph, type Value } from '../graph/ir.js';
import * as op from '../graph/ops.js';
import type { AttrValue } from '../graph/onnx.js';
import { Module } from '../nn/module.js';

export const FID_INPUT_SIZE = 299;
export const FID_FEATURES = 2048;
const BN_EPS = 0.001;

const ints = (value: number[]): AttrValue => ({ kind: 'ints', value });

/** 3x3 stride-1 pooling with 1 pixel of padding; averages leave the padding out (count_include_pad=False). */
function pool3x3Same(x: Value, kind: 'AveragePool' | 'MaxPool'): Value {
  const attrs: Record<string, AttrValue> = { kernel_shape: ints([3, 3]), strides: ints([1, 1]), pads: ints([1, 1, 1, 1]) };
  if (kind === 'AveragePool') attrs['count_include_pad'] = { kind: 'int', value: 0 };
  return x.graph.addNode(kind, [x], [{ dtype: x.dtype, shape: x.shape }], attrs)[0]!;
}

/** torchvision BasicConv2d: Conv2d(bias=False) + BatchNorm2d(eps=0.001) + ReLU, kernels may be non-square. */
export class BasicConv2d extends Module {
  constructor(readonly cin: number, readonly cout: number, readonly kernel: [number, number], readonly stride = 1, readonly padding: [number, number] = [0, 0]) {
    super();
    this.addModule('conv', new ParamHolder([['weight', [cout, cin, ...kernel]]]));
    this.addModule('bn', new ParamHolder([['weight', [cout]], ['bias', [cout]], ['running_mean', [cout]], ['running_var', [cout]]]));
  }

  forward(g: Graph, x: Value): Value {
    return this.scoped(g, () => {
      const p = (k: string, shape: number[]) => g.param(`${this.path}.${k}`, shape);
      const [ph, pw] = this.padding;
      const y = op.conv(x, p('conv.weight', [this.cout, this.cin, ...this.kernel]), null, { stride: [this.stride, this.stride], pads: [ph, pw, ph, pw] });
      const c = [this.cout];
      const bn = g.addNode(
        'BatchNormalization',
        [y, p('bn.weight', c), p('bn.bias', c), p('bn.running_mean', c), p('bn.running_var', c)],
        [{ dtype: y.dtype, shape: y.shape }],
        { epsilon: { kind: 'float', value: BN_EPS } },
      )[0]!;
      return op.relu(bn);
    });
  }
}

/** Declares parameters only (conv / bn of a BasicConv2d), so names follow torch's nesting. */
class ParamHolder extends Module {
  constructor(params: [string, number[]][]) {
    super();
    for (const [n, s] of params) this.registerParam(n, s);
  }
}

const k1: [number, number] = [1, 1];
const k3: [number, number] = [3, 3];

/** A block: named BasicConv2d branches, built in torchvision's definition order. */
abstract class Block extends Module {
  protected conv(name: string, cin: number, cout: number, kernel: [number, number], stride = 1, padding: [number, number] = [0, 0]): BasicConv2d {
    return this.addModule(name, new BasicConv2d(cin, cout, kernel, stride, padding));
  }
  abstract forward(g: Graph, x: Value): Value;
}

/** InceptionA / FIDInceptionA (Mixed_5b..5d). */
class InceptionA extends Block {
  private readonly b1; private readonly b5_1; private readonly b5_2; private readonly d1; private readonly d2; private readonly d3; private readonly pool;
  constructor(cin: number, poolFeatures: number) {
    super();
    this.b1 = this.conv('branch1x1', cin, 64, k1);
    this.b5_1 = this.conv('branch5x5_1', cin, 48, k1);
    this.b5_2 = this.conv('branch5x5_2', 48, 64, [5, 5], 1, [2, 2]);
    this.d1 = this.conv('branch3x3dbl_1', cin, 64, k1);
    this.d2 = this.conv('branch3x3dbl_2', 64, 96, k3, 1, [1, 1]);
    this.d3 = this.conv('branch3x3dbl_3', 96, 96, k3, 1, [1, 1]);
    this.pool = this.conv('branch_pool', cin, poolFeatures, k1);
  }
  forward(g: Graph, x: Value): Value {
    return op.concat([
      this.b1.forward(g, x),
      this.b5_2.forward(g, this.b5_1.forward(g, x)),
      this.d3.forward(g, this.d2.forward(g, this.d1.forward(g, x))),
      this.pool.forward(g, pool3x3Same(x, 'AveragePool')),
    ], 1);
  }
}

/** InceptionB (Mixed_6a): grid reduction 35 -> 17. */
class InceptionB extends Block {
  private readonly b3; private readonly d1; private readonly d2; private readonly d3;
  constructor(cin: number) {
    super();
    this.b3 = this.conv('branch3x3', cin, 384, k3, 2);
    this.d1 = this.conv('branch3x3dbl_1', cin, 64, k1);
    this.d2 = this.conv('branch3x3dbl_2', 64, 96, k3, 1, [1, 1]);
    this.d3 = this.conv('branch3x3dbl_3', 96, 96, k3, 2);
  }
  forward(g: Graph, x: Value): Value {
    return op.concat([this.b3.forward(g, x), this.d3.forward(g, this.d2.forward(g, this.d1.forward(g, x))), op.maxPool2d(x, 3, 2)], 1);
  }
}

/** InceptionC / FIDInceptionC (Mixed_6b..6e): factorised 7x7 convolutions. */
class InceptionC extends Block {
  private readonly b1; private readonly s: BasicConv2d[]; private readonly d: BasicConv2d[]; private readonly pool;
  constructor(cin: number, c7: number) {
    super();
    this.b1 = this.conv('branch1x1', cin, 192, k1);
    this.s = [
      this.conv('branch7x7_1', cin, c7, k1),
      this.conv('branch7x7_2', c7, c7, [1, 7], 1, [0, 3]),
      this.conv('branch7x7_3', c7, 192, [7, 1], 1, [3, 0]),
    ];
    this.d = [
      this.conv('branch7x7dbl_1', cin, c7, k1),
      this.conv('branch7x7dbl_2', c7, c7, [7, 1], 1, [3, 0]),
      this.conv('branch7x7dbl_3', c7, c7, [1, 7], 1, [0, 3]),
      this.conv('branch7x7dbl_4', c7, c7, [7, 1], 1, [3, 0]),
      this.conv('branch7x7dbl_5', c7, 192, [1, 7], 1, [0, 3]),
    ];
    this.pool = this.conv('branch_pool', cin, 192, k1);
  }
  forward(g: Graph, x: Value): Value {
    const chain = (convs: BasicConv2d[]) => convs.reduce((h, c) => c.forward(g, h), x);
    return op.concat([this.b1.forward(g, x), chain(this.s), chain(this.d), this.pool.forward(g, pool3x3Same(x, 'AveragePool'))], 1);
  }
}

/** InceptionD (Mixed_7a): grid reduction 17 -> 8. */
class InceptionD extends Block {
  private readonly a: BasicConv2d[]; private readonly b: BasicConv2d[];
  constructor(cin: number) {
    super();
    this.a = [this.conv('branch3x3_1', cin, 192, k1), this.conv('branch3x3_2', 192, 320, k3, 2)];
    this.b = [
      this.conv('branch7x7x3_1', cin, 192, k1),
      this.conv('branch7x7x3_2', 192, 192, [1, 7], 1, [0, 3]),
      this.conv('branch7x7x3_3', 192, 192, [7, 1], 1, [3, 0]),
      this.conv('branch7x7x3_4', 192, 192, k3, 2),
    ];
  }
  forward(g: Graph, x: Value): Value {
    const chain = (convs: BasicConv2d[]) => convs.reduce((h, c) => c.forward(g, h), x);
    return op.concat([chain(this.a), chain(this.b), op.maxPool2d(x, 3, 2)], 1);
  }
}

/** InceptionE as FIDInceptionE_1 (Mixed_7b, average pool) or FIDInceptionE_2 (Mixed_7c, max pool). */
class InceptionE extends Block {
  private readonly b1; private readonly b3_1; private readonly b3_2a; private readonly b3_2b;
  private readonly d1; private readonly d2; private readonly d3a; private readonly d3b; private readonly pool;
  constructor(cin: number, private readonly poolKind: 'AveragePool' | 'MaxPool') {
    super();
    this.b1 = this.conv('branch1x1', cin, 320, k1);
    this.b3_1 = this.conv('branch3x3_1', cin, 384, k1);
    this.b3_2a = this.conv('branch3x3_2a', 384, 384, [1, 3], 1, [0, 1]);
    this.b3_2b = this.conv('branch3x3_2b', 384, 384, [3, 1], 1, [1, 0]);
    this.d1 = this.conv('branch3x3dbl_1', cin, 448, k1);
    this.d2 = this.conv('branch3x3dbl_2', 448, 384, k3, 1, [1, 1]);
    this.d3a = this.conv('branch3x3dbl_3a', 384, 384, [1, 3], 1, [0, 1]);
    this.d3b = this.conv('branch3x3dbl_3b', 384, 384, [3, 1], 1, [1, 0]);
    this.pool = this.conv('branch_pool', cin, 192, k1);
  }
  forward(g: Graph, x: Value): Value {
    const b3 = this.b3_1.forward(g, x);
    const d = this.d2.forward(g, this.d1.forward(g, x));
    return op.concat([
      this.b1.forward(g, x),
      op.concat([this.b3_2a.forward(g, b3), this.b3_2b.forward(g, b3)], 1),
      op.concat([this.d3a.forward(g, d), this.d3b.forward(g, d)], 1),
      this.pool.forward(g, pool3x3Same(x, this.poolKind)),
    ], 1);
  }
}

/** pytorch-fid's FID Inception-v3 up to the 2048-d average-pooled features. */
export class FidInception extends Module {
  private readonly stem: BasicConv2d[];
  private readonly stem2: BasicConv2d[];
  private readonly blocks: Block[];

  constructor() {
    super();
    const c = (name: string, cin: number, cout: number, kernel: [number, number], stride = 1, padding: [number, number] = [0, 0]) =>
      this.addModule(name, new BasicConv2d(cin, cout, kernel, stride, padding));
    this.stem = [c('Conv2d_1a_3x3', 3, 32, k3, 2), c('Conv2d_2a_3x3', 32, 32, k3), c('Conv2d_2b_3x3', 32, 64, k3, 1, [1, 1])];
    this.stem2 = [c('Conv2d_3b_1x1', 64, 80, k1), c('Conv2d_4a_3x3', 80, 192, k3)];
    this.blocks = [
      this.addModule('Mixed_5b', new InceptionA(192, 32)),
      this.addModule('Mixed_5c', new InceptionA(256, 64)),
      this.addModule('Mixed_5d', new InceptionA(288, 64)),
      this.addModule('Mixed_6a', new InceptionB(288)),
      this.addModule('Mixed_6b', new InceptionC(768, 128)),
      this.addModule('Mixed_6c', new InceptionC(768, 160)),
      this.addModule('Mixed_6d', new InceptionC(768, 160)),
      this.addModule('Mixed_6e', new InceptionC(768, 192)),
      this.addModule('Mixed_7a', new InceptionD(768)),
      this.addModule('Mixed_7b', new InceptionE(1280, 'AveragePool')),
      this.addModule('Mixed_7c', new InceptionE(2048, 'MaxPool')),
    ];
  }

  /** (B, 2048) features of images (B, 3, H, W) in [0, 1]. */
  forward(g: Graph, x: Value): Value {
    let h = op.resize2d(x, [FID_INPUT_SIZE, FID_INPUT_SIZE], { mode: 'linear', alignCorners: false });
    h = op.sub(op.mul(h, 2), 1);
    for (const c of this.stem) h = c.forward(g, h);
    h = op.maxPool2d(h, 3, 2);
    for (const c of this.stem2) h = c.forward(g, h);
    h = op.maxPool2d(h, 3, 2);
    for (const b of this.blocks) h = g.atPath(b.path, () => b.forward(g, h));
    return op.reduceMean(h, [2, 3], false);
  }
}

/** The feature graph: input `image` (batch, 3, height, width) in [0, 1], output `features` (batch, 2048). */
export function fidInceptionGraph(): Graph {
  const g = new Graph('fid_inception');
  const x = g.input('image', 'float32', ['batch', 3, 'height', 'width'], [1, 3, FID_INPUT_SIZE, FID_INPUT_SIZE]);
  g.output(new FidInception().forward(g, x), 'features');
  return g;
}
