/**
 * Folder evaluation: pairs restored images with ground truth (and optionally LQ inputs) by base
 * name, computes the requested metrics per pair and their means, and lists every file that could
 * not be paired or read instead of dropping it. FID is a set-level metric: one number for all the
 * restored images against a reference (the ground truth, a folder, or a statistics file), reported
 * as the "mean" and never per image.
 */

import fs from 'node:fs';
import { decodeImage, type RgbImage } from '../image/io.js';
import { baseName, errorMessage, listImages } from '../degrade/args.js';
import { psnr, ssim } from './psnr_ssim.js';
import { niqe, type NiqeParams } from './niqe.js';
import { latticeRatio } from './lattice.js';
import type { WeightedMetric } from './unavailable.js';
import { featureStats, fidFromStats } from './fid.js';
import type { GaussianStats } from './frechet.js';
import type { LandmarkDistance } from './lmd.js';
import type { FaceRecognizer } from '../face/recognition.js';

export type MetricName = 'psnr' | 'ssim' | 'psnr_y' | 'ssim_y' | 'niqe' | 'lattice' | 'lmd' | 'ids' | 'lpips' | 'dists' | 'fid';
export const METRIC_NAMES: readonly MetricName[] = ['psnr', 'ssim', 'psnr_y', 'ssim_y', 'niqe', 'lattice', 'lmd', 'ids', 'lpips', 'dists', 'fid'];
/** Metrics that need network weights the user supplies (see METRIC_REQUIREMENTS). */
export const WEIGHTED_METRICS: readonly WeightedMetric[] = ['lpips', 'dists', 'fid'];
/** Metrics of a whole set, not of each image. */
export const SET_METRICS: ReadonlySet<MetricName> = new Set(['fid']);
/** Metrics where higher is better (the others: lower is better). */
export const HIGHER_IS_BETTER: ReadonlySet<MetricName> = new Set(['psnr', 'ssim', 'psnr_y', 'ssim_y']);

export interface Pair {
  name: string;
  pred: string;
  gt: string;
  lq?: string;
}

export type ProblemKind = 'missing-gt' | 'missing-pred' | 'missing-lq' | 'unused-lq' | 'duplicate-name';

export interface PairingProblem {
  name: string;
  kind: ProblemKind;
  files: string[];
  message: string;
}

export interface Pairing {
  pairs: Pair[];
  problems: PairingProblem[];
}

function byBaseName(dir: string, role: string, problems: PairingProblem[]): Map<string, string> {
  const map = new Map<string, string>();
  const dup = new Map<string, string[]>();
  for (const f of listImages(dir)) {
    const name = baseName(f);
    const prev = map.get(name);
    if (prev !== undefined || dup.has(name)) {
      const files = dup.get(name) ?? [prev!];
      files.push(f);
      dup.set(name, files);
      map.delete(name);
    } else {
      map.set(name, f);
    }
  }
  for (const [name, files] of dup) {
    problems.push({ name, kind: 'duplicate-name', files, message: `${role} folder has ${files.length} images named ${name}: ${files.join(', ')}; none of them is used` });
  }
  return map;
}

const byName = (a: { name: string }, b: { name: string }) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);

/** Pairs the image files of the folders by base name (extension ignored). Folders must exist. */
export function pairFolders(predDir: string, gtDir: string, lqDir?: string): Pairing {
  for (const [flag, dir] of [['--pred', predDir], ['--gt', gtDir], ['--lq', lqDir]] as const) {
    if (dir !== undefined && !fs.statSync(dir, { throwIfNoEntry: false })?.isDirectory()) {
      throw new Error(`${flag} ${dir} is not a folder`);
    }
  }
  const problems: PairingProblem[] = [];
  const pred = byBaseName(predDir, 'restored', problems);
  const gt = byBaseName(gtDir, 'ground-truth', problems);
  const lq = lqDir !== undefined ? byBaseName(lqDir, 'LQ', problems) : undefined;
  const dupNames = new Set(problems.map((p) => p.name));
  const pairs: Pair[] = [];
  for (const [name, p] of pred) {
    const g = gt.get(name);
    if (g === undefined) {
      if (!dupNames.has(name)) problems.push({ name, kind: 'missing-gt', files: [p], message: `no ground truth named ${name} in ${gtDir} for ${p}` });
      continue;
    }
    const pair: Pair = { name, pred: p, gt: g };
    if (lq) {
      const l = lq.get(name);
      if (l !== undefined) pair.lq = l;
      else if (!dupNames.has(name)) problems.push({ name, kind: 'missing-lq', files: [p], message: `no LQ image named ${name} in ${lqDir} (evaluated without it)` });
    }
    pairs.push(pair);
  }
  for (const [name, g] of gt) {
    if (!pred.has(name) && !dupNames.has(name)) problems.push({ name, kind: 'missing-pred', files: [g], message: `no restored image named ${name} in ${predDir} for ${g}` });
  }
  if (lq) {
    for (const [name, l] of lq) {
      if (!(pred.has(name) && gt.has(name)) && !dupNames.has(name)) problems.push({ name, kind: 'unused-lq', files: [l], message: `LQ image ${l} has no restored / ground-truth pair` });
    }
  }
  pairs.sort(byName);
  problems.sort(byName);
  return { pairs, problems };
}

export interface ImageResult {
  name: string;
  pred: string;
  gt: string;
  lq?: string;
  width?: number;
  height?: number;
  /** Metric values; a metric that failed for this image is absent and its error is in `errors`. */
  values: Partial<Record<MetricName, number>>;
  /** What went wrong for this image (unreadable file, size mismatch, a metric that failed). */
  errors: string[];
}

export interface EvaluationResult {
  metrics: MetricName[];
  /** What set-level metrics were computed against, by metric (e.g. fid: 'ground truth (24 images)'). */
  reference?: Partial<Record<MetricName, string>>;
  /** Failures of set-level metrics (e.g. FID with fewer than two images). */
  setErrors?: string[];
  /** Mean over the images that have the metric; +Infinity for PSNR when any pair is identical. */
  mean: Partial<Record<MetricName, number>>;
  /** How many images each mean is over. */
  count: Partial<Record<MetricName, number>>;
  images: ImageResult[];
  problems: PairingProblem[];
}

export interface EvaluateOptions {
  metrics: readonly MetricName[];
  /** Needed when metrics include niqe. */
  niqeParams?: NiqeParams;
  /** Needed when metrics include lmd. */
  landmarks?: LandmarkDistance;
  /** Needed when metrics include ids. */
  recognizer?: FaceRecognizer;
  /** Needed when metrics include lpips (an LpipsMetric). */
  lpips?: PairDistance;
  /** Needed when metrics include dists (a DistsMetric). */
  dists?: PairDistance;
  /** Needed when metrics include fid. */
  fid?: FidSetup;
  /** Called after each image (progress). */
  onImage?: (r: ImageResult, index: number, total: number) => void;
}

/** A full-reference distance computed by a network (LpipsMetric, DistsMetric). */
export interface PairDistance {
  distance(pred: RgbImage, gt: RgbImage): Promise<number>;
}

export interface FidSetup {
  /** The Inception feature extractor (a FidFeatureExtractor). */
  features: { features(img: RgbImage): Promise<Float32Array> };
  /**
   * The reference set: 'gt' (the ground-truth images of the evaluated pairs), a folder of images,
   * or statistics (from a stats file) with a label for the output.
   */
  reference: 'gt' | { folder: string } | { stats: GaussianStats; label: string };
}

/** Checks metric names: unknown ones are errors that list the available ones. */
export function parseMetricList(text: string): MetricName[] {
  const names = text.split(',').map((s) => s.trim().toLowerCase()).filter((s) => s !== '');
  if (names.length === 0) throw new Error('no metrics given');
  const out: MetricName[] = [];
  for (const n of names) {
    if (!(METRIC_NAMES as readonly string[]).includes(n)) throw new Error(`unknown metric '${n}' (available: ${METRIC_NAMES.join(', ')})`);
    if (!out.includes(n as MetricName)) out.push(n as MetricName);
  }
  return out;
}

async function readRgb(file: string): Promise<RgbImage> {
  const d = await decodeImage(file);
  return { data: d.data, width: d.width, height: d.height, channels: 3 };
}

/** Computes the metrics for each pair. Problems with single images are recorded, not thrown. */
export async function evaluatePairs(pairing: Pairing, opts: EvaluateOptions): Promise<EvaluationResult> {
  const metrics = [...opts.metrics];
  if (metrics.includes('niqe') && !opts.niqeParams) throw new Error('niqe needs the pristine parameters (niqeParams)');
  if (metrics.includes('lmd') && !opts.landmarks) throw new Error('lmd needs the landmark model (landmarks: await LandmarkDistance.load())');
  if (metrics.includes('ids') && !opts.recognizer) throw new Error('ids needs the face recognition model (recognizer: await FaceRecognizer.create())');
  if (metrics.includes('lpips') && !opts.lpips) throw new Error('lpips needs the network (lpips: await LpipsMetric.load({ backbone, lin }))');
  if (metrics.includes('dists') && !opts.dists) throw new Error('dists needs the network (dists: await DistsMetric.load({ weights }))');
  if (metrics.includes('fid') && !opts.fid) throw new Error('fid needs the Inception network and a reference (fid: { features: await FidFeatureExtractor.load({ inception }), reference })');
  const fidPred: Float32Array[] = [];
  const fidGt: Float32Array[] = [];
  const images: ImageResult[] = [];
  let index = 0;
  for (const pair of pairing.pairs) {
    const r: ImageResult = { ...pair, values: {}, errors: [] };
    images.push(r);
    let pred: RgbImage | undefined;
    let gt: RgbImage | undefined;
    try {
      pred = await readRgb(pair.pred);
    } catch (e) {
      r.errors.push(`unreadable restored image: ${errorMessage(e)}`);
    }
    try {
      gt = await readRgb(pair.gt);
    } catch (e) {
      r.errors.push(`unreadable ground truth: ${errorMessage(e)}`);
    }
    if (pred) {
      r.width = pred.width;
      r.height = pred.height;
    }
    const sameSize = pred !== undefined && gt !== undefined && pred.width === gt.width && pred.height === gt.height;
    if (pred && gt && !sameSize) r.errors.push(`size mismatch: restored ${pred.width}x${pred.height}, ground truth ${gt.width}x${gt.height}`);
    for (const m of metrics) {
      try {
        if (m === 'fid') {
          if (pred) fidPred.push(await opts.fid!.features.features(pred));
          if (gt && opts.fid!.reference === 'gt') fidGt.push(await opts.fid!.features.features(gt));
          continue;
        }
        if (m === 'niqe') {
          if (pred) r.values.niqe = niqe(pred, opts.niqeParams!);
          continue;
        }
        if (m === 'lattice') {
          if (pred) r.values.lattice = latticeRatio(pred);
          continue;
        }
        if (!sameSize) continue;
        if (m === 'lmd') {
          r.values.lmd = (await opts.landmarks!.measure(pred!, gt!)).lmd;
          continue;
        }
        if (m === 'ids') {
          r.values.ids = await opts.recognizer!.similarity(pred!, gt!);
          continue;
        }
        if (m === 'lpips' || m === 'dists') {
          r.values[m] = await opts[m]!.distance(pred!, gt!);
          continue;
        }
        const y = m.endsWith('_y');
        r.values[m] = m.startsWith('psnr') ? psnr(pred!, gt!, { yChannel: y }) : ssim(pred!, gt!, { yChannel: y });
      } catch (e) {
        r.errors.push(`${m}: ${errorMessage(e)}`);
      }
    }
    opts.onImage?.(r, index++, pairing.pairs.length);
  }
  const mean: EvaluationResult['mean'] = {};
  const count: EvaluationResult['count'] = {};
  const reference: EvaluationResult['reference'] = {};
  const setErrors: string[] = [];
  if (metrics.includes('fid')) {
    try {
      const ref = opts.fid!.reference;
      let refStats: GaussianStats;
      if (ref === 'gt') {
        refStats = featureStats(fidGt);
        reference.fid = `ground truth (${fidGt.length} images)`;
      } else if ('folder' in ref) {
        const feats: Float32Array[] = [];
        for (const file of listImages(ref.folder)) feats.push(await opts.fid!.features.features(await readRgb(file)));
        refStats = featureStats(feats);
        reference.fid = `${ref.folder} (${feats.length} images)`;
      } else {
        refStats = ref.stats;
        reference.fid = ref.label;
      }
      mean.fid = fidFromStats(featureStats(fidPred), refStats);
      count.fid = fidPred.length;
    } catch (e) {
      setErrors.push(`fid: ${errorMessage(e)}`);
      count.fid = 0;
    }
  }
  for (const m of metrics) {
    if (SET_METRICS.has(m)) continue;
    const vals = images.map((r) => r.values[m]).filter((v): v is number => v !== undefined);
    count[m] = vals.length;
    if (vals.length > 0) mean[m] = vals.reduce((a, b) => a + b, 0) / vals.length;
  }
  return { metrics, mean, count, images, problems: pairing.problems, reference, setErrors };
}

/** Formats a metric value for tables: PSNR 2 decimals (inf when infinite), SSIM / LPIPS / DISTS 4, NIQE / IDS / FID 3, LMD 2. */
export function formatValue(m: MetricName, v: number | undefined): string {
  if (v === undefined || Number.isNaN(v)) return '-';
  if (v === Infinity) return 'inf';
  return v.toFixed(m.startsWith('psnr') || m === 'lmd' ? 2 : m.startsWith('ssim') || m === 'lpips' || m === 'dists' ? 4 : 3);
}

/** JSON-safe copy of a value: +Infinity becomes the string "inf" (JSON has no infinity). */
export function jsonValue(v: number): number | string {
  return v === Infinity ? 'inf' : v === -Infinity ? '-inf' : Number.isNaN(v) ? 'nan' : v;
}

/** The --json document: {"mean": {...}, "images": [{"name", ...metrics}], ...}. */
export function toJson(r: EvaluationResult): object {
  const conv = (vals: Partial<Record<MetricName, number>>) => Object.fromEntries(Object.entries(vals).map(([k, v]) => [k, jsonValue(v)]));
  return {
    mean: conv(r.mean),
    count: r.count,
    images: r.images.map((i) => ({
      name: i.name,
      ...conv(i.values),
      pred: i.pred,
      gt: i.gt,
      ...(i.lq !== undefined ? { lq: i.lq } : {}),
      ...(i.errors.length > 0 ? { errors: i.errors } : {}),
    })),
    problems: r.problems,
    ...(r.setErrors && r.setErrors.length > 0 ? { errors: r.setErrors } : {}),
    ...(r.reference && Object.keys(r.reference).length > 0 ? { reference: r.reference } : {}),
    settings: { metrics: r.metrics, data_range: 255, crop_border: 0, y_channel: 'BT.601 (MATLAB rgb2ycbcr), for psnr_y / ssim_y / niqe', lmd: 'mean distance of 68 face-api landmarks, px', ids: 'cosine of face-api 128-d recognition descriptors (not ArcFace: not comparable with published IDS)', psnr_identical: 'inf',
      ...(r.metrics.includes('lpips') ? { lpips: 'LPIPS v0.1 (lpips package), images scaled to [-1, 1]' } : {}),
      ...(r.metrics.includes('dists') ? { dists: 'DISTS (pyiqa / DISTS_pytorch network), images in [0, 1] at their own size (no resize to 256)' } : {}),
      ...(r.metrics.includes('fid') ? { fid: 'set-level: pytorch-fid Inception pool3 features (299x299 bilinear), one value for all restored images against the reference; in "mean" only' } : {}) },
  };
}

/** A plain-text table: one row per image, then the mean, then the problems. */
export function formatTable(r: EvaluationResult): string {
  const header = ['name', ...r.metrics];
  // Set-level metrics (fid) have no per-image value: blank in the image rows, the value in the mean row.
  const rows = r.images.map((i) => [i.name, ...r.metrics.map((m) => (SET_METRICS.has(m) ? '' : formatValue(m, i.values[m])))]);
  const meanRow = ['mean', ...r.metrics.map((m) => formatValue(m, r.mean[m]))];
  const all = [header, ...rows, meanRow];
  const widths = header.map((_, c) => Math.max(...all.map((row) => row[c]!.length)));
  const fmt = (row: string[]) => row.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!))).join('  ');
  const lines = [fmt(header), ...rows.map(fmt), widths.map((w) => '-'.repeat(w)).join('  '), fmt(meanRow)];
  for (const m of r.metrics) {
    if (SET_METRICS.has(m) && r.mean[m] !== undefined) lines.push(`${m}: one value for the set, ${r.count[m]} restored images against ${r.reference?.[m] ?? 'the reference'}`);
  }
  const errs = r.images.filter((i) => i.errors.length > 0);
  const setErrors = r.setErrors ?? [];
  if (errs.length > 0 || r.problems.length > 0 || setErrors.length > 0) {
    lines.push('', 'problems:');
    for (const e of setErrors) lines.push(`  (set) ${e}`);
    for (const i of errs) for (const e of i.errors) lines.push(`  ${i.name}: ${e}`);
    for (const p of r.problems) lines.push(`  ${p.name}: ${p.kind}: ${p.message}`);
  }
  return lines.join('\n') + '\n';
}
