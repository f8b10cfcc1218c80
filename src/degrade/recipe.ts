/**
 * The synthetic degradation of GFPGAN / CodeFormer training, with which CelebA-Test was built
 * (GFPGAN, Wang et al. CVPR 2021, eq. 1; CodeFormer, Zhou et al. NeurIPS 2022, sec. 4.1):
 *
 *     y = [ (x ⊛ k_σ) ↓_r + n_δ ]_JPEG_q  ↑_r
 *
 * as TencentARC/GFPGAN implements it in gfpgan/data/ffhq_degradation_dataset.py (@7552a77) with
 * BasicSR's basicsr/data/degradations.py, in this order, on float images in [0, 1]:
 *
 * 1. blur: cv2.filter2D with a 41x41 Gaussian kernel, isotropic or anisotropic with probability
 *    0.5 each; σx (and σy) uniform in [0.1, 10], rotation uniform in [-π, π] for anisotropic ones;
 * 2. downsample: r uniform in [0.8, 8], cv2.resize to (floor(w / r), floor(h / r)), bilinear;
 * 3. Gaussian noise: σ uniform in [0, 20] (on the 0-255 scale), per value, clipped to [0, 1];
 * 4. JPEG: quality uniform in [60, 100], truncated to an integer, through a real codec;
 * 5. resize back to (w, h), bilinear; finally round and clip to 8 bits.
 *
 * The ranges are options/train_gfpgan_v1.yml's (blur_kernel_size 41, kernel_list [iso, aniso],
 * kernel_prob [0.5, 0.5], blur_sigma [0.1, 10], downsample_range [0.8, 8], noise_range [0, 20],
 * jpeg_range [60, 100]); GFPGAN's training-only colour jitter and greyscale steps are not part of
 * the test-set recipe and are left out.
 *
 * Every random choice comes from one seeded generator (./random.ts), drawn in this order: kernel
 * type, σx, [σy, rotation], r, [interpolation, when the preset lists several], [noise type, when
 * Poisson is possible], noise σ or Poisson scale, [grey noise, when possible], the noise samples
 * (HWC order), JPEG quality. Same seed and key, same bytes.
 */

import type { RgbImage } from '../image/io.js';
import {
  addGaussianNoise, addPoissonNoise, filter2D, type FloatImage, INTERPOLATIONS, type Interpolation, jpegRoundTrip, resize, toBytes, toFloat,
} from './ops.js';
import { Random } from './random.js';

export type KernelType = 'iso' | 'aniso';
export type Range = readonly [number, number];

export interface RecipeConfig {
  /** Odd kernel side (41). */
  kernelSize: number;
  kernelTypes: readonly KernelType[];
  /** Probabilities of kernelTypes (same length). */
  kernelProb: readonly number[];
  /** Range of σx and σy, in pixels. */
  blurSigma: Range;
  /** Range of the anisotropic kernel's rotation, radians. */
  rotation: Range;
  /** Range of the downsampling factor r (the small image is floor(w / r) x floor(h / r)). */
  downsample: Range;
  /** Interpolations for the downsampling, one drawn uniformly when there are several. */
  interpolations: readonly Interpolation[];
  /** Noise; null for none. */
  noise: {
    /** Gaussian σ range on the 0-255 scale. */
    gaussianSigma: Range;
    /** Probability of one noise sample per pixel for all three channels. */
    grayProb: number;
    /** Probability of Poisson noise instead of Gaussian. */
    poissonProb: number;
    /** Poisson noise scale range. */
    poissonScale: Range;
  } | null;
  /** JPEG quality range (a uniform draw, truncated to an integer); null for none. */
  jpeg: Range | null;
  /** Interpolation of the final resize back to the input size. */
  resizeBack: Interpolation;
}

export type PresetName = 'celeba-test' | 'mild' | 'severe';
export const PRESET_NAMES: readonly PresetName[] = ['celeba-test', 'mild', 'severe'];

export const PRESETS: Readonly<Record<PresetName, RecipeConfig>> = {
  /** GFPGAN's options/train_gfpgan_v1.yml, the recipe of CelebA-Test. */
  'celeba-test': {
    kernelSize: 41,
    kernelTypes: ['iso', 'aniso'],
    kernelProb: [0.5, 0.5],
    blurSigma: [0.1, 10],
    rotation: [-Math.PI, Math.PI],
    downsample: [0.8, 8],
    interpolations: ['bilinear'],
    noise: { gaussianSigma: [0, 20], grayProb: 0, poissonProb: 0, poissonScale: [0, 0] },
    jpeg: [60, 100],
    resizeBack: 'bilinear',
  },
  /** Light damage: a little blur, up to 4x, weak noise, good JPEG. */
  mild: {
    kernelSize: 41,
    kernelTypes: ['iso', 'aniso'],
    kernelProb: [0.5, 0.5],
    blurSigma: [0.1, 3],
    rotation: [-Math.PI, Math.PI],
    downsample: [1, 4],
    interpolations: INTERPOLATIONS,
    noise: { gaussianSigma: [0, 10], grayProb: 0, poissonProb: 0, poissonScale: [0, 0] },
    jpeg: [80, 100],
    resizeBack: 'bilinear',
  },
  /** Heavy damage: strong blur, 4-8x, strong Gaussian or Poisson noise, poor JPEG. */
  severe: {
    kernelSize: 41,
    kernelTypes: ['iso', 'aniso'],
    kernelProb: [0.5, 0.5],
    blurSigma: [2, 10],
    rotation: [-Math.PI, Math.PI],
    downsample: [4, 8],
    interpolations: INTERPOLATIONS,
    noise: { gaussianSigma: [10, 20], grayProb: 0, poissonProb: 0.3, poissonScale: [0.5, 2] },
    jpeg: [60, 75],
    resizeBack: 'bilinear',
  },
};

/** What was done to one image: every drawn value, enough to understand (not to replay) it. */
export interface DegradationRecord {
  /** The generator's key: `<seed>:<name>`. */
  key: string;
  input: { width: number; height: number };
  blur: { kernel: KernelType; kernelSize: number; sigmaX: number; sigmaY: number; rotation: number };
  downsample: { scale: number; interpolation: Interpolation; width: number; height: number };
  noise: { type: 'gaussian'; sigma: number; gray: boolean } | { type: 'poisson'; scale: number } | null;
  jpeg: { quality: number } | null;
  /** null when the small image is kept (resizeBack 'none'). */
  resizeBack: { interpolation: Interpolation; width: number; height: number } | null;
  output: { width: number; height: number };
}

export interface DegradeOptions {
  /** Generator key; the CLI uses `<seed>:<file base name>`. */
  key: string;
  /** Overrides the config's final interpolation; 'none' keeps the small image. */
  resizeBack?: Interpolation | 'none';
  /** The blur's filter2D; the same result computed faster (e.g. OnnxFilter2D.apply for training). */
  filter2D?: (img: FloatImage, kernel: Float64Array, ksize: number) => FloatImage | Promise<FloatImage>;
}

/**
 * The bivariate Gaussian kernel of BasicSR's bivariate_Gaussian: side `size` (odd), grid
 * -(size-1)/2 .. (size-1)/2 with x along columns, Σ = R diag(σx², σy²) Rᵀ with R the rotation by
 * `theta`, k(x, y) = exp(-½ [x y] Σ⁻¹ [x y]ᵀ), normalised to sum 1. Row-major, float64.
 */
export function gaussianKernel(size: number, sigmaX: number, sigmaY: number, theta: number): Float64Array {
  if (!Number.isInteger(size) || size < 1 || size % 2 !== 1) throw new Error(`gaussianKernel: size must be odd, got ${size}`);
  if (!(sigmaX > 0) || !(sigmaY > 0)) throw new Error(`gaussianKernel: sigmas must be > 0, got ${sigmaX}, ${sigmaY}`);
  const c = Math.cos(theta);
  const s = Math.sin(theta);
  const sx2 = sigmaX * sigmaX;
  const sy2 = sigmaY * sigmaY;
  // Σ = [[a, b], [b, d]]
  const a = c * c * sx2 + s * s * sy2;
  const b = c * s * (sx2 - sy2);
  const d = s * s * sx2 + c * c * sy2;
  const det = a * d - b * b;
  const ia = d / det;
  const ib = -b / det;
  const id = a / det;
  const half = (size - 1) / 2;
  const k = new Float64Array(size * size);
  let sum = 0;
  for (let i = 0; i < size; i++) {
    const y = i - half;
    for (let j = 0; j < size; j++) {
      const x = j - half;
      const v = Math.exp(-0.5 * (ia * x * x + 2 * ib * x * y + id * y * y));
      k[i * size + j] = v;
      sum += v;
    }
  }
  for (let i = 0; i < k.length; i++) k[i]! /= sum;
  return k;
}

/** Throws when `config` cannot be used (inverted ranges, bad probabilities, even kernel, ...). */
export function checkConfig(config: RecipeConfig): void {
  const bad = (msg: string): never => { throw new Error(`degradation config: ${msg}`); };
  const range = (name: string, r: Range, lo: number, hi = Infinity) => {
    if (!Array.isArray(r) || r.length !== 2 || !(r[0] <= r[1]) || !(r[0] >= lo) || !(r[1] <= hi)) bad(`${name} must be [lo, hi] with ${lo} <= lo <= hi <= ${hi}, got ${JSON.stringify(r)}`);
  };
  if (!Number.isInteger(config.kernelSize) || config.kernelSize < 1 || config.kernelSize % 2 !== 1) bad(`kernelSize must be odd, got ${config.kernelSize}`);
  if (config.kernelTypes.length === 0 || config.kernelTypes.length !== config.kernelProb.length) bad('kernelTypes and kernelProb must be non-empty and of the same length');
  if (config.kernelProb.some((p) => !(p >= 0)) || !(config.kernelProb.reduce((x, y) => x + y, 0) > 0)) bad('kernelProb must be >= 0 with a positive sum');
  range('blurSigma', config.blurSigma, Number.MIN_VALUE);
  range('rotation', config.rotation, -Infinity);
  range('downsample', config.downsample, Number.MIN_VALUE);
  if (config.interpolations.length === 0 || config.interpolations.some((m) => !INTERPOLATIONS.includes(m))) bad(`interpolations must be some of ${INTERPOLATIONS.join(', ')}`);
  if (!INTERPOLATIONS.includes(config.resizeBack)) bad(`resizeBack must be one of ${INTERPOLATIONS.join(', ')}`);
  if (config.noise) {
    range('noise.gaussianSigma', config.noise.gaussianSigma, 0);
    range('noise.poissonScale', config.noise.poissonScale, 0);
    for (const p of ['grayProb', 'poissonProb'] as const) {
      if (!(config.noise[p] >= 0 && config.noise[p] <= 1)) bad(`noise.${p} must be in [0, 1]`);
    }
  }
  if (config.jpeg) range('jpeg', config.jpeg, 1, 100);
}

/**
 * Degrades an 8-bit RGB image with `config` (a preset or your own), drawing every random value
 * from a generator keyed by `opts.key`. Returns the 8-bit result and the record of what was drawn.
 */
export async function degrade(img: RgbImage, config: RecipeConfig, opts: DegradeOptions): Promise<{ image: RgbImage; record: DegradationRecord }> {
  checkConfig(config);
  const rng = new Random(opts.key);
  const { width: w, height: h } = img;

  // 1. blur
  const kernel = rng.choice(config.kernelTypes, config.kernelProb);
  const sigmaX = rng.uniform(config.blurSigma[0], config.blurSigma[1]);
  let sigmaY = sigmaX;
  let rotation = 0;
  if (kernel === 'aniso') {
    sigmaY = rng.uniform(config.blurSigma[0], config.blurSigma[1]);
    rotation = rng.uniform(config.rotation[0], config.rotation[1]);
  }
  let x: FloatImage = await (opts.filter2D ?? filter2D)(toFloat(img), gaussianKernel(config.kernelSize, sigmaX, sigmaY, rotation), config.kernelSize);

  // 2. downsample
  const scale = rng.uniform(config.downsample[0], config.downsample[1]);
  const interpolation = config.interpolations.length > 1 ? rng.choice(config.interpolations) : config.interpolations[0]!;
  const sw = Math.max(1, Math.floor(w / scale));
  const sh = Math.max(1, Math.floor(h / scale));
  x = resize(x, sw, sh, interpolation);

  // 3. noise
  let noise: DegradationRecord['noise'] = null;
  if (config.noise) {
    const n = config.noise;
    const poisson = n.poissonProb > 0 && rng.random() < n.poissonProb;
    if (poisson) {
      const s = rng.uniform(n.poissonScale[0], n.poissonScale[1]);
      x = addPoissonNoise(x, s, rng);
      noise = { type: 'poisson', scale: s };
    } else {
      const sigma = rng.uniform(n.gaussianSigma[0], n.gaussianSigma[1]);
      const gray = n.grayProb > 0 && rng.random() < n.grayProb;
      x = addGaussianNoise(x, sigma, rng, gray);
      noise = { type: 'gaussian', sigma, gray };
    }
  }

  // 4. JPEG
  let jpeg: DegradationRecord['jpeg'] = null;
  if (config.jpeg) {
    const quality = Math.trunc(rng.uniform(config.jpeg[0], config.jpeg[1]));
    x = await jpegRoundTrip(x, quality);
    jpeg = { quality };
  }

  // 5. back to the input size
  const back = opts.resizeBack ?? config.resizeBack;
  let resizeBack: DegradationRecord['resizeBack'] = null;
  if (back !== 'none') {
    x = resize(x, w, h, back);
    resizeBack = { interpolation: back, width: w, height: h };
  }
  const image = toBytes(x);
  return {
    image,
    record: {
      key: opts.key,
      input: { width: w, height: h },
      blur: { kernel, kernelSize: config.kernelSize, sigmaX, sigmaY, rotation },
      downsample: { scale, interpolation, width: sw, height: sh },
      noise,
      jpeg,
      resizeBack,
      output: { width: image.width, height: image.height },
    },
  };
}
