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
import { loadRelease, OSDFACE_FILES, type OSDFaceNetworks } from './release.js';
import { releaseSettings, stageGraphs, type StageName } from './pipeline.js';
import { prepareOptimized } from './model.js';
import { INT8_NEEDS_CALIBRATION, writeInt8ModelDir } from './quantize_model.js';
import { MANIFEST_FILE, MANIFEST_FORMAT, MANIFEST_VERSION, outputSettings, type Manifest, type OutputSettings, type SourceFile } from './manifest.js';

export interface ConvertOptions {
  sd: string;
  osdface: string;
  out: string;
  loraRank?: number;
  loraAlpha?: number;
  dtype?: 'fp32' | 'int8';
  /** Replace an existing model directory at `out`. */
  force?: boolean;
  /** int8 only: face images to calibrate activation ranges on. */
  calibration?: readonly string[];
  /** Threads for the int8 calibration runs. */
  threads?: number;
  onProgress?: (step: string, done: number, total: number) => void;
}

export const GRAPH_FILES: Readonly<Record<StageName, string>> = {
  preprocess: 'preprocess.onnx', vre: 'vre.onnx', embeddingChange: 'embedding_change.onnx',
  vaeEncoder: 'vae_encoder.onnx', unet: 'unet.onnx', vaeDecoder: 'vae_decoder.onnx',
};

const GRAPH_COUNT = Object.keys(GRAPH_FILES).length;

export function sha256(file: string): string {
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
  /** Files copied into the model directory beside the graphs (model card, licences) under `name`; the manifest lists them. */
  documents?: { from: string; name: string }[];
  /** Store the weights as float16 (half the size; ONNX Runtime upcasts them to float32 on load). */
  float16Weights?: boolean;
  /** How restorations are finished (the input's low frequencies, the mirror ensemble): settings of trained models. */
  output?: OutputSettings;
  onProgress?: (step: string, done: number, total: number) => void;
}

/** The fp32 graphs, codebook and manifest of `release`, written into the (empty) directory `dir`. */
export function writeModelFiles(release: OSDFaceNetworks, dir: string, opts: Omit<WriteModelOptions, 'out' | 'force'>, onStage?: (file: string) => void): Manifest {
  for (const stage of stageGraphs(release)) {
    const file = GRAPH_FILES[stage.name];
    onStage?.(file);
    const bytes = emitOnnx(stage.graph, {
      weights: stage.weights,
      external: stage.graph.params.size > 0 ? { dir, fileName: `${file}.data` } : undefined,
      producerVersion: PACKAGE_VERSION,
      float16Weights: opts.float16Weights,
    });
    fs.writeFileSync(path.join(dir, file), bytes);
  }
  writeSafetensors(path.join(dir, 'codebook.safetensors'), { codebook: release.codebook });
  for (const doc of opts.documents ?? []) fs.copyFileSync(doc.from, path.join(dir, doc.name));

  const settings = releaseSettings(release);
  const manifest: Manifest = {
    format: MANIFEST_FORMAT,
    formatVersion: MANIFEST_VERSION,
    packageVersion: PACKAGE_VERSION,
    createdAt: new Date().toISOString(),
    dtype: 'fp32',
    architecture: release.architecture,
    graphs: { ...GRAPH_FILES },
    codebookFile: 'codebook.safetensors',
    settings: {
      nMin: settings.nMin, timestep: settings.timestep, alphaCumprod: settings.alphaCumprod,
      processSize: settings.processSize, scalingFactor: settings.scalingFactor, vaeDownFactor: release.vae.module.downFactor,
      ...outputSettings(opts.output),
    },
    lora: release.lora,
    configs: {
      unet: release.unet.module.config.raw,
      vae: release.vae.module.config.raw,
      scheduler: opts.configs?.scheduler ?? null,
      osdface: opts.configs?.osdface ?? null,
    },
    sources: opts.sources ?? [],
    ...(opts.documents?.length ? { documents: opts.documents.map((d) => d.name) } : {}),
    ...(opts.float16Weights ? { weightStorage: 'float16' as const } : {}),
  };
  // The manifest is what makes a directory loadable: it is written last.
  fs.writeFileSync(path.join(dir, MANIFEST_FILE), JSON.stringify(manifest, null, 2));
  return manifest;
}

/** A fresh temporary sibling of `out` to build a model directory in (removed by the caller on failure). */
export function partialDir(out: string, force?: boolean): string {
  if (fs.existsSync(out) && !force) throw new Error(`${out} already exists; choose another output directory or pass --force to replace it`);
  fs.mkdirSync(path.dirname(out), { recursive: true });
  const tmp = fs.mkdtempSync(path.join(path.dirname(out), `.${path.basename(out)}.partial-`));
  // mkdtemp makes the directory private (0700); the model directory it becomes gets the usual mode.
  fs.chmodSync(tmp, 0o777 & ~process.umask());
  return tmp;
}

/** Moves the finished directory `tmp` to `out`, replacing what was there. */
export function commitModelDir(tmp: string, out: string): void {
  if (fs.existsSync(out)) {
    const old = `${tmp}.old`;
    fs.renameSync(out, old);
    fs.renameSync(tmp, out);
    fs.rmSync(old, { recursive: true, force: true });
  } else {
    fs.renameSync(tmp, out);
  }
}

/** Writes a loadable fp32 model directory for `release` (atomically: temporary sibling, then rename). */
export function writeModelDir(release: OSDFaceNetworks, opts: WriteModelOptions): Manifest {
  const dtype = opts.dtype ?? 'fp32';
  if (dtype !== 'fp32') throw new Error(`writeModelDir writes fp32 models; int8 ones need calibration images: use writeInt8ModelDir`);
  const out = path.resolve(opts.out);
  const progress = opts.onProgress ?? (() => {});
  const tmp = partialDir(out, opts.force);
  try {
    const total = GRAPH_COUNT + 1;
    let done = 0;
    const manifest = writeModelFiles(release, tmp, opts, (file) => progress(`writing ${file}`, done++, total));
    progress('finishing', done++, total);
    commitModelDir(tmp, out);
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
  if (opts.dtype === 'int8' && (opts.calibration ?? []).length === 0) throw new Error(INT8_NEEDS_CALIBRATION);
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
    const write: WriteModelOptions = {
      out, force: opts.force, sources, onProgress: opts.onProgress,
      configs: {
        scheduler: readJsonIfExists(path.join(opts.sd, 'scheduler', 'scheduler_config.json')),
        osdface: readJsonIfExists(path.join(opts.osdface, OSDFACE_FILES.config)),
      },
    };
    const manifest = opts.dtype === 'int8'
      ? await writeInt8ModelDir(release, { ...write, calibration: opts.calibration ?? [], threads: opts.threads })
      : writeModelDir(release, write);
    // Optimizing for this CPU now makes the first load as fast as every later one.
    await prepareOptimized(out, manifest, (step) => opts.onProgress?.(step, 0, 1));
    return manifest;
  } finally {
    release.close();
  }
}
