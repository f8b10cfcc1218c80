/**
 * RetinaFace with the MobileNet-0.25 backbone (biubug6/Face-Detector-1MB-with-landmark,
 * `models/retinaface.py` and `models/net.py`, MIT) as an ONNX graph in our IR, from its torch
 * state dict. Every convolution there is bias-free and followed by a BatchNorm (eval mode, eps
 * 1e-5), which is folded into the convolution here; the activations are plain ReLUs.
 *
 * - body (MobileNetV1 0.25): stage1 = conv_bn(3, 8, s2), then depthwise-separable blocks
 *   (3x3 depthwise + BN + ReLU, 1x1 + BN + ReLU) 8->16, 16->32 s2, 32->32, 32->64 s2, 64->64;
 *   stage2 = 64->128 s2 and five 128->128; stage3 = 128->256 s2, 256->256.
 * - fpn: 1x1 conv_bn laterals to 64 channels on the three stages; the coarser level is upsampled
 *   (nearest, to the finer level's size) and added, then a 3x3 conv_bn merge (levels 2 and 1).
 * - ssh1-3 on each level: concat(3x3 conv_bn 32 ch, two 3x3 convs 16 ch, three 3x3 convs 16 ch),
 *   the last conv of each branch without ReLU, a ReLU after the concat.
 * - heads per level (1x1 convs, 2 anchors a position): ClassHead 4 ch, BboxHead 8, LandmarkHead
 *   20; NCHW -> NHWC -> (1, H*W*2, k); levels concatenated; softmax on the class scores.
 *
 * Input `image` (1, 3, height, width): BGR minus (104, 117, 123), 0..255 scale, any size.
 * Outputs `loc` (1, P, 4), `conf` (1, P, 2) softmax, `landms` (1, P, 10).
 */
import type { Tensor } from '../tensor.js';
import { Graph, type Value } from '../graph/ir.js';
import * as op from '../graph/ops.js';
import { emitOnnx } from '../graph/emit.js';

const BN_EPS = 1e-5;

/** Reads, checks and BN-folds the checkpoint's convolutions; records graph parameters. */
class Weights {
  readonly folded = new Map<string, Float32Array>();

  constructor(private readonly sd: Map<string, Tensor>, private readonly file: string) {}

  private get(key: string, shape: number[]): Float32Array {
    const t = this.sd.get(key) ?? this.sd.get(`module.${key}`);
    if (!t) throw new Error(`${this.file}: tensor '${key}' is missing (is this RetinaFace mobilenet0.25_Final.pth?)`);
    if (t.dtype !== 'float32' || t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
      throw new Error(`${this.file}: tensor '${key}' has shape [${t.shape}] (${t.dtype}), expected [${shape}] float32`);
    }
    return t.data as Float32Array;
  }

  /** Conv `conv` (no bias) followed by BatchNorm `bn`, folded into one weight and bias. */
  convBn(g: Graph, conv: string, bn: string, shape: number[]): { w: Value; b: Value } {
    const w = this.get(`${conv}.weight`, shape);
    const cout = shape[0]!;
    const gamma = this.get(`${bn}.weight`, [cout]);
    const beta = this.get(`${bn}.bias`, [cout]);
    const mean = this.get(`${bn}.running_mean`, [cout]);
    const variance = this.get(`${bn}.running_var`, [cout]);
    const per = w.length / cout;
    const fw = new Float32Array(w.length);
    const fb = new Float32Array(cout);
    for (let o = 0; o < cout; o++) {
      const s = gamma[o]! / Math.sqrt(variance[o]! + BN_EPS);
      for (let i = 0; i < per; i++) fw[o * per + i] = w[o * per + i]! * s;
      fb[o] = beta[o]! - mean[o]! * s;
    }
    this.folded.set(`${conv}.weight`, fw);
    this.folded.set(`${conv}.bias`, fb);
    return { w: g.param(`${conv}.weight`, shape), b: g.param(`${conv}.bias`, [cout]) };
  }

  /** A plain convolution with bias (the heads). */
  conv(g: Graph, conv: string, shape: number[]): { w: Value; b: Value } {
    this.folded.set(`${conv}.weight`, this.get(`${conv}.weight`, shape));
    this.folded.set(`${conv}.bias`, this.get(`${conv}.bias`, [shape[0]!]));
    return { w: g.param(`${conv}.weight`, shape), b: g.param(`${conv}.bias`, [shape[0]!]) };
  }
}

/** RetinaFace-mobilenet0.25 as ONNX bytes (weights inline, BN folded) from its state dict. */
export function buildRetinaFaceMnet(sd: Map<string, Tensor>, file: string): Uint8Array {
  const W = new Weights(sd, file);
  const g = new Graph('retinaface_mnet025');
  const image = g.input('image', 'float32', [1, 3, 'height', 'width'], [1, 3, 64, 64]);

  /** conv(k x k, stride, pad k//2, groups) + folded BN, optional ReLU; `seq` is the Sequential's path, `at` the conv index. */
  const cbr = (x: Value, seq: string, at: number, cout: number, k: number, stride: number, opts: { depthwise?: boolean; relu?: boolean } = {}): Value => {
    const cin = x.shape[1]!;
    const { w, b } = W.convBn(g, `${seq}.${at}`, `${seq}.${at + 1}`, [cout, opts.depthwise ? 1 : cin, k, k]);
    const p = (k - 1) / 2;
    const y = g.atPath(seq, () => op.conv(x, w, b, { stride: [stride, stride], pads: [p, p, p, p], groups: opts.depthwise ? cin : 1 }));
    return opts.relu === false ? y : op.relu(y);
  };
  const convDw = (x: Value, seq: string, cout: number, stride: number): Value =>
    cbr(cbr(x, seq, 0, x.shape[1]!, 3, stride, { depthwise: true }), seq, 3, cout, 1, 1);

  // backbone
  let x = cbr(image, 'body.stage1.0', 0, 8, 3, 2);
  const s1: [number, number][] = [[16, 1], [32, 2], [32, 1], [64, 2], [64, 1]];
  s1.forEach(([c, s], i) => { x = convDw(x, `body.stage1.${i + 1}`, c, s); });
  const c1 = x;
  const s2: [number, number][] = [[128, 2], [128, 1], [128, 1], [128, 1], [128, 1], [128, 1]];
  s2.forEach(([c, s], i) => { x = convDw(x, `body.stage2.${i}`, c, s); });
  const c2 = x;
  x = convDw(x, 'body.stage3.0', 256, 2);
  x = convDw(x, 'body.stage3.1', 256, 1);
  const c3 = x;

  // FPN
  const out = 64;
  const o1 = cbr(c1, 'fpn.output1', 0, out, 1, 1);
  let o2 = cbr(c2, 'fpn.output2', 0, out, 1, 1);
  const o3 = cbr(c3, 'fpn.output3', 0, out, 1, 1);
  const upTo = (src: Value, like: Value) => op.resize2d(src, op.slice(op.shapeOf(like), 0, 2, 4), { mode: 'nearest' });
  o2 = cbr(op.add(o2, upTo(o3, o2)), 'fpn.merge2', 0, out, 3, 1);
  const f1 = cbr(op.add(o1, upTo(o2, o1)), 'fpn.merge1', 0, out, 3, 1);
  const levels = [f1, o2, o3];

  // SSH + heads
  const ssh = (v: Value, name: string): Value => {
    const a = cbr(v, `${name}.conv3X3`, 0, out / 2, 3, 1, { relu: false });
    const b1 = cbr(v, `${name}.conv5X5_1`, 0, out / 4, 3, 1);
    const b = cbr(b1, `${name}.conv5X5_2`, 0, out / 4, 3, 1, { relu: false });
    const c = cbr(cbr(b1, `${name}.conv7X7_2`, 0, out / 4, 3, 1), `${name}.conv7x7_3`, 0, out / 4, 3, 1, { relu: false });
    return op.relu(op.concat([a, b, c], 1));
  };
  const feats = levels.map((v, i) => ssh(v, `ssh${i + 1}`));
  const head = (kind: string, k: number): Value => op.concat(feats.map((f, i) => {
    const key = `${kind}.${i}.conv1x1`;
    const { w, b } = W.conv(g, key, [2 * k, out, 1, 1]);
    const y = g.atPath(key, () => op.conv(f, w, b));
    return op.reshape(op.transpose(y, [0, 2, 3, 1]), [1, -1, k]);
  }), 1);
  g.output(head('BboxHead', 4), 'loc');
  g.output(op.softmax(head('ClassHead', 2), -1), 'conf');
  g.output(head('LandmarkHead', 10), 'landms');
  return emitOnnx(g, {
    weights: { read: (key) => W.folded.get(key) ?? (() => { throw new Error(`${file}: no weight '${key}'`); })() },
    producerVersion: 'osdface-retinaface',
  });
}
