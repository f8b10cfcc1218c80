/**
 * Times one converted model in this process (so peak RSS is the model's alone):
 * node dist/bench/time.js <model-dir> <threads> <runs> [low-memory | no-low-memory]  -> one JSON
 * line on stdout. Without a mode, the model's default (low memory for fp32, not for int8).
 * The stage times are one pass of the networks; `restore_s` is the whole `restore()` a user waits
 * for, with what the model directory adds (the mirror ensemble's second pass, the input's low
 * frequencies).
 */
import { loadModelDir } from '../src/pipeline/model.js';
import { x0FromEps } from '../src/pipeline/scheduler.js';
import { floatTensor } from '../src/tensor.js';
import { gaussianNoise } from '../src/pipeline/random.js';

const [dir, threadsArg, runsArg, mode] = process.argv.slice(2);
const threads = Number(threadsArg ?? 2);
const runs = Number(runsArg ?? 3);

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const seconds = (t0: bigint) => Number(process.hrtime.bigint() - t0) / 1e9;

async function main(): Promise<void> {
  const t0 = process.hrtime.bigint();
  const { pipeline: p, manifest } = await loadModelDir(dir!, { threads }, undefined, mode ? { lowMemory: mode === 'low-memory' } : {});
  const loadS = seconds(t0);
  const size = manifest.settings.processSize;
  const lq = floatTensor([1, 3, size, size], gaussianNoise(3 * size * size, 7).map((v) => Math.min(1, Math.max(0, 0.5 + 0.2 * v))));
  const samples: Record<string, number[]> = { vre_s: [], vae_encode_s: [], unet_s: [], vae_decode_s: [], total_s: [], restore_s: [] };
  for (let i = 0; i <= runs; i++) {
    const start = process.hrtime.bigint();
    let t = process.hrtime.bigint();
    const x = await p.preprocess(lq);
    const { prompt } = await p.vre(x);
    const vre = seconds(t);
    t = process.hrtime.bigint();
    const { mean } = await p.encode(x);
    const latent = floatTensor(mean.shape, mean.data.map((v) => v * p.scalingFactor));
    const enc = seconds(t);
    t = process.hrtime.bigint();
    const eps = await p.unet(latent, prompt);
    const unet = seconds(t);
    t = process.hrtime.bigint();
    const x0 = x0FromEps(latent, eps, p.settings.alphaCumprod);
    await p.decode(floatTensor(x0.shape, x0.data.map((v) => v / p.scalingFactor)));
    const dec = seconds(t);
    const total = seconds(start);
    t = process.hrtime.bigint();
    await p.restore(lq);
    const restore = seconds(t);
    if (i === 0) continue; // warm-up
    samples.vre_s!.push(vre);
    samples.vae_encode_s!.push(enc);
    samples.unet_s!.push(unet);
    samples.vae_decode_s!.push(dec);
    samples.total_s!.push(total);
    samples.restore_s!.push(restore);
  }
  // What restore_s includes beyond one pass of the networks.
  const result: Record<string, unknown> = { load_s: loadS, mirror_ensemble: p.settings.mirrorEnsemble === true, low_frequency: p.settings.lowFrequencyFromInput !== undefined };
  for (const [k, v] of Object.entries(samples)) result[k] = median(v);
  result['peak_rss_mb'] = process.resourceUsage().maxRSS / 1024;
  result['runs'] = samples;
  await p.dispose();
  process.stdout.write(JSON.stringify(result) + '\n');
}

main().catch((e: unknown) => {
  process.stderr.write(`${e instanceof Error ? e.stack : String(e)}\n`);
  process.exit(1);
});
