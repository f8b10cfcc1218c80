#!/usr/bin/env node
/**
 * `osdface eval`: metrics of restored images against ground truth, paired by file name, as a
 * table, JSON, and an HTML report with side-by-side crops.
 *
 * Exit codes: 0 every pair evaluated and nothing unpaired; 1 something was listed as a problem
 * (a missing or duplicate pair, an unreadable file, a size mismatch, a metric that failed; the
 * rest is still evaluated and reported); 2 usage error (bad flags, a folder that does not exist,
 * an unknown metric, a metric whose weight files were not given or cannot be read, unreadable NIQE
 * parameters or FID statistics).
 */

import fs from 'node:fs';
import path from 'node:path';
import { errorMessage, isMainModule, parseFlags, UsageError } from '../degrade/args.js';
import { reportUsageError } from './args.js';
import {
  evaluatePairs, formatTable, pairFolders, parseMetricList, toJson, METRIC_NAMES, type FidSetup, type MetricName,
} from '../metrics/evaluate.js';
import { LpipsMetric, type LpipsNet } from '../metrics/lpips.js';
import { DistsMetric } from '../metrics/dists_metric.js';
import { FidFeatureExtractor, loadFidStats } from '../metrics/fid.js';
import { METRIC_REQUIREMENTS } from '../metrics/unavailable.js';
import { loadNiqeParams, type NiqeParams } from '../metrics/niqe.js';
import { writeReport } from '../metrics/report.js';
import { LandmarkDistance } from '../metrics/lmd.js';
import { FaceRecognizer } from '../face/recognition.js';

/** Wraps a help paragraph to the option-description column (25 spaces in, 70 wide). */
function wrapHelp(text: string): string {
  const lines: string[] = [];
  let line = '';
  for (const word of text.split(' ')) {
    if (line !== '' && line.length + 1 + word.length > 70) {
      lines.push(line);
      line = `  ${word}`;
    } else line = line === '' ? word : `${line} ${word}`;
  }
  lines.push(line);
  return lines.map((l) => `${' '.repeat(25)}${l}`).join('\n');
}

export const EVAL_USAGE = `usage: osdface eval --pred <dir> --gt <dir> [--lq <dir>] [options]

Pairs the images of --pred and --gt (and --lq) by base name (extension ignored: face.png pairs
with face.jpg), computes the metrics per pair and their mean, and prints a table. Images without
a partner, duplicate names, unreadable files and size mismatches are listed, never dropped.

options:
  --pred <dir>           restored images
  --gt <dir>             ground truth (same size as the restored images)
  --lq <dir>             degraded inputs, shown in the report (optional)
  --metrics <list>       comma-separated, default psnr,ssim; available: ${METRIC_NAMES.join(', ')}
                         psnr/ssim: on RGB, data range 255, no border cropped (crop_border 0);
                         identical images give psnr inf. _y: on BT.601 luma (MATLAB rgb2ycbcr).
                         niqe: no-reference, of the restored image (lower is better).
                         lattice: no-reference, how much of the restored image's fine
                         detail repeats on an 8-pixel grid (a decoder's mesh): about 1
                         for photographs, well above 1 for a mesh.
                         lmd: mean distance (px) of the 68 face landmarks of face-api's net
                         (shipped in its npm package) on restored vs ground truth, in the face
                         box found on the ground truth (lower is better).
                         ids: cosine of face-api's 128-d face recognition descriptors (higher is
                         better; not ArcFace, so not comparable with published IDS / Deg).
                         lpips, dists: per pair, lower is better; fid: one value for the
                         whole set of restored images (lower is better). These three need
                         weight files osdface does not bundle (flags below):
${(['lpips', 'dists', 'fid'] as const).map((m) => wrapHelp(`- ${METRIC_REQUIREMENTS[m]}`)).join('\n')}
  --y-channel            compute psnr and ssim on Y (same as asking for psnr_y, ssim_y)
  --niqe-params <file>   NIQE pristine parameters, BasicSR's niqe_pris_params.npz
                         (default: $OSDFACE_NIQE_PARAMS)
  --lpips-net <alex|vgg> LPIPS backbone, default alex
  --lpips-backbone <f>   torchvision ImageNet weights: alexnet-owt-7be5be79.pth (alex) or
                         vgg16-397923af.pth (vgg)
  --lpips-lin <f>        LPIPS v0.1 linear layers: alex.pth / vgg.pth (lpips weights/v0.1)
  --dists-weights <f,f>  VGG16 (vgg16-397923af.pth) and DISTS alpha/beta (weights.pt), comma-separated
                         (or one file holding both, e.g. pyiqa's DISTS_weights)
  --fid-inception <f>    pytorch-fid's pt_inception-2015-12-05-6726825d.pth
  --fid-stats <f>        reference statistics instead of the ground truth: pytorch-fid .npz (mu,
                         sigma) or BasicSR .pth (mean, cov), e.g. inception_FFHQ_512-f7b384ab.pth
  --fid-ref <dir>        reference images instead of the ground truth (default: the --gt images)
  --json                 print {"mean": {...}, "images": [{"name": ..., "psnr": ...}], ...}
                         instead of the table (infinite PSNR is written "inf")
  --report <file.html>   write an HTML report: LQ | restored | GT centre crops and the numbers
                         (the crops as PNG files in <file>_files/ beside it)
  -h, --help             this help
`;

const SPEC = {
  pred: { kind: 'string' },
  gt: { kind: 'string' },
  lq: { kind: 'string' },
  metrics: { kind: 'string' },
  'y-channel': { kind: 'bool' },
  'niqe-params': { kind: 'string' },
  'lpips-net': { kind: 'string' },
  'lpips-backbone': { kind: 'string' },
  'lpips-lin': { kind: 'string' },
  'dists-weights': { kind: 'string' },
  'fid-inception': { kind: 'string' },
  'fid-stats': { kind: 'string' },
  'fid-ref': { kind: 'string' },
  json: { kind: 'bool' },
  report: { kind: 'string' },
  help: { kind: 'bool', short: 'h' },
} as const;

export async function main(argv: string[]): Promise<number> {
  let predDir: string;
  let gtDir: string;
  let lqDir: string | undefined;
  let metrics: MetricName[];
  let niqeParams: NiqeParams | undefined;
  let landmarks: LandmarkDistance | undefined;
  let recognizer: FaceRecognizer | undefined;
  let lpips: LpipsMetric | undefined;
  let dists: DistsMetric | undefined;
  let fid: FidSetup | undefined;
  let fidExtractor: FidFeatureExtractor | undefined;
  let json: boolean;
  let reportFile: string | undefined;
  let pairing: ReturnType<typeof pairFolders>;
  try {
    const { flags, positionals } = parseFlags(argv, SPEC);
    if (flags.has('help')) {
      process.stdout.write(EVAL_USAGE);
      return 0;
    }
    if (positionals.length > 0) throw new UsageError(`unexpected argument ${positionals[0]} (folders go after --pred, --gt, --lq)`);
    if (!flags.has('pred') || !flags.has('gt')) throw new UsageError('--pred <dir> and --gt <dir> are required');
    predDir = flags.get('pred') as string;
    gtDir = flags.get('gt') as string;
    lqDir = flags.get('lq') as string | undefined;
    json = flags.has('json');
    reportFile = flags.get('report') as string | undefined;
    try {
      metrics = parseMetricList((flags.get('metrics') as string | undefined) ?? 'psnr,ssim');
    } catch (e) {
      throw new UsageError(errorMessage(e));
    }
    if (flags.has('y-channel')) metrics = [...new Set(metrics.map((m): MetricName => (m === 'psnr' ? 'psnr_y' : m === 'ssim' ? 'ssim_y' : m)))];
    if (metrics.includes('niqe')) {
      const file = (flags.get('niqe-params') as string | undefined) ?? process.env.OSDFACE_NIQE_PARAMS;
      if (!file) {
        throw new UsageError('niqe needs the NIQE pristine parameters: pass --niqe-params <niqe_pris_params.npz> (BasicSR basicsr/metrics/niqe_pris_params.npz) or set OSDFACE_NIQE_PARAMS');
      }
      try {
        niqeParams = loadNiqeParams(file);
      } catch (e) {
        throw new UsageError(errorMessage(e));
      }
    }
    try {
      pairing = pairFolders(predDir, gtDir, lqDir);
    } catch (e) {
      throw new UsageError(errorMessage(e));
    }
    if (metrics.includes('ids')) {
      try {
        recognizer = await FaceRecognizer.create();
      } catch (e) {
        throw new UsageError(`ids: cannot load the face recognition model: ${errorMessage(e)}`);
      }
    }
    if (metrics.includes('lmd')) {
      try {
        landmarks = await LandmarkDistance.load();
      } catch (e) {
        throw new UsageError(`lmd: cannot load the face landmark model: ${errorMessage(e)}`);
      }
    }
    const str = (name: string) => flags.get(name) as string | undefined;
    // Network metrics: a missing or unreadable weight file is a usage error that says what is needed.
    if (metrics.includes('lpips')) {
      const net = str('lpips-net') ?? 'alex';
      if (net !== 'alex' && net !== 'vgg') throw new UsageError(`--lpips-net must be alex or vgg, got '${net}'`);
      try {
        lpips = await LpipsMetric.load({ net: net as LpipsNet, backbone: str('lpips-backbone'), lin: str('lpips-lin') });
      } catch (e) {
        throw new UsageError(`cannot use lpips: ${errorMessage(e)}`);
      }
    }
    if (metrics.includes('dists')) {
      try {
        dists = await DistsMetric.load({ weights: str('dists-weights')?.split(',').filter((f) => f !== '') ?? [] });
      } catch (e) {
        throw new UsageError(`cannot use dists: ${errorMessage(e)}`);
      }
    }
    if (metrics.includes('fid')) {
      const statsFile = str('fid-stats');
      const refDir = str('fid-ref');
      if (statsFile !== undefined && refDir !== undefined) throw new UsageError('give --fid-stats or --fid-ref, not both');
      if (refDir !== undefined && !fs.statSync(refDir, { throwIfNoEntry: false })?.isDirectory()) throw new UsageError(`--fid-ref ${refDir} is not a folder`);
      try {
        fidExtractor = await FidFeatureExtractor.load({ inception: str('fid-inception') });
        fid = {
          features: fidExtractor,
          reference: statsFile !== undefined ? { stats: loadFidStats(statsFile), label: statsFile } : refDir !== undefined ? { folder: refDir } : 'gt',
        };
      } catch (e) {
        throw new UsageError(`cannot use fid: ${errorMessage(e)}`);
      }
    }
  } catch (e) {
    if (!(e instanceof UsageError)) throw e;
    await lpips?.dispose();
    await dists?.dispose();
    await fidExtractor?.dispose();
    return reportUsageError('eval', e.message);
  }

  if (pairing.pairs.length === 0) process.stderr.write(`osdface eval: no image pairs between ${predDir} and ${gtDir}\n`);
  let result: Awaited<ReturnType<typeof evaluatePairs>>;
  try {
    result = await evaluatePairs(pairing, {
      metrics,
      ...(niqeParams ? { niqeParams } : {}),
      ...(landmarks ? { landmarks } : {}),
      ...(recognizer ? { recognizer } : {}),
      ...(lpips ? { lpips } : {}),
      ...(dists ? { dists } : {}),
      ...(fid ? { fid } : {}),
      onImage: (r, i, n) => {
        if (process.stderr.isTTY) process.stderr.write(`\r\x1b[Kosdface eval: [${i + 1}/${n}] ${r.name}${i + 1 === n ? '\n' : ''}`);
      },
    });
  } finally {
    await landmarks?.dispose();
    await recognizer?.dispose();
    await lpips?.dispose();
    await dists?.dispose();
    await fidExtractor?.dispose();
  }
  if (json) process.stdout.write(JSON.stringify(toJson(result), null, 2) + '\n');
  else process.stdout.write(formatTable(result));
  if (json) {
    for (const p of result.problems) process.stderr.write(`osdface eval: ${p.name}: ${p.kind}: ${p.message}\n`);
    for (const i of result.images) for (const e of i.errors) process.stderr.write(`osdface eval: ${i.name}: ${e}\n`);
    for (const e of result.setErrors ?? []) process.stderr.write(`osdface eval: ${e}\n`);
  }
  if (reportFile !== undefined) {
    const images = await writeReport(reportFile, result, { title: `osdface eval: ${path.basename(predDir)} vs ${path.basename(gtDir)}` });
    process.stderr.write(`osdface eval: report written to ${reportFile} (its images in ${images})\n`);
  }
  const failed = result.problems.length > 0 || result.images.some((i) => i.errors.length > 0) || (result.setErrors ?? []).length > 0 || pairing.pairs.length === 0;
  return failed ? 1 : 0;
}

if (isMainModule(import.meta.url)) {
  main(process.argv.slice(2)).then(
    (code) => { process.exitCode = code; },
    (e) => { process.stderr.write(`osdface eval: ${errorMessage(e)}\n`); process.exitCode = 1; },
  );
}
