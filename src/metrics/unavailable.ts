/**
 * Metrics that need networks this package does not ship: LPIPS, DISTS, FID (backbone weights the
 * user must supply). (Identity similarity uses face-api's recognition net: ../face/recognition.ts.) (LMD is computed, with the
 * landmark net the package ships: ./lmd.ts.)
 *
 * None of them is computed in this version. Each entry point throws MetricUnavailableError with a
 * message that says which weight files the metric needs and where the standard ones come from:
 * without weights, `needs: 'weights'`; with weight files given (they must exist), `needs:
 * 'implementation'`, since the network itself is not implemented here yet. A metric is only worth
 * reporting when it matches the reference implementation, and that cannot be checked here without
 * the weights, so none is approximated.
 */

import fs from 'node:fs';
import type { RgbImage } from '../image/io.js';

export type UnavailableMetric = 'lpips' | 'dists' | 'fid';

export class MetricUnavailableError extends Error {
  constructor(readonly metric: UnavailableMetric, readonly needs: 'weights' | 'implementation', message: string) {
    super(message);
    this.name = 'MetricUnavailableError';
  }
}

/** What each metric needs, in words (also shown by `osdface eval --help`). */
export const METRIC_REQUIREMENTS: Readonly<Record<UnavailableMetric, string>> = {
  lpips:
    'LPIPS (Zhang et al. 2018) needs an ImageNet backbone, AlexNet (torchvision alexnet-owt-7be5be79.pth) or ' +
    'VGG16 (vgg16-397923af.pth), and the LPIPS v0.1 linear layers (alex.pth / vgg.pth of the richzhang/PerceptualSimilarity ' +
    'release, also in the `lpips` Python package)',
  dists:
    'DISTS (Ding et al. 2020) needs the VGG16 ImageNet backbone (vgg16-397923af.pth) and the DISTS alpha/beta weights ' +
    '(weights.pt of the dingkeyan93/DISTS release)',
  fid:
    'FID needs the Inception-v3 feature network of pytorch-fid (pt_inception-2015-12-05-6726825d.pth) and, for ' +
    'FFHQ-referenced FID as face papers report it, the FFHQ statistics (e.g. BasicSR inception_FFHQ_512-f7b384ab.pth)',
};

/**
 * Throws MetricUnavailableError for `metric`: needs weights when `weights` is empty, otherwise
 * (after checking the files exist) needs an implementation.
 */
export function unavailable(metric: UnavailableMetric, weights: readonly string[] = []): never {
  const what = METRIC_REQUIREMENTS[metric];
  if (weights.length === 0) {
    throw new MetricUnavailableError(metric, 'weights', `${metric}: ${what}. None of these is bundled with osdface; the metric cannot be computed without them.`);
  }
  for (const w of weights) {
    if (!fs.existsSync(w)) throw new MetricUnavailableError(metric, 'weights', `${metric}: weight file ${w} does not exist (${what})`);
  }
  throw new MetricUnavailableError(
    metric,
    'implementation',
    `${metric}: this version of osdface does not implement the ${metric.toUpperCase()} network yet, so the weights given (${weights.join(', ')}) were not used and nothing was computed`,
  );
}

export interface WeightFiles {
  /** Paths of the user-supplied weight files the metric needs. */
  weights?: readonly string[];
}

/** LPIPS distance (lower is better). Needs user-supplied weights; see METRIC_REQUIREMENTS. */
export function lpips(_pred: RgbImage, _gt: RgbImage, opts: WeightFiles = {}): number {
  return unavailable('lpips', opts.weights);
}

/** DISTS distance (lower is better). Needs user-supplied weights; see METRIC_REQUIREMENTS. */
export function dists(_pred: RgbImage, _gt: RgbImage, opts: WeightFiles = {}): number {
  return unavailable('dists', opts.weights);
}

/** FID between two sets of images. Needs user-supplied weights; see METRIC_REQUIREMENTS. */
export function fid(_pred: readonly RgbImage[], _reference: readonly RgbImage[], opts: WeightFiles = {}): number {
  return unavailable('fid', opts.weights);
}
