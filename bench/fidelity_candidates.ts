/**
 * Which definition of the fidelity knob to ship: three candidates measured on the same faces.
 *
 *   latent:   decode((1 - w) * x0 + w * z)            (z: the input's scaled latent)
 *   timestep: the x0 step at timestep round((1 - w) * t)  (t = the model's timestep; 0 keeps the input)
 *   residual: latent, plus w * (input - decode(z)): what the decoder cannot rebuild of the input
 *   pixel:    (1 - w) * restored + w * input            (the baseline to beat)
 *
 * For each w it prints PSNR/SSIM against the ground truth and against the degraded input, and the
 * mean absolute change between neighbouring w (smoothness).
 *
 *   npx tsc -p . && node dist/bench/fidelity_candidates.js --lq /tmp/bl/lq --gt /tmp/bl/gt [--model DIR] [--methods latent,pixel] [--faces N]
 */
import fs from 'node:fs';
import path from 'node:path';
import { decodeImage, type RgbImage } from '../src/image/io.js';
import { loadModelDir } from '../src/pipeline/model.js';
import { resolveModelDir } from '../src/pipeline/default_model.js';
import { alphasCumprod, x0FromEps } from '../src/pipeline/scheduler.js';
import { SD_SCHEDULE } from '../src/train/trainer.js';
import { psnr, ssim } from '../src/metrics/index.js';
import { floatTensor, type FloatTensor } from '../src/tensor.js';

const WS = [0, 0.25, 0.5, 0.75, 1];

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : undefined;
}

function toTensor(img: RgbImage): FloatTensor {
  const { width: w, height: h } = img;
  const t = floatTensor([1, 3, h, w]);
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) for (let c = 0; c < 3; c++) t.data[c * h * w + y * w + x] = img.data[(y * w + x) * 3 + c]! / 255;
  return t;
}

function toImage(t: FloatTensor): RgbImage {
  const [, , h, w] = t.shape as [number, number, number, number];
  const data = new Uint8Array(h * w * 3);
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) for (let c = 0; c < 3; c++) {
    data[(y * w + x) * 3 + c] = Math.round(Math.min(1, Math.max(0, t.data[c * h * w + y * w + x]!)) * 255);
  }
  return { width: w, height: h, channels: 3, data };
}

const fromDecoded = (d: FloatTensor) => floatTensor(d.shape, d.data.map((v) => Math.min(1, Math.max(-1, v)) * 0.5 + 0.5));

async function main(): Promise<void> {
  const lqDir = arg('lq');
  const gtDir = arg('gt');
  if (!lqDir || !gtDir) throw new Error('usage: fidelity_candidates --lq DIR --gt DIR [--model DIR]');
  const { pipeline, manifest } = await loadModelDir(resolveModelDir(arg('model')), { threads: 2 });
  const schedule = alphasCumprod(SD_SCHEDULE);
  const t0 = manifest.settings.timestep;
  const sf = pipeline.scalingFactor;
  const names = fs.readdirSync(lqDir).filter((f) => /\.(png|jpg)$/.test(f)).sort().slice(0, Number(arg('faces') ?? Infinity));
  const methods = (arg('methods') ?? 'latent,timestep,residual,pixel').split(',');
  type Row = { toGt: number[]; toGtSsim: number[]; toLq: number[]; toLqSsim: number[]; step: number[] };
  const rows: Record<string, Row> = {};
  for (const m of methods) rows[m] = { toGt: WS.map(() => 0), toGtSsim: WS.map(() => 0), toLq: WS.map(() => 0), toLqSsim: WS.map(() => 0), step: WS.map(() => 0) };
  for (const name of names) {
    const lqImg = await decodeImage(path.join(lqDir, name));
    const gt = await decodeImage(path.join(gtDir, name));
    const lq = toTensor(lqImg);
    const pre = await pipeline.preprocess(lq);
    const vre = await pipeline.vre(pre);
    const { mean } = await pipeline.encode(pre, false);
    const z = floatTensor(mean.shape, mean.data.map((v) => v * sf));
    const eps = await pipeline.unet(z, vre.prompt);
    const x0 = x0FromEps(z, eps, manifest.settings.alphaCumprod);
    const restored = fromDecoded(await pipeline.decode(floatTensor(x0.shape, x0.data.map((v) => v / sf)), false));
    const outs: Record<string, RgbImage[]> = Object.fromEntries(methods.map((m) => [m, []]));
    const rebuilt = methods.includes('residual') ? fromDecoded(await pipeline.decode(mean, false)) : null;
    for (const w of WS) {
      const mixed = floatTensor(x0.shape, x0.data.map((v, i) => (v + w * (z.data[i]! - v)) / sf));
      const decoded = methods.includes('latent') || rebuilt ? fromDecoded(await pipeline.decode(mixed, false)) : null;
      if (methods.includes('latent')) outs['latent']!.push(toImage(decoded!));
      if (rebuilt) outs['residual']!.push(toImage(floatTensor(decoded!.shape, decoded!.data.map((v, i) => v + w * (lq.data[i]! - rebuilt.data[i]!)))));
      if (methods.includes('timestep')) {
        const t = Math.round((1 - w) * t0);
        const e = await pipeline.unet(z, vre.prompt, t);
        const x0t = x0FromEps(z, e, schedule[t]!);
        outs['timestep']!.push(toImage(fromDecoded(await pipeline.decode(floatTensor(x0t.shape, x0t.data.map((v) => v / sf)), false))));
      }
      if (methods.includes('pixel')) outs['pixel']!.push(toImage(floatTensor(restored.shape, restored.data.map((v, i) => (1 - w) * v + w * lq.data[i]!))));
    }
    for (const [m, imgs] of Object.entries(outs)) {
      imgs.forEach((img, k) => {
        const r = rows[m]!;
        r.toGt[k]! += psnr(img, gt) / names.length;
        r.toGtSsim[k]! += ssim(img, gt) / names.length;
        r.toLq[k]! += psnr(img, lqImg) / names.length;
        r.toLqSsim[k]! += ssim(img, lqImg) / names.length;
        if (k > 0) {
          const prev = imgs[k - 1]!;
          let s = 0;
          for (let i = 0; i < img.data.length; i++) s += Math.abs(img.data[i]! - prev.data[i]!);
          r.step[k]! += s / img.data.length / names.length;
        }
      });
    }
    process.stderr.write(`${name} done\n`);
  }
  const fmt = (a: number[], d = 2) => a.map((v) => v.toFixed(d)).join(' | ');
  process.stdout.write(`${names.length} faces; w = ${WS.join(', ')}\n`);
  for (const [m, r] of Object.entries(rows)) {
    process.stdout.write(`${m}\n  PSNR vs GT    ${fmt(r.toGt)}\n  SSIM vs GT    ${fmt(r.toGtSsim, 4)}\n  PSNR vs input ${fmt(r.toLq)}\n  SSIM vs input ${fmt(r.toLqSsim, 4)}\n  mean |change| from previous w (0-255) ${fmt(r.step)}\n`);
  }
  await pipeline.dispose();
}

main().catch((e) => {
  process.stderr.write(`${(e as Error).stack}\n`);
  process.exitCode = 1;
});
