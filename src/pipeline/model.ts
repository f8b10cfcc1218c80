/**
 * Loading a converted model directory into a ready pipeline.
 *
 * ONNX Runtime's full graph optimization (layout changes for the convolutions, fusions) takes
 * ~25 s and a second copy of the weights for the full-size UNet. Its result depends on this CPU's
 * instruction set, so it is cached per CPU in `<model dir>/optimized/<cpu key>/` the first time
 * (convert does it up front) and later loads read the optimized graphs directly.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import ort from 'onnxruntime-node';
import { OnnxSession, type RuntimeOptions } from '../graph/runtime.js';
import { SafetensorsFile } from '../weights/safetensors.js';
import type { FloatTensor } from '../tensor.js';
import { OSDFacePipeline, type StageName, type StageSession, type StageSessions } from './pipeline.js';
import { readManifest, type Manifest } from './manifest.js';
import { pipelineSettings } from './manifest_core.js';
import { TiledVae } from './tiled_vae.js';
import { AutoencoderKL } from '../models/autoencoder_kl.js';
import { Config } from '../models/config.js';
import { onnxWeights, type OnnxWeights } from '../graph/onnx_weights.js';

const COMPLETE = 'complete.json';

/** What the optimized graphs depend on: ONNX Runtime's version and the CPU's instruction set. */
export function cpuKey(): string {
  let flags = '';
  try {
    flags = /^flags\s*:(.*)$/m.exec(fs.readFileSync('/proc/cpuinfo', 'utf8'))?.[1]?.trim() ?? '';
  } catch {
    flags = os.cpus()[0]?.model ?? '';
  }
  const hash = crypto.createHash('sha256').update(`${ort.env.versions.common}|${os.platform()}|${os.arch()}|${flags}`).digest('hex');
  return `${os.arch()}-ort${ort.env.versions.common}-${hash.slice(0, 12)}`;
}

export function optimizedDir(dir: string): string {
  return path.join(dir, 'optimized', cpuKey());
}

/**
 * Writes the optimized graphs for this CPU (atomically: a temporary folder renamed at the end).
 * Returns false when the model directory cannot be written (the caller then optimizes in memory).
 */
export async function prepareOptimized(dir: string, manifest: Manifest, onProgress?: (step: string) => void): Promise<boolean> {
  const target = optimizedDir(dir);
  if (fs.existsSync(path.join(target, COMPLETE))) return true;
  let tmp: string;
  try {
    fs.mkdirSync(path.dirname(target), { recursive: true });
    tmp = fs.mkdtempSync(`${target}.partial-`);
    fs.chmodSync(tmp, 0o777 & ~process.umask()); // mkdtemp's 0700 would make the cache private
  } catch {
    return false;
  }
  try {
    for (const file of Object.values(manifest.graphs)) {
      onProgress?.(`optimizing ${file} for this CPU`);
      const s = await OnnxSession.create(path.join(dir, file), { optimization: 'all', saveOptimizedTo: path.join(tmp, file) });
      await s.release();
    }
    fs.writeFileSync(path.join(tmp, COMPLETE), JSON.stringify({ cpuKey: cpuKey(), createdAt: new Date().toISOString() }));
    fs.rmSync(target, { recursive: true, force: true });
    fs.renameSync(tmp, target);
    return true;
  } catch (e) {
    fs.rmSync(tmp, { recursive: true, force: true });
    throw e;
  }
}

/**
 * The tiled VAE of a model directory: the VAE rebuilt from the manifest's config, its weights
 * read (on first use) from the directory's own vae_encoder / vae_decoder graphs, so tiling
 * needs no extra files and costs nothing until an image is large enough to tile.
 */
function tiledVaeOf(dir: string, manifest: Manifest, runtime: RuntimeOptions): TiledVae | undefined {
  // The tiny autoencoder (osdface-small) runs untiled: it has no GroupNorm at image resolution to cut at.
  if ((manifest.configs.vae as Record<string, unknown>)['_class_name'] === 'AutoencoderTiny') return undefined;
  const vae = new AutoencoderKL(new Config(manifest.configs.vae as Record<string, unknown>, `${path.join(dir, 'manifest.json')} configs.vae`));
  const vaeGraphs = manifest.vaeGraphs ?? { encoder: manifest.graphs.vaeEncoder, decoder: manifest.graphs.vaeDecoder };
  const files = [vaeGraphs.encoder, vaeGraphs.decoder].map((f) => path.join(dir, f));
  let weights: OnnxWeights | null = null;
  return new TiledVae(vae, { read: (key, shape) => (weights ??= onnxWeights(files)).read(key, shape) }, runtime, () => weights?.close());
}

/**
 * Only large models are worth an optimized copy on disk (the full-size one takes ~25 s to optimize,
 * a small one such as the packaged osdface-small well under a second, and its copy would be bigger
 * than its float16 files) or loading their UNet per call (lowMemory).
 */
const LARGE_MODEL_BYTES = 256 * 1024 * 1024;

function isLargeModel(dir: string, manifest: Manifest): boolean {
  let bytes = 0;
  for (const file of Object.values(manifest.graphs)) {
    for (const f of [file, `${file}.data`]) if (fs.existsSync(path.join(dir, f))) bytes += fs.statSync(path.join(dir, f)).size;
  }
  return bytes > LARGE_MODEL_BYTES;
}

export interface LoadedModel {
  pipeline: OSDFacePipeline;
  manifest: Manifest;
}

export interface LoadOptions {
  /**
   * Keep the UNet loaded only while it runs: its weights (3.4 GB in fp32) are then not resident
   * while the VAE decoder runs, so peak memory is the larger of the two stages instead of their
   * sum, for a reload (without MatMul prepacking, which makes the reload fast) on every call.
   * Default: on for large fp32 models (4.9 -> 4.2-4.55 GB at 512 x 512 for ~1 s per call), off for
   * int8 ones (2.0 GB peak either way) and for small ones (osdface-small: 60 MB of weights).
   */
  lowMemory?: boolean;
}

/** A session created for each run and released after it. */
function onDemandSession(file: string, runtime: RuntimeOptions): StageSession {
  return {
    run: async (feeds) => {
      const session = await OnnxSession.create(file, { ...runtime, disablePrepacking: true });
      try {
        return await session.run(feeds);
      } finally {
        await session.release();
      }
    },
    release: async () => {},
  };
}

export async function loadModelDir(dir: string, runtime: RuntimeOptions = {}, onProgress?: (step: string) => void, opts: LoadOptions = {}): Promise<LoadedModel> {
  const manifest = readManifest(dir);
  const cb = SafetensorsFile.open(path.join(dir, manifest.codebookFile));
  const codebook = cb.read('codebook') as FloatTensor;
  cb.close();
  // A cache written by convert is used; one is only created here for a model worth it.
  const cached = fs.existsSync(path.join(optimizedDir(dir), COMPLETE));
  const optimized = runtime.optimization === undefined && (cached || isLargeModel(dir, manifest)) && (await prepareOptimized(dir, manifest, onProgress));
  const lowMemory = opts.lowMemory ?? (manifest.dtype === 'fp32' && isLargeModel(dir, manifest));
  const sessions: Partial<StageSessions> = {};
  try {
    for (const [stage, file] of Object.entries(manifest.graphs) as [StageName, string][]) {
      const [graphFile, options]: [string, RuntimeOptions] = optimized
        ? [path.join(optimizedDir(dir), file), { ...runtime, optimization: 'disabled' }]
        : [path.join(dir, file), runtime];
      sessions[stage] = stage === 'unet' && lowMemory ? onDemandSession(graphFile, options) : await OnnxSession.create(graphFile, options);
    }
  } catch (e) {
    for (const s of Object.values(sessions)) await s.release();
    throw e;
  }
  return {
    pipeline: new OSDFacePipeline(pipelineSettings(manifest, codebook), sessions as StageSessions, tiledVaeOf(dir, manifest, runtime)),
    manifest,
  };
}
