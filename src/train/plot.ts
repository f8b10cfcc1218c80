/** The loss curve (SVG, rendered to PNG by sharp) and sample sheets (LQ | output | HQ rows). */
import sharp from 'sharp';
import type { FloatTensor } from '../tensor.js';

export interface CurvePoint { step: number; value: number }

/** About `count` round values (1, 2 or 5 times a power of ten apart) covering [lo, hi]. */
function niceTicks(lo: number, hi: number, count: number): number[] {
  const span = hi - lo || Math.abs(hi) || 1;
  const raw = span / count;
  const p = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * p).find((s) => s >= raw) ?? 10 * p;
  const ticks: number[] = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) ticks.push(Number(v.toPrecision(12)));
  return ticks;
}

function tickLabel(v: number): string {
  if (v === 0) return '0';
  const a = Math.abs(v);
  return a >= 1e4 || a < 1e-3 ? v.toExponential(0) : String(Number(v.toPrecision(3)));
}

/**
 * The loss curve: steps on x, loss on a log scale on y, both axes with ticks and labels. Series
 * are drawn as lines; a series with `markers` also gets a dot per point, so a single evaluation
 * still shows. `markers` defaults to true for sparse series (50 points or fewer: validation,
 * evaluated every few steps) and false for dense ones (the per-step training loss).
 */
export async function lossCurvePng(series: { name: string; colour: string; points: CurvePoint[]; markers?: boolean }[], title: string): Promise<Buffer> {
  const w = 720;
  const h = 420;
  const pad = { l: 78, r: 24, t: 40, b: 56 };
  const all = series.flatMap((s) => s.points).filter((p) => Number.isFinite(p.value) && p.value > 0);
  const maxStep = Math.max(1, ...all.map((p) => p.step));
  const minStep = Math.min(maxStep - 1, ...all.map((p) => p.step), 0);
  const logs = all.map((p) => Math.log10(p.value));
  let lo = logs.length > 0 ? Math.min(...logs) : 0;
  let hi = logs.length > 0 ? Math.max(...logs) : 1;
  const margin = Math.max(0.02, (hi - lo) * 0.05);
  lo -= margin;
  hi += margin;
  const x = (s: number) => pad.l + ((w - pad.l - pad.r) * (s - minStep)) / (maxStep - minStep);
  const y = (v: number) => pad.t + ((h - pad.t - pad.b) * (hi - Math.log10(v))) / (hi - lo);
  // y ticks: 1-2-5 per decade over a wide range, round linear values within a narrow one.
  let yTicks: number[];
  if (hi - lo > 1.3) {
    yTicks = [];
    for (let e = Math.floor(lo); e <= Math.ceil(hi); e++) for (const m of [1, 2, 5]) yTicks.push(m * 10 ** e);
  } else {
    yTicks = niceTicks(10 ** lo, 10 ** hi, 6);
  }
  yTicks = yTicks.filter((v) => v > 0 && Math.log10(v) >= lo && Math.log10(v) <= hi);
  // Steps are whole numbers: no tick between two steps.
  const xTicks = niceTicks(minStep, maxStep, Math.min(6, maxStep - minStep)).filter((s) => s >= minStep && s <= maxStep && Number.isInteger(s));
  const grid = [
    ...yTicks.map((v) => `<line x1="${pad.l}" x2="${w - pad.r}" y1="${y(v).toFixed(1)}" y2="${y(v).toFixed(1)}" stroke="#e4e4e4"/>` +
      `<line x1="${pad.l - 5}" x2="${pad.l}" y1="${y(v).toFixed(1)}" y2="${y(v).toFixed(1)}" stroke="#000"/>` +
      `<text x="${pad.l - 8}" y="${(y(v) + 4).toFixed(1)}" font-size="12" text-anchor="end">${tickLabel(v)}</text>`),
    ...xTicks.map((s) => `<line x1="${x(s).toFixed(1)}" x2="${x(s).toFixed(1)}" y1="${pad.t}" y2="${h - pad.b}" stroke="#f0f0f0"/>` +
      `<line x1="${x(s).toFixed(1)}" x2="${x(s).toFixed(1)}" y1="${h - pad.b}" y2="${h - pad.b + 5}" stroke="#000"/>` +
      `<text x="${x(s).toFixed(1)}" y="${h - pad.b + 19}" font-size="12" text-anchor="middle">${tickLabel(s)}</text>`),
  ];
  const drawn = series.map((s, i) => {
    const pts = s.points.filter((p) => Number.isFinite(p.value) && p.value > 0);
    const markers = s.markers ?? pts.length <= 50;
    const coords = pts.map((p) => `${x(p.step).toFixed(1)},${y(p.value).toFixed(1)}`);
    const line = coords.length > 1 ? `<polyline fill="none" stroke="${s.colour}" stroke-width="1.5" points="${coords.join(' ')}"/>` : '';
    const dots = markers ? coords.map((c) => { const [cx, cy] = c.split(','); return `<circle cx="${cx}" cy="${cy}" r="3.5" fill="${s.colour}"/>`; }).join('') : '';
    const ly = pad.t + 14 + 18 * i;
    const lx = w - pad.r - 170;
    const key = `<rect x="${lx - 6}" y="${ly - 12}" width="170" height="18" fill="white" fill-opacity="0.8"/>` +
      `<line x1="${lx}" x2="${lx + 22}" y1="${ly - 4}" y2="${ly - 4}" stroke="${s.colour}" stroke-width="1.5"/>` +
      (markers ? `<circle cx="${lx + 11}" cy="${ly - 4}" r="3.5" fill="${s.colour}"/>` : '') +
      `<text x="${lx + 28}" y="${ly}" font-size="13" fill="${s.colour}">${s.name}${pts.length === 0 ? ' (none yet)' : ''}</text>`;
    return line + dots + key;
  });
  const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${w}" height="${h}" font-family="sans-serif"><rect width="100%" height="100%" fill="white"/>` +
    `<text x="${w / 2}" y="24" font-size="15" text-anchor="middle">${title}</text>${grid.join('')}` +
    `<line x1="${pad.l}" x2="${pad.l}" y1="${pad.t}" y2="${h - pad.b}" stroke="#000"/><line x1="${pad.l}" x2="${w - pad.r}" y1="${h - pad.b}" y2="${h - pad.b}" stroke="#000"/>` +
    `<text x="${(pad.l + w - pad.r) / 2}" y="${h - 12}" font-size="13" text-anchor="middle">training step</text>` +
    `<text transform="translate(18 ${(pad.t + h - pad.b) / 2}) rotate(-90)" font-size="13" text-anchor="middle">loss (log scale)</text>` +
    `${drawn.join('')}</svg>`;
  return sharp(Buffer.from(svg)).png().toBuffer();
}

/** One row per image: the given (N, 3, S, S) tensors in [0, 1] side by side. */
export async function sampleSheetPng(columns: FloatTensor[], rows: number): Promise<Buffer> {
  const s = columns[0]!.shape[2]!;
  const n = Math.min(rows, columns[0]!.shape[0]!);
  const width = s * columns.length;
  const buf = Buffer.alloc(width * s * n * 3);
  columns.forEach((t, c) => {
    for (let r = 0; r < n; r++) {
      for (let yy = 0; yy < s; yy++) for (let xx = 0; xx < s; xx++) {
        for (let ch = 0; ch < 3; ch++) {
          const v = t.data[((r * 3 + ch) * s + yy) * s + xx]!;
          buf[((r * s + yy) * width + c * s + xx) * 3 + ch] = Math.round(Math.min(1, Math.max(0, v)) * 255);
        }
      }
    }
  });
  return sharp(buf, { raw: { width, height: s * n, channels: 3 } }).png().toBuffer();
}
