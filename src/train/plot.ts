/** The loss curve (SVG, rendered to PNG by sharp) and sample sheets (LQ | output | HQ rows). */
import sharp from 'sharp';
import type { FloatTensor } from '../tensor.js';

export interface CurvePoint { step: number; value: number }

export async function lossCurvePng(series: { name: string; colour: string; points: CurvePoint[] }[], title: string): Promise<Buffer> {
  const w = 720;
  const h = 400;
  const pad = { l: 70, r: 20, t: 40, b: 40 };
  const all = series.flatMap((s) => s.points).filter((p) => Number.isFinite(p.value) && p.value > 0);
  const maxStep = Math.max(1, ...all.map((p) => p.step));
  const logs = all.map((p) => Math.log10(p.value));
  const lo = Math.floor(Math.min(...logs, 0) * 4) / 4;
  const hi = Math.ceil(Math.max(...logs, lo + 0.25) * 4) / 4;
  const x = (s: number) => pad.l + ((w - pad.l - pad.r) * s) / maxStep;
  const y = (v: number) => pad.t + ((h - pad.t - pad.b) * (hi - Math.log10(v))) / (hi - lo || 1);
  const ticks: string[] = [];
  for (let e = Math.floor(lo); e <= hi; e++) {
    for (const m of [1, 2, 5]) {
      const v = m * 10 ** e;
      if (Math.log10(v) < lo || Math.log10(v) > hi) continue;
      ticks.push(`<line x1="${pad.l}" x2="${w - pad.r}" y1="${y(v)}" y2="${y(v)}" stroke="#ddd"/><text x="${pad.l - 6}" y="${y(v) + 4}" font-size="12" text-anchor="end">${v.toPrecision(1)}</text>`);
    }
  }
  const lines = series.map((s, i) => {
    const pts = s.points.filter((p) => p.value > 0).map((p) => `${x(p.step).toFixed(1)},${y(p.value).toFixed(1)}`).join(' ');
    return `<polyline fill="none" stroke="${s.colour}" stroke-width="1.5" points="${pts}"/><text x="${w - pad.r - 150}" y="${pad.t + 16 + 16 * i}" font-size="13" fill="${s.colour}">${s.name}</text>`;
  });
  const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${w}" height="${h}"><rect width="100%" height="100%" fill="white"/>` +
    `<text x="${w / 2}" y="24" font-size="15" text-anchor="middle">${title}</text>${ticks.join('')}` +
    `<line x1="${pad.l}" x2="${pad.l}" y1="${pad.t}" y2="${h - pad.b}" stroke="#000"/><line x1="${pad.l}" x2="${w - pad.r}" y1="${h - pad.b}" y2="${h - pad.b}" stroke="#000"/>` +
    `<text x="${w / 2}" y="${h - 10}" font-size="12" text-anchor="middle">step (max ${maxStep})</text>${lines.join('')}</svg>`;
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
