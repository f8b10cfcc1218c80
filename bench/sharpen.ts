/**
 * Can detail be added after the network more cheaply than the network's own PSNR/NIQE trade-off?
 * Two post-processes of restored faces, scored with `osdface eval` (PSNR, SSIM, NIQE):
 *  - unsharp masking: out = pred + k (pred - blur_sigma(pred)), sharp's Gaussian blur, per (sigma, k);
 *  - with --detail-from DIR (another model's restorations of the same faces), its fine band moved
 *    into pred: out = pred + k highpass_r(detail - pred), highpass_r = x - lowpass (three box filters
 *    of radius r, as the input's low frequencies use); r = 0 takes the whole difference (a pixel mix).
 *  - with --ground-truth-texture, an oracle bound on texture that is plausible but not the face's own:
 *    the ground truth's fine band (image minus sharp's Gaussian blur of sigma s) taken from 17 px down
 *    and 23 px right (wrapping), added as out = pred + k band_moved, either as it is ("evenly") or
 *    scaled to the ground truth's own local band amplitude at each pixel ("at its amplitude": RMS
 *    over a 9x9 box, the gain capped at 4). No model can place texture better without recovering
 *    the true detail; how far NIQE falls for the SSIM it costs bounds what texture alone can buy.
 *
 *   node dist/bench/sharpen.js --pred /tmp/ho/restored --gt /tmp/ho/gt [--detail-from /tmp/ho/gan] [--ground-truth-texture]
 *
 * The folders come from `osdface degrade ... --gt-out` and `osdface restore --aligned`
 * (bench/RESULTS.md, "The default model").
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { lowpass } from '../src/pipeline/input_low_frequency.js';
import { floatTensor } from '../src/tensor.js';
import { evalMeans } from './osdface_cli.js';

const UNSHARP: { sigma: number; amount: number }[] = [
  { sigma: 0.7, amount: 0.5 }, { sigma: 1, amount: 0.5 }, { sigma: 1, amount: 1 }, { sigma: 2, amount: 0.5 },
];
const DETAIL: { radius: number; amount: number }[] = [
  { radius: 0, amount: 0.4 }, { radius: 1, amount: 1 }, { radius: 2, amount: 0.7 }, { radius: 2, amount: 1 }, { radius: 3, amount: 1 },
];

const GROUND_TRUTH_TEXTURE: { sigma: number; amount: number; envelope: boolean }[] = [
  { sigma: 1, amount: 1, envelope: false }, { sigma: 1, amount: 1, envelope: true },
  { sigma: 2, amount: 0.35, envelope: true }, { sigma: 2, amount: 0.7, envelope: true }, { sigma: 2, amount: 1, envelope: true },
];
/** Where the moved texture comes from, in pixels down and right: far enough to share no phase with the face's own. */
const TEXTURE_SHIFT = [17, 23] as const;
const ENVELOPE_RADIUS = 4;
const ENVELOPE_MAX_GAIN = 4;

type Scores = { psnr: number; ssim: number; niqe: number };
type Rgb = { data: Buffer; width: number; height: number };

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : undefined;
}

const evaluate = (pred: string, gt: string): Scores => evalMeans(pred, gt, ['psnr', 'ssim', 'niqe']);

async function readRgb(file: string): Promise<Rgb> {
  const { data, info } = await sharp(file).removeAlpha().raw().toBuffer({ resolveWithObject: true });
  return { data, width: info.width, height: info.height };
}

/** Writes make(pred face, its name) for every png of predDir into a new folder and returns it. */
async function variant(predDir: string, make: (pred: Rgb, name: string) => Promise<Buffer>): Promise<string> {
  const out = fs.mkdtempSync(path.join(os.tmpdir(), 'osdface-sharpen-'));
  for (const name of fs.readdirSync(predDir).filter((n) => n.endsWith('.png'))) {
    const pred = await readRgb(path.join(predDir, name));
    await sharp(await make(pred, name), { raw: { width: pred.width, height: pred.height, channels: 3 } }).png().toFile(path.join(out, name));
  }
  return out;
}

const clampByte = (v: number) => Math.max(0, Math.min(255, Math.round(v)));

async function unsharp(pred: Rgb, sigma: number, amount: number): Promise<Buffer> {
  const blurred = await sharp(pred.data, { raw: { width: pred.width, height: pred.height, channels: 3 } }).blur(sigma).raw().toBuffer();
  return Buffer.from(pred.data.map((v, i) => clampByte(v + amount * (v - blurred[i]!))));
}

function detailFrom(pred: Rgb, detail: Rgb, radius: number, amount: number): Buffer {
  const { width, height } = pred;
  // Planar (1, 3, H, W) for lowpass; interleaved RGB in and out.
  const diff = floatTensor([1, 3, height, width]);
  const plane = width * height;
  for (let i = 0; i < plane; i++) for (let c = 0; c < 3; c++) diff.data[c * plane + i] = detail.data[i * 3 + c]! - pred.data[i * 3 + c]!;
  const low = radius > 0 ? lowpass(floatTensor(diff.shape, Float32Array.from(diff.data)), radius) : floatTensor(diff.shape);
  const out = Buffer.alloc(pred.data.length);
  for (let i = 0; i < plane; i++) {
    for (let c = 0; c < 3; c++) out[i * 3 + c] = clampByte(pred.data[i * 3 + c]! + amount * (diff.data[c * plane + i]! - low.data[c * plane + i]!));
  }
  return out;
}

/** Mean of a (w x h) plane over a (2r+1)² box clipped to the image, from an integral image. */
function boxMean(plane: Float64Array, w: number, h: number, r: number): Float64Array {
  const integral = new Float64Array((w + 1) * (h + 1));
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) integral[(y + 1) * (w + 1) + x + 1] = plane[y * w + x]! + integral[y * (w + 1) + x + 1]! + integral[(y + 1) * (w + 1) + x]! - integral[y * (w + 1) + x]!;
  }
  const out = new Float64Array(w * h);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const [y0, y1, x0, x1] = [Math.max(0, y - r), Math.min(h, y + r + 1), Math.max(0, x - r), Math.min(w, x + r + 1)];
      const sum = integral[y1 * (w + 1) + x1]! - integral[y0 * (w + 1) + x1]! - integral[y1 * (w + 1) + x0]! + integral[y0 * (w + 1) + x0]!;
      out[y * w + x] = sum / ((y1 - y0) * (x1 - x0));
    }
  }
  return out;
}

async function groundTruthTexture(pred: Rgb, gtFile: string, sigma: number, amount: number, envelope: boolean): Promise<Buffer> {
  const gt = await readRgb(gtFile);
  const { width: w, height: h } = gt;
  if (w !== pred.width || h !== pred.height) throw new Error(`${gtFile}: ${w}x${h}, the restored face is ${pred.width}x${pred.height}`);
  const blurred = await sharp(gt.data, { raw: { width: w, height: h, channels: 3 } }).blur(sigma).raw().toBuffer();
  const band = Float64Array.from(gt.data, (v, i) => v - blurred[i]!);
  const moved = (y: number, x: number) => ((y + TEXTURE_SHIFT[0]) % h) * w + ((x + TEXTURE_SHIFT[1]) % w);
  const energy = (at: (y: number, x: number) => number) => {
    const e = new Float64Array(w * h);
    for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) for (let c = 0; c < 3; c++) e[y * w + x] += band[at(y, x) * 3 + c]! ** 2 / 3;
    return boxMean(e, w, h, ENVELOPE_RADIUS);
  };
  const [own, theirs] = envelope ? [energy((y, x) => y * w + x), energy(moved)] : [null, null];
  const out = Buffer.alloc(pred.data.length);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const i = y * w + x;
      // The integral image's differences can fall a rounding error below 0 on flat ground; that is no energy.
      const gain = own && theirs ? Math.min(ENVELOPE_MAX_GAIN, Math.sqrt(Math.max(0, own[i]!) / (Math.max(0, theirs[i]!) + 1e-3))) : 1;
      for (let c = 0; c < 3; c++) out[i * 3 + c] = clampByte(pred.data[i * 3 + c]! + amount * gain * band[moved(y, x) * 3 + c]!);
    }
  }
  return out;
}

async function main(): Promise<void> {
  const pred = arg('pred');
  const gt = arg('gt');
  const detailDir = arg('detail-from');
  if (!pred || !gt) throw new Error('usage: node dist/bench/sharpen.js --pred <restored dir> --gt <ground-truth dir> [--detail-from <restored dir>] [--ground-truth-texture]');
  const rows: string[] = [];
  const row = (name: string, s: Scores) => rows.push(`| ${name} | ${s.psnr.toFixed(2)} | ${s.ssim.toFixed(4)} | ${s.niqe.toFixed(2)} |`);
  row('restored', evaluate(pred, gt));
  for (const { sigma, amount } of UNSHARP) {
    const dir = await variant(pred, (p) => unsharp(p, sigma, amount));
    row(`unsharp mask, sigma ${sigma}, amount ${amount}`, evaluate(dir, gt));
    fs.rmSync(dir, { recursive: true });
  }
  if (detailDir) {
    row('detail source', evaluate(detailDir, gt));
    for (const { radius, amount } of DETAIL) {
      const dir = await variant(pred, async (p, name) => detailFrom(p, await readRgb(path.join(detailDir, name)), radius, amount));
      row(radius > 0 ? `detail source's band under r ${radius}, x ${amount}` : `pixel mix, detail source x ${amount}`, evaluate(dir, gt));
      fs.rmSync(dir, { recursive: true });
    }
  }
  if (process.argv.includes('--ground-truth-texture')) {
    for (const { sigma, amount, envelope } of GROUND_TRUTH_TEXTURE) {
      const dir = await variant(pred, (p, name) => groundTruthTexture(p, path.join(gt, name), sigma, amount, envelope));
      row(`ground truth's band under sigma ${sigma} moved ${TEXTURE_SHIFT.join(', ')} px, ${envelope ? 'at its amplitude' : 'evenly'}, x ${amount}`, evaluate(dir, gt));
      fs.rmSync(dir, { recursive: true });
    }
  }
  process.stdout.write(['| post-process | PSNR | SSIM | NIQE |', '|---|---:|---:|---:|', ...rows].join('\n') + '\n');
}

main().catch((e: unknown) => {
  process.stderr.write(`${e instanceof Error ? e.message : String(e)}\n`);
  process.exitCode = 1;
});
