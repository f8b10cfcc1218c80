/**
 * Background super-resolution with the pretrained ESRGAN "slim" models of @upscalerjs/esrgan-slim
 * (MIT, Kevin Scott): idealo-style RDN networks (C1 D2 G4 G0 64, trained on DIV2K) for x2 and x4,
 * shipped as TensorFlow.js layers models (model.json + one weight shard each). The Keras layer
 * graph in model.json is rebuilt here as an ONNX graph in our IR from those files, so no
 * TensorFlow.js is needed at run time. Input and output are RGB in 0..255 (NHWC in Keras, NCHW
 * here); the spatial size is free (the convolutions are all odd-sized 'same').
 *
 * `EsrganUpscaler.upscale` runs the network on overlapping tiles and blends them with feathered
 * weights, keeping only two bands of tiles in float, so the memory stays bounded by the tile size
 * and the output width (plus the 8-bit output itself).
 */
import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';
import { Graph, type Value } from '../graph/ir.js';
import * as op from '../graph/ops.js';
import { emitOnnx } from '../graph/emit.js';
import { OnnxSession } from '../graph/runtime.js';
import { decodeTfjsWeights, type NamedWeight, type TfjsWeightGroups } from '../face/tfjs_weights.js';
import type { RgbImage } from '../image/io.js';

export type EsrganScale = 2 | 4;

/** The folder of @upscalerjs/esrgan-slim (its `models/x2`, `models/x4` hold the model.json files). */
export function defaultEsrganPackageDir(): string {
  const require = createRequire(import.meta.url);
  // the package's exports do not include package.json: resolve its entry and walk up
  let dir = path.dirname(require.resolve('@upscalerjs/esrgan-slim'));
  for (;;) {
    const pkg = path.join(dir, 'package.json');
    if (fs.existsSync(pkg) && JSON.parse(fs.readFileSync(pkg, 'utf8')).name === '@upscalerjs/esrgan-slim') return dir;
    const up = path.dirname(dir);
    if (up === dir) throw new Error('cannot find the @upscalerjs/esrgan-slim package folder');
    dir = up;
  }
}

interface KerasLayer {
  class_name: string;
  name: string;
  config: Record<string, unknown>;
  inbound_nodes: [string, number, number, unknown][][];
}

/**
 * Builds the ONNX graph of a tfjs layers model.json (the layer kinds these RDN models use:
 * Conv2D with linear/relu activation, Activation relu, Concatenate on channels, Add, nearest
 * UpSampling2D). Input 'LR' (1, 3, h, w), output 'SR' (1, 3, h*s, w*s), both 0..255 unclipped.
 */
export function buildEsrgan(modelJson: string): { onnx: Uint8Array; scale: number } {
  const dir = path.dirname(modelJson);
  const model = JSON.parse(fs.readFileSync(modelJson, 'utf8')) as {
    format?: string;
    modelTopology: { model_config: { config: { layers: KerasLayer[]; output_layers: [string, number, number][] } } };
    weightsManifest: TfjsWeightGroups;
  };
  if (model.format !== 'layers-model') throw new Error(`${modelJson}: expected a tfjs layers model, got format ${String(model.format)}`);
  const weights = decodeTfjsWeights(dir, model.weightsManifest, modelJson);
  const g = new Graph('esrgan');
  const values = new Map<string, Value>();
  const params = new Map<string, Float32Array>();
  let scale = 1;
  const fail = (layer: KerasLayer, what: string): never => {
    throw new Error(`${modelJson}: layer ${layer.name} (${layer.class_name}): ${what}`);
  };
  const weight = (layer: KerasLayer, name: string): NamedWeight => weights.get(`${layer.name}/${name}`) ?? fail(layer, `weight ${name} is missing`);
  for (const layer of model.modelTopology.model_config.config.layers) {
    const c = layer.config;
    const inputs = (layer.inbound_nodes[0] ?? []).map(([name]) => values.get(name) ?? fail(layer, `input ${name} not built yet`));
    let out: Value;
    switch (layer.class_name) {
      case 'InputLayer':
        out = g.input('LR', 'float32', [1, 3, 'height', 'width'], [1, 3, 32, 32]);
        break;
      case 'Conv2D': {
        const k = weight(layer, 'kernel');
        const [kh, kw, cin, cout] = k.shape as [number, number, number, number];
        if (JSON.stringify(c['strides']) !== '[1,1]' || JSON.stringify(c['dilation_rate']) !== '[1,1]' || (c['groups'] ?? 1) !== 1) fail(layer, 'only stride 1, dilation 1, groups 1');
        if (kh % 2 !== 1 || kw % 2 !== 1) fail(layer, 'only odd kernels');
        if (c['padding'] !== 'same' && !(kh === 1 && kw === 1)) fail(layer, `padding ${String(c['padding'])}`);
        // HWIO -> OIHW
        const oihw = new Float32Array(k.data.length);
        for (let y = 0; y < kh; y++) for (let x = 0; x < kw; x++) for (let i = 0; i < cin; i++) for (let o = 0; o < cout; o++) {
          oihw[((o * cin + i) * kh + y) * kw + x] = k.data[((y * kw + x) * cin + i) * cout + o]!;
        }
        params.set(`${layer.name}.weight`, oihw);
        const w = g.param(`${layer.name}.weight`, [cout, cin, kh, kw]);
        let b: Value | null = null;
        if (c['use_bias']) {
          params.set(`${layer.name}.bias`, weight(layer, 'bias').data);
          b = g.param(`${layer.name}.bias`, [cout]);
        }
        const ph = (kh - 1) / 2;
        const pw = (kw - 1) / 2;
        out = op.conv(inputs[0]!, w, b, { pads: [ph, pw, ph, pw] });
        if (c['activation'] === 'relu') out = op.relu(out);
        else if (c['activation'] !== 'linear') fail(layer, `activation ${String(c['activation'])}`);
        break;
      }
      case 'Activation':
        if (c['activation'] !== 'relu') fail(layer, `activation ${String(c['activation'])}`);
        out = op.relu(inputs[0]!);
        break;
      case 'Concatenate':
        if (c['axis'] !== 3 && c['axis'] !== -1) fail(layer, `axis ${String(c['axis'])}`);
        out = op.concat(inputs, 1);
        break;
      case 'Add':
        out = inputs.slice(1).reduce((a, b) => op.add(a, b), inputs[0]!);
        break;
      case 'UpSampling2D': {
        const size = c['size'] as number[];
        if (c['interpolation'] !== 'nearest' || size[0] !== size[1]) fail(layer, 'only square nearest upsampling');
        scale *= size[0]!;
        out = op.resize2d(inputs[0]!, { scale: size[0]! }, { mode: 'nearest' });
        break;
      }
      default:
        return fail(layer, 'unsupported layer kind');
    }
    values.set(layer.name, out);
  }
  const outName = model.modelTopology.model_config.config.output_layers[0]![0];
  g.output(values.get(outName)!, 'SR');
  const onnx = emitOnnx(g, {
    weights: { read: (key) => params.get(key) ?? (() => { throw new Error(`${modelJson}: no weight '${key}'`); })() },
    producerVersion: 'osdface-esrgan',
  });
  return { onnx, scale };
}

export interface EsrganTileOptions {
  /** Tile side in input pixels (default 128). */
  tile?: number;
  /** Overlap of neighbouring tiles in input pixels (default 32; at least 2 * margin + 2). */
  overlap?: number;
}

/** Tile starts along one axis: `tile`-long windows stepping by tile - overlap, the last flush with the end. */
function tileStarts(size: number, tile: number, overlap: number): number[] {
  if (size <= tile) return [0];
  const starts: number[] = [];
  for (let s = 0; ; s += tile - overlap) {
    if (s + tile >= size) {
      starts.push(size - tile);
      break;
    }
    starts.push(s);
  }
  return starts;
}

/**
 * Feather weights along one axis of a tile [start, start + len) in output pixels: 0 within
 * `margin` of an edge shared with a neighbour (the network's receptive field sees zero padding
 * there), then a linear ramp to 1 over the rest of the overlap; edges on the image border get 1.
 */
function feather(len: number, atStart: boolean, atEnd: boolean, overlap: number, margin: number): Float32Array {
  const w = new Float32Array(len).fill(1);
  const ramp = overlap - 2 * margin;
  for (let i = 0; i < len; i++) {
    if (!atStart) w[i] = Math.min(w[i]!, Math.min(1, Math.max(0, (i + 0.5 - margin) / ramp)));
    if (!atEnd) w[i] = Math.min(w[i]!, Math.min(1, Math.max(0, (len - i - 0.5 - margin) / ramp)));
  }
  return w;
}

/** One ESRGAN network (x2 or x4) on ONNX Runtime. */
export class EsrganUpscaler {
  private constructor(private readonly session: OnnxSession, readonly scale: number) {}

  /** Loads the x`scale` model of @upscalerjs/esrgan-slim (or `opts.packageDir`). */
  static async load(scale: EsrganScale, opts: { threads?: number; packageDir?: string } = {}): Promise<EsrganUpscaler> {
    if (scale !== 2 && scale !== 4) throw new RangeError(`EsrganUpscaler.load: scale must be 2 or 4, got ${String(scale)}`);
    const dir = opts.packageDir ?? defaultEsrganPackageDir();
    const built = buildEsrgan(path.join(dir, 'models', `x${scale}`, 'model.json'));
    if (built.scale !== scale) throw new Error(`ESRGAN x${scale} model upsamples by ${built.scale}`);
    const session = await OnnxSession.create(built.onnx, opts.threads !== undefined ? { threads: opts.threads } : {});
    return new EsrganUpscaler(session, scale);
  }

  /** The raw network on planar float RGB 0..255 (1, 3, h, w): (1, 3, h*s, w*s), unclipped. */
  async runPlanar(data: Float32Array, height: number, width: number): Promise<Float32Array> {
    const res = await this.session.run({ LR: { dtype: 'float32', shape: [1, 3, height, width], data } });
    return res['SR']!.data as Float32Array;
  }

  /** Upscales an 8-bit RGB image by the model's scale, tile by tile. */
  async upscale(img: RgbImage, opts: EsrganTileOptions = {}): Promise<RgbImage> {
    const s = this.scale;
    const { width: W, height: H } = img;
    const tile = opts.tile ?? 128;
    const overlap = opts.overlap ?? 32;
    // the receptive field reaches ~10 input pixels: weights are 0 that close to a shared edge
    const margin = Math.min(10, Math.floor((overlap - 2) / 2));
    if (!Number.isInteger(tile) || tile < 8) throw new RangeError(`ESRGAN tile must be an integer >= 8, got ${tile}`);
    if (!Number.isInteger(overlap) || overlap < 2 || overlap >= tile) throw new RangeError(`ESRGAN overlap must be an integer in [2, tile), got ${overlap}`);
    const OW = W * s;
    const out = new Uint8Array(OW * H * s * 3);
    const xs = tileStarts(W, tile, overlap);
    const ys = tileStarts(H, tile, overlap);
    const tw = Math.min(tile, W);
    const th = Math.min(tile, H);
    // a band: output rows [y0, y1) of weighted sums (interleaved RGB) and weight sums
    type Band = { y0: number; y1: number; sum: Float32Array; wsum: Float32Array };
    let pending: Band | null = null;
    const flush = (band: Band, upTo: number) => {
      for (let y = band.y0; y < upTo; y++) {
        const row = (y - band.y0) * OW;
        for (let x = 0; x < OW; x++) {
          const wv = band.wsum[row + x]!;
          for (let k = 0; k < 3; k++) {
            const v = band.sum[(row + x) * 3 + k]! / wv;
            out[(y * OW + x) * 3 + k] = v <= 0 ? 0 : v >= 255 ? 255 : Math.round(v);
          }
        }
      }
    };
    const input = new Float32Array(3 * th * tw);
    for (let yi = 0; yi < ys.length; yi++) {
      const ty = ys[yi]!;
      const band: Band = { y0: ty * s, y1: (ty + th) * s, sum: new Float32Array(th * s * OW * 3), wsum: new Float32Array(th * s * OW) };
      if (pending) {
        // carry the rows the previous band shares with this one, write out the rest
        for (let y = band.y0; y < pending.y1; y++) {
          const from = (y - pending.y0) * OW;
          const to = (y - band.y0) * OW;
          band.sum.set(pending.sum.subarray(from * 3, (from + OW) * 3), to * 3);
          band.wsum.set(pending.wsum.subarray(from, from + OW), to);
        }
        flush(pending, band.y0);
      }
      const wy = feather(th * s, yi === 0, yi === ys.length - 1, overlap * s, margin * s);
      for (let xi = 0; xi < xs.length; xi++) {
        const tx = xs[xi]!;
        for (let y = 0; y < th; y++) {
          for (let x = 0; x < tw; x++) {
            const p = ((ty + y) * W + tx + x) * 3;
            for (let k = 0; k < 3; k++) input[(k * th + y) * tw + x] = img.data[p + k]!;
          }
        }
        const sr = await this.runPlanar(input, th, tw);
        const wx = feather(tw * s, xi === 0, xi === xs.length - 1, overlap * s, margin * s);
        const OTW = tw * s;
        const OTH = th * s;
        const plane = OTW * OTH;
        for (let y = 0; y < OTH; y++) {
          for (let x = 0; x < OTW; x++) {
            const wv = wy[y]! * wx[x]!;
            if (wv === 0) continue;
            const q = y * OW + tx * s + x;
            band.wsum[q] += wv;
            for (let k = 0; k < 3; k++) band.sum[q * 3 + k] += wv * sr[k * plane + y * OTW + x]!;
          }
        }
      }
      pending = band;
    }
    if (pending) flush(pending, pending.y1);
    return { data: out, width: OW, height: H * s, channels: 3 };
  }

  async dispose(): Promise<void> {
    await this.session.release();
  }
}
