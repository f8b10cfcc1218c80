/**
 * int8 model directories: the fp32 conversion, then static quantization of the convolutions of
 * the VAE encoder, UNet and VAE decoder (src/graph/quantize.ts) with activation ranges calibrated
 * by running the fp32 pipeline on face images. The VRE stays fp32 (its nearest-code choice picks
 * the prompt tokens, and it takes 6 % of the time); so do the attention products themselves
 * (their projections are quantized).
 *
 * The directory is built in a temporary sibling and renamed into place at the end, like an fp32
 * one. It keeps the fp32 VAE graphs (the tiled VAE reads its weights from them) but not the fp32
 * UNet (3.4 GB).
 */
import fs from 'node:fs';
import path from 'node:path';
import { emitOnnx } from '../graph/emit.js';
import type { Graph } from '../graph/ir.js';
import { addRangeProbes, calibrationValues, mergeRanges, quantizeGraph, type Ranges } from '../graph/quantize.js';
import { OnnxSession, type RuntimeOptions } from '../graph/runtime.js';
import { decodeImage, toSquareTensor } from '../image/io.js';
import { PACKAGE_VERSION } from '../version.js';
import type { OSDFaceNetworks } from './release.js';
import { OSDFacePipeline, releaseSettings, stageGraphs, type StageName, type StageSession, type StageSessions } from './pipeline.js';
import { commitModelDir, GRAPH_FILES, partialDir, writeModelFiles, type WriteModelOptions } from './convert.js';
import { MANIFEST_FILE, type Manifest } from './manifest.js';

export const INT8_NEEDS_CALIBRATION =
  'int8 conversion calibrates activation ranges on face images: give --calibration <folder> with aligned face crops like the ones you will restore (10 or more; 512 x 512 for the official model)';

/** The stages whose convolutions and weight products are quantized. */
export const QUANTIZED_STAGES: readonly StageName[] = ['vaeEncoder', 'unet', 'vaeDecoder'];

export const INT8_GRAPH_FILES: Readonly<Partial<Record<StageName, string>>> = {
  vaeEncoder: 'vae_encoder.int8.onnx', unet: 'unet.int8.onnx', vaeDecoder: 'vae_decoder.int8.onnx',
};

export interface Int8Options extends WriteModelOptions {
  /** Face images (files) the activation ranges are calibrated on: aligned crops like the ones to restore. */
  calibration: readonly string[];
  /** Threads for the calibration runs. */
  threads?: number;
}

/** Ranges of every quantized conv's input and output over the calibration images, per stage. */
async function calibrate(release: OSDFaceNetworks, dir: string, images: readonly string[], runtime: RuntimeOptions, progress: (step: string) => void): Promise<Record<string, Ranges>> {
  const ranges: Record<string, Ranges> = {};
  const sessions: Partial<StageSessions> = {};
  const probed = new Map<StageName, Graph>();
  for (const stage of stageGraphs(release)) if (QUANTIZED_STAGES.includes(stage.name)) probed.set(stage.name, stage.graph);
  try {
    for (const [stage, file] of Object.entries(GRAPH_FILES) as [StageName, string][]) {
      const graph = probed.get(stage);
      if (!graph) {
        sessions[stage] = await OnnxSession.create(path.join(dir, file), runtime);
        continue;
      }
      addRangeProbes(graph, calibrationValues(graph));
      // The probed graph has the fp32 graph's parameters in the same order: it reuses its data file.
      const bytes = emitOnnx(graph, { weights: { read: () => { throw new Error('unreachable'); } }, external: { dir, fileName: `${file}.data`, existing: true } });
      const probeFile = path.join(dir, `calibrate.${file}`);
      fs.writeFileSync(probeFile, bytes);
      const inner = await OnnxSession.create(probeFile, runtime);
      fs.rmSync(probeFile);
      const stageRanges: Ranges = (ranges[stage] = {});
      const recording: StageSession = {
        run: async (feeds) => {
          const out = await inner.run(feeds);
          mergeRanges(stageRanges, out as Record<string, { data: ArrayLike<number> }>);
          return out;
        },
        release: () => inner.release(),
      };
      sessions[stage] = recording;
    }
    const pipeline = new OSDFacePipeline(releaseSettings(release), sessions as StageSessions);
    for (const [i, file] of images.entries()) {
      progress(`calibrating on ${path.basename(file)} (${i + 1} of ${images.length})`);
      const img = await decodeImage(file);
      await pipeline.restore(toSquareTensor(img).tensor, { vaeTiling: false });
    }
    return ranges;
  } finally {
    for (const s of Object.values(sessions)) await s.release();
  }
}

/**
 * Writes an int8 model directory for `release`: fp32 conversion, calibration on
 * `opts.calibration`, quantized graphs; atomically (temporary sibling, then rename).
 */
export async function writeInt8ModelDir(release: OSDFaceNetworks, opts: Int8Options): Promise<Manifest> {
  if (opts.calibration.length === 0) {
    throw new Error(INT8_NEEDS_CALIBRATION);
  }
  for (const f of opts.calibration) if (!fs.existsSync(f)) throw new Error(`calibration image ${f} does not exist`);
  const out = path.resolve(opts.out);
  // Steps: the fp32 graphs, one per calibration image, the int8 graphs, finishing.
  const total = Object.keys(GRAPH_FILES).length + opts.calibration.length + QUANTIZED_STAGES.length + 1;
  let done = 0;
  const progress = (step: string) => opts.onProgress?.(step, done++, total);
  const tmp = partialDir(out, opts.force);
  try {
    const fp32 = writeModelFiles(release, tmp, opts, (file) => progress(`writing ${file}`));
    const runtime: RuntimeOptions = opts.threads ? { threads: opts.threads } : {};
    const ranges = await calibrate(release, tmp, opts.calibration, runtime, progress);

    const graphs = { ...fp32.graphs };
    const quantizedOps: NonNullable<Manifest['quantization']>['quantized'] = {};
    for (const stage of stageGraphs(release)) {
      const file = INT8_GRAPH_FILES[stage.name];
      if (!file) continue;
      progress(`writing ${file}`);
      const { weights, quantized } = quantizeGraph(stage.graph, ranges[stage.name]!, stage.weights);
      quantizedOps[stage.name] = quantized;
      fs.writeFileSync(path.join(tmp, file), emitOnnx(stage.graph, {
        weights, external: { dir: tmp, fileName: `${file}.data` }, producerVersion: PACKAGE_VERSION,
      }));
      graphs[stage.name] = file;
    }
    const unetFp32 = path.join(tmp, GRAPH_FILES.unet);
    fs.rmSync(unetFp32);
    fs.rmSync(`${unetFp32}.data`);

    const manifest: Manifest = {
      ...fp32,
      dtype: 'int8',
      graphs,
      vaeGraphs: { encoder: GRAPH_FILES.vaeEncoder, decoder: GRAPH_FILES.vaeDecoder },
      quantization: {
        method: 'static QDQ: int8 symmetric weights per output channel, uint8 per-tensor activations from min/max calibration; convs run as QLinearConv, weight products as MatMulIntegerToFloat',
        calibrationImages: opts.calibration.length,
        quantized: quantizedOps,
      },
    };
    progress('finishing');
    fs.writeFileSync(path.join(tmp, MANIFEST_FILE), JSON.stringify(manifest, null, 2));
    commitModelDir(tmp, out);
    opts.onProgress?.('done', total, total);
    return manifest;
  } catch (e) {
    fs.rmSync(tmp, { recursive: true, force: true });
    throw e;
  }
}
