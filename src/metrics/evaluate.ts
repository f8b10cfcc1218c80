/**
 * Folder evaluation: pairs restored images with ground truth (and optionally LQ inputs) by base
 * name, computes the requested metrics per pair and their means, and lists every file that could
 * not be paired or read instead of dropping it.
 */

import fs from 'node:fs';
import { decodeImage, type RgbImage } from '../image/io.js';
import { baseName, errorMessage, listImages } from '../degrade/args.js';
import { psnr, ssim } from './psnr_ssim.js';
import { niqe, type NiqeParams } from './niqe.js';
import { METRIC_REQUIREMENTS, type UnavailableMetric } from './unavailable.js';
import type { LandmarkDistance } from './lmd.js';
import type { FaceRecognizer } from '../face/recognition.js';

export type MetricName = 'psnr' | 'ssim' | 'psnr_y' | 'ssim_y' | 'niqe' | 'lmd' | 'ids';
export const METRIC_NAMES: readonly MetricName[] = ['psnr', 'ssim', 'psnr_y', 'ssim_y', 'niqe', 'lmd', 'ids'];
export const UNAVAILABLE_METRICS: readonly UnavailableMetric[] = ['lpips', 'dists', 'fid'];
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
  /** Called after each image (progress). */
  onImage?: (r: ImageResult, index: number, total: number) => void;
}

/** Checks metric names: unknown ones and the ones that need networks are errors that say why. */
export function parseMetricList(text: string): MetricName[] {
  const names = text.split(',').map((s) => s.trim().toLowerCase()).filter((s) => s !== '');
  if (names.length === 0) throw new Error('no metrics given');
  const out: MetricName[] = [];
  for (const n of names) {
    if ((UNAVAILABLE_METRICS as readonly string[]).includes(n)) {
      throw new Error(`${n} is not available: ${METRIC_REQUIREMENTS[n as UnavailableMetric]}; osdface does not bundle these and cannot compute ${n} yet`);
    }
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
        if (m === 'niqe') {
          if (pred) r.values.niqe = niqe(pred, opts.niqeParams!);
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
  for (const m of metrics) {
    const vals = images.map((r) => r.values[m]).filter((v): v is number => v !== undefined);
    count[m] = vals.length;
    if (vals.length > 0) mean[m] = vals.reduce((a, b) => a + b, 0) / vals.length;
  }
  return { metrics, mean, count, images, problems: pairing.problems };
}

/** Formats a metric value for tables: PSNR 2 decimals (inf when infinite), SSIM 4, NIQE 3, LMD 2. */
export function formatValue(m: MetricName, v: number | undefined): string {
  if (v === undefined || Number.isNaN(v)) return '-';
  if (v === Infinity) return 'inf';
  return v.toFixed(m.startsWith('psnr') || m === 'lmd' ? 2 : m.startsWith('ssim') ? 4 : 3);
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
    settings: { metrics: r.metrics, data_range: 255, crop_border: 0, y_channel: 'BT.601 (MATLAB rgb2ycbcr), for psnr_y / ssim_y / niqe', lmd: 'mean distance of 68 face-api landmarks, px', ids: 'cosine of face-api 128-d recognition descriptors (not ArcFace: not comparable with published IDS)', psnr_identical: 'inf' },
  };
}

/** A plain-text table: one row per image, then the mean, then the problems. */
export function formatTable(r: EvaluationResult): string {
  const header = ['name', ...r.metrics];
  const rows = r.images.map((i) => [i.name, ...r.metrics.map((m) => formatValue(m, i.values[m]))]);
  const meanRow = ['mean', ...r.metrics.map((m) => formatValue(m, r.mean[m]))];
  const all = [header, ...rows, meanRow];
  const widths = header.map((_, c) => Math.max(...all.map((row) => row[c]!.length)));
  const fmt = (row: string[]) => row.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!))).join('  ');
  const lines = [fmt(header), ...rows.map(fmt), widths.map((w) => '-'.repeat(w)).join('  '), fmt(meanRow)];
  const errs = r.images.filter((i) => i.errors.length > 0);
  if (errs.length > 0 || r.problems.length > 0) {
    lines.push('', 'problems:');
    for (const i of errs) for (const e of i.errors) lines.push(`  ${i.name}: ${e}`);
    for (const p of r.problems) lines.push(`  ${p.name}: ${p.kind}: ${p.message}`);
  }
  return lines.join('\n') + '\n';
}
