/**
 * FID (Heusel et al. 2017) of a set of restored images against a reference: the Fréchet distance
 * (./frechet.ts) between Gaussians fitted to the 2048-d Inception features (./fid_inception.ts) of
 * the two sets. It is a number for a whole set, never per image.
 *
 * The reference is either a folder of images (their features are computed the same way) or a
 * statistics file:
 * - pytorch-fid's `--save-stats` output, an .npz with `mu` (2048) and `sigma` (2048x2048);
 * - BasicSR's FID statistics (e.g. inception_FFHQ_512-f7b384ab.pth, made by
 *   scripts/metrics/calculate_fid_stats_from_datasets.py): a torch.save dict with numpy arrays
 *   `mean` and `cov` (read by the restricted unpickler; numpy arrays are rebuilt as data only).
 *
 * Images are the 8-bit values divided by 255; pytorch-fid and BasicSR both feed them to the network
 * at their own size and let it resize to 299 (BasicSR normalises to [-1, 1] first and skips the
 * network's own scaling, which is the same arithmetic).
 */
import { emitOnnx } from '../graph/emit.js';
import { OnnxSession } from '../graph/runtime.js';
import type { RgbImage } from '../image/io.js';
import { floatTensor } from '../tensor.js';
import { readNpz } from './npz.js';
import { loadTorchCheckpoint } from '../weights/torch.js';
import { WeightFileError, listKeys } from '../weights/errors.js';
import { FID_FEATURES, FidInception, fidInceptionGraph } from './fid_inception.js';
import { frechetDistance, gaussianStats, type GaussianStats } from './frechet.js';
import { toUnitRange } from './dists_metric.js';
import { METRIC_REQUIREMENTS, requireWeightFiles } from './unavailable.js';
import { mapWeightSource, pickParameters, readTensorFiles } from './weight_files.js';

export interface FidOptions {
  /** pytorch-fid's Inception weights, pt_inception-2015-12-05-6726825d.pth. */
  inception?: string;
  threads?: number;
}

/** Computes the 2048-d FID Inception features of images. */
export class FidFeatureExtractor {
  private constructor(private readonly session: OnnxSession) {}

  static async load(opts: FidOptions): Promise<FidFeatureExtractor> {
    const [file] = requireWeightFiles('fid', [opts.inception], 'the Inception weights (--fid-inception)');
    return FidFeatureExtractor.fromWeights(loadFidInceptionWeights(file!), opts.threads);
  }

  /** From parameters keyed like FidInception.namedParameters() (tests use synthetic ones). */
  static async fromWeights(weights: ReadonlyMap<string, Float32Array>, threads?: number): Promise<FidFeatureExtractor> {
    const onnx = emitOnnx(fidInceptionGraph(), { weights: mapWeightSource(weights), producerVersion: 'osdface-fid' });
    return new FidFeatureExtractor(await OnnxSession.create(onnx, { threads }));
  }

  async features(img: RgbImage): Promise<Float32Array> {
    const out = await this.session.run({ image: floatTensor([1, 3, img.height, img.width], toUnitRange(img)) });
    return out.features!.data as Float32Array;
  }

  async dispose(): Promise<void> {
    await this.session.release();
  }
}

/** The Inception parameters from pt_inception-2015-12-05-6726825d.pth (fc and num_batches_tracked are not used). */
export function loadFidInceptionWeights(file: string): Map<string, Float32Array> {
  const expected = new FidInception().namedParameters();
  const ours = new Set(expected.map(([k]) => k));
  return pickParameters([file], readTensorFiles([file]), expected, (k) => (ours.has(k) ? k : undefined), `FID: ${METRIC_REQUIREMENTS.fid}`);
}

/** Mean and covariance of feature vectors, in float64 (numpy.cov, N - 1). */
export function featureStats(features: readonly Float32Array[]): GaussianStats {
  if (features.length < 2) throw new Error(`fid needs at least 2 images per set, got ${features.length}`);
  return gaussianStats(features, features[0]!.length);
}

/** FID between two sets of statistics. */
export function fidFromStats(a: GaussianStats, b: GaussianStats): number {
  return frechetDistance(a, b);
}

/**
 * Reference statistics from a file: .npz with mu/sigma (pytorch-fid), or a torch.save file (zip or
 * legacy) with mean/cov (BasicSR) or mu/sigma. `dim`: the feature dimension they must have
 * (FID_FEATURES for the Inception pool features).
 */
export function loadFidStats(file: string, dim = FID_FEATURES): GaussianStats {
  let arrays: Map<string, { shape: number[]; data: ArrayLike<number> }>;
  if (file.endsWith('.npz')) {
    arrays = new Map([...readNpz(file)].map(([k, v]) => [k.replace(/\.npy$/, ''), v]));
  } else {
    arrays = new Map([...loadTorchCheckpoint(file)].map(([k, t]) => [k, { shape: t.shape, data: Array.from(t.data as ArrayLike<number>) }]));
  }
  const mu = arrays.get('mu') ?? arrays.get('mean');
  const sigma = arrays.get('sigma') ?? arrays.get('cov');
  if (!mu || !sigma) {
    throw new WeightFileError(file, 'is not an FID statistics file', {
      expected: "arrays 'mu' and 'sigma' (pytorch-fid .npz) or 'mean' and 'cov' (BasicSR .pth)",
      found: listKeys([...arrays.keys()]),
    });
  }
  if (mu.data.length !== dim) {
    throw new WeightFileError(file, `FID statistics of dimension ${mu.data.length}; the features have ${dim}`, { hint: 'use statistics of the 2048-d pool3 features (pytorch-fid --dims 2048, BasicSR)' });
  }
  if (sigma.data.length !== dim * dim) {
    throw new WeightFileError(file, `FID statistics do not fit: mean has ${dim} values, covariance shape [${sigma.shape.join(', ')}]`);
  }
  return { dim, mu: Float64Array.from(mu.data), sigma: Float64Array.from(sigma.data) };
}
