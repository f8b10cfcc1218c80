/**
 * The VAE encoder and decoder run as a host-driven sequence of small graphs ("pieces") over
 * tiles, giving the untiled result (up to float summation order) with working memory bounded by
 * the tile size.
 *
 * The networks are cut at every GroupNorm, because a GroupNorm needs statistics of the whole
 * feature map. Each piece holds at most one 3x3 convolution and the pointwise work around it
 * (the GroupNorm applied with given statistics, SiLU, 1x1 shortcuts, the residual add), so it
 * runs tile by tile: a tile reads its core plus a 1-pixel halo, and its core comes out exactly as
 * in the untiled run (the convolution's zero padding only touches the halo, which is dropped).
 * While cores are pasted into the host-side feature map, the per-group sums for the next
 * GroupNorm are accumulated, so that norm uses whole-image statistics. The mid-block attention
 * first computes keys and values of every latent position tile by tile, then attends with the
 * queries of a few latent rows at a time against all of them: the same attention, with the
 * score matrix bounded.
 *
 * Memory: ONNX Runtime's activations are those of one tile, but the host holds a few whole
 * feature maps (a resnet block's input, inner activation and output: at most a 256-channel and
 * two 128-channel maps at full resolution, 2 GB at 1024 x 1024, in the SD VAE's decoder). That is
 * about what ONNX Runtime needs untiled (with arenas off), so tiling lowers peak memory only for
 * large images; bench/RESULTS.md has the figures.
 */
import { Graph, type Value } from '../graph/ir.js';
import * as op from '../graph/ops.js';
import { emitOnnx, type WeightSource } from '../graph/emit.js';
import { OnnxSession, type RuntimeOptions } from '../graph/runtime.js';
import type { AutoencoderKL } from '../models/autoencoder_kl.js';
import type { ResnetBlock2D } from '../models/resnet.js';
import type { Attention } from '../models/attention.js';
import type { GroupNorm } from '../nn/layers.js';
import { groupNormWithStats } from '../nn/functional/group_norm.js';
import { attention } from '../nn/functional/attention.js';
import { type FloatTensor, type Tensor, floatTensor } from '../tensor.js';
import { crop, dims4, GroupSums, pasteCore, splitEven } from './tiling.js';

/** How a piece maps input pixels to output pixels: same size, 2x nearest upsampling, stride-2 downsampling. */
type Resampling = 'same' | 'up' | 'down';

interface Piece {
  session: OnnxSession;
  resampling: Resampling;
  /** Inputs cut into tiles (all of the same height and width); other inputs are passed whole. */
  spatial: string[];
  outputs: string[];
  /** Values a tile holds per input pixel: its inputs' channels plus its outputs' (scaled by the resampling). */
  valuesPerPixel: number;
}

type Step =
  | { kind: 'conv'; piece: Piece }
  | { kind: 'resnet'; first: Piece; second: Piece; eps1: number; eps2: number }
  | { kind: 'attention'; keys: Piece; queries: Piece; eps: number; heads: number }
  | { kind: 'resample'; piece: Piece }
  | { kind: 'out'; piece: Piece; eps: number };

/** A whole feature map and the group sums of its values, for the GroupNorm that reads it next. */
interface Activation {
  t: FloatTensor;
  sums: GroupSums | null;
}


/** Example spatial size the piece graphs are built with (their height and width are named, so any size runs). */
const EXAMPLE = 8;

function spatialInput(g: Graph, name: string, channels: number): Value {
  return g.input(name, 'float32', ['batch', channels, 'height', 'width'], [1, channels, EXAMPLE, EXAMPLE]);
}

/** `norm` applied to `x` with the whole image's statistics, fed as the piece's `norm_mean` and `norm_rstd` inputs. */
function normWithStats(g: Graph, norm: GroupNorm, x: Value): Value {
  const G = norm.numGroups;
  const mean = g.input('norm_mean', 'float32', ['batch', G, 1], [1, G, 1]);
  const rstd = g.input('norm_rstd', 'float32', ['batch', G, 1], [1, G, 1]);
  return g.atPath(norm.path, () => groupNormWithStats(x, G, mean, rstd,
    norm.affine ? g.param(`${norm.path}.weight`, [norm.numChannels]) : null,
    norm.affine ? g.param(`${norm.path}.bias`, [norm.numChannels]) : null));
}

export class TiledVae {
  private encoderSteps?: Promise<Step[]>;
  private decoderSteps?: Promise<Step[]>;
  private readonly sessions: OnnxSession[] = [];
  private readonly groups: number;
  /**
   * Attention scores per query chunk (batch x heads x queries x keys) at most: 2^24 floats,
   * 64 MB, whether or not ONNX Runtime materializes them. (Tests lower it to exercise chunking.)
   */
  maxAttentionScores = 1 << 24;

  /**
   * `weights` are read while the pieces are built (on the first encode / decode); `onDispose`
   * runs after the sessions are released (e.g. to close the weight files).
   */
  constructor(
    readonly vae: AutoencoderKL,
    private readonly weights: WeightSource,
    private readonly runtime: RuntimeOptions = {},
    private readonly onDispose?: () => void,
  ) {
    this.groups = vae.decoder.conv_norm_out.numGroups;
  }

  /** image (B, 3, H, W) in [-1, 1], H and W multiples of the down factor -> posterior, as the untiled encoder. */
  async encode(image: FloatTensor, tileSize: number): Promise<{ mean: FloatTensor; logvar: FloatTensor }> {
    const f = this.vae.downFactor;
    const [, , H, W] = dims4(image, 'image');
    if (H % f !== 0 || W % f !== 0) throw new Error(`tiled VAE encode needs a height and width that are multiples of ${f}, got ${H} x ${W}`);
    this.encoderSteps ??= this.buildEncoder();
    const [mean, logvar] = await this.run(await this.encoderSteps, image, tileSize);
    return { mean: mean!, logvar: logvar! };
  }

  /** unscaled latent (B, C, h, w) -> image (B, 3, h * f, w * f), as the untiled decoder. */
  async decode(latent: FloatTensor, tileSize: number): Promise<FloatTensor> {
    dims4(latent, 'latent');
    this.decoderSteps ??= this.buildDecoder();
    const [image] = await this.run(await this.decoderSteps, latent, tileSize);
    return image!;
  }

  /** Builds the encoder's and decoder's pieces now instead of on their first use. */
  async prepare(): Promise<void> {
    this.encoderSteps ??= this.buildEncoder();
    this.decoderSteps ??= this.buildDecoder();
    await Promise.all([this.encoderSteps, this.decoderSteps]);
  }

  async dispose(): Promise<void> {
    await Promise.allSettled([this.encoderSteps, this.decoderSteps]);
    for (const s of this.sessions.splice(0)) await s.release();
    this.onDispose?.();
  }

  /**
   * Runs `steps` from `input`; returns the last step's outputs. Every tile holds about as many
   * values as a `tileSize`-pixel tile of a full-resolution layer (first block's channels in and
   * out), so low-resolution layers, which have more channels, get fewer pixels per tile, and the
   * latent-resolution ones mostly run in one piece (their whole map is small).
   */
  private async run(steps: Step[], input: FloatTensor, tileSize: number): Promise<FloatTensor[]> {
    if (!Number.isInteger(tileSize) || tileSize < 1) throw new RangeError(`tile size must be a positive integer, got ${tileSize}`);
    let act: Activation = { t: input, sums: null };
    const budget = tileSize * tileSize * 2 * this.vae.encoder.conv_in.outChannels;
    const stats = (a: Activation, eps: number) => {
      if (!a.sums) throw new Error('internal: a GroupNorm reads a feature map without statistics');
      const { mean, rstd } = a.sums.stats(eps);
      return { norm_mean: mean, norm_rstd: rstd };
    };
    for (const step of steps) {
      switch (step.kind) {
        case 'conv':
          act = await this.tiled(step.piece, { x: act.t }, {}, budget);
          break;
        case 'resnet': {
          const inner = await this.tiled(step.first, { x: act.t }, stats(act, step.eps1), budget);
          act = await this.tiled(step.second, { x: act.t, h: inner.t }, stats(inner, step.eps2), budget);
          break;
        }
        case 'attention':
          act = await this.attend(step, act.t, stats(act, step.eps), budget);
          break;
        case 'resample':
          act = await this.tiled(step.piece, { x: act.t }, {}, budget);
          break;
        case 'out':
          return (await this.tiledAll(step.piece, { x: act.t }, stats(act, step.eps), budget, false)).outs;
      }
    }
    throw new Error('internal: the piece sequence has no output step');
  }

  private async tiled(piece: Piece, spatial: Record<string, FloatTensor>, whole: Record<string, Tensor>, budget: number): Promise<Activation> {
    const { outs, sums } = await this.tiledAll(piece, spatial, whole, budget, true);
    return { t: outs[0]!, sums };
  }

  /**
   * Runs `piece` tile by tile (tiles of about `budget` values) over its spatial inputs and pastes
   * the tiles' cores into whole output maps; with `withSums`, also the group sums of the first output.
   */
  private async tiledAll(
    piece: Piece, spatial: Record<string, FloatTensor>, whole: Record<string, Tensor>, budget: number, withSums: boolean,
  ): Promise<{ outs: FloatTensor[]; sums: GroupSums | null }> {
    const [B, , H, W] = dims4(spatial[piece.spatial[0]!]!, 'piece input');
    const r = piece.resampling;
    if (r === 'down' && (H % 2 !== 0 || W % 2 !== 0)) throw new Error(`a stride-2 piece needs an even height and width, got ${H} x ${W}`);
    const outH = r === 'up' ? 2 * H : r === 'down' ? H / 2 : H;
    const outW = r === 'up' ? 2 * W : r === 'down' ? W / 2 : W;
    // Cores are laid out on the grid of the lower resolution, so upsampled cores stay even; `tile`
    // is in input pixels, and a downsampling piece's grid is its output.
    const tile = Math.max(1, Math.floor(Math.sqrt(budget / piece.valuesPerPixel)));
    const grid = r === 'down' ? Math.max(1, Math.floor(tile / 2)) : tile;
    const ys = splitEven(r === 'down' ? outH : H, grid);
    const xs = splitEven(r === 'down' ? outW : W, grid);
    // One axis of a tile: the input range it reads, where its core starts in the piece's output, where that goes, and how long it is.
    const axis = (a0: number, a1: number, n: number) => {
      if (r === 'down') return { c0: 2 * a0, c1: Math.min(n, 2 * a1 + 1), src: 0, dst: a0, len: a1 - a0 };
      const c0 = Math.max(0, a0 - 1), c1 = Math.min(n, a1 + 1);
      return r === 'up'
        ? { c0, c1, src: 2 * (a0 - c0), dst: 2 * a0, len: 2 * (a1 - a0) }
        : { c0, c1, src: a0 - c0, dst: a0, len: a1 - a0 };
    };
    const outs: FloatTensor[] = [];
    let sums: GroupSums | null = null;
    // Crop buffers are reused from tile to tile: each run has finished with its inputs before the next crop.
    const buffers = new Map<string, Float32Array>();
    for (let i = 0; i + 1 < ys.length; i++) {
      for (let j = 0; j + 1 < xs.length; j++) {
        const ay = axis(ys[i]!, ys[i + 1]!, H);
        const ax = axis(xs[j]!, xs[j + 1]!, W);
        const feeds: Record<string, Tensor> = { ...whole };
        for (const name of piece.spatial) {
          const t = crop(spatial[name]!, ay.c0, ay.c1, ax.c0, ax.c1, buffers.get(name));
          if (t !== spatial[name]) buffers.set(name, t.data);
          feeds[name] = t;
        }
        const result = await piece.session.run(feeds);
        piece.outputs.forEach((name, k) => {
          const t = result[name] as FloatTensor;
          outs[k] ??= floatTensor([B, t.shape[1]!, outH, outW]);
          if (k === 0 && withSums) sums ??= new GroupSums(B, t.shape[1]!, this.groups);
          pasteCore(outs[k]!, t, { sy: ay.src, sx: ax.src, dy: ay.dst, dx: ax.dst, h: ay.len, w: ax.len }, k === 0 ? sums ?? undefined : undefined);
        });
      }
    }
    return { outs, sums };
  }

  /** The mid-block attention: keys and values of every position, then the queries a few rows at a time. */
  private async attend(step: Extract<Step, { kind: 'attention' }>, x: FloatTensor, stats: Record<string, FloatTensor>, budget: number): Promise<Activation> {
    const [B, C, H, W] = dims4(x, 'attention input');
    const N = H * W;
    const keys = floatTensor([B, N, C]);
    const values = floatTensor([B, N, C]);
    // Keys and values in tile order: attention sums over all of them, so their order does not matter.
    const tile = Math.max(1, Math.floor(Math.sqrt(budget / step.keys.valuesPerPixel)));
    const ys = splitEven(H, tile), xs = splitEven(W, tile);
    let offset = 0;
    for (let i = 0; i + 1 < ys.length; i++) {
      for (let j = 0; j + 1 < xs.length; j++) {
        const r = await step.keys.session.run({ x: crop(x, ys[i]!, ys[i + 1]!, xs[j]!, xs[j + 1]!), ...stats });
        const k = r.k as FloatTensor, v = r.v as FloatTensor;
        const t = k.shape[1]!;
        for (let b = 0; b < B; b++) {
          keys.data.set(k.data.subarray(b * t * C, (b + 1) * t * C), (b * N + offset) * C);
          values.data.set(v.data.subarray(b * t * C, (b + 1) * t * C), (b * N + offset) * C);
        }
        offset += t;
      }
    }
    const rows = Math.max(1, Math.min(H,
      Math.floor(this.maxAttentionScores / (B * step.heads * N * W)),
      Math.floor(budget / (W * step.queries.valuesPerPixel))));
    const out = floatTensor([B, C, H, W]);
    const sums = new GroupSums(B, C, this.groups);
    for (let y0 = 0; y0 < H; y0 += rows) {
      const y1 = Math.min(H, y0 + rows);
      const r = await step.queries.session.run({ x: crop(x, y0, y1, 0, W), ...stats, k: keys, v: values });
      pasteCore(out, r.out as FloatTensor, { sy: 0, sx: 0, dy: y0, dx: 0, h: y1 - y0, w: W }, sums);
    }
    return { t: out, sums };
  }

  private async piece(name: string, resampling: Resampling, spatial: string[], build: (g: Graph) => Record<string, Value>): Promise<Piece> {
    const g = new Graph(name);
    const outputs = build(g);
    for (const [k, v] of Object.entries(outputs)) g.output(v, k);
    const perPixel = resampling === 'up' ? 4 : resampling === 'down' ? 0.25 : 1;
    const valuesPerPixel = spatial.reduce((n, name) => n + g.inputs.find((i) => i.value.name === name)!.value.shape[1]!, 0)
      + Object.values(outputs).reduce((n, v) => n + (v.rank === 4 ? v.shape[1]! * perPixel : v.shape[2]!), 0);
    const session = await OnnxSession.create(emitOnnx(g, { weights: this.weights }), this.runtime);
    this.sessions.push(session);
    return { session, resampling, spatial, outputs: Object.keys(outputs), valuesPerPixel };
  }

  private async resnetStep(r: ResnetBlock2D): Promise<Step> {
    const cin = r.norm1.numChannels, cout = r.norm2.numChannels;
    const first = await this.piece(`${r.path}:conv1`, 'same', ['x'], (g) => {
      const x = spatialInput(g, 'x', cin);
      return { y: r.conv1.forward(g, op.silu(normWithStats(g, r.norm1, x))) };
    });
    const second = await this.piece(`${r.path}:conv2`, 'same', ['x', 'h'], (g) => {
      const x = spatialInput(g, 'x', cin);
      const h = spatialInput(g, 'h', cout);
      const y = op.add(r.conv_shortcut ? r.conv_shortcut.forward(g, x) : x, r.conv2.forward(g, op.silu(normWithStats(g, r.norm2, h))));
      return { y: r.outputScaleFactor === 1 ? y : op.div(y, r.outputScaleFactor) };
    });
    return { kind: 'resnet', first, second, eps1: r.norm1.eps, eps2: r.norm2.eps };
  }

  /** Mirrors Attention.forward (spatial form) with the keys and values fed in. */
  private async attentionStep(a: Attention): Promise<Step> {
    const norm = a.group_norm;
    if (!norm) throw new Error(`${a.path}: the tiled VAE expects the mid-block attention to have a group norm`);
    const C = a.cfg.queryDim;
    const tokensOf = (g: Graph, x: Value) => op.transpose(op.reshape(normWithStats(g, norm, x), [0, 0, -1]), [0, 2, 1]);
    const keys = await this.piece(`${a.path}:keys`, 'same', ['x'], (g) => {
      const tokens = tokensOf(g, spatialInput(g, 'x', C));
      return { k: a.to_k.forward(g, tokens), v: a.to_v.forward(g, tokens) };
    });
    const queries = await this.piece(`${a.path}:queries`, 'same', ['x'], (g) => {
      const x = spatialInput(g, 'x', C);
      const inner = a.cfg.heads * a.cfg.dimHead;
      const k = g.input('k', 'float32', ['batch', 'positions', inner], [1, EXAMPLE * EXAMPLE, inner]);
      const v = g.input('v', 'float32', ['batch', 'positions', inner], [1, EXAMPLE * EXAMPLE, inner]);
      const q = a.to_q.forward(g, tokensOf(g, x));
      let out = a.to_out.items[0]!.forward(g, g.atPath(a.path, () => attention(q, k, v, a.cfg.heads, 1 / Math.sqrt(a.cfg.dimHead))));
      out = op.reshape(op.transpose(out, [0, 2, 1]), op.shapeOf(x));
      if (a.cfg.residualConnection) out = op.add(out, x);
      const rescale = a.cfg.rescaleOutputFactor ?? 1;
      return { out: rescale === 1 ? out : op.div(out, rescale) };
    });
    return { kind: 'attention', keys, queries, eps: norm.eps, heads: a.cfg.heads };
  }

  private async midSteps(mid: AutoencoderKL['decoder']['mid_block']): Promise<Step[]> {
    const steps: Step[] = [await this.resnetStep(mid.resnets.items[0]!)];
    for (let i = 0; i < mid.resnets.length - 1; i++) {
      if (mid.attentions) steps.push(await this.attentionStep(mid.attentions.items[i]!));
      steps.push(await this.resnetStep(mid.resnets.items[i + 1]!));
    }
    return steps;
  }

  /** Encoder.forward and AutoencoderKL.encode as pieces. */
  private async buildEncoder(): Promise<Step[]> {
    const vae = this.vae;
    const e = vae.encoder;
    const steps: Step[] = [{
      kind: 'conv',
      piece: await this.piece('encoder:conv_in', 'same', ['x'], (g) => ({ y: e.conv_in.forward(g, spatialInput(g, 'x', e.conv_in.inChannels)) })),
    }];
    for (const block of e.down_blocks.items) {
      for (const r of block.resnets.items) steps.push(await this.resnetStep(r));
      const d = block.downsamplers?.items[0];
      if (d) {
        steps.push({
          kind: 'resample',
          piece: await this.piece(`${d.path}`, 'down', ['x'], (g) => ({ y: d.forward(g, spatialInput(g, 'x', d.conv.inChannels)) })),
        });
      }
    }
    steps.push(...await this.midSteps(e.mid_block));
    steps.push({
      kind: 'out',
      eps: e.conv_norm_out.eps,
      piece: await this.piece('encoder:conv_out', 'same', ['x'], (g) => {
        const x = spatialInput(g, 'x', e.conv_norm_out.numChannels);
        let moments = e.conv_out.forward(g, op.silu(normWithStats(g, e.conv_norm_out, x)));
        if (vae.quant_conv) moments = vae.quant_conv.forward(g, moments);
        const [mean, logvar] = op.split(moments, 1, 2) as [Value, Value];
        return { mean, logvar: op.clip(logvar, -30, 20) };
      }),
    });
    return steps;
  }

  /** AutoencoderKL.decode and Decoder.forward as pieces. */
  private async buildDecoder(): Promise<Step[]> {
    const vae = this.vae;
    const d = vae.decoder;
    const steps: Step[] = [{
      kind: 'conv',
      piece: await this.piece('decoder:conv_in', 'same', ['x'], (g) => {
        const z = spatialInput(g, 'x', vae.latentChannels);
        return { y: d.conv_in.forward(g, vae.post_quant_conv ? vae.post_quant_conv.forward(g, z) : z) };
      }),
    }];
    steps.push(...await this.midSteps(d.mid_block));
    for (const block of d.up_blocks.items) {
      for (const r of block.resnets.items) steps.push(await this.resnetStep(r));
      const u = block.upsamplers?.items[0];
      if (u) {
        steps.push({
          kind: 'resample',
          piece: await this.piece(`${u.path}`, 'up', ['x'], (g) => ({ y: u.forward(g, spatialInput(g, 'x', u.conv.inChannels)) })),
        });
      }
    }
    steps.push({
      kind: 'out',
      eps: d.conv_norm_out.eps,
      piece: await this.piece('decoder:conv_out', 'same', ['x'], (g) => {
        const x = spatialInput(g, 'x', d.conv_norm_out.numChannels);
        return { image: d.conv_out.forward(g, op.silu(normWithStats(g, d.conv_norm_out, x))) };
      }),
    });
    return steps;
  }
}
