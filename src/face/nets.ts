/**
 * The two pretrained networks of @vladmandic/face-api (MIT), rebuilt as ONNX graphs from their
 * TensorFlow.js weight files and run on ONNX Runtime:
 *
 * - SSD MobileNet V1 face detector: 512x512 input in [-1, 1]; MobileNet V1 (13 depthwise-separable
 *   layers, ReLU6, batch norm folded into the depthwise convolutions here), 8 extra layers and 6
 *   box predictors over 5118 anchors. Outputs the raw box encodings and class logits; decoding
 *   and NMS are done in src/face/detector.ts.
 * - 68-point landmark net: 112x112 input (RGB minus the mean, / 255); 4 dense blocks of
 *   separable convolutions, 7x7 average pool, a fully connected layer to 136 values (x, y pairs
 *   relative to the input square).
 *
 * Layouts: TF keeps images NHWC and filters HWIO; ONNX wants NCHW and OIHW. TF 'same' padding
 * puts the odd pixel at the end, which ONNX expresses with explicit asymmetric pads.
 */
import { encodeModel, ONNX_OPSET, type AttrValue, type OnnxNode, type OnnxTensor } from '../graph/onnx.js';
import type { NamedWeight } from './tfjs_weights.js';

const ints = (value: number[]): AttrValue => ({ kind: 'ints', value });
const int = (value: number): AttrValue => ({ kind: 'int', value });

interface Val {
  name: string;
  /** NCHW, or [N, K] / [N, K, 4] after the heads. */
  shape: number[];
}

/** A tiny ONNX graph builder with static NCHW shapes (only what these two networks need). */
class Builder {
  readonly nodes: OnnxNode[] = [];
  readonly inits: OnnxTensor[] = [];
  private n = 0;

  constructor(private readonly weights: Map<string, NamedWeight>, private readonly file: string) {}

  weight(name: string, shape?: number[]): NamedWeight {
    const w = this.weights.get(name);
    if (!w) throw new Error(`${this.file}: weight '${name}' is missing`);
    if (shape && (w.shape.length !== shape.length || w.shape.some((d, i) => d !== shape[i]))) {
      throw new Error(`${this.file}: weight '${name}' has shape [${w.shape}], expected [${shape}]`);
    }
    return w;
  }

  constant(hint: string, dims: number[], data: Float32Array | BigInt64Array): string {
    const name = `${hint}_${this.n++}`;
    const raw = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    this.inits.push({ name, dtype: data instanceof Float32Array ? 'float32' : 'int64', dims, raw: raw.slice() });
    return name;
  }

  op(opType: string, inputs: string[], attrs: Record<string, AttrValue> = {}): string {
    const out = `${opType.toLowerCase()}_${this.n++}`;
    this.nodes.push({ opType, name: out, inputs, outputs: [out], attrs });
    return out;
  }

  /**
   * TF-style convolution ('same' padding) from an HWIO filter (or an HWC1 depthwise filter),
   * with an optional per-output-channel scale folded into the filter and a bias.
   */
  conv(x: Val, filter: NamedWeight, stride: number, opts: { depthwise?: boolean; bias?: Float32Array; scale?: Float32Array } = {}): Val {
    const [kh, kw, cin, cm] = filter.shape as [number, number, number, number];
    const [n, c, h, w] = x.shape as [number, number, number, number];
    if (cin !== c) throw new Error(`${this.file}: filter [${filter.shape}] expects ${cin} input channels, the input has ${c}`);
    const cout = opts.depthwise ? cin * cm : cm;
    // HWIO -> OIHW; for depthwise (H, W, C, 1) -> (C, 1, H, W)
    const inPer = opts.depthwise ? 1 : cin;
    const oihw = new Float32Array(cout * inPer * kh * kw);
    for (let y = 0; y < kh; y++) {
      for (let xk = 0; xk < kw; xk++) {
        for (let i = 0; i < cin; i++) {
          for (let o = 0; o < cm; o++) {
            const v = filter.data[((y * kw + xk) * cin + i) * cm + o]!;
            const oc = opts.depthwise ? i * cm + o : o;
            const ic = opts.depthwise ? 0 : i;
            oihw[((oc * inPer + ic) * kh + y) * kw + xk] = v * (opts.scale ? opts.scale[oc]! : 1);
          }
        }
      }
    }
    const pad = (size: number, k: number) => {
      const out = Math.ceil(size / stride);
      const total = Math.max((out - 1) * stride + k - size, 0);
      return { out, begin: Math.floor(total / 2), end: total - Math.floor(total / 2) };
    };
    const ph = pad(h, kh);
    const pw = pad(w, kw);
    const inputs = [x.name, this.constant('w', [cout, inPer, kh, kw], oihw)];
    if (opts.bias) inputs.push(this.constant('b', [cout], opts.bias));
    const name = this.op('Conv', inputs, {
      kernel_shape: ints([kh, kw]), strides: ints([stride, stride]), pads: ints([ph.begin, pw.begin, ph.end, pw.end]),
      group: int(opts.depthwise ? cin : 1),
    });
    return { name, shape: [n, cout, ph.out, pw.out] };
  }

  clip(x: Val, lo: number, hi: number): Val {
    return { name: this.op('Clip', [x.name, this.constant('lo', [], Float32Array.of(lo)), this.constant('hi', [], Float32Array.of(hi))]), shape: x.shape };
  }

  relu(x: Val): Val {
    return { name: this.op('Relu', [x.name]), shape: x.shape };
  }

  add(a: Val, b: Val): Val {
    return { name: this.op('Add', [a.name, b.name]), shape: a.shape };
  }

  /** NCHW [1, C, H, W] with C = A * k -> [1, H*W*A, k] (TF's NHWC reshape order). */
  toAnchors(x: Val, k: number): Val {
    const [n, c, h, w] = x.shape as [number, number, number, number];
    const t = this.op('Transpose', [x.name], { perm: ints([0, 2, 3, 1]) });
    const shape = this.constant('shape', [3], BigInt64Array.from([BigInt(n), -1n, BigInt(k)]));
    return { name: this.op('Reshape', [t, shape]), shape: [n, (h * w * c) / k, k] };
  }

  concat(xs: Val[], axis: number): Val {
    const shape = [...xs[0]!.shape];
    shape[axis] = xs.reduce((s, x) => s + x.shape[axis]!, 0);
    return { name: this.op('Concat', xs.map((x) => x.name), { axis: int(axis) }), shape };
  }

  model(name: string, input: Val, outputs: [string, Val][]): Uint8Array {
    for (const [outName, v] of outputs) this.nodes.push({ opType: 'Identity', name: `out_${outName}`, inputs: [v.name], outputs: [outName], attrs: {} });
    return encodeModel({
      graph: {
        name,
        nodes: this.nodes,
        initializers: this.inits,
        inputs: [{ name: input.name, dtype: 'float32', dims: input.shape }],
        outputs: outputs.map(([outName, v]) => ({ name: outName, dtype: 'float32', dims: v.shape })),
      },
      producerVersion: 'osdface-face',
      opsets: [{ domain: '', version: ONNX_OPSET }],
    });
  }
}

/** Side of the detector's square input. */
export const SSD_INPUT = 512;
/** Number of SSD anchors (32x32x3 + 16x16x6 + 8x8x6 + 4x4x6 + 2x2x6 + 1x1x6). */
export const SSD_ANCHORS = 5118;

/**
 * SSD MobileNet V1 as ONNX. Input `image` [1, 3, 512, 512] in [-1, 1]; outputs `boxes`
 * [1, 5118, 4] (ty, tx, th, tw encodings) and `logits` [1, 5118, 3]. Also returns the anchors
 * (ymin, xmin, ymax, xmax in [0, 1]) from the weight file.
 */
export function buildSsdMobilenetV1(weights: Map<string, NamedWeight>, file: string): { onnx: Uint8Array; anchors: Float32Array } {
  const b = new Builder(weights, file);
  const input: Val = { name: 'image', shape: [1, 3, SSD_INPUT, SSD_INPUT] };
  const pointwise = (x: Val, prefix: string, stride: number) =>
    b.clip(b.conv(x, b.weight(`${prefix}/weights`), stride, { bias: b.weight(`${prefix}/convolution_bn_offset`).data }), 0, 6);

  let x = pointwise(input, 'MobilenetV1/Conv2d_0_pointwise', 2);
  let conv11: Val | undefined;
  for (let i = 1; i <= 13; i++) {
    const p = `MobilenetV1/Conv2d_${i}_depthwise`;
    const gamma = b.weight(`${p}/BatchNorm/gamma`).data;
    const beta = b.weight(`${p}/BatchNorm/beta`).data;
    const mean = b.weight(`${p}/BatchNorm/moving_mean`).data;
    const variance = b.weight(`${p}/BatchNorm/moving_variance`).data;
    const scale = new Float32Array(gamma.length);
    const bias = new Float32Array(gamma.length);
    for (let c = 0; c < gamma.length; c++) {
      // the epsilon the TF graph was exported with
      scale[c] = gamma[c]! / Math.sqrt(variance[c]! + 0.0010000000474974513);
      bias[c] = beta[c]! - mean[c]! * scale[c]!;
    }
    const stride = i === 2 || i === 4 || i === 6 || i === 12 ? 2 : 1;
    x = b.clip(b.conv(x, b.weight(`${p}/depthwise_weights`), stride, { depthwise: true, scale, bias }), 0, 6);
    x = pointwise(x, `MobilenetV1/Conv2d_${i}_pointwise`, 1);
    if (i === 11) conv11 = x;
  }
  const extra: Val[] = [];
  let e = x;
  for (let i = 0; i < 8; i++) {
    e = pointwise(e, `Prediction/Conv2d_${i}_pointwise`, i % 2 === 1 ? 2 : 1);
    extra.push(e);
  }
  const sources = [conv11!, x, extra[1]!, extra[3]!, extra[5]!, extra[7]!];
  const boxes: Val[] = [];
  const logits: Val[] = [];
  sources.forEach((src, i) => {
    const p = `Prediction/BoxPredictor_${i}`;
    const head = (name: string) => b.conv(src, b.weight(`${p}/${name}/weights`), 1, { bias: b.weight(`${p}/${name}/biases`).data });
    boxes.push(b.toAnchors(head('BoxEncodingPredictor'), 4));
    logits.push(b.toAnchors(head('ClassPredictor'), 3));
  });
  const allBoxes = b.concat(boxes, 1);
  const allLogits = b.concat(logits, 1);
  if (allBoxes.shape[1] !== SSD_ANCHORS) throw new Error(`${file}: the detector has ${allBoxes.shape[1]} anchors, expected ${SSD_ANCHORS}`);
  const anchors = b.weight('Output/extra_dim', [1, SSD_ANCHORS, 4]).data;
  return { onnx: b.model('ssd_mobilenetv1', input, [['boxes', allBoxes], ['logits', allLogits]]), anchors };
}

/** Side of the landmark net's square input. */
export const LANDMARK_INPUT = 112;
/** Mean RGB the landmark net subtracts (before dividing by 255). */
export const LANDMARK_MEAN_RGB = [122.782, 117.001, 104.298] as const;

/** The 68-point landmark net as ONNX. Input `image` [N=1, 3, 112, 112]; output `landmarks` [1, 136]. */
export function buildLandmark68(weights: Map<string, NamedWeight>, file: string): Uint8Array {
  const b = new Builder(weights, file);
  const input: Val = { name: 'image', shape: [1, 3, LANDMARK_INPUT, LANDMARK_INPUT] };
  const separable = (x: Val, p: string, stride: number) => {
    const dw = b.conv(x, b.weight(`${p}/depthwise_filter`), stride, { depthwise: true });
    return b.conv(dw, b.weight(`${p}/pointwise_filter`), 1, { bias: b.weight(`${p}/bias`).data });
  };
  let x = input;
  for (let d = 0; d < 4; d++) {
    const p = `dense${d}`;
    const out1 = b.relu(d === 0
      ? b.conv(x, b.weight(`${p}/conv0/filters`), 2, { bias: b.weight(`${p}/conv0/bias`).data })
      : separable(x, `${p}/conv0`, 2));
    const out2 = separable(out1, `${p}/conv1`, 1);
    const out3 = separable(b.relu(b.add(out1, out2)), `${p}/conv2`, 1);
    const sum3 = b.add(out1, b.add(out2, out3));
    const out4 = separable(b.relu(sum3), `${p}/conv3`, 1);
    x = b.relu(b.add(out1, b.add(out2, b.add(out3, out4))));
  }
  const [, c, h] = x.shape as [number, number, number, number];
  if (h !== 7) throw new Error(`${file}: landmark features are ${h}x${h}, expected 7x7`);
  const pooled = b.op('AveragePool', [x.name], { kernel_shape: ints([7, 7]), strides: ints([2, 2]) });
  const flat = b.op('Flatten', [pooled], { axis: int(1) });
  const fcW = b.weight('fc/weights', [c, 136]);
  const fc = b.op('Gemm', [flat, b.constant('fc_w', [c, 136], fcW.data), b.constant('fc_b', [136], b.weight('fc/bias', [136]).data)]);
  return b.model('face_landmark_68', input, [['landmarks', { name: fc, shape: [1, 136] }]]);
}
