/**
 * The public API: load a converted model directory once, restore face images with it.
 *
 *   const model = await OSDFace.load('models/osdface', { threads: 4 });
 *   const out = await model.restore('face.png');            // RgbImage at the input's size
 *   const outs = await model.restore(['a.png', 'b.png']);   // one pipeline call per square size
 *   const photo = await model.restorePhoto('group.jpg');    // detect, align, restore, paste back
 *   await model.dispose();
 */
import crypto from 'node:crypto';
import path from 'node:path';
import sharp from 'sharp';
import { decodeImage, fromSquareTensor, toSquareTensor, type DecodedImage, type ImageInput, type RgbImage, type SquareCrop } from './image/io.js';
import { loadModelDir } from './pipeline/model.js';
import { damagedDefault, isDefaultModelDir, resolveModelDir } from './pipeline/default_model.js';
import { ModelDirError, readManifest, type Manifest } from './pipeline/manifest.js';
import type { OSDFacePipeline } from './pipeline/pipeline.js';
import { resolveVaeTiling, type VaeTiling } from './pipeline/tiling.js';
import { gaussianNoise } from './pipeline/random.js';
import { checkFidelity } from './pipeline/fidelity.js';
import { DEFAULT_DETECTOR, loadDetector, parseDetectorName, type Detector, type DetectorName } from './face/detectors.js';
import { restorePhoto, type PhotoFace, type PhotoImage, type RestorePhotoOptions } from './photo/restore_photo.js';
import { floatTensor, type FloatTensor } from './tensor.js';
import { DEVICES, DeviceError, deviceLoadError, executionProvidersFor, isDevice, type Device } from './graph/device.js';

export type ModelDtype = 'fp32' | 'int8';

export interface OSDFaceLoadOptions {
  /** ONNX Runtime intra-op threads; default: ONNX Runtime's choice (all cores). */
  threads?: number;
  /**
   * The weight type you expect. Must match the directory's `manifest.dtype` (the dtype it was
   * converted with); left out, whatever the directory holds is used.
   */
  dtype?: ModelDtype;
  /**
   * VAE tiling: `{ tileSize, threshold, independent, overlap }` (image pixels; defaults 512,
   * 1024 * 1024, false, the tiled layers' reach) or false. The VAE runs in tiles of `tileSize`
   * when an image it encodes or decodes has more than `threshold` pixels and does not fit in one
   * tile. Tiles are exact by default: the untiled output up to float rounding, with the large
   * feature maps in temporary files (TMPDIR), so memory stays at the tile's. `independent: true`:
   * no files, each tile reading `overlap` pixels around its core (by default as far as its layers
   * see: no seams), but above 512 x 512 pixels the GroupNorm statistics are estimated from sample
   * tiles (README "Tiled VAE", bench/RESULTS.md). The pipeline restores at the model's process
   * size (512 x 512 for the official weights), which the defaults never tile.
   */
  vaeTiling?: VaeTiling;
  /**
   * Load the UNet only while it runs, so its weights (3.4 GB in fp32) and the VAE decoder's
   * working memory are never resident together: lower peak memory for a reload of the UNet on
   * every restore call (bench/RESULTS.md). Default: true for fp32 models (peak 4.9 -> 4.2-4.55 GB
   * at 512 x 512, about 1 s more per call), false for int8 ones (2.0 GB peak either way).
   */
  lowMemory?: boolean;
  /**
   * Where the networks run: 'cpu' (default) or 'cuda' (an NVIDIA GPU, through onnxruntime-node's
   * CUDA execution provider; operators it lacks run on the CPU). 'cuda' throws a DeviceError that
   * says how to install the provider when this installation lacks it (osdface installs
   * onnxruntime-node without it), or what CUDA needs when it fails to start. On 'cuda', lowMemory
   * defaults to false. Face detection stays on the CPU.
   */
  device?: Device;
}

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

/**
 * Options of `restorePhoto`: which faces to restore, the output scale and background, and the
 * network settings for the faces. The aligned crops are always at the model's process size.
 */
export interface OSDFacePhotoOptions extends Omit<RestorePhotoOptions, 'faceSize'> {
  /** As in `restore`: 'mode' (default) or 'sample'. */
  latent?: 'mode' | 'sample';
  /**
   * Noise seed for `latent: 'sample'`: the k-th restored face (in detection order) uses seed + k.
   * Left out, a random seed is drawn (reported as the result's `seed`).
   */
  seed?: number;
  /** As in `restore`: fidelity to the input in [0, 1] (default 0, the model as trained). */
  fidelity?: number;
  /** Faces per network call (default 1; the pixels do not depend on it, the memory does). */
  batch?: number;
}

/** A restored photo: the image (input size x upscale, alpha kept), every face found and what was done with it. */
export interface RestoredPhoto {
  /** 8-bit RGB, with the input's alpha channel (upscaled with it) as `alpha`, not applied to `data`. */
  image: PhotoImage;
  /** Every face found, best detection score first, with its `status` ('restored', 'too-small', ...). */
  faces: PhotoFace[];
  /** Remarks for people: no face found, faces left as they are and why. */
  notices: string[];
  /** The base noise seed (sample path only). */
  seed?: number;
}

/** Anything `restore` reads: a file path, encoded bytes, raw pixels, or a (restored) RgbImage with `alpha`. */
export type OSDFaceInput = ImageInput | RestoredImage;

const SEED_LIMIT = 2 ** 32;

function isPositiveInt(v: unknown): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v > 0;
}

function checkSeed(v: unknown, what: string): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v >= SEED_LIMIT) {
    throw new RangeError(`OSDFace.restore: ${what} must be an integer from 0 to ${SEED_LIMIT - 1}, got ${String(v)}`);
  }
  return v;
}

/** The release folders a model was converted from, as recorded in its manifest (for error messages). */
function sourceDirs(m: Manifest): { sd: string; osdface: string } {
  const find = (suffix: string, up: number) => {
    const s = m.sources.find((f) => f.path.replaceAll('\\', '/').endsWith(suffix));
    if (!s) return null;
    let dir = s.path;
    for (let i = 0; i < up; i++) dir = path.dirname(dir);
    return dir;
  };
  return {
    sd: find('/unet/config.json', 2) ?? '<stable-diffusion-2-1-base>',
    osdface: find('/associate_2.ckpt', 1) ?? '<OSDFace weights folder>',
  };
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

/**
 * A loaded OSDFace model. `restore` restores aligned face crops; the network works on squares, so
 * a non-square image is padded to a square by repeating its edge pixels (centered), restored, and
 * cropped back to its own aspect ratio. `restorePhoto` restores every face of a whole photo.
 */
export class OSDFace {
  private disposed = false;
  private readonly inFlight = new Set<Promise<unknown>>();
  /** The face detectors restorePhoto loads on first use, by name (released by dispose). */
  private readonly detectorLoads = new Map<DetectorName, Promise<Detector>>();

  private constructor(
    private readonly pipeline: OSDFacePipeline,
    /** The model directory's manifest.json: dtype, settings, configs, source files. */
    readonly manifest: Manifest,
    /** The model directory, resolved. */
    readonly dir: string,
    private readonly threads: number | undefined,
    private readonly vaeTiling: VaeTiling | undefined,
  ) {}

  /**
   * Loads a model directory written by `osdface convert` (or `convertRelease`). Throws a
   * ModelDirError, saying how to convert the official weights, when `modelDir` is not one, and an
   * Error when `opts.dtype` differs from the dtype the directory holds.
   */
  static async load(modelDirOrOptions?: string | OSDFaceLoadOptions, options?: OSDFaceLoadOptions): Promise<OSDFace> {
    // OSDFace.load() and OSDFace.load({ threads }) load the packaged default model (osdface-small).
    const given = typeof modelDirOrOptions === 'object' && modelDirOrOptions !== null ? undefined : modelDirOrOptions;
    const opts = (typeof modelDirOrOptions === 'object' && modelDirOrOptions !== null ? modelDirOrOptions : options) ?? {};
    if (given !== undefined && (typeof given !== 'string' || given === '')) {
      throw new TypeError('OSDFace.load: modelDir must be the path of a converted model directory (see `npx osdface convert --help`), or left out for the packaged default model');
    }
    const modelDir = resolveModelDir(given);
    if (opts.threads !== undefined && !isPositiveInt(opts.threads)) {
      throw new RangeError(`OSDFace.load: threads must be a positive integer, got ${String(opts.threads)}`);
    }
    if (opts.dtype !== undefined && opts.dtype !== 'fp32' && opts.dtype !== 'int8') {
      throw new RangeError(`OSDFace.load: dtype must be 'fp32' or 'int8', got ${String(opts.dtype)}`);
    }
    if (opts.device !== undefined && !isDevice(opts.device)) {
      throw new RangeError(`OSDFace.load: device must be one of ${DEVICES.map((d) => `'${d}'`).join(', ')}, got ${String(opts.device)}`);
    }
    const device = opts.device ?? 'cpu';
    const dir = path.resolve(modelDir);
    const manifest = readManifest(dir);
    if (opts.dtype !== undefined && opts.dtype !== manifest.dtype) {
      const src = sourceDirs(manifest);
      const calibration = opts.dtype === 'int8' ? ' --calibration <folder of aligned face crops>' : '';
      throw new ModelDirError(
        dir,
        `this model directory holds ${manifest.dtype} weights, not ${opts.dtype}; load it with dtype '${manifest.dtype}' ` +
        `(or no dtype), or convert an ${opts.dtype} model into another directory with ` +
        `\`npx osdface convert --sd ${src.sd} --osdface ${src.osdface} --dtype ${opts.dtype}${calibration} -o <new model dir>\``,
      );
    }
    if (opts.vaeTiling !== undefined && opts.vaeTiling !== false) {
      try {
        resolveVaeTiling(opts.vaeTiling);
      } catch (e) {
        throw new RangeError(`OSDFace.load: vaeTiling: ${(e as Error).message}`);
      }
    }
    // On CUDA: its provider first, CPU for the rest; graphs optimized per session (the cached
    // optimized graphs are laid out for this CPU); the UNet kept loaded (no reload to the GPU per call).
    const executionProviders = executionProvidersFor(device);
    const onDevice = device === 'cpu' ? {} : { executionProviders, optimization: 'all' as const };
    const lowMemory = opts.lowMemory ?? (device === 'cuda' ? false : undefined);
    let pipeline: OSDFacePipeline;
    try {
      ({ pipeline } = await loadModelDir(dir, { ...(opts.threads !== undefined ? { threads: opts.threads } : {}), ...onDevice }, undefined, lowMemory !== undefined ? { lowMemory } : {}));
    } catch (e) {
      const err = deviceLoadError(device, e);
      if (err instanceof DeviceError) throw err;
      // A truncated or altered file of the packaged model: say how to repair the installation.
      throw isDefaultModelDir(dir) ? damagedDefault(dir, e) : e;
    }
    return new OSDFace(pipeline, manifest, dir, opts.threads, opts.vaeTiling);
  }

  /** Side of the square the network restores at (512 for the official weights). */
  get processSize(): number {
    return this.pipeline.settings.processSize;
  }

  /**
   * Restores one image (-> RestoredImage) or a list (-> RestoredImage[], same order). Images are
   * decoded to 8-bit RGB (EXIF orientation applied, grey expanded), edge-padded to a square,
   * restored at the model's process size, resized back with lanczos3 and cropped to the input's
   * aspect ratio: the output has the input's size, or `opts.size` as its longer side. Images
   * that are the same size once squared go through the network together in one batch, so a long
   * list of large images needs memory for all of them at once (split the list to bound it).
   * The alpha channel is not restored: it is returned as `alpha`, for the caller to re-attach.
   */
  restore(image: OSDFaceInput, opts?: OSDFaceRestoreOptions): Promise<RestoredImage>;
  restore(images: readonly OSDFaceInput[], opts?: OSDFaceRestoreOptions): Promise<RestoredImage[]>;
  restore(input: OSDFaceInput | readonly OSDFaceInput[], opts: OSDFaceRestoreOptions = {}): Promise<RestoredImage | RestoredImage[]> {
    if (this.disposed) {
      return Promise.reject(new Error(`OSDFace.restore: the model (${this.dir}) was disposed; load it again with OSDFace.load`));
    }
    const list = Array.isArray(input);
    const run = this.restoreList(list ? (input as readonly OSDFaceInput[]) : [input as OSDFaceInput], opts);
    this.inFlight.add(run);
    const done = () => this.inFlight.delete(run);
    run.then(done, done);
    return list ? run : run.then((r) => r[0]!);
  }

  /**
   * Restores the faces of a whole photo: detects them (RetinaFace by default, or `opts.detector`:
   * 'ssd' for face-api's SSD MobileNet V1, or a loaded detector; loaded on first use with the
   * model's threads and kept until dispose), aligns each to
   * the FFHQ 5-point template at the model's process size, restores the crops with this model
   * (as `restore` does) and pastes them back with soft masks into the photo, upscaled by
   * `opts.upscale` (1, 2 or 4; background 'lanczos', 'esrgan' or 'none'). Pixels outside every face mask are
   * the (upscaled) input's. The input's EXIF orientation is applied, grey is expanded to RGB, and
   * its alpha channel comes back as `image.alpha`. A photo without a face comes back unchanged
   * (or only upscaled) with a notice; faces with an eye distance under `minEyeDistance` (default
   * 10 px), or left out by `onlyCenterFace` / `maxFaces`, are kept as they are and reported.
   */
  restorePhoto(image: OSDFaceInput, opts: OSDFacePhotoOptions = {}): Promise<RestoredPhoto> {
    if (this.disposed) {
      return Promise.reject(new Error(`OSDFace.restorePhoto: the model (${this.dir}) was disposed; load it again with OSDFace.load`));
    }
    const run = this.photo(image, opts);
    this.inFlight.add(run);
    const done = () => this.inFlight.delete(run);
    run.then(done, done);
    return run;
  }

  /** Releases the ONNX Runtime sessions (after any restore still running); restore fails afterwards. */
  async dispose(): Promise<void> {
    if (this.disposed) return;
    this.disposed = true;
    await Promise.allSettled([...this.inFlight]);
    const detectors = [...this.detectorLoads.values()];
    this.detectorLoads.clear();
    await Promise.all([
      this.pipeline.dispose(),
      ...detectors.map((p) => p.then((d) => d.dispose(), () => undefined)),
    ]);
  }

  private async photo(input: OSDFaceInput, opts: OSDFacePhotoOptions): Promise<RestoredPhoto> {
    const { latent = 'mode', seed, batch = 1, fidelity = 0, ...photoOpts } = opts;
    checkFidelity(fidelity, 'OSDFace.restorePhoto');
    if (latent !== 'mode' && latent !== 'sample') throw new RangeError(`OSDFace.restorePhoto: latent must be 'mode' or 'sample', got ${String(latent)}`);
    if (!isPositiveInt(batch)) throw new RangeError(`OSDFace.restorePhoto: batch must be a positive integer, got ${String(batch)}`);
    if ('faceSize' in opts) throw new RangeError("OSDFace.restorePhoto: faceSize is the model's process size and cannot be set");
    if (latent === 'mode' && seed !== undefined) throw new RangeError("OSDFace.restorePhoto: seed is only used with latent: 'sample' (the 'mode' path has no noise)");
    const base = latent === 'sample' ? (seed === undefined ? crypto.randomInt(0, SEED_LIMIT - 1) : checkSeed(seed, 'seed')) : undefined;
    const image = await decode(input);
    const restoreCrops = async (crops: RgbImage[]): Promise<RgbImage[]> => {
      const out: RgbImage[] = [];
      for (let i = 0; i < crops.length; i += batch) {
        const chunk = crops.slice(i, i + batch);
        const restored = await this.restoreList(chunk, base === undefined
          ? { latent, fidelity }
          : { latent, fidelity, seed: chunk.map((_, k) => (base + i + k) % SEED_LIMIT) });
        out.push(...restored.map(({ data, width, height, channels }) => ({ data, width, height, channels })));
      }
      return out;
    };
    const named = photoOpts.detector === undefined || typeof photoOpts.detector === 'string'
      ? parseDetectorName(photoOpts.detector ?? DEFAULT_DETECTOR, 'OSDFace.restorePhoto: detector')
      : undefined;
    const detector = named === undefined ? photoOpts.detector : (photoOpts.faces ? undefined : await this.detector(named));
    const threads = photoOpts.threads ?? this.threads;
    const res = await restorePhoto(image, restoreCrops, { ...photoOpts, faceSize: this.processSize, ...(detector ? { detector } : {}), ...(threads !== undefined ? { threads } : {}) });
    return base === undefined ? res : { ...res, seed: base };
  }

  private detector(name: DetectorName): Promise<Detector> {
    let load = this.detectorLoads.get(name);
    if (!load) {
      load = loadDetector(name, this.threads !== undefined ? { threads: this.threads } : {});
      this.detectorLoads.set(name, load);
      // a failed load is not cached: the next call tries again
      load.catch(() => { this.detectorLoads.delete(name); });
    }
    return load;
  }

  private async restoreList(inputs: readonly OSDFaceInput[], opts: OSDFaceRestoreOptions): Promise<RestoredImage[]> {
    const latent = opts.latent ?? 'mode';
    if (latent !== 'mode' && latent !== 'sample') throw new RangeError(`OSDFace.restore: latent must be 'mode' or 'sample', got ${String(latent)}`);
    if (opts.size !== undefined && !isPositiveInt(opts.size)) throw new RangeError(`OSDFace.restore: size must be a positive integer, got ${String(opts.size)}`);
    const fidelity = checkFidelity(opts.fidelity ?? 0, 'OSDFace.restore');
    const seeds = this.seeds(inputs.length, latent, opts.seed);

    // Decode and square every image first, so a bad input fails the call before any compute.
    const items: Item[] = [];
    for (let index = 0; index < inputs.length; index++) {
      const img = await decode(inputs[index]!);
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
        const rgb: RestoredImage = await fromSquareTensor(one, it.crop, opts.size !== undefined ? { size: opts.size } : {});
        if (it.alpha) rgb.alpha = await resizeAlpha(it.alpha, it.width, it.height, rgb.width, rgb.height);
        if (it.seed !== undefined) rgb.seed = it.seed;
        results[it.index] = rgb;
      }
      done += group.length;
      opts.onProgress?.(done, inputs.length);
    }
    return results;
  }

  private seeds(n: number, latent: 'mode' | 'sample', seed: OSDFaceRestoreOptions['seed']): number[] | undefined {
    if (latent === 'mode') {
      if (seed !== undefined) throw new RangeError("OSDFace.restore: seed is only used with latent: 'sample' (the 'mode' path has no noise)");
      return undefined;
    }
    if (Array.isArray(seed)) {
      if (seed.length !== n) throw new RangeError(`OSDFace.restore: ${seed.length} seeds for ${n} images; give one seed per image, or a single number`);
      return seed.map((s, i) => checkSeed(s, `seed[${i}]`));
    }
    const base = seed === undefined ? crypto.randomInt(0, SEED_LIMIT - 1) : checkSeed(seed, 'seed');
    return Array.from({ length: n }, (_, i) => (base + i) % SEED_LIMIT);
  }

  /** (B, C, h, w) posterior noise: sample i is gaussianNoise(C*h*w, seeds[i]), as a batch-1 call with that seed draws it. */
  private noise(seeds: number[]): FloatTensor {
    const { processSize, vaeDownFactor } = this.manifest.settings;
    const vae = this.manifest.configs.vae as { latent_channels?: number } | null;
    const c = vae?.latent_channels ?? 4;
    const h = processSize / vaeDownFactor;
    const per = c * h * h;
    const eps = floatTensor([seeds.length, c, h, h]);
    seeds.forEach((s, i) => eps.data.set(gaussianNoise(per, s), i * per));
    return eps;
  }
}

/** decodeImage, keeping the `alpha` of an RgbImage-with-alpha object (such as a DecodedImage or RestoredImage). */
async function decode(input: OSDFaceInput): Promise<DecodedImage> {
  const img = await decodeImage(input as ImageInput);
  if (img.alpha === undefined && input !== null && typeof input === 'object' && !(input instanceof Uint8Array)) {
    const alpha = (input as { alpha?: unknown }).alpha;
    if (alpha instanceof Uint8Array && alpha.length === img.width * img.height) img.alpha = Uint8Array.from(alpha);
  }
  return img;
}

async function resizeAlpha(alpha: Uint8Array, w: number, h: number, outW: number, outH: number): Promise<Uint8Array> {
  if (w === outW && h === outH) return alpha;
  const buf = await sharp(alpha, { raw: { width: w, height: h, channels: 1 } })
    .resize(outW, outH, { kernel: 'lanczos3', fit: 'fill' })
    .extractChannel(0)
    .raw()
    .toBuffer();
  return new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
}
