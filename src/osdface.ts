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
import { decodeImage, sharpResizeRgb, type DecodedImage, type ImageInput, type RgbImage } from './image/io.js';
import { checkSeed, FaceRestorer, isPositiveInt, SEED_LIMIT, type OSDFaceRestoreOptions, type RestoredImage } from './restorer.js';

export type { OSDFaceRestoreOptions, RestoredImage } from './restorer.js';
import { loadModelDir } from './pipeline/model.js';
import { damagedDefault, isDefaultModelDir, resolveModelDir } from './pipeline/default_model.js';
import { ModelDirError, readManifest, type Manifest } from './pipeline/manifest.js';
import type { OSDFacePipeline } from './pipeline/pipeline.js';
import { resolveVaeTiling, type VaeTiling } from './pipeline/tiling.js';
import { DEFAULT_DETECTOR, loadDetector, parseDetectorName, type Detector, type DetectorName } from './face/detectors.js';
import { restorePhoto, type PhotoFace, type PhotoImage, type RestorePhotoOptions } from './photo/restore_photo.js';
import { checkFidelity } from './pipeline/fidelity.js';
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
  /** Squaring, batching, seeds, converting back: shared with the browser app (./restorer.ts). */
  private readonly restorer: FaceRestorer<OSDFaceInput>;

  private constructor(
    private readonly pipeline: OSDFacePipeline,
    /** The model directory's manifest.json: dtype, settings, configs, source files. */
    readonly manifest: Manifest,
    /** The model directory, resolved. */
    readonly dir: string,
    private readonly threads: number | undefined,
    vaeTiling: VaeTiling | undefined,
  ) {
    this.restorer = new FaceRestorer<OSDFaceInput>(pipeline, manifest, { decode, resize: sharpResizeRgb, resizeAlpha, randomSeed }, vaeTiling);
  }

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
    const run = this.restorer.restoreList(list ? (input as readonly OSDFaceInput[]) : [input as OSDFaceInput], opts);
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
    const base = latent === 'sample' ? (seed === undefined ? randomSeed() : checkSeed(seed, 'seed')) : undefined;
    const image = await decode(input);
    const restoreCrops = (crops: RgbImage[]): Promise<RgbImage[]> => this.restorer.restoreCrops(crops, latent, base, batch, fidelity);
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

function randomSeed(): number {
  return crypto.randomInt(0, SEED_LIMIT - 1);
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
