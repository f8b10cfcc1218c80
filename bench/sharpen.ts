/**
 * Can detail be added after the network more cheaply than the network's own PSNR/NIQE trade-off?
 * Two post-processes of restored faces, scored with `osdface eval` (PSNR, SSIM, NIQE):
 *  - unsharp masking: out = pred + k (pred - blur_sigma(pred)), sharp's Gaussian blur, per (sigma, k);
 *  - with --detail-from DIR (another model's restorations of the same faces), its fine band moved
 *    into pred: out = pred + k highpass_r(detail - pred), highpass_r = x - lowpass (three box filters
 *    of radius r, as the input's low frequencies use); r = 0 takes the whole difference (a pixel mix).
 *
 *   node dist/bench/sharpen.js --pred /tmp/ho/restored --gt /tmp/ho/gt [--detail-from /tmp/ho/gan]
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

async function main(): Promise<void> {
  const pred = arg('pred');
  const gt = arg('gt');
  const detailDir = arg('detail-from');
  if (!pred || !gt) throw new Error('usage: node dist/bench/sharpen.js --pred <restored dir> --gt <ground-truth dir> [--detail-from <restored dir>]');
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
  process.stdout.write(['| post-process | PSNR | SSIM | NIQE |', '|---|---:|---:|---:|', ...rows].join('\n') + '\n');
}

main().catch((e: unknown) => {
  process.stderr.write(`${e instanceof Error ? e.message : String(e)}\n`);
  process.exitCode = 1;
});
