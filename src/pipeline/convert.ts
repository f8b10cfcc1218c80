/**
 * `osdface convert`: the official release files -> a model directory of ONNX graphs (weights as
 * external data, LoRA merged), the VQ codebook and a manifest. Everything is written into a
 * temporary sibling directory that is renamed into place last, so an interrupted conversion
 * never leaves a directory that loads.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { emitOnnx } from '../graph/emit.js';
import { writeSafetensors } from '../weights/safetensors.js';
import { PACKAGE_VERSION } from '../version.js';
import { loadRelease, OSDFACE_FILES, type OSDFaceRelease } from './release.js';
import { releaseSettings, stageGraphs, type StageName } from './pipeline.js';
import { prepareOptimized } from './model.js';
import { MANIFEST_FILE, MANIFEST_FORMAT, MANIFEST_VERSION, type Manifest, type SourceFile } from './manifest.js';

export interface ConvertOptions {
  sd: string;
  osdface: string;
  out: string;
  loraRank?: number;
  loraAlpha?: number;
  dtype?: 'fp32' | 'int8';
  /** Replace an existing model directory at `out`. */
  force?: boolean;
  onProgress?: (step: string, done: number, total: number) => void;
}

const GRAPH_FILES: Record<StageName, string> = {
  preprocess: 'preprocess.onnx', vre: 'vre.onnx', embeddingChange: 'embedding_change.onnx',
  vaeEncoder: 'vae_encoder.onnx', unet: 'unet.onnx', vaeDecoder: 'vae_decoder.onnx',
};

function sha256(file: string): string {
  const hash = crypto.createHash('sha256');
  const fd = fs.openSync(file, 'r');
  try {
    const buf = Buffer.allocUnsafe(1 << 24);
    for (let n; (n = fs.readSync(fd, buf, 0, buf.length, null)) > 0;) hash.update(buf.subarray(0, n));
  } finally {
    fs.closeSync(fd);
  }
  return hash.digest('hex');
}

function readJsonIfExists(file: string): unknown {
  return fs.existsSync(file) ? JSON.parse(fs.readFileSync(file, 'utf8')) : null;
}

export interface WriteModelOptions {
  out: string;
  dtype?: 'fp32' | 'int8';
  force?: boolean;
  sources?: SourceFile[];
  configs?: Partial<Manifest['configs']>;
  onProgress?: (step: string, done: number, total: number) => void;
}

/** Writes a loadable model directory for `release` (atomically: temporary sibling, then rename). */
export function writeModelDir(release: OSDFaceRelease, opts: WriteModelOptions): Manifest {
  const dtype = opts.dtype ?? 'fp32';
  if (dtype !== 'fp32') throw new Error(`--dtype ${dtype}: only fp32 conversion is available in this version`);
  const out = path.resolve(opts.out);
  if (fs.existsSync(out) && !opts.force) throw new Error(`${out} already exists; choose another output directory or pass --force to replace it`);
  fs.mkdirSync(path.dirname(out), { recursive: true });
  const progress = opts.onProgress ?? (() => {});
  const tmp = fs.mkdtempSync(path.join(path.dirname(out), `.${path.basename(out)}.partial-`));
  try {
    const stages = stageGraphs(release);
    const total = stages.length + 1;
    let done = 0;
    for (const stage of stages) {
      const file = GRAPH_FILES[stage.name];
      progress(`writing ${file}`, done++, total);
      const bytes = emitOnnx(stage.graph, {
        weights: stage.weights,
        external: stage.graph.params.size > 0 ? { dir: tmp, fileName: `${file}.data` } : undefined,
        producerVersion: PACKAGE_VERSION,
      });
      fs.writeFileSync(path.join(tmp, file), bytes);
    }
    writeSafetensors(path.join(tmp, 'codebook.safetensors'), { codebook: release.codebook });

    const settings = releaseSettings(release);
    const manifest: Manifest = {
      format: MANIFEST_FORMAT,
      formatVersion: MANIFEST_VERSION,
      packageVersion: PACKAGE_VERSION,
      createdAt: new Date().toISOString(),
      dtype,
      graphs: GRAPH_FILES,
      codebookFile: 'codebook.safetensors',
      settings: {
        nMin: settings.nMin, timestep: settings.timestep, alphaCumprod: settings.alphaCumprod,
        processSize: settings.processSize, scalingFactor: settings.scalingFactor, vaeDownFactor: release.vae.module.downFactor,
      },
      lora: release.lora,
      configs: {
        unet: release.unet.module.config.raw,
        vae: release.vae.module.config.raw,
        scheduler: opts.configs?.scheduler ?? null,
        osdface: opts.configs?.osdface ?? null,
      },
      sources: opts.sources ?? [],
    };
    // The manifest is what makes a directory loadable: it is written last, then the directory is renamed.
    fs.writeFileSync(path.join(tmp, MANIFEST_FILE), JSON.stringify(manifest, null, 2));
    progress('finishing', done++, total);
    if (fs.existsSync(out)) {
      const old = `${tmp}.old`;
      fs.renameSync(out, old);
      fs.renameSync(tmp, out);
      fs.rmSync(old, { recursive: true, force: true });
    } else {
      fs.renameSync(tmp, out);
    }
    progress('done', total, total);
    return manifest;
  } catch (e) {
    fs.rmSync(tmp, { recursive: true, force: true });
    throw e;
  }
}

export async function convertRelease(opts: ConvertOptions): Promise<Manifest> {
  const out = path.resolve(opts.out);
  if (fs.existsSync(out) && !opts.force) throw new Error(`${out} already exists; choose another output directory or pass --force to replace it`);
  const release = loadRelease(opts.sd, opts.osdface, { loraRank: opts.loraRank, loraAlpha: opts.loraAlpha });
  try {
    opts.onProgress?.('hashing source files', 0, 1);
    const sources: SourceFile[] = [];
    const add = (file: string) => {
      if (fs.existsSync(file)) sources.push({ path: path.resolve(file), bytes: fs.statSync(file).size, sha256: sha256(file) });
    };
    for (const sub of ['unet', 'vae']) {
      for (const f of ['config.json', 'diffusion_pytorch_model.safetensors', 'diffusion_pytorch_model.fp16.safetensors']) add(path.join(opts.sd, sub, f));
    }
    add(path.join(opts.sd, 'scheduler', 'scheduler_config.json'));
    for (const f of Object.values(OSDFACE_FILES)) add(path.join(opts.osdface, f));
    const manifest = writeModelDir(release, {
      out, dtype: opts.dtype, force: opts.force, sources, onProgress: opts.onProgress,
      configs: {
        scheduler: readJsonIfExists(path.join(opts.sd, 'scheduler', 'scheduler_config.json')),
        osdface: readJsonIfExists(path.join(opts.osdface, OSDFACE_FILES.config)),
      },
    });
    // Optimizing for this CPU now makes the first load as fast as every later one.
    await prepareOptimized(out, manifest, (step) => opts.onProgress?.(step, 0, 1));
    return manifest;
  } finally {
    release.close();
  }
}
