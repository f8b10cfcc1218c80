/**
 * `osdface export`: a training run (or one of its checkpoints) -> a model directory that `restore`,
 * `OSDFace.load` and the other commands load, through the same writer as `osdface convert`.
 *
 * The run folder's config.json (written by `osdface train`) rebuilds the networks; every weight
 * comes from where training had it: the checkpoint (trained parameters), else the run's starting
 * weights (`init`: the pretrained autoencoder, an earlier stage's checkpoint), else the seeded
 * initialisation (the frozen VRE).
 */
import fs from 'node:fs';
import path from 'node:path';
import type { WeightSource } from '../graph/emit.js';
import { Config } from '../models/config.js';
import { UNet2DConditionModel } from '../models/unet_2d_condition.js';
import { AutoencoderKL } from '../models/autoencoder_kl.js';
import { AutoencoderTiny } from '../models/autoencoder_tiny.js';
import { VQVAEEncoder } from '../models/vre/vqvae_encoder.js';
import { TwoLayerConv1x1 } from '../models/vre/embedding_change.js';
import { alphasCumprod } from '../pipeline/scheduler.js';
import type { Network, OSDFaceNetworks } from '../pipeline/release.js';
import { sha256, writeModelDir } from '../pipeline/convert.js';
import type { Manifest, OutputSettings, SourceFile } from '../pipeline/manifest.js';
import { floatTensor, numel } from '../tensor.js';
import { parseTrainConfig, type TrainConfig } from './config.js';
import { initParam } from './init.js';
import { SD_SCHEDULE, checkpointFile, readCheckpointParams, startingWeights } from './trainer.js';

export class ExportError extends Error {
  constructor(readonly input: string, detail: string) {
    super(`${input}: ${detail}`);
    this.name = 'ExportError';
  }
}

/** The run folder that holds `file` (a checkpoint in <run>/checkpoints/, or the run folder itself). */
function runFolder(input: string): string {
  const abs = path.resolve(input);
  if (fs.existsSync(path.join(abs, 'config.json'))) return abs;
  for (const up of [path.dirname(abs), path.dirname(path.dirname(abs))]) if (fs.existsSync(path.join(up, 'config.json'))) return up;
  throw new ExportError(input, 'no config.json beside it: give a run folder written by `osdface train` (or a checkpoint inside its checkpoints/ folder)');
}

export interface TrainedNetworks extends OSDFaceNetworks {
  config: TrainConfig;
  checkpoint: string;
  step: number;
}

/**
 * The networks of a training run at its latest checkpoint (or the checkpoint or weights-only file
 * given), rebuilt from the run's config.json, or from `configFile` (a weights file of a recipe).
 */
export function trainedNetworks(input: string, architecture = 'osdface-trained', configFile = path.join(runFolder(input), 'config.json')): TrainedNetworks {
  if (!fs.existsSync(input)) throw new ExportError(input, 'does not exist');
  const config = parseTrainConfig(JSON.parse(fs.readFileSync(configFile, 'utf8')), configFile);
  if (config.trainable.mode !== 'full') throw new ExportError(input, `the run trained LoRA adapters (trainable.mode '${config.trainable.mode}'); export takes runs that train the networks themselves ('full')`);
  let checkpoint: string;
  try {
    checkpoint = checkpointFile(input);
  } catch (e) {
    throw new ExportError(input, (e as Error).message);
  }
  const trained = readCheckpointParams(checkpoint);
  const m = config.model;
  const unet = new UNet2DConditionModel(new Config(m.unet, `${configFile} model.unet`));
  const vaeConfig = new Config(m.vae, `${configFile} model.vae`);
  const vae = m.vae['_class_name'] === 'AutoencoderTiny' ? new AutoencoderTiny(vaeConfig) : new AutoencoderKL(vaeConfig);
  const vre = new VQVAEEncoder(new Config(m.vre, `${configFile} model.vre`));
  const embeddingChange = new TwoLayerConv1x1(vre.quantize.embedDim, m.promptChannels);
  const shapes = new Map([unet, vae, embeddingChange].flatMap((mod) => mod.namedParameters()));
  const start = startingWeights(config, vae, shapes);
  const source = (seededOnly: boolean): WeightSource => ({
    read: (key, shape) => {
      const v = seededOnly ? initParam(key, shape, config.seed) : trained.get(key)?.data ?? start.get(key) ?? initParam(key, shape, config.seed);
      if (v.length !== numel(shape)) throw new ExportError(checkpoint, `'${key}' has ${v.length} values, the network needs [${shape}]`);
      return v;
    },
  });
  const net = <M>(module: M, seededOnly = false): Network<M> => ({ module, weights: source(seededOnly) });
  const cbShape = [vre.quantize.nEmbed, vre.quantize.embedDim];
  const step = Number(/step-(\d+)/.exec(path.basename(checkpoint))?.[1] ?? 0);
  return {
    architecture, config, checkpoint, step,
    unet: net(unet), vae: net(vae), embeddingChange: net(embeddingChange),
    // The VRE is frozen during training: its seeded initial weights are the ones trained with.
    vre: net(vre, true),
    codebook: floatTensor(cbShape, initParam('quantize.embedding.weight', cbShape, config.seed)),
    alphasCumprod: alphasCumprod(SD_SCHEDULE),
    timestep: m.timestep,
    processSize: config.data.size,
    lora: null,
    close: () => {},
  };
}

export interface ExportOptions {
  /** A run folder, a checkpoint file, or a weights-only file (Trainer.saveWeights) with `config`. */
  checkpoint: string;
  /** The training config, when `checkpoint` is not inside a run folder (a recipe's committed weights). */
  config?: string;
  out: string;
  /** The name manifest.json records as the architecture. */
  name?: string;
  force?: boolean;
  /** Files copied into the model directory (model card, licences), listed in the manifest. */
  documents?: { from: string; name: string }[];
  /** Store the weights as float16 (upcast to float32 on load). */
  float16Weights?: boolean;
  /** How restorations are finished: the input's low frequencies, the mirror ensemble (../pipeline/manifest_core.ts). */
  output?: OutputSettings;
  onProgress?: (step: string, done: number, total: number) => void;
}

export function exportModel(opts: ExportOptions): Manifest & { step: number } {
  const nets = trainedNetworks(opts.checkpoint, opts.name, opts.config);
  // Relative to the working directory: a packaged model should not record the trainer's home folder.
  const sources: SourceFile[] = [{ path: path.relative(process.cwd(), nets.checkpoint), bytes: fs.statSync(nets.checkpoint).size, sha256: sha256(nets.checkpoint) }];
  const manifest = writeModelDir(nets, {
    out: opts.out, force: opts.force, onProgress: opts.onProgress, sources,
    configs: { scheduler: SD_SCHEDULE.raw, osdface: { vre: nets.config.model.vre, promptChannels: nets.config.model.promptChannels, timestep: nets.timestep, trainedSteps: nets.step } },
    documents: opts.documents, float16Weights: opts.float16Weights,
    output: opts.output,
  });
  return { ...manifest, step: nets.step };
}
