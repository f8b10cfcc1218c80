/**
 * Tiled VAE: the options (when to tile, tile size, independent tiles, overlap) and the host-side tile
 * arithmetic the tiled encoder and decoder (tiled_vae.ts) are built on.
 *
 * Two ways to tile (tiled_vae.ts has the details):
 * - exact (default): every GroupNorm uses statistics summed over the whole feature map and each
 *   convolution reads a 1-pixel halo, so the output is the untiled one up to float summation
 *   order. Whole feature maps are kept between pieces, those above 64 MB in temporary files
 *   (feature_map.ts, in os.tmpdir(): set TMPDIR to a disk-backed folder where /tmp is in RAM), so the
 *   process holds tiles and the small maps: 1.45 GB for an encode + decode at 1024 x 1024.
 * - independent tiles (`independent: true`): the layers above the latent resolution run tile by
 *   tile, each tile on its own, reading `overlap` pixels beyond its core on every side (by default
 *   as far as those layers see, so its core comes out as from the whole image); their GroupNorms
 *   use the image's statistics, the same for every tile, so there are no seams; the
 *   latent-resolution layers (and the attention) run whole. Memory is bounded by the tile. But
 *   above 512 x 512 pixels the statistics are estimated from sample tiles, and on random-weight
 *   networks that estimate changes the output completely (bench/RESULTS.md).
 */
import { type FloatTensor, floatTensor, shapeStr } from '../tensor.js';

export interface VaeTileOptions {
  /**
   * Tile edge in pixels of the full-resolution layers. Every tile holds about as many values as
   * such a tile (its inputs and outputs), so the lower-resolution layers, which have more
   * channels, get tiles of fewer pixels, and the small latent-resolution maps often run whole.
   */
  tileSize: number;
  /** Image pixels (H * W) above which the pipeline runs the VAE tiled. */
  threshold: number;
  /** Independent tiles instead of exact ones: no files, but statistics estimated above 512 x 512. */
  independent: boolean;
  /**
   * Independent tiles: image pixels each tile reads beyond its core on every side (and drops
   * after). Left out: as far as the tiled layers can see (56 for the SD decoder, 72 for its
   * encoder), which makes every core what the whole image gives with the same GroupNorm
   * statistics; smaller is faster but leaves seams.
   */
  overlap?: number;
}

/** The pipeline's tiling setting: options (defaults filled in for the ones left out), or false for never. */
export type VaeTiling = Partial<VaeTileOptions> | false;

/**
 * Defaults, from measurements with the SD-2.1-sized VAE (random weights, 2 CPU threads;
 * bench/RESULTS.md, "Tiled VAE"): untiled runs need about 3 KB per image pixel (3.7 GB for an
 * encode + decode at 1024 x 1024), so images up to 1024 x 1024 run untiled (the pipeline's
 * 512 x 512 runs never tile) and larger ones in exact tiles of 512 pixels with their large maps in
 * temporary files (1.45 GB at 1024 x 1024, 1.0-1.7x the untiled time). Independent tiles stay
 * opt-in: slower, and above 512 x 512 they estimate the statistics, which changed the
 * random-weight VAE's output completely.
 */
export const DEFAULT_VAE_TILING: Readonly<VaeTileOptions> = Object.freeze({
  tileSize: 512,
  threshold: 1024 * 1024,
  independent: false,
});

const OPTION_KEYS: readonly string[] = ['tileSize', 'threshold', 'independent', 'overlap'];

/** Defaults filled in and checked. */
export function resolveVaeTiling(opts: Partial<VaeTileOptions> = {}): VaeTileOptions {
  if (typeof opts !== 'object' || opts === null) throw new TypeError(`VAE tiling must be an options object or false, got ${String(opts)}`);
  for (const k of Object.keys(opts)) {
    if (!OPTION_KEYS.includes(k)) throw new RangeError(`unknown VAE tiling option '${k}' (options: ${OPTION_KEYS.join(', ')})`);
  }
  const o: VaeTileOptions = { ...DEFAULT_VAE_TILING };
  if (opts.tileSize !== undefined) o.tileSize = opts.tileSize;
  if (opts.threshold !== undefined) o.threshold = opts.threshold;
  if (opts.independent !== undefined) o.independent = opts.independent;
  if (!Number.isInteger(o.tileSize) || o.tileSize < 8) throw new RangeError(`VAE tile size must be an integer of at least 8 pixels, got ${String(o.tileSize)}`);
  if (typeof o.threshold !== 'number' || Number.isNaN(o.threshold) || o.threshold < 0) {
    throw new RangeError(`VAE tiling threshold must be a non-negative number of pixels, got ${String(o.threshold)}`);
  }
  if (typeof o.independent !== 'boolean') throw new TypeError(`VAE tiling 'independent' must be true or false, got ${String(o.independent)}`);
  if (!o.independent && opts.overlap !== undefined) {
    throw new RangeError('overlap applies to independent tiles (independent: true); exact tiles read the halo each convolution needs');
  }
  if (opts.overlap !== undefined) {
    if (!Number.isInteger(opts.overlap) || opts.overlap < 0) throw new RangeError(`VAE tile overlap must be a non-negative integer of pixels, got ${String(opts.overlap)}`);
    o.overlap = opts.overlap;
  }
  return o;
}

/**
 * The tile options for an H x W image, or null to run untiled: never with `false`; otherwise
 * when the image has more pixels than the threshold and does not fit in one tile.
 */
export function vaeTilingFor(height: number, width: number, tiling: VaeTiling | undefined): VaeTileOptions | null {
  if (tiling === false) return null;
  const o = resolveVaeTiling(tiling);
  return height * width > o.threshold && (height > o.tileSize || width > o.tileSize) ? o : null;
}

/** Cuts [0, length) into ceil(length / tile) nearly equal parts; returns the n + 1 boundaries. */
export function splitEven(length: number, tile: number): number[] {
  if (!Number.isInteger(length) || length < 1) throw new Error(`cannot tile a length of ${length}`);
  const n = Math.ceil(length / Math.max(1, Math.floor(tile)));
  return Array.from({ length: n + 1 }, (_, i) => Math.round((i * length) / n));
}

export function dims4(t: FloatTensor, what: string): [number, number, number, number] {
  if (t.shape.length !== 4) throw new Error(`${what} must be (B, C, H, W), got ${shapeStr(t.shape)}`);
  return t.shape as [number, number, number, number];
}

/**
 * x[:, :, y0:y1, x0:x1] as a tensor of its own, written into `reuse` when that has the right
 * length (tiles of one map mostly share a size, and fresh buffers cost page faults and GC).
 */
export function crop(x: FloatTensor, y0: number, y1: number, x0: number, x1: number, reuse?: Float32Array): FloatTensor {
  const [B, C, H, W] = dims4(x, 'crop input');
  if (y0 === 0 && x0 === 0 && y1 === H && x1 === W) return x;
  const h = y1 - y0, w = x1 - x0;
  const out = floatTensor([B, C, h, w], reuse?.length === B * C * h * w ? reuse : undefined);
  for (let bc = 0; bc < B * C; bc++) {
    for (let y = 0; y < h; y++) {
      const src = (bc * H + y0 + y) * W + x0;
      out.data.set(x.data.subarray(src, src + w), (bc * h + y) * w);
    }
  }
  return out;
}

/**
 * Per (batch item, group) sums and sums of squares of a feature map, accumulated tile core by
 * tile core in float64, for a GroupNorm over the whole map.
 */
export class GroupSums {
  private readonly sum: Float64Array;
  private readonly sq: Float64Array;
  private readonly count: Float64Array;

  constructor(readonly batch: number, readonly channels: number, readonly groups: number) {
    if (channels % groups !== 0) throw new Error(`${channels} channels are not divisible into ${groups} groups`);
    this.sum = new Float64Array(batch * groups);
    this.sq = new Float64Array(batch * groups);
    this.count = new Float64Array(batch * groups);
  }

  /** Adds the sum `s` and sum of squares `s2` of `n` values of channel `c` of batch item `b`. */
  add(b: number, c: number, s: number, s2: number, n: number): void {
    const k = b * this.groups + Math.floor(c / (this.channels / this.groups));
    this.sum[k]! += s;
    this.sq[k]! += s2;
    this.count[k]! += n;
  }

  /** Adds the values of t[item, :, y0:y1, x0:x1] to batch item `item` modulo this batch (stacked samples of a batch). */
  addWindow(t: FloatTensor, item: number, y0: number, y1: number, x0: number, x1: number): void {
    const [B, C, H, W] = dims4(t, 'feature map');
    if (item >= B || C !== this.channels || y0 < 0 || x0 < 0 || y1 > H || x1 > W || !(y0 < y1 && x0 < x1)) {
      throw new Error(`window [${y0}, ${y1}) x [${x0}, ${x1}) of item ${item} of ${shapeStr(t.shape)} does not fit ${this.channels}-channel statistics`);
    }
    for (let c = 0; c < C; c++) {
      let s = 0, s2 = 0;
      for (let y = y0; y < y1; y++) {
        for (let i = ((item * C + c) * H + y) * W + x0, end = i + x1 - x0; i < end; i++) {
          const v = t.data[i]!;
          s += v;
          s2 += v * v;
        }
      }
      this.add(item % this.batch, c, s, s2, (y1 - y0) * (x1 - x0));
    }
  }

  /** Adds the values of a tile's core `win` (source side), every batch item to its own. */
  addCore(tile: FloatTensor, win: CoreWindow): void {
    for (let b = 0; b < tile.shape[0]!; b++) this.addWindow(tile, b, win.sy, win.sy + win.h, win.sx, win.sx + win.w);
  }

  /** mean and 1 / sqrt(var + eps), each (B, groups, 1), as the GroupNorm pieces take them. */
  stats(eps: number): { mean: FloatTensor; rstd: FloatTensor } {
    const mean = floatTensor([this.batch, this.groups, 1]);
    const rstd = floatTensor([this.batch, this.groups, 1]);
    for (let k = 0; k < this.sum.length; k++) {
      const n = this.count[k]!;
      if (n === 0) throw new Error('GroupNorm statistics of an empty feature map');
      const m = this.sum[k]! / n;
      mean.data[k] = m;
      rstd.data[k] = 1 / Math.sqrt(Math.max(0, this.sq[k]! / n - m * m) + eps);
    }
    return { mean, rstd };
  }
}

/** Where a tile's core goes: `h` x `w` values from (sy, sx) of the tile to (dy, dx) of the full map. */
export interface CoreWindow {
  sy: number;
  sx: number;
  dy: number;
  dx: number;
  h: number;
  w: number;
}

/** dst[:, :, dy:dy+h, dx:dx+w] = tile[:, :, sy:sy+h, sx:sx+w], adding the core to `sums` on the way. */
export function pasteCore(dst: FloatTensor, tile: FloatTensor, win: CoreWindow, sums?: GroupSums): void {
  const [B, C, H, W] = dims4(dst, 'destination');
  const [th, tw] = checkCoreFits(dst.shape, tile, win);
  for (let bc = 0; bc < B * C; bc++) {
    for (let y = 0; y < win.h; y++) {
      const src = (bc * th + win.sy + y) * tw + win.sx;
      dst.data.set(tile.data.subarray(src, src + win.w), (bc * H + win.dy + y) * W + win.dx);
    }
  }
  sums?.addCore(tile, win);
}

/** Throws unless `win` of `tile` fits a (B, C, H, W) map of `shape`; returns the tile's height and width. */
export function checkCoreFits(shape: readonly number[], tile: FloatTensor, win: CoreWindow): [number, number] {
  const [B, C, H, W] = shape as [number, number, number, number];
  const [tb, tc, th, tw] = dims4(tile, 'tile');
  if (tb !== B || tc !== C || win.sy + win.h > th || win.sx + win.w > tw || win.dy + win.h > H || win.dx + win.w > W) {
    throw new Error(`tile ${shapeStr(tile.shape)} core ${JSON.stringify(win)} does not fit ${shapeStr(shape)}`);
  }
  return [th, tw];
}
