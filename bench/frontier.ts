/**
 * The default model's perception-distortion picture: every network and weight blend measured on the
 * hold-out faces (the model card's hold-out table), NIQE against PSNR, with the shipped export and
 * the lines no measured model has crossed. It reads the table from the model card, so the plot
 * always shows what the card records and nothing else.
 *
 *   node dist/bench/frontier.js [--card models/osdface-small/MODEL_CARD.md] -o docs/osdface-small-frontier.png
 */
import fs from 'node:fs';
import sharp from 'sharp';

const NIQE_GOAL = 5.5;

interface Row { name: string; psnr: number; ssim: number; niqe: number; exported: boolean; blend: boolean }

/** The rows of the card's table headed `| hold-out faces | PSNR | SSIM | NIQE | ...`. */
export function holdOutRows(card: string): Row[] {
  const lines = card.split('\n');
  const head = lines.findIndex((l) => /^\| hold-out faces \| PSNR \| SSIM \| NIQE \|/.test(l));
  if (head < 0) throw new Error('model card: no "| hold-out faces | PSNR | SSIM | NIQE |" table');
  const rows: Row[] = [];
  for (const line of lines.slice(head + 2)) {
    if (!line.startsWith('|')) break;
    const cells = line.split('|').slice(1, -1).map((c) => c.trim().replace(/\*\*/g, ''));
    const [name, psnr, ssim, niqe] = [cells[0]!, Number(cells[1]), Number(cells[2]), Number(cells[3])];
    if (![psnr, ssim, niqe].every(Number.isFinite) || /degraded input|ground truth|bicubic/.test(name)) continue;
    rows.push({ name, psnr, ssim, niqe, exported: /\(exported\)/.test(name), blend: /·/.test(name) });
  }
  return rows;
}

function plotSvg(rows: Row[]): string {
  const [w, h] = [760, 500];
  const pad = { l: 64, r: 24, t: 44, b: 52 };
  const lo = { x: Math.floor(Math.min(...rows.map((r) => r.psnr)) * 2) / 2, y: Math.floor(Math.min(...rows.map((r) => r.niqe), 5)) };
  const hi = { x: Math.ceil(Math.max(...rows.map((r) => r.psnr)) * 2) / 2, y: Math.ceil(Math.max(...rows.map((r) => r.niqe))) };
  const x = (v: number) => pad.l + ((v - lo.x) / (hi.x - lo.x)) * (w - pad.l - pad.r);
  const y = (v: number) => pad.t + ((hi.y - v) / (hi.y - lo.y)) * (h - pad.t - pad.b);
  const parts: string[] = [];
  for (let v = lo.x; v <= hi.x + 1e-9; v += 0.5) {
    parts.push(`<line x1="${x(v)}" x2="${x(v)}" y1="${pad.t}" y2="${h - pad.b}" stroke="#eee"/><text x="${x(v)}" y="${h - pad.b + 16}" font-size="11" text-anchor="middle">${v.toFixed(1)}</text>`);
  }
  for (let v = lo.y; v <= hi.y; v += 1) {
    parts.push(`<line x1="${pad.l}" x2="${w - pad.r}" y1="${y(v)}" y2="${y(v)}" stroke="#eee"/><text x="${pad.l - 6}" y="${y(v) + 4}" font-size="11" text-anchor="end">${v}</text>`);
  }
  const shipped = rows.find((r) => r.exported);
  if (shipped) {
    // The shipped export's PSNR: a model right of this line and below it would beat the export on both.
    parts.push(`<line x1="${x(shipped.psnr)}" x2="${x(shipped.psnr)}" y1="${pad.t}" y2="${h - pad.b}" stroke="#c0392b" stroke-dasharray="5,4"/>`);
    parts.push(`<line x1="${pad.l}" x2="${w - pad.r}" y1="${y(shipped.niqe)}" y2="${y(shipped.niqe)}" stroke="#c0392b" stroke-dasharray="5,4"/>`);
  }
  // The NIQE goal is set on the test faces; on the hold-out faces the export scores about 0.9 lower, the GAN stages about the same.
  parts.push(`<line x1="${pad.l}" x2="${w - pad.r}" y1="${y(NIQE_GOAL)}" y2="${y(NIQE_GOAL)}" stroke="#555" stroke-dasharray="2,3"/>` +
    `<text x="${w - pad.r - 6}" y="${y(NIQE_GOAL) - 6}" font-size="11" text-anchor="end" fill="#555">NIQE goal ${NIQE_GOAL} (set on the test faces)</text>`);
  for (const r of rows) {
    const colour = r.exported ? '#c0392b' : r.blend ? '#2471a3' : '#27ae60';
    parts.push(`<circle cx="${x(r.psnr).toFixed(1)}" cy="${y(r.niqe).toFixed(1)}" r="${r.exported ? 6 : 3.5}" fill="${colour}" fill-opacity="${r.exported ? 1 : 0.75}"><title>${r.name}</title></circle>`);
  }
  const legend = '<text x="20" y="26" font-size="13"><tspan fill="#27ae60">● one stage\'s network</tspan>   <tspan fill="#2471a3">● weight blend of stages</tspan>   <tspan fill="#c0392b">● the shipped export (dashed: its PSNR and NIQE)</tspan></text>';
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${w}" height="${h}" font-family="sans-serif"><rect width="100%" height="100%" fill="#fff"/>${legend}` +
    `<rect x="${pad.l}" y="${pad.t}" width="${w - pad.l - pad.r}" height="${h - pad.t - pad.b}" fill="none" stroke="#888"/>${parts.join('')}` +
    `<text x="${(pad.l + w - pad.r) / 2}" y="${h - 12}" font-size="13" text-anchor="middle">PSNR on the 10 hold-out faces (dB, network alone) →</text>` +
    `<text transform="translate(18 ${(pad.t + h - pad.b) / 2}) rotate(-90)" font-size="13" text-anchor="middle">NIQE (lower is better) ↓</text></svg>`;
}

async function main(argv: string[]): Promise<number> {
  const get = (flag: string) => (argv.includes(flag) ? argv[argv.indexOf(flag) + 1] : undefined);
  const out = get('-o');
  const cardPath = get('--card') ?? 'models/osdface-small/MODEL_CARD.md';
  if (!out) {
    process.stderr.write('usage: node dist/bench/frontier.js [--card MODEL_CARD.md] -o <plot.png>\n');
    return 2;
  }
  const rows = holdOutRows(fs.readFileSync(cardPath, 'utf8'));
  await sharp(Buffer.from(plotSvg(rows))).png().toFile(out);
  process.stdout.write(`${rows.length} models from ${cardPath} -> ${out}\n`);
  return 0;
}

main(process.argv.slice(2)).then((code) => { process.exitCode = code; }, (e: unknown) => { process.stderr.write(`${e instanceof Error ? e.message : String(e)}\n`); process.exitCode = 1; });
