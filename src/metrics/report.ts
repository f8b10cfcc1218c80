/**
 * An HTML report of an evaluation: the mean table, the problems, and per image the centre crops
 * LQ | restored | ground truth side by side with the numbers beside them. `writeReport` writes
 * the crops as PNG files in a folder beside the HTML (`<report name>_files/`), so the page stays
 * small and loads its images lazily; `buildReport` alone embeds them (data URIs).
 */
import fs from 'node:fs';
import path from 'node:path';

import sharp from 'sharp';
import { decodeImage } from '../image/io.js';
import { errorMessage, writeFileAtomic } from '../degrade/args.js';
import { formatValue, HIGHER_IS_BETTER, SET_METRICS, type EvaluationResult, type ImageResult, type MetricName } from './evaluate.js';

export interface ReportOptions {
  /** Side of each displayed crop in pixels (default 256). */
  cropSize?: number;
  /** Fraction of the shorter side the centre crop covers (default 0.5). */
  cropFraction?: number;
  title?: string;
  /**
   * Write the crops as PNG files into `dir` and link them as `<href>/<file>` (relative to the
   * HTML), instead of embedding them.
   */
  imageFolder?: { dir: string; href: string };
}

/** What each metric is, for the report's introduction (only the metrics computed are described). */
const METRIC_NOTES: Record<MetricName, string> = {
  psnr: 'PSNR on RGB (8-bit values, data range 255, no border cropped; higher is better)',
  ssim: 'SSIM on RGB (data range 255, no border cropped; higher is better)',
  psnr_y: 'PSNR on BT.601 luma as MATLAB rgb2ycbcr (higher is better)',
  ssim_y: 'SSIM on BT.601 luma as MATLAB rgb2ycbcr (higher is better)',
  niqe: 'NIQE of the restored image alone (lower is better)',
  lattice: 'lattice ratio of the restored image alone: fine detail repeating on an 8-pixel grid, about 1 for photographs (lower is better)',
  lmd: 'LMD: mean distance in pixels of the 68 face landmarks, restored vs ground truth (lower is better)',
  ids: "IDS: cosine of face-api's face descriptors, restored vs ground truth (higher is better)",
  lpips: 'LPIPS per pair (lower is better)',
  dists: 'DISTS per pair (lower is better)',
  fid: 'FID for the whole set of restored images (lower is better)',
};

const escapeHtml = (s: string) => s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);

/** The centre crop of an image file as a PNG (a data URI, or a file in `folder`), or an error message. */
async function cropImage(file: string, fraction: number, size: number, folder: ReportOptions['imageFolder'], name: string): Promise<{ uri: string; note: string } | { error: string }> {
  try {
    const img = await decodeImage(file);
    const side = Math.max(1, Math.floor(Math.min(img.width, img.height) * fraction));
    const left = Math.floor((img.width - side) / 2);
    const top = Math.floor((img.height - side) / 2);
    const png = await sharp(img.data, { raw: { width: img.width, height: img.height, channels: 3 } })
      .extract({ left, top, width: side, height: side })
      .resize(size, size, { kernel: side < size ? 'nearest' : 'lanczos3' })
      .png()
      .toBuffer();
    const note = `${img.width}x${img.height}, centre ${side}x${side}`;
    if (folder === undefined) return { uri: `data:image/png;base64,${png.toString('base64')}`, note };
    fs.writeFileSync(path.join(folder.dir, name), png);
    return { uri: `${folder.href}/${encodeURIComponent(name)}`, note };
  } catch (e) {
    return { error: errorMessage(e) };
  }
}

async function cell(label: string, file: string | undefined, fraction: number, size: number, folder: ReportOptions['imageFolder'], name: string): Promise<string> {
  if (file === undefined) return `<figure><div class="missing" style="width:${size}px;height:${size}px">no ${escapeHtml(label)} image</div><figcaption>${escapeHtml(label)}</figcaption></figure>`;
  const c = await cropImage(file, fraction, size, folder, name);
  if ('error' in c) {
    return `<figure><div class="missing" style="width:${size}px;height:${size}px">unreadable:<br>${escapeHtml(c.error)}</div><figcaption>${escapeHtml(label)}</figcaption></figure>`;
  }
  return `<figure><img src="${escapeHtml(c.uri)}" width="${size}" height="${size}" loading="lazy" alt="${escapeHtml(label)}"><figcaption>${escapeHtml(label)} <span class="note">${escapeHtml(c.note)}</span></figcaption></figure>`;
}

function metricsTable(r: EvaluationResult, values: ImageResult['values']): string {
  // Set-level metrics (fid) belong to the whole set: shown once, in the mean table.
  const rows = r.metrics.filter((m) => !SET_METRICS.has(m)).map((m) => `<tr><th>${m} ${HIGHER_IS_BETTER.has(m) ? '&uarr;' : '&darr;'}</th><td>${formatValue(m, values[m])}</td></tr>`);
  return `<table class="nums">${rows.join('')}</table>`;
}

/** Builds the report's HTML. */
export async function buildReport(r: EvaluationResult, opts: ReportOptions = {}): Promise<string> {
  const size = opts.cropSize ?? 256;
  const fraction = opts.cropFraction ?? 0.5;
  const title = opts.title ?? 'osdface evaluation';
  const parts: string[] = [];
  parts.push(`<!doctype html><html><head><meta charset="utf-8"><title>${escapeHtml(title)}</title><style>
body{font-family:system-ui,sans-serif;margin:24px;color:#222}
table{border-collapse:collapse}td,th{padding:2px 8px;text-align:right;border-bottom:1px solid #ddd}th:first-child{text-align:left}
.row{display:flex;gap:16px;align-items:flex-start;margin:18px 0;padding-top:12px;border-top:1px solid #ccc}
figure{margin:0}figcaption{font-size:13px;margin-top:4px}.note{color:#777;font-size:11px}
img{image-rendering:auto;display:block}.missing{display:flex;align-items:center;justify-content:center;text-align:center;background:#f3f3f3;color:#a00;font-size:12px;overflow:hidden}
.errors{color:#a00;font-size:13px}h2{font-size:16px;margin:0 0 6px}.intro{font-size:14px;color:#444}
</style></head><body><h1>${escapeHtml(title)}</h1>`);
  parts.push(`<p>${r.images.length} pair${r.images.length === 1 ? '' : 's'}; centre crops (${Math.round(fraction * 100)}% of the shorter side) shown at ${size}x${size}: LQ | restored | ground truth.</p>`);
  parts.push(`<ul class="intro">${r.metrics.map((m) => `<li>${escapeHtml(METRIC_NOTES[m] ?? m)}</li>`).join('')}</ul>`);
  const head = `<tr><th></th>${r.metrics.map((m) => `<th>${m} ${HIGHER_IS_BETTER.has(m) ? '&uarr;' : '&darr;'}</th>`).join('')}</tr>`;
  const meanRow = `<tr><th>mean</th>${r.metrics.map((m) => `<td>${formatValue(m, r.mean[m])} <span class="note">(n=${r.count[m] ?? 0}${SET_METRICS.has(m) ? ', set' : ''})</span></td>`).join('')}</tr>`;
  parts.push(`<table>${head}${meanRow}</table>`);
  for (const m of r.metrics) {
    if (SET_METRICS.has(m) && r.mean[m] !== undefined) {
      parts.push(`<p class="note">${m}: one value for the whole set, ${r.count[m]} restored images against ${escapeHtml(r.reference?.[m] ?? 'the reference')}; not computed per image.</p>`);
    }
  }
  const errs = r.images.filter((i) => i.errors.length > 0);
  if (r.problems.length > 0 || errs.length > 0 || (r.setErrors ?? []).length > 0) {
    parts.push('<h2 class="errors">Problems</h2><ul class="errors">');
    for (const e of r.setErrors ?? []) parts.push(`<li>(set) ${escapeHtml(e)}</li>`);
    for (const p of r.problems) parts.push(`<li>${escapeHtml(p.name)}: ${escapeHtml(p.kind)}: ${escapeHtml(p.message)}</li>`);
    for (const i of errs) for (const e of i.errors) parts.push(`<li>${escapeHtml(i.name)}: ${escapeHtml(e)}</li>`);
    parts.push('</ul>');
  }
  for (const [k, i] of r.images.entries()) {
    const base = `${String(k).padStart(4, '0')}_${i.name.replace(/[^\w.-]+/g, '_')}`;
    const folder = opts.imageFolder;
    const cells = [
      await cell('LQ', i.lq, fraction, size, folder, `${base}_lq.png`),
      await cell('restored', i.pred, fraction, size, folder, `${base}_restored.png`),
      await cell('ground truth', i.gt, fraction, size, folder, `${base}_gt.png`),
    ];
    const errors = i.errors.length > 0 ? `<div class="errors">${i.errors.map(escapeHtml).join('<br>')}</div>` : '';
    parts.push(`<div class="row">${cells.join('')}<div><h2>${escapeHtml(i.name)}</h2>${metricsTable(r, i.values)}${errors}</div></div>`);
  }
  parts.push('</body></html>\n');
  return parts.join('\n');
}

/**
 * Writes the report to `file` and its crops to `<file name>_files/` beside it (both replaced
 * whole: the images go to a temporary folder that is renamed into place before the HTML is
 * written). Resolves to the image folder.
 */
export async function writeReport(file: string, r: EvaluationResult, opts: ReportOptions = {}): Promise<string> {
  const name = `${path.parse(file).name}_files`;
  const dir = path.join(path.dirname(path.resolve(file)), name);
  fs.mkdirSync(path.dirname(dir), { recursive: true });
  const tmp = fs.mkdtempSync(`${dir}.partial-`);
  fs.chmodSync(tmp, 0o777 & ~process.umask());
  try {
    const html = await buildReport(r, { ...opts, imageFolder: { dir: tmp, href: encodeURIComponent(name) } });
    fs.rmSync(dir, { recursive: true, force: true });
    fs.renameSync(tmp, dir);
    writeFileAtomic(file, html);
  } catch (e) {
    fs.rmSync(tmp, { recursive: true, force: true });
    throw e;
  }
  return dir;
}
