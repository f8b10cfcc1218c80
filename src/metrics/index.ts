/** Restoration metrics: PSNR, SSIM, NIQE, and the ones that need user-supplied networks. */

export { psnr, ssim, ssimPlane, rgbToY, channel, type Plane, type FullReferenceOptions } from './psnr_ssim.js';
export { niqe, niqePlane, loadNiqeParams, type NiqeParams } from './niqe.js';
export { imresize } from './matlab_resize.js';
export { readNpz, parseNpy, type NpyArray } from './npz.js';
export {
  lpips, dists, fid, unavailable, MetricUnavailableError, METRIC_REQUIREMENTS, type UnavailableMetric,
} from './unavailable.js';
export { LandmarkDistance, meanPointDistance, type LandmarkDistanceResult } from './lmd.js';
