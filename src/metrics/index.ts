/** Restoration metrics: PSNR, SSIM, NIQE, LMD, and LPIPS / DISTS / FID with user-supplied network weights. */

export { psnr, ssim, ssimPlane, rgbToY, channel, type Plane, type FullReferenceOptions } from './psnr_ssim.js';
export { niqe, niqePlane, loadNiqeParams, type NiqeParams } from './niqe.js';
export { latticeRatio } from './lattice.js';
export { imresize } from './matlab_resize.js';
export { readNpz, parseNpy, type NpyArray } from './npz.js';
export { MetricUnavailableError, METRIC_REQUIREMENTS, requireWeightFiles, type WeightedMetric, type UnavailableMetric } from './unavailable.js';
export { LpipsMetric, LpipsNetwork, loadLpipsWeights, type LpipsNet, type LpipsOptions } from './lpips.js';
export { DistsMetric, type DistsOptions } from './dists_metric.js';
export { FidFeatureExtractor, featureStats, fidFromStats, loadFidStats, loadFidInceptionWeights, type FidOptions } from './fid.js';
export { frechetDistance, gaussianStats, traceSqrtProduct, type GaussianStats } from './frechet.js';
export { LandmarkDistance, meanPointDistance, type LandmarkDistanceResult } from './lmd.js';
