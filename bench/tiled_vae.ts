/**
 * `npx tsc -p . && node dist/bench/tiled_vae.js [--sizes 512,1024] [--tile 512] [--threads 2] [--runs 3] [--modes untiled,independent,exact]`:
 * the full-size VAE (SD-2.1 config, random weights from random_release.ts) encoding and decoding
 * a smooth test image, untiled and tiled (independent tiles, the default, and exact tiles), each size and mode in a child process of its own so
 * that its peak RSS is its own. Prints time, peak RSS and the largest difference of tiled from
 * untiled output (posterior mean, and the decoded image in 1/255 units as the pipeline clamps it).
 *
 * The VAE graphs are written once to bench/.cache/tiled-vae as a converted model directory holds
 * them (weights as external data); the tiled runs read their weights from those files, as the
 * pipeline does.
 */
import fs from 'node:fs';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { emitOnnx } from '../src/graph/emit.js';
import { onnxWeights } from '../src/graph/onnx_weights.js';
import { OnnxSession } from '../src/graph/runtime.js';
import { vaeDecoderGraph, vaeEncoderGraph } from '../src/pipeline/graphs.js';
import { TiledVae } from '../src/pipeline/tiled_vae.js';
import { floatTensor, type FloatTensor } from '../src/tensor.js';
import { randomRelease } from './random_release.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, '../..');
const fullSize = path.resolve(repo, '../shared/fixtures/full-size');
const cacheDir = path.join(repo, 'bench/.cache/tiled-vae');
const FILES = { encoder: 'vae_encoder.onnx', decoder: 'vae_decoder.onnx' };

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1]! : fallback;
}

/** Low-frequency sines and gradients in [-1, 1]. */
function smoothImage(H: number, W: number): FloatTensor {
  const t = floatTensor([1, 3, H, W]);
  for (let c = 0; c < 3; c++) {
    for (let y = 0; y < H; y++) {
      for (let x = 0; x < W; x++) {
        const u = x / W, v = y / H;
        const s = 0.5 * Math.sin(2 * Math.PI * (u * (1 + 0.3 * c) + 0.2 * c)) * Math.cos(Math.PI * v * 1.5) + 0.3 * (u - v) + 0.1 * c - 0.1;
        t.data[(c * H + y) * W + x] = Math.max(-1, Math.min(1, s));
      }
    }
  }
  return t;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
}

function writeVaeGraphs(): void {
  if (fs.existsSync(path.join(cacheDir, 'complete'))) return;
  process.stderr.write(`bench: writing the full-size VAE with random weights to ${cacheDir} (once)...\n`);
  fs.mkdirSync(cacheDir, { recursive: true });
  const { vae } = randomRelease(fullSize);
  for (const [file, graph] of [[FILES.encoder, vaeEncoderGraph(vae.module)], [FILES.decoder, vaeDecoderGraph(vae.module)]] as const) {
    fs.writeFileSync(path.join(cacheDir, file), emitOnnx(graph, { weights: vae.weights, external: { dir: cacheDir, fileName: `${file}.data` } }));
  }
  fs.writeFileSync(path.join(cacheDir, 'complete'), '');
}

interface ChildResult {
  mode: string;
  size: number;
  tile: number;
  threads: number;
  load_s: number;
  first_s: number;
  encode_s: number[];
  decode_s: number[];
  peak_rss_mb: number;
}

/** One size and mode: load, one warm-up encode + decode, then `runs` timed ones; the last outputs go to `outFile`. */
async function child(mode: string, size: number, tile: number, threads: number, runs: number, outFile: string): Promise<void> {
  const t0 = performance.now();
  const runtime = { threads };
  let encode: (x: FloatTensor) => Promise<FloatTensor>;
  let decode: (z: FloatTensor) => Promise<FloatTensor>;
  let release: () => Promise<void>;
  if (mode === 'untiled') {
    const enc = await OnnxSession.create(path.join(cacheDir, FILES.encoder), runtime);
    const dec = await OnnxSession.create(path.join(cacheDir, FILES.decoder), runtime);
    encode = async (image) => (await enc.run({ image })).mean as FloatTensor;
    decode = async (latent) => (await dec.run({ latent })).image as FloatTensor;
    release = async () => { await enc.release(); await dec.release(); };
  } else {
    const { vae } = randomRelease(fullSize);
    const weights = onnxWeights([FILES.encoder, FILES.decoder].map((f) => path.join(cacheDir, f)));
    const tiled = new TiledVae(vae.module, weights, runtime, () => weights.close());
    await tiled.prepare();
    encode = async (image) => (mode === 'exact' ? await tiled.encode(image, tile) : await tiled.encodeIndependent(image, tile)).mean;
    decode = async (latent) => (mode === 'exact' ? tiled.decode(latent, tile) : tiled.decodeIndependent(latent, tile));
    release = () => tiled.dispose();
  }
  const loadS = (performance.now() - t0) / 1000;
  const image = smoothImage(size, size);
  const t1 = performance.now();
  await decode(await encode(image)); // warm-up
  const firstS = (performance.now() - t1) / 1000;
  const encodeS: number[] = [], decodeS: number[] = [];
  let mean!: FloatTensor, out!: FloatTensor;
  for (let r = 0; r < runs; r++) {
    const a = performance.now();
    mean = await encode(image);
    const b = performance.now();
    out = await decode(mean);
    encodeS.push((b - a) / 1000);
    decodeS.push((performance.now() - b) / 1000);
  }
  await release();
  const fd = fs.openSync(outFile, 'w');
  fs.writeSync(fd, new Uint8Array(mean.data.buffer, mean.data.byteOffset, mean.data.byteLength));
  fs.writeSync(fd, new Uint8Array(out.data.buffer, out.data.byteOffset, out.data.byteLength));
  fs.closeSync(fd);
  const result: ChildResult = {
    mode, size, tile, threads, load_s: loadS, first_s: firstS, encode_s: encodeS, decode_s: decodeS,
    peak_rss_mb: process.resourceUsage().maxRSS / 1024,
  };
  process.stdout.write(JSON.stringify(result) + '\n');
}

function readOutputs(file: string, size: number): { mean: Float32Array; image: Float32Array } {
  const buf = fs.readFileSync(file);
  const all = new Float32Array(buf.buffer, buf.byteOffset, buf.byteLength / 4);
  const latent = 4 * (size / 8) ** 2;
  return { mean: all.subarray(0, latent), image: all.subarray(latent) };
}

async function main(): Promise<void> {
  if (process.argv[2] === '--child') {
    const [mode, size, tile, threads, runs, outFile] = process.argv.slice(3);
    await child(mode!, Number(size), Number(tile), Number(threads), Number(runs), outFile!);
    return;
  }
  const sizes = arg('--sizes', '512,1024').split(',').map(Number);
  const tile = Number(arg('--tile', '512'));
  const threads = Number(arg('--threads', '2'));
  const runs = Number(arg('--runs', '3'));
  const modes = arg('--modes', 'untiled,independent,exact').split(',');
  for (const m of modes) if (!['untiled', 'independent', 'exact'].includes(m)) throw new Error(`unknown mode ${m} (untiled, independent, exact)`);
  writeVaeGraphs();
  const rows: string[] = [];
  for (const size of sizes) {
    const results: Record<string, ChildResult> = {};
    const outputs: Record<string, { mean: Float32Array; image: Float32Array }> = {};
    // A tile as large as the image would run as one tile: halve it so the tiled rows really tile.
    const tileHere = tile >= size ? size / 2 : tile;
    for (const mode of modes) {
      const outFile = path.join(cacheDir, `out-${mode}-${size}.f32`);
      process.stderr.write(`bench: ${mode} ${size}x${size}${mode !== 'untiled' ? ` (tile ${tileHere})` : ''}, ${threads} threads, ${runs} runs...\n`);
      const r = spawnSync(process.execPath, [fileURLToPath(import.meta.url), '--child', mode, String(size), String(tileHere), String(threads), String(runs), outFile],
        { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
      if (r.status !== 0) throw new Error(`${mode} ${size} failed (exit ${r.status}, signal ${r.signal})`);
      results[mode] = JSON.parse(r.stdout.trim().split('\n').pop()!) as ChildResult;
      process.stderr.write(`  ${JSON.stringify(results[mode])}\n`);
      outputs[mode] = readOutputs(outFile, size);
    }
    // Without an untiled run here, compare with the untiled outputs of an earlier run of this size.
    const untiledFile = path.join(cacheDir, `out-untiled-${size}.f32`);
    const u = outputs['untiled'] ?? (fs.existsSync(untiledFile) ? readOutputs(untiledFile, size) : null);
    const to01 = (v: number) => Math.min(1, Math.max(0, v * 0.5 + 0.5));
    for (const mode of modes) {
      const r = results[mode]!;
      const t = outputs[mode]!;
      let dMean = 0, dImage = 0, dRaw = 0;
      if (u && mode !== 'untiled') {
        for (let i = 0; i < u.mean.length; i++) dMean = Math.max(dMean, Math.abs(u.mean[i]! - t.mean[i]!));
        for (let i = 0; i < u.image.length; i++) {
          dImage = Math.max(dImage, Math.abs(to01(u.image[i]!) - to01(t.image[i]!)));
          dRaw = Math.max(dRaw, Math.abs(u.image[i]! - t.image[i]!));
        }
      }
      const diff = mode !== 'untiled' && u ? `${(dImage * 255).toExponential(1)} (raw ${dRaw.toExponential(1)}) | ${dMean.toExponential(1)}` : '- | -';
      rows.push(`| ${size} | ${mode}${mode !== 'untiled' ? ` ${r.tile}` : ''} | ${median(r.encode_s).toFixed(2)} | ${median(r.decode_s).toFixed(2)} | ${r.load_s.toFixed(2)} | ${r.first_s.toFixed(2)} | ${r.peak_rss_mb.toFixed(0)} | ${diff} |`);
    }
  }
  process.stdout.write(`${threads} threads, median of ${runs} runs after 1 warm-up (load: sessions, or building the tiled pieces; first: the warm-up encode + decode)\n`);
  process.stdout.write('| size | mode (tile) | encode s | decode s | load s | first s | peak RSS MB | max diff image /255 | max diff latent mean |\n|---|---|---:|---:|---:|---:|---:|---:|---:|\n');
  process.stdout.write(rows.join('\n') + '\n');
}

await main();
