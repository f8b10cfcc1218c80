/**
 * Restoring face images with a loaded pipeline, with no I/O: squaring, grouping same-size images
 * into one network call, seeds and posterior noise, converting back to pixels. The public API
 * (./osdface.ts) runs it in Node with sharp's decoding and resizing; the browser app runs the same
 * class with the canvas's decoding and ./image/resize.ts.
 */
import { fromSquareTensor, toSquareTensor, type DecodedImage, type ResizeRgb, type RgbImage, type SquareCrop } from './image/pixels.js';
import type { Manifest } from './pipeline/manifest_core.js';
import type { OSDFacePipeline } from './pipeline/pipeline.js';
import type { VaeTiling } from './pipeline/tiling.js';
import { gaussianNoise } from './pipeline/random.js';
import { checkFidelity } from './pipeline/fidelity.js';
import { floatTensor, type FloatTensor } from './tensor.js';

export interface OSDFaceRestoreOptions {
  /**
   * 'mode' (default): the VAE posterior mean, deterministic. 'sample': mean + std * noise, as the
   * reference `latent_dist.sample()`; the noise comes from `seed`.
   */
  latent?: 'mode' | 'sample';
  /**
   * Noise seed for `latent: 'sample'` (an integer in [0, 2^32)). For a list of images, image i
   * uses `seed + i` (mod 2^32), so `restore([a, b], { seed })` gives the same pixels as
   * `restore(a, { seed })` and `restore(b, { seed: seed + 1 })`; an array gives each image its own
   * seed. Left out, a random seed is drawn (reported in the result's `seed`).
   */
  seed?: number | readonly number[];
  /**
   * Fidelity to the input, in [0, 1]: 0 (default) is the model as trained, 1 stays closest to the
   * input (it returns the input). See src/pipeline/fidelity.ts for how it works on the network.
   */
  fidelity?: number;
  /** Longer side of the output in pixels; default: the input's own size. */
  size?: number;
  /** Called after each group of same-size images: images done so far, images in the call. */
  onProgress?: (done: number, total: number) => void;
}

/** A restored image: 8-bit RGB (HWC), plus the input's alpha channel resized to match, if it had one. */
export interface RestoredImage extends RgbImage {
  /** width*height alpha values, when the input had an alpha channel (not applied to `data`). */
  alpha?: Uint8Array;
  /** The noise seed this image used (sample path only). */
  seed?: number;
}

/** The I/O a FaceRestorer leaves to its host. */
export interface RestorerIo<I> {
  /** An input (a path, bytes, pixels...) to 8-bit RGB with its alpha. */
  decode(input: I | RgbImage): Promise<DecodedImage>;
  /** Resizes a restored square to the output size (lanczos3). */
  resize: ResizeRgb;
  /** Resizes an alpha channel (w x h -> outW x outH). */
  resizeAlpha(alpha: Uint8Array, w: number, h: number, outW: number, outH: number): Promise<Uint8Array>;
  /** A random seed in [0, 2^32 - 1). */
  randomSeed(): number;
}

export const SEED_LIMIT = 2 ** 32;

export function isPositiveInt(v: unknown): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v > 0;
}

export function checkSeed(v: unknown, what: string): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v >= SEED_LIMIT) {
    throw new RangeError(`OSDFace.restore: ${what} must be an integer from 0 to ${SEED_LIMIT - 1}, got ${String(v)}`);
  }
  return v;
}

interface Item {
  /** Index in the caller's list. */
  index: number;
  tensor: FloatTensor;
  crop: SquareCrop;
  width: number;
  height: number;
  alpha?: Uint8Array;
  seed?: number;
}

/** Restores aligned face crops with a loaded pipeline (see the file's comment). */
export class FaceRestorer<I> {
  constructor(
    private readonly pipeline: OSDFacePipeline,
    private readonly manifest: Pick<Manifest, 'settings' | 'configs'>,
    private readonly io: RestorerIo<I>,
    private readonly vaeTiling?: VaeTiling,
  ) {}

  async restoreList(inputs: readonly (I | RgbImage)[], opts: OSDFaceRestoreOptions): Promise<RestoredImage[]> {
    const latent = opts.latent ?? 'mode';
    if (latent !== 'mode' && latent !== 'sample') throw new RangeError(`OSDFace.restore: latent must be 'mode' or 'sample', got ${String(latent)}`);
    if (opts.size !== undefined && !isPositiveInt(opts.size)) throw new RangeError(`OSDFace.restore: size must be a positive integer, got ${String(opts.size)}`);
    const fidelity = checkFidelity(opts.fidelity ?? 0, 'OSDFace.restore');
    const seeds = this.seeds(inputs.length, latent, opts.seed);

    // Decode and square every image first, so a bad input fails the call before any compute.
    const items: Item[] = [];
    for (let index = 0; index < inputs.length; index++) {
      const img = await this.io.decode(inputs[index]!);
      const { tensor, crop } = toSquareTensor(img);
      items.push({ index, tensor, crop, width: img.width, height: img.height, alpha: img.alpha, seed: seeds?.[index] });
    }
    const groups = new Map<number, Item[]>();
    for (const it of items) {
      const g = groups.get(it.crop.size);
      if (g) g.push(it);
      else groups.set(it.crop.size, [it]);
    }

    const results: RestoredImage[] = new Array(inputs.length);
    let done = 0;
    for (const [side, group] of groups) {
      const plane = 3 * side * side;
      const lq = floatTensor([group.length, 3, side, side]);
      group.forEach((it, i) => lq.data.set(it.tensor.data, i * plane));
      const eps = latent === 'sample' ? this.noise(group.map((it) => it.seed!)) : undefined;
      const { out } = await this.pipeline.restore(lq, { latent, ...(eps ? { eps } : {}), vaeTiling: this.vaeTiling, fidelity });
      const p = out.shape[2]!;
      const outPlane = 3 * p * p;
      for (let i = 0; i < group.length; i++) {
        const it = group[i]!;
        const one = floatTensor([1, 3, p, p], out.data.slice(i * outPlane, (i + 1) * outPlane));
        const rgb: RestoredImage = await fromSquareTensor(one, it.crop, { resize: this.io.resize, ...(opts.size !== undefined ? { size: opts.size } : {}) });
        if (it.alpha) rgb.alpha = await this.io.resizeAlpha(it.alpha, it.width, it.height, rgb.width, rgb.height);
        if (it.seed !== undefined) rgb.seed = it.seed;
        results[it.index] = rgb;
      }
      done += group.length;
      opts.onProgress?.(done, inputs.length);
    }
    return results;
  }

  seeds(n: number, latent: 'mode' | 'sample', seed: OSDFaceRestoreOptions['seed']): number[] | undefined {
    if (latent === 'mode') {
      if (seed !== undefined) throw new RangeError("OSDFace.restore: seed is only used with latent: 'sample' (the 'mode' path has no noise)");
      return undefined;
    }
    if (Array.isArray(seed)) {
      if (seed.length !== n) throw new RangeError(`OSDFace.restore: ${seed.length} seeds for ${n} images; give one seed per image, or a single number`);
      return seed.map((s, i) => checkSeed(s, `seed[${i}]`));
    }
    const base = seed === undefined ? this.io.randomSeed() : checkSeed(seed, 'seed');
    return Array.from({ length: n }, (_, i) => (base + i) % SEED_LIMIT);
  }

  /** (B, C, h, w) posterior noise: sample i is gaussianNoise(C*h*w, seeds[i]), as a batch-1 call with that seed draws it. */
  noise(seeds: number[]): FloatTensor {
    const { processSize, vaeDownFactor } = this.manifest.settings;
    const vae = this.manifest.configs.vae as { latent_channels?: number } | null;
    const c = vae?.latent_channels ?? 4;
    const h = processSize / vaeDownFactor;
    const per = c * h * h;
    const eps = floatTensor([seeds.length, c, h, h]);
    seeds.forEach((s, i) => eps.data.set(gaussianNoise(per, s), i * per));
    return eps;
  }

  /**
   * Restores a photo's aligned crops `batch` at a time (the pixels do not depend on it): crop k
   * uses seed `base + k` on the sample path. What restorePhoto's RestoreCrops calls.
   */
  async restoreCrops(crops: RgbImage[], latent: 'mode' | 'sample', base: number | undefined, batch: number, fidelity = 0): Promise<RgbImage[]> {
    const out: RgbImage[] = [];
    for (let i = 0; i < crops.length; i += batch) {
      const chunk = crops.slice(i, i + batch);
      const restored = await this.restoreList(chunk, base === undefined
        ? { latent, fidelity }
        : { latent, fidelity, seed: chunk.map((_, k) => (base + i + k) % SEED_LIMIT) });
      out.push(...restored.map(({ data, width, height, channels }) => ({ data, width, height, channels })));
    }
    return out;
  }
}
