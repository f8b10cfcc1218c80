/**
 * The VAE encoder and decoder run as a host-driven sequence of small graphs ("pieces") over
 * tiles, in one of two ways (options in tiling.ts).
 *
 * Exact (`encode`, `decode`, the default): the untiled result up to float summation order.
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
 * Memory: ONNX Runtime's activations are those of one tile, and the few whole feature maps kept
 * between pieces (a resnet block's input, inner activation and output: at most a 256-channel and
 * two 128-channel maps at full resolution, 2 GB at 1024 x 1024, in the SD VAE's decoder) go to
 * temporary files above `spillBytes`, read and written a tile's channel rows at a time; the
 * output is assembled in memory. bench/RESULTS.md has the figures.
 *
 * Independent tiles (`encodeIndependent`, `decodeIndependent`, opt-in): no files, memory bounded
 * by the tile. The latent-resolution layers (the encoder's last down block and mid block, the
 * decoder's mid block and first up block, so also the attention) run whole with exact
 * statistics: their maps are 1/64 of the image's pixels. The full-resolution part runs on tiles,
 * each on its own: a tile reads its core plus a halo as wide as that part can see (the sum of its
 * convolutions' radii, each at its resolution: 7 latent pixels for the SD decoder, 9 for the
 * encoder), so with the same GroupNorm statistics its core is exactly what the whole image gives,
 * and cores are pasted side by side: there is nothing to blend and no seam. The statistics are
 * the exact ones (recorded by an exact run) for inputs up to `statsPixels`; for larger inputs they
 * are measured on the cores of sample tiles spread over the image (run together, stacked along the
 * batch): exact up to the sampling, which on random-weight networks changes the output completely
 * (bench/RESULTS.md).
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
import { type FeatureMap, FileMap, MemoryMap } from './feature_map.js';

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

/** GroupNorm statistics in the order a run reads them: recorded by one run, replayed by others. */
type NormLog = Record<'norm_mean' | 'norm_rstd', FloatTensor>[];

/**
 * A run over sample tiles stacked along the batch: every GroupNorm takes its statistics from the
 * cores of the samples (`windows`, in input pixels, one per stacked item; item i belongs to image
 * i % batch of the real batch), the same for every sample of an image.
 */
interface SampledRun {
  windows: { y0: number; y1: number; x0: number; x1: number }[];
  batch: number;
}

/** `t` (B, ...) repeated `times` along the batch. */
function repeatBatch(t: FloatTensor, times: number): FloatTensor {
  const out = floatTensor([t.shape[0]! * times, ...t.shape.slice(1)]);
  for (let k = 0; k < times; k++) out.data.set(t.data, k * t.data.length);
  return out;
}

/** The encoder's or decoder's steps; those in [latentFrom, latentTo) run at the latent resolution. */
interface Network {
  steps: Step[];
  latentFrom: number;
  latentTo: number;
}

/** A whole feature map and the group sums of its values, for the GroupNorm that reads it next. */
interface Activation {
  t: FeatureMap;
  sums: GroupSums | null;
}


/** A tile of an h x w grid: its core [y0, y1) x [x0, x1), read with a halo of up to `halo` on every side. */
interface HaloTile {
  y0: number;
  y1: number;
  x0: number;
  x1: number;
  /** The region read: the core plus the halo, clipped to the grid. */
  ry0: number;
  ry1: number;
  rx0: number;
  rx1: number;
}

/** Cores of at most `core` grid units covering h x w, each read with `halo` more on every side. */
function haloGrid(h: number, w: number, core: number, halo: number): HaloTile[] {
  const ys = splitEven(h, Math.max(1, Math.floor(core))), xs = splitEven(w, Math.max(1, Math.floor(core)));
  const tiles: HaloTile[] = [];
  for (let i = 0; i + 1 < ys.length; i++) {
    for (let j = 0; j + 1 < xs.length; j++) {
      const [y0, y1, x0, x1] = [ys[i]!, ys[i + 1]!, xs[j]!, xs[j + 1]!];
      tiles.push({ y0, y1, x0, x1, ry0: Math.max(0, y0 - halo), ry1: Math.min(h, y1 + halo), rx0: Math.max(0, x0 - halo), rx1: Math.min(w, x1 + halo) });
    }
  }
  return tiles;
}

/**
 * How far (in pixels of the steps' input) an output of `steps` can see: the sum of their 3x3
 * convolutions' radii, each at its own resolution. Attention sees everything.
 */
function receptiveRadius(steps: Step[]): number {
  let scale = 1; // pixels of the current resolution per input pixel
  let radius = 0;
  for (const step of steps) {
    switch (step.kind) {
      case 'attention':
        return Infinity;
      case 'resnet':
        radius += 2 / scale;
        break;
      case 'resample':
        // Upsampling convolves at the new resolution; a stride-2 convolution reads 1 pixel around at the old one.
        if (step.piece.resampling === 'up') scale *= 2;
        radius += 1 / scale;
        if (step.piece.resampling === 'down') scale /= 2;
        break;
      default:
        radius += 1 / scale;
    }
  }
  return radius;
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
  private encoderSteps?: Promise<Network>;
  private decoderSteps?: Promise<Network>;
  private readonly sessions: OnnxSession[] = [];
  private readonly groups: number;
  /**
   * Attention scores per query chunk (batch x heads x queries x keys) at most: 2^24 floats,
   * 64 MB, whether or not ONNX Runtime materializes them. (Tests lower it to exercise chunking.)
   */
  maxAttentionScores = 1 << 24;
  /**
   * Independent tiles get their GroupNorm statistics from the exact run when the input has at
   * most `statsPixels` image pixels, and otherwise from a `sampleGrid` x `sampleGrid` grid of
   * sample tiles with cores of `sampleCore` image pixels, spread from edge to edge and run
   * together (stacked along the batch: about 1 GB for the SD decoder's 9). (Tests change them.)
   */
  statsPixels = 512 * 512;
  sampleGrid = 3;
  sampleCore = 128;
  /**
   * Exact tiles keep whole feature maps between pieces: those above this many bytes go to a
   * temporary file (FileMap), so the process holds only tiles. (Infinity keeps them in memory.)
   */
  spillBytes = 64 * 1024 * 1024;

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
    const [mean, logvar] = (await this.run((await this.encoderSteps).steps, image, tileSize, undefined, true)).outs;
    return { mean: mean!, logvar: logvar! };
  }

  /** unscaled latent (B, C, h, w) -> image (B, 3, h * f, w * f), as the untiled decoder. */
  async decode(latent: FloatTensor, tileSize: number): Promise<FloatTensor> {
    dims4(latent, 'latent');
    this.decoderSteps ??= this.buildDecoder();
    const [image] = (await this.run((await this.decoderSteps).steps, latent, tileSize, undefined, true)).outs;
    return image!;
  }

  /**
   * Tiled encoding with memory bounded by the tile: the part above the latent resolution (conv_in,
   * the down blocks up to the last downsampler) on tiles of `tileSize` pixels, each read with `overlap` more pixels on every side
   * (default: the part's receptive radius, so every tile's core is what the whole image gives),
   * its GroupNorms using the image's statistics (`partNorms`); the cores make one
   * latent-resolution feature map, and the last down block, mid block and conv_out run on it whole.
   */
  async encodeIndependent(image: FloatTensor, tileSize: number, overlap?: number): Promise<{ mean: FloatTensor; logvar: FloatTensor }> {
    const f = this.vae.downFactor;
    const [B, , H, W] = dims4(image, 'image');
    if (H % f !== 0 || W % f !== 0) throw new Error(`tiled VAE encode needs a height and width that are multiples of ${f}, got ${H} x ${W}`);
    this.encoderSteps ??= this.buildEncoder();
    const { steps, latentFrom } = await this.encoderSteps;
    const [tiledPart, latentPart] = [steps.slice(0, latentFrom), steps.slice(latentFrom)];
    // Tiles on the latent grid, so every image tile starts on a multiple of f (the downsamplings stay aligned).
    const reach = receptiveRadius(tiledPart);
    const halo = Math.ceil((overlap ?? reach) / f);
    const norms = await this.partNorms(tiledPart, image, { h: H / f, w: W / f, unit: f, imagePixels: H * W, cellPixels: f }, Math.ceil(reach / f), tileSize);
    let features: FloatTensor | undefined;
    let sums: GroupSums | undefined;
    for (const t of haloGrid(H / f, W / f, tileSize / f, halo)) {
      const { act } = await this.run(tiledPart, crop(image, t.ry0 * f, t.ry1 * f, t.rx0 * f, t.rx1 * f), tileSize, { replay: norms });
      features ??= floatTensor([B, act.t.shape[1], H / f, W / f]);
      sums ??= new GroupSums(B, act.t.shape[1], this.groups);
      pasteCore(features, act.t.tensor(), { sy: t.y0 - t.ry0, sx: t.x0 - t.rx0, dy: t.y0, dx: t.x0, h: t.y1 - t.y0, w: t.x1 - t.x0 }, sums);
    }
    const [mean, logvar] = (await this.run(latentPart, { t: new MemoryMap(features!), sums: sums! }, tileSize)).outs;
    return { mean: mean!, logvar: logvar! };
  }

  /**
   * Tiled decoding with memory bounded by the tile: the latent-resolution part (conv_in, the mid
   * block, the first up block) on the whole latent; then the rest on tiles of `tileSize` image
   * pixels, each read with `overlap` more image pixels on every side (default: the rest's
   * receptive radius, so every tile's core is what the whole image gives), its GroupNorms using
   * the image's statistics (`partNorms`).
   */
  async decodeIndependent(latent: FloatTensor, tileSize: number, overlap?: number): Promise<FloatTensor> {
    const f = this.vae.downFactor;
    const [B, , h, w] = dims4(latent, 'latent');
    this.decoderSteps ??= this.buildDecoder();
    const { steps, latentTo } = await this.decoderSteps;
    const [latentPart, tiledPart] = [steps.slice(0, latentTo), steps.slice(latentTo)];
    const { act } = await this.run(latentPart, latent, tileSize);
    const reach = receptiveRadius(tiledPart);
    const halo = Math.ceil(overlap === undefined ? reach : overlap / f);
    const norms = await this.partNorms(tiledPart, act, { h, w, unit: 1, imagePixels: h * w * f * f, cellPixels: f }, Math.ceil(reach), tileSize);
    const image = floatTensor([B, 3, h * f, w * f]);
    for (const t of haloGrid(h, w, tileSize / f, halo)) {
      const [tile] = (await this.run(tiledPart, act.t.crop(t.ry0, t.ry1, t.rx0, t.rx1), tileSize, { replay: norms })).outs;
      pasteCore(image, tile!, { sy: (t.y0 - t.ry0) * f, sx: (t.x0 - t.rx0) * f, dy: t.y0 * f, dx: t.x0 * f, h: (t.y1 - t.y0) * f, w: (t.x1 - t.x0) * f });
    }
    return image;
  }

  /**
   * GroupNorm statistics for running `part` on independent tiles of `input` (a grid of `h` x
   * `w` cells of `unit` input pixels, `imagePixels` image pixels in all). Small inputs: the
   * exact run records them. Larger ones: sample tiles spread over the input (cores of
   * `sampleCore` image pixels, read with `halo` cells around, so their cores are what the whole
   * input gives with the same statistics) run as one batch, and every GroupNorm takes the
   * statistics of their cores: exact up to the sampling.
   */
  private async partNorms(part: Step[], input: FloatTensor | Activation, grid: { h: number; w: number; unit: number; imagePixels: number; cellPixels: number }, halo: number, tileSize: number): Promise<NormLog> {
    const norms: NormLog = [];
    if (grid.imagePixels <= this.statsPixels) {
      await this.run(part, input, tileSize, { record: norms });
      return norms;
    }
    const map = 't' in input ? input.t : new MemoryMap(input);
    const core = Math.max(1, Math.round(this.sampleCore / grid.cellPixels));
    const per = this.sampleGrid;
    // Every sample reads a region of the same size (stacked along the batch, they run as one):
    // its core plus the halo, shifted inside the input at its borders.
    const [rh, rw] = [Math.min(grid.h, core + 2 * halo), Math.min(grid.w, core + 2 * halo)];
    const place = (k: number, n: number, read: number) => {
      const c0 = per === 1 ? Math.max(0, Math.round((n - core) / 2)) : Math.max(0, Math.round((k * (n - core)) / (per - 1)));
      const r0 = Math.max(0, Math.min(n - read, c0 - halo));
      return { c0, c1: Math.min(n, c0 + core), r0 };
    };
    const [B, C] = map.shape;
    const u = grid.unit;
    const stacked = floatTensor([per * per * B, C, rh * u, rw * u]);
    const windows: SampledRun['windows'] = [];
    for (let i = 0; i < per; i++) {
      for (let j = 0; j < per; j++) {
        const y = place(i, grid.h, rh), x = place(j, grid.w, rw);
        const region = map.crop(y.r0 * u, (y.r0 + rh) * u, x.r0 * u, (x.r0 + rw) * u);
        stacked.data.set(region.data, (i * per + j) * region.data.length);
        for (let b = 0; b < B; b++) windows.push({ y0: (y.c0 - y.r0) * u, y1: (y.c1 - y.r0) * u, x0: (x.c0 - x.r0) * u, x1: (x.c1 - x.r0) * u });
      }
    }
    await this.run(part, stacked, tileSize, { record: norms, sampled: { windows, batch: B } });
    return norms;
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
  private async run(steps: Step[], input: FloatTensor | Activation, tileSize: number, norms?: { record: NormLog; sampled?: SampledRun } | { replay: NormLog }, spill = false): Promise<{ outs: FloatTensor[]; act: Activation }> {
    if (!Number.isInteger(tileSize) || tileSize < 1) throw new RangeError(`tile size must be a positive integer, got ${tileSize}`);
    let act: Activation = 't' in input ? input : { t: new MemoryMap(input), sums: null };
    const first = act.t;
    // Maps this run made are freed as soon as nothing reads them (files deleted), and on errors.
    const made = new Set<FeatureMap>();
    const free = (...maps: FeatureMap[]) => {
      for (const m of maps) if (m !== first && made.delete(m)) m.dispose();
    };
    const tiled = async (piece: Piece, spatial: Record<string, FeatureMap>, whole: Record<string, Tensor>) => {
      const out = await this.tiled(piece, spatial, whole, budget, spill);
      made.add(out.t);
      return out;
    };
    const budget = tileSize * tileSize * 2 * this.vae.encoder.conv_in.outChannels;
    let normIndex = 0;
    let scale = 1; // pixels of the current resolution per input pixel
    const stats = (a: Activation, eps: number) => {
      if (norms && 'record' in norms && norms.sampled) {
        const { windows, batch } = norms.sampled;
        const sums = new GroupSums(batch, a.t.shape[1]!, this.groups);
        const t = a.t.tensor();
        windows.forEach((w, item) => sums.addWindow(t, item, w.y0 * scale, w.y1 * scale, w.x0 * scale, w.x1 * scale));
        const { mean, rstd } = sums.stats(eps);
        norms.record.push({ norm_mean: mean, norm_rstd: rstd });
        const times = windows.length / batch;
        return { norm_mean: repeatBatch(mean, times), norm_rstd: repeatBatch(rstd, times) };
      }
      if (norms && 'replay' in norms) {
        const s = norms.replay[normIndex++];
        if (!s) throw new Error('internal: more GroupNorms than recorded statistics');
        return s;
      }
      if (!a.sums) throw new Error('internal: a GroupNorm reads a feature map without statistics');
      const { mean, rstd } = a.sums.stats(eps);
      const s = { norm_mean: mean, norm_rstd: rstd };
      norms?.record.push(s);
      return s;
    };
    try {
      for (const step of steps) {
        const prev = act;
        switch (step.kind) {
          case 'conv':
            act = await tiled(step.piece, { x: act.t }, {});
            break;
          case 'resnet': {
            const inner = await tiled(step.first, { x: act.t }, stats(act, step.eps1));
            act = await tiled(step.second, { x: act.t, h: inner.t }, stats(inner, step.eps2));
            free(inner.t);
            break;
          }
          case 'attention':
            act = await this.attend(step, act.t, stats(act, step.eps), budget, spill);
            made.add(act.t);
            break;
          case 'resample':
            act = await tiled(step.piece, { x: act.t }, {});
            scale *= step.piece.resampling === 'up' ? 2 : 0.5;
            break;
          case 'out': {
            const maps = (await this.tiledAll(step.piece, { x: act.t }, stats(act, step.eps), budget, false, spill)).outs;
            const outs = maps.map((m) => m.tensor());
            for (const m of maps) m.dispose();
            return { outs, act };
          }
        }
        free(prev.t);
      }
      return { outs: [act.t.tensor()], act };
    } finally {
      // Whatever this run returns is in memory: maps still open here are files no one will read.
      for (const m of made) if (m instanceof FileMap) m.dispose();
    }
  }

  private async tiled(piece: Piece, spatial: Record<string, FeatureMap>, whole: Record<string, Tensor>, budget: number, spill: boolean): Promise<Activation> {
    const { outs, sums } = await this.tiledAll(piece, spatial, whole, budget, true, spill);
    return { t: outs[0]!, sums };
  }

  /** A whole map for a piece's output: in a temporary file when `spill` and larger than spillBytes. */
  private newMap(shape: [number, number, number, number], spill: boolean): FeatureMap {
    return spill && shape.reduce((a, b) => a * b, 4) > this.spillBytes ? new FileMap(shape) : new MemoryMap(floatTensor(shape));
  }

  /**
   * Runs `piece` tile by tile (tiles of about `budget` values) over its spatial inputs and pastes
   * the tiles' cores into whole output maps; with `withSums`, also the group sums of the first output.
   */
  private async tiledAll(
    piece: Piece, spatial: Record<string, FeatureMap>, whole: Record<string, Tensor>, budget: number, withSums: boolean, spill: boolean,
  ): Promise<{ outs: FeatureMap[]; sums: GroupSums | null }> {
    const [B, , H, W] = spatial[piece.spatial[0]!]!.shape;
    const r = piece.resampling;
    if (r === 'down' && (H % 2 !== 0 || W % 2 !== 0)) throw new Error(`a stride-2 piece needs an even height and width, got ${H} x ${W}`);
    const outH = r === 'up' ? 2 * H : r === 'down' ? H / 2 : H;
    const outW = r === 'up' ? 2 * W : r === 'down' ? W / 2 : W;
    // Cores are laid out on the grid of the lower resolution, so upsampled cores stay even; `tile`
    // is in input pixels, and a downsampling piece's grid is its output.
    const tile = Math.max(1, Math.floor(Math.sqrt(budget / (piece.valuesPerPixel * B))));
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
    const outs: FeatureMap[] = [];
    let sums: GroupSums | null = null;
    // Crop buffers are reused from tile to tile: each run has finished with its inputs before the next crop.
    const buffers = new Map<string, Float32Array>();
    for (let i = 0; i + 1 < ys.length; i++) {
      for (let j = 0; j + 1 < xs.length; j++) {
        const ay = axis(ys[i]!, ys[i + 1]!, H);
        const ax = axis(xs[j]!, xs[j + 1]!, W);
        const feeds: Record<string, Tensor> = { ...whole };
        for (const name of piece.spatial) {
          const map = spatial[name]!;
          const t = map.crop(ay.c0, ay.c1, ax.c0, ax.c1, buffers.get(name));
          if (!(map instanceof MemoryMap && t === map.t)) buffers.set(name, t.data);
          feeds[name] = t;
        }
        const result = await piece.session.run(feeds);
        piece.outputs.forEach((name, k) => {
          const t = result[name] as FloatTensor;
          outs[k] ??= this.newMap([B, t.shape[1]!, outH, outW], spill);
          if (k === 0 && withSums) sums ??= new GroupSums(B, t.shape[1]!, this.groups);
          outs[k]!.paste(t, { sy: ay.src, sx: ax.src, dy: ay.dst, dx: ax.dst, h: ay.len, w: ax.len }, k === 0 ? sums ?? undefined : undefined);
        });
      }
    }
    return { outs, sums };
  }

  /** The mid-block attention: keys and values of every position, then the queries a few rows at a time. */
  private async attend(step: Extract<Step, { kind: 'attention' }>, x: FeatureMap, stats: Record<string, FloatTensor>, budget: number, spill: boolean): Promise<Activation> {
    const [B, C, H, W] = x.shape;
    const N = H * W;
    const keys = floatTensor([B, N, C]);
    const values = floatTensor([B, N, C]);
    // Keys and values in tile order: attention sums over all of them, so their order does not matter.
    const tile = Math.max(1, Math.floor(Math.sqrt(budget / step.keys.valuesPerPixel)));
    const ys = splitEven(H, tile), xs = splitEven(W, tile);
    let offset = 0;
    for (let i = 0; i + 1 < ys.length; i++) {
      for (let j = 0; j + 1 < xs.length; j++) {
        const r = await step.keys.session.run({ x: x.crop(ys[i]!, ys[i + 1]!, xs[j]!, xs[j + 1]!), ...stats });
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
    const out = this.newMap([B, C, H, W], spill);
    const sums = new GroupSums(B, C, this.groups);
    for (let y0 = 0; y0 < H; y0 += rows) {
      const y1 = Math.min(H, y0 + rows);
      const r = await step.queries.session.run({ x: x.crop(y0, y1, 0, W), ...stats, k: keys, v: values });
      out.paste(r.out as FloatTensor, { sy: 0, sx: 0, dy: y0, dx: 0, h: y1 - y0, w: W }, sums);
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
  private async buildEncoder(): Promise<Network> {
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
    const lastDown = steps.map((st) => st.kind).lastIndexOf('resample');
    return { steps, latentFrom: lastDown + 1, latentTo: steps.length };
  }

  /** AutoencoderKL.decode and Decoder.forward as pieces. */
  private async buildDecoder(): Promise<Network> {
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
    const firstUp = steps.findIndex((st) => st.kind === 'resample');
    return { steps, latentFrom: 0, latentTo: firstUp < 0 ? steps.length : firstUp };
  }
}
