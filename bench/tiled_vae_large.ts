/**
 * `node dist/bench/tiled_vae_large.js [--size 2048] [--tile 512] [--threads 2] [--mode independent|exact]`:
 * one decode of a size x size image (a smooth random latent) by the full-size VAE (random weights,
 * the graphs bench/tiled_vae.ts writes to bench/.cache/tiled-vae) in independent or exact tiles,
 * in this process: prints its time and peak RSS. For sizes whose untiled run would not fit.
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { onnxWeights } from '../src/graph/onnx_weights.js';
import { TiledVae } from '../src/pipeline/tiled_vae.js';
import { floatTensor } from '../src/tensor.js';
import { randomRelease } from './random_release.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, '../..');
const cacheDir = path.join(repo, 'bench/.cache/tiled-vae');
const arg = (name: string, fallback: string) => {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1]! : fallback;
};
const size = Number(arg('--size', '2048'));
const tile = Number(arg('--tile', '512'));
const mode = arg('--mode', 'independent');
const { vae } = randomRelease(path.resolve(repo, '../shared/fixtures/full-size'));
const weights = onnxWeights(['vae_encoder.onnx', 'vae_decoder.onnx'].map((f) => path.join(cacheDir, f)));
const tiled = new TiledVae(vae.module, weights, { threads: Number(arg('--threads', '2')) }, () => weights.close());
const h = size / vae.module.downFactor;
const latent = floatTensor([1, vae.module.latentChannels, h, h]);
for (let c = 0; c < vae.module.latentChannels; c++) {
  for (let y = 0; y < h; y++) for (let x = 0; x < h; x++) latent.data[(c * h + y) * h + x] = Math.sin((x / h) * 6 + c) * Math.cos((y / h) * 4 - c);
}
const t0 = performance.now();
const image = mode === 'exact' ? await tiled.decode(latent, tile) : await tiled.decodeIndependent(latent, tile);
const seconds = (performance.now() - t0) / 1000;
await tiled.dispose();
process.stdout.write(JSON.stringify({ mode, size, tile, decode_s: seconds, peak_rss_mb: process.resourceUsage().maxRSS / 1024, finite: image.data.every(Number.isFinite) }) + '\n');
