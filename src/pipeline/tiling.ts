/**
 * Tiled VAE: encode and decode large images tile by tile so that the networks' activations stay
 * bounded by the tile size, not the image size.
 *
 * The image (or latent) is cut into overlapping tiles whose edges lie on the VAE's down-factor
 * grid, each tile runs through the unchanged encoder/decoder, and the overlaps are cross-faded
 * with cosine ramps. The 2-D weight of a tile is the product of its row and column weights, and
 * the 1-D weights of all tiles sum to 1 at every position, so every pixel is covered exactly once.
 *
 * Limits: each tile is normalised (GroupNorm) with its own statistics and its mid-block attention
 * sees only its own tokens, so the result is not the untiled one. Placement and blending are exact
 * for a local network (test/tiling.test.ts), but on the random-weight VAEs available here tiled
 * output differs from untiled by far more than 2/255 (up to 255/255 on a smooth image); closing
 * that gap needs whole-image GroupNorm statistics and attention inside the VAE graphs. A tile as
 * large as the input gives the untiled result exactly (the network is called once on the input).
 */
import { type FloatTensor, floatTensor, shapeStr } from '../tensor.js';

export interface TileOptions {
  /** Tile edge: output pixels for decode, input pixels for encode (rounded down to the down factor). */
  tileSize: number;
  /** Least overlap of neighbouring tiles, in image pixels (rounded to the down factor). */
  overlap: number;
  /** Image pixels (H * W) above which the pipeline tiles automatically. */
  threshold: number;
}

/**
 * Defaults, from measurements with the SD-2.1-sized VAE (random weights, 2 CPU threads):
 * 512-pixel tiles are the size the pipeline already runs the VAE at (process_size 512), so one
 * tile costs the memory of an ordinary run: a 1024 x 1024 encode + decode peaks at 3.6 GB RSS
 * tiled against 8.4 GB untiled. The 128-pixel overlap (16 latent pixels, 25 % of a tile) spans
 * most of the decoder's receptive field at latent resolution (about 17 latent pixels) and gives
 * 3 x 3 tiles for 1024 x 1024. A 2048 x 2048 tiled decode (25 tiles) peaks at 2.6 GB. Untiled
 * encode + decode peaks at 2.6 GB (512), 5.5 GB (768), 8.4 GB (1024): images up to 768 x 768 run
 * untiled (tiling is not seamless, so it is kept for sizes where memory needs it), and the
 * pipeline's 512 x 512 runs never tile.
 */
export const DEFAULT_TILE_OPTIONS: Readonly<TileOptions> = Object.freeze({
  tileSize: 512,
  overlap: 128,
  threshold: 768 * 768,
});

/** Defaults filled in and checked. */
export function resolveTileOptions(opts: Partial<TileOptions> = {}): TileOptions {
  const o: TileOptions = { ...DEFAULT_TILE_OPTIONS };
  for (const k of ['tileSize', 'overlap', 'threshold'] as const) if (opts[k] !== undefined) o[k] = opts[k];
  if (!Number.isFinite(o.tileSize) || o.tileSize <= 0) throw new Error(`tile size must be a positive number, got ${o.tileSize}`);
  if (!Number.isFinite(o.overlap) || o.overlap < 0) throw new Error(`tile overlap must be a non-negative number, got ${o.overlap}`);
  if (Number.isNaN(o.threshold) || o.threshold < 0) throw new Error(`tiling threshold must be a non-negative number of pixels, got ${o.threshold}`);
  return o;
}

/**
 * The tile options to use for an image of `pixels` (H * W) pixels, or null to run untiled:
 * `false` never tiles; otherwise tiling switches on above the threshold.
 */
export function tilingFor(pixels: number, tiling: Partial<TileOptions> | false | undefined): TileOptions | null {
  if (tiling === false) return null;
  const o = resolveTileOptions(tiling);
  return pixels > o.threshold ? o : null;
}

/** One tile along one axis, in grid units (latent pixels). */
export interface Span {
  start: number;
  size: number;
}

/**
 * Cuts [0, length) into the fewest tiles of `tile` units that overlap by at least `overlap`,
 * spread evenly (so every tile has the full size and all overlaps are about equal).
 */
export function planSpans(length: number, tile: number, overlap: number): Span[] {
  if (!Number.isInteger(length) || length < 1) throw new Error(`cannot tile a length of ${length}`);
  if (!Number.isInteger(tile) || tile < 1) throw new Error(`tile of ${tile} units`);
  if (length <= tile) return [{ start: 0, size: length }];
  const ov = Math.min(Math.max(0, Math.round(overlap)), tile - 1);
  const n = Math.ceil((length - ov) / (tile - ov));
  const spans: Span[] = [];
  for (let i = 0; i < n; i++) spans.push({ start: Math.round((i * (length - tile)) / (n - 1)), size: tile });
  return spans;
}

/** Rises smoothly from 0 at t = 0 to 1 at t = 1, with ramp(t) + ramp(1 - t) = 1. */
function ramp(t: number): number {
  return 0.5 - 0.5 * Math.cos(Math.PI * t);
}

/**
 * Blend weights along one axis at `scale` samples per grid unit: one array per span (its size *
 * scale entries). Across each overlap with a neighbour a tile fades in (or out) with a cosine
 * ramp; the image's own edges are not faded. The weights are normalised so they sum to 1 at
 * every position.
 */
export function spanWeights(spans: readonly Span[], length: number, scale = 1): Float64Array[] {
  const L = length * scale;
  const raw = spans.map((s, i) => {
    const a = s.start * scale;
    const w = new Float64Array(s.size * scale);
    const prev = spans[i - 1];
    const next = spans[i + 1];
    // Fade in over the overlap with the previous tile, fade out over the one with the next.
    const inEnd = prev ? (prev.start + prev.size) * scale : a;
    const outStart = next ? next.start * scale : (s.start + s.size) * scale;
    const outEnd = (s.start + s.size) * scale;
    for (let k = 0; k < w.length; k++) {
      const x = a + k;
      let v = 1;
      if (x < inEnd) v = Math.min(v, ramp((x - a + 0.5) / (inEnd - a)));
      if (x >= outStart) v = Math.min(v, ramp((outEnd - x - 0.5) / (outEnd - outStart)));
      w[k] = v;
    }
    return w;
  });
  const sum = new Float64Array(L);
  spans.forEach((s, i) => raw[i]!.forEach((v, k) => { sum[s.start * scale + k]! += v; }));
  spans.forEach((s, i) => raw[i]!.forEach((v, k, w) => { w[k] = v / sum[s.start * scale + k]!; }));
  return raw;
}

/** x[:, :, y0:y0+h, x0:x0+w] as a new tensor. */
function crop(x: FloatTensor, y0: number, x0: number, h: number, w: number): FloatTensor {
  const [B, C, H, W] = x.shape as [number, number, number, number];
  const out = floatTensor([B, C, h, w]);
  for (let bc = 0; bc < B * C; bc++) {
    for (let y = 0; y < h; y++) {
      const src = (bc * H + y0 + y) * W + x0;
      out.data.set(x.data.subarray(src, src + w), (bc * h + y) * w);
    }
  }
  return out;
}

/** acc[:, :, y0:, x0:] += tile * wy[y] * wx[x] (accumulated in float64). */
function accumulate(acc: Float64Array, shape: readonly number[], tile: FloatTensor, y0: number, x0: number, wy: Float64Array, wx: Float64Array): void {
  const [B, C, H, W] = shape as [number, number, number, number];
  const [tb, tc, h, w] = tile.shape as [number, number, number, number];
  if (tb !== B || tc !== C || h !== wy.length || w !== wx.length) {
    throw new Error(`tile output ${shapeStr(tile.shape)} does not match the expected [${B}, ${C}, ${wy.length}, ${wx.length}]`);
  }
  for (let bc = 0; bc < B * C; bc++) {
    for (let y = 0; y < h; y++) {
      const a = wy[y]!;
      const dst = (bc * H + y0 + y) * W + x0;
      const src = (bc * h + y) * w;
      for (let x = 0; x < w; x++) acc[dst + x]! += tile.data[src + x]! * a * wx[x]!;
    }
  }
}

function dims(t: FloatTensor, what: string): [number, number, number, number] {
  if (t.shape.length !== 4) throw new Error(`${what} must be (B, C, H, W), got ${shapeStr(t.shape)}`);
  return t.shape as [number, number, number, number];
}

/** Tile size and overlap in grid (latent) units. */
function gridTile(o: TileOptions, f: number): { tile: number; overlap: number } {
  if (!Number.isInteger(f) || f < 1) throw new Error(`down factor must be a positive integer, got ${f}`);
  const tile = Math.max(1, Math.floor(o.tileSize / f));
  return { tile, overlap: Math.min(Math.round(o.overlap / f), tile - 1) };
}

interface Plan {
  ys: Span[];
  xs: Span[];
}

function plan(h: number, w: number, o: TileOptions, f: number): Plan {
  const { tile, overlap } = gridTile(o, f);
  return { ys: planSpans(h, tile, overlap), xs: planSpans(w, tile, overlap) };
}

/**
 * Decodes `latent` (B, C, h, w) tile by tile into (B, 3, h*f, w*f); `decode` is the untiled
 * decoder (any latent size). When one tile covers the latent it is `decode(latent)` itself.
 */
export async function tiledDecode(
  decode: (latent: FloatTensor) => Promise<FloatTensor>,
  latent: FloatTensor,
  downFactor: number,
  opts: Partial<TileOptions> = {},
): Promise<FloatTensor> {
  const f = downFactor;
  const [, , h, w] = dims(latent, 'latent');
  const { ys, xs } = plan(h, w, resolveTileOptions(opts), f);
  if (ys.length === 1 && xs.length === 1) return decode(latent);
  const wys = spanWeights(ys, h, f);
  const wxs = spanWeights(xs, w, f);
  let acc: Float64Array | null = null;
  let shape: number[] = [];
  for (let i = 0; i < ys.length; i++) {
    for (let j = 0; j < xs.length; j++) {
      const sy = ys[i]!, sx = xs[j]!;
      const out = await decode(crop(latent, sy.start, sx.start, sy.size, sx.size));
      if (!acc) {
        shape = [latent.shape[0]!, out.shape[1]!, h * f, w * f];
        acc = new Float64Array(shape.reduce((a, b) => a * b, 1));
      }
      accumulate(acc, shape, out, sy.start * f, sx.start * f, wys[i]!, wxs[j]!);
    }
  }
  return floatTensor(shape, Float32Array.from(acc!));
}

export interface Posterior {
  mean: FloatTensor;
  logvar: FloatTensor;
}

/**
 * Encodes `image` (B, 3, H, W), H and W multiples of the down factor, tile by tile; the
 * posterior's mean and logvar are blended in latent space. When one tile covers the image it
 * is `encode(image)` itself.
 */
export async function tiledEncode(
  encode: (image: FloatTensor) => Promise<Posterior>,
  image: FloatTensor,
  downFactor: number,
  opts: Partial<TileOptions> = {},
): Promise<Posterior> {
  const f = downFactor;
  const [, , H, W] = dims(image, 'image');
  if (H % f !== 0 || W % f !== 0) throw new Error(`tiled encode needs a height and width that are multiples of ${f}, got ${H} x ${W}`);
  const h = H / f, w = W / f;
  const { ys, xs } = plan(h, w, resolveTileOptions(opts), f);
  if (ys.length === 1 && xs.length === 1) return encode(image);
  const wys = spanWeights(ys, h);
  const wxs = spanWeights(xs, w);
  let mean: Float64Array | null = null;
  let logvar: Float64Array | null = null;
  let shape: number[] = [];
  for (let i = 0; i < ys.length; i++) {
    for (let j = 0; j < xs.length; j++) {
      const sy = ys[i]!, sx = xs[j]!;
      const out = await encode(crop(image, sy.start * f, sx.start * f, sy.size * f, sx.size * f));
      if (!mean || !logvar) {
        shape = [image.shape[0]!, out.mean.shape[1]!, h, w];
        const n = shape.reduce((a, b) => a * b, 1);
        mean = new Float64Array(n);
        logvar = new Float64Array(n);
      }
      accumulate(mean, shape, out.mean, sy.start, sx.start, wys[i]!, wxs[j]!);
      accumulate(logvar, shape, out.logvar, sy.start, sx.start, wys[i]!, wxs[j]!);
    }
  }
  return { mean: floatTensor(shape, Float32Array.from(mean!)), logvar: floatTensor(shape, Float32Array.from(logvar!)) };
}
