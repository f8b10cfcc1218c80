/**
 * The fidelity knob measured with `osdface eval`: for w = 0, 0.25, 0.5, 0.75, 1 it restores the
 * degraded faces (`osdface restore --aligned --fidelity w`), scores them against the ground truth
 * (PSNR, SSIM, NIQE, LMD, identity cosine) and against the degraded input (PSNR, SSIM), and does
 * the same for the baseline, a pixel blend (1 - w) * restored + w * input. It prints a markdown
 * table and writes a plot of both curves and a picture row of one face across w.
 *
 *   npx tsc -p . && node dist/bench/fidelity.js --lq /tmp/bl/lq --gt /tmp/bl/gt \
 *     --plot docs/fidelity-curve.png --row docs/fidelity-row.jpg [--face NAME] [--model DIR]
 *
 * /tmp/bl comes from `osdface degrade` (bench/RESULTS.md, "Baselines").
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { evalMeans, osdface } from './osdface_cli.js';

const WS = [0, 0.25, 0.5, 0.75, 1];

type Scores = { psnr: number; ssim: number; niqe: number; lmd: number; ids: number; psnrIn: number; ssimIn: number };

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : undefined;
}

function evaluate(pred: string, gt: string, lq: string): Scores {
  const toGt = evalMeans(pred, gt, ['psnr', 'ssim', 'niqe', 'lmd', 'ids']);
  const toIn = evalMeans(pred, lq, ['psnr', 'ssim']);
  return { ...toGt, psnrIn: toIn.psnr, ssimIn: toIn.ssim };
}

async function blend(restoredDir: string, lqDir: string, outDir: string, w: number): Promise<void> {
  fs.mkdirSync(outDir, { recursive: true });
  for (const f of fs.readdirSync(restoredDir).filter((n) => n.endsWith('.png'))) {
    const a = await sharp(path.join(restoredDir, f)).removeAlpha().raw().toBuffer({ resolveWithObject: true });
    const b = await sharp(path.join(lqDir, f)).removeAlpha().raw().toBuffer();
    const out = Buffer.alloc(a.data.length);
    for (let i = 0; i < out.length; i++) out[i] = Math.round((1 - w) * a.data[i]! + w * b[i]!);
    await sharp(out, { raw: { width: a.info.width, height: a.info.height, channels: 3 } }).png().toFile(path.join(outDir, f));
  }
}

/** Six small line charts (x = w), the knob against the pixel blend. */
function plotSvg(knob: Scores[], pixel: Scores[]): string {
  const panels: { key: keyof Scores; title: string }[] = [
    { key: 'psnr', title: 'PSNR vs ground truth (dB) ↑' }, { key: 'ssim', title: 'SSIM vs ground truth ↑' }, { key: 'niqe', title: 'NIQE ↓' },
    { key: 'lmd', title: 'LMD (px) ↓' }, { key: 'ids', title: 'identity cosine ↑' }, { key: 'psnrIn', title: 'PSNR vs degraded input (dB)' },
  ];
  const pw = 300;
  const ph = 210;
  const pad = { l: 52, r: 14, t: 30, b: 34 };
  const parts: string[] = [];
  panels.forEach(({ key, title }, n) => {
    const ox = (n % 3) * pw;
    const oy = 40 + Math.floor(n / 3) * ph;
    const vals = [...knob, ...pixel].map((s) => s[key]).filter(Number.isFinite);
    let lo = Math.min(...vals);
    let hi = Math.max(...vals);
    if (hi - lo < 1e-6) { lo -= 1; hi += 1; }
    const m = (hi - lo) * 0.08;
    lo -= m;
    hi += m;
    const x = (w: number) => ox + pad.l + w * (pw - pad.l - pad.r);
    const y = (v: number) => oy + pad.t + ((hi - Math.min(hi, v)) / (hi - lo)) * (ph - pad.t - pad.b);
    parts.push(`<text x="${ox + pw / 2}" y="${oy + 18}" font-size="13" text-anchor="middle">${title}</text>`);
    parts.push(`<rect x="${ox + pad.l}" y="${oy + pad.t}" width="${pw - pad.l - pad.r}" height="${ph - pad.t - pad.b}" fill="none" stroke="#888"/>`);
    for (const w of WS) parts.push(`<text x="${x(w)}" y="${oy + ph - pad.b + 14}" font-size="10" text-anchor="middle">${w}</text>`);
    for (const v of [lo + m, (lo + hi) / 2, hi - m]) parts.push(`<text x="${ox + pad.l - 4}" y="${y(v) + 3}" font-size="10" text-anchor="end">${v.toFixed(key.startsWith('ssim') || key === 'ids' ? 3 : 1)}</text>`);
    parts.push(`<text x="${ox + pw / 2}" y="${oy + ph - 4}" font-size="11" text-anchor="middle">w</text>`);
    for (const [series, colour] of [[knob, '#c0392b'], [pixel, '#2471a3']] as const) {
      const pts = series.map((s, i) => [x(WS[i]!), y(Number.isFinite(s[key]) ? s[key] : hi)] as const);
      parts.push(`<polyline fill="none" stroke="${colour}" stroke-width="2" points="${pts.map((p) => p.join(',')).join(' ')}"/>`);
      for (const [px, py] of pts) parts.push(`<circle cx="${px}" cy="${py}" r="3" fill="${colour}"/>`);
    }
  });
  const legend = '<text x="20" y="24" font-size="14"><tspan fill="#c0392b">● --fidelity w (latent towards the input + residual)</tspan>   <tspan fill="#2471a3">● pixel blend (1 − w)·restored + w·input</tspan></text>';
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${3 * pw}" height="${40 + 2 * ph}"><rect width="100%" height="100%" fill="#fff"/>${legend}${parts.join('')}</svg>`;
}

async function pictureRow(file: string, face: string, lqDir: string, gtDir: string, dirs: string[], side = 192): Promise<void> {
  const tiles = [path.join(lqDir, face), ...dirs.map((d) => path.join(d, face)), path.join(gtDir, face)];
  const labels = ['input', ...WS.map((w) => `w = ${w}`), 'ground truth'];
  const label = 20;
  const composite = await Promise.all(tiles.map(async (t, i) => ({ input: await sharp(t).resize(side, side).png().toBuffer(), left: i * (side + 4), top: label })));
  const text = labels.map((l, i) => `<text x="${i * (side + 4) + side / 2}" y="15" font-size="13" text-anchor="middle">${l}</text>`).join('');
  const width = tiles.length * (side + 4) - 4;
  const svg = Buffer.from(`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${label}">${text}</svg>`);
  const img = sharp({ create: { width, height: side + label, channels: 3, background: '#ffffff' } }).composite([{ input: svg, left: 0, top: 0 }, ...composite]);
  await (file.endsWith('.png') ? img.png() : img.jpeg({ quality: 88 })).toFile(file);
}

async function main(): Promise<void> {
  const lq = arg('lq');
  const gt = arg('gt');
  if (!lq || !gt) throw new Error('usage: node dist/bench/fidelity.js --lq DIR --gt DIR [--plot FILE.png] [--row FILE.jpg] [--face NAME] [--model DIR]');
  const model = arg('model');
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'osdface-fidelity-'));
  try {
    const knob: Scores[] = [];
    const pixel: Scores[] = [];
    const dirs: string[] = [];
    for (const w of WS) {
      const dir = path.join(work, `w${w}`);
      process.stderr.write(`fidelity: restoring at w = ${w}\n`);
      osdface(['restore', lq, '--aligned', '-o', dir, '--fidelity', String(w), ...(model ? ['--model', model] : [])]);
      dirs.push(dir);
      knob.push(evaluate(dir, gt, lq));
      const b = path.join(work, `blend${w}`);
      await blend(dirs[0]!, lq, b, w);
      pixel.push(evaluate(b, gt, lq));
    }
    const row = (name: string, s: Scores[]) => s.map((v, i) => `| ${name} | ${WS[i]} | ${v.psnr.toFixed(2)} | ${v.ssim.toFixed(4)} | ${v.niqe.toFixed(3)} | ${v.lmd.toFixed(2)} | ${v.ids.toFixed(4)} | ${v.psnrIn.toFixed(2)} | ${v.ssimIn.toFixed(4)} |`).join('\n');
    process.stdout.write(`| method | w | PSNR ↑ | SSIM ↑ | NIQE ↓ | LMD px ↓ | identity ↑ | PSNR vs input | SSIM vs input |\n|---|---|---|---|---|---|---|---|---|\n${row('--fidelity', knob)}\n${row('pixel blend', pixel)}\n`);
    const plot = arg('plot');
    if (plot) await sharp(Buffer.from(plotSvg(knob, pixel))).png().toFile(plot);
    const rowFile = arg('row');
    if (rowFile) await pictureRow(rowFile, arg('face') ?? fs.readdirSync(lq).filter((f) => f.endsWith('.png')).sort()[0]!, lq, gt, dirs);
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
}

main().catch((e) => {
  process.stderr.write(`${(e as Error).message}\n`);
  process.exitCode = 1;
});
