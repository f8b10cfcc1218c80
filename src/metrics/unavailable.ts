/**
 * What LPIPS, DISTS and FID need from the user: backbone weight files this package does not bundle
 * and cannot fetch. (Identity similarity uses face-api's recognition net: ../face/recognition.ts;
 * LMD the landmark net the package ships: ./lmd.ts.) The networks themselves are ./lpips.ts,
 * ./dists_metric.ts and ./fid.ts; this file holds the words they, `osdface eval` and its help use
 * when a file is missing, and the error they throw.
 */

import fs from 'node:fs';

export type WeightedMetric = 'lpips' | 'dists' | 'fid';
/** @deprecated the old name of WeightedMetric (these metrics are available once given their weights). */
export type UnavailableMetric = WeightedMetric;

/** A metric cannot run: a weight file it needs was not given or does not exist. */
export class MetricUnavailableError extends Error {
  readonly needs = 'weights' as const;
  constructor(readonly metric: WeightedMetric, message: string) {
    super(message);
    this.name = 'MetricUnavailableError';
  }
}

/** What each metric needs, in words (also shown by `osdface eval --help`). */
export const METRIC_REQUIREMENTS: Readonly<Record<WeightedMetric, string>> = {
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
 * Checks that the user gave `metric` its weight files and that they exist; otherwise throws a
 * MetricUnavailableError saying which files the metric needs and where the standard ones come from.
 * `what` names the missing role (e.g. 'the LPIPS linear layers (--lpips-lin)').
 */
export function requireWeightFiles(metric: WeightedMetric, files: readonly (string | undefined)[], what = 'weight files'): string[] {
  const given = files.filter((f): f is string => f !== undefined && f !== '');
  if (given.length < files.length || given.length === 0) {
    throw new MetricUnavailableError(metric, `${metric}: ${what} not given. ${METRIC_REQUIREMENTS[metric]}. None of these is bundled with osdface; the metric cannot be computed without them.`);
  }
  for (const f of given) {
    if (!fs.existsSync(f)) throw new MetricUnavailableError(metric, `${metric}: weight file ${f} does not exist (${METRIC_REQUIREMENTS[metric]})`);
  }
  return given;
}
