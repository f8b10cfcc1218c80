/** The converted model directory's manifest.json, with no I/O: its type and its checks (read by ./manifest.ts in Node, by the browser app from URLs or picked files). */
import type { PipelineSettings, StageName } from './pipeline.js';
import type { FloatTensor } from '../tensor.js';
import { checkLowFrequencyFromInput, type LowFrequencyFromInput } from './input_low_frequency.js';
import { checkMirrorEnsemble } from './mirror_ensemble.js';

/** How a trained model's restorations are finished, as its manifest says (absent: the network's output as it is). */
export interface OutputSettings {
  /** Restored faces keep the input's low frequencies (./input_low_frequency.ts). */
  lowFrequencyFromInput?: LowFrequencyFromInput;
  /** Each face is restored as it is and mirrored, and the two averaged (./mirror_ensemble.ts). */
  mirrorEnsemble?: boolean;
}

/** Only the output settings that are set, for spreading into a manifest or the pipeline's settings. */
export function outputSettings(s: OutputSettings | undefined): OutputSettings {
  return {
    ...(s?.lowFrequencyFromInput ? { lowFrequencyFromInput: s.lowFrequencyFromInput } : {}),
    ...(s?.mirrorEnsemble ? { mirrorEnsemble: true } : {}),
  };
}

export const MANIFEST_FILE = 'manifest.json';
export const MANIFEST_FORMAT = 'osdface-model';
export const MANIFEST_VERSION = 1;

export interface SourceFile {
  path: string;
  bytes: number;
  sha256: string;
}

export interface Manifest {
  format: typeof MANIFEST_FORMAT;
  formatVersion: number;
  packageVersion: string;
  createdAt: string;
  dtype: 'fp32' | 'int8';
  /** The network: 'osdface-sd21' (the paper's; also when absent, in directories written before this field) or a trained model's name such as 'osdface-small'. */
  architecture?: string;
  /** Model card, licence and training record shipped with a trained model (file names in the directory). */
  documents?: string[];
  /** 'float16': the graphs store their weights at half precision and upcast them when loaded (computing in float32). */
  weightStorage?: 'float16';
  /** ONNX file per stage; its external data file sits beside it. */
  graphs: Record<StageName, string>;
  codebookFile: string;
  settings: {
    nMin: number;
    timestep: number;
    alphaCumprod: number;
    processSize: number;
    scalingFactor: number;
    vaeDownFactor: number;
  } & OutputSettings;
  lora: { rank: number; alpha: number; modules: number } | null;
  configs: { unet: unknown; vae: unknown; scheduler: unknown; osdface: unknown };
  sources: SourceFile[];
  /** fp32 VAE graphs the tiled VAE reads its weights from, when `graphs` holds quantized ones. */
  vaeGraphs?: { encoder: string; decoder: string };
  /** How an int8 model was quantized. */
  quantization?: { method: string; calibrationImages: number; quantized: Partial<Record<StageName, { conv: number; matmul: number }>> };
}

export class ModelDirError extends Error {
  constructor(readonly dir: string, detail: string) {
    super(`${dir}: ${detail}`);
    this.name = 'ModelDirError';
  }
}

const HOW_TO_CONVERT = 'convert the official weights with `npx osdface convert --sd <stable-diffusion-2-1-base> --osdface <OSDFace weights folder> -o <model dir>`';

/** Parses and checks manifest.json's text (`dir` names the model in errors). */
export function parseManifest(text: string, dir: string): Manifest {
  let m: Manifest;
  try {
    m = JSON.parse(text) as Manifest;
  } catch (e) {
    throw new ModelDirError(dir, `${MANIFEST_FILE} is not valid JSON (${(e as Error).message}); convert the model again`);
  }
  if (m === null || typeof m !== 'object' || m.format !== MANIFEST_FORMAT) throw new ModelDirError(dir, `${MANIFEST_FILE} is not an osdface model manifest`);
  if (m.formatVersion !== MANIFEST_VERSION) {
    throw new ModelDirError(dir, `model format version ${m.formatVersion}, this osdface reads version ${MANIFEST_VERSION}; convert the model again`);
  }
  const { lowFrequencyFromInput, mirrorEnsemble } = m.settings ?? {};
  try {
    if (lowFrequencyFromInput !== undefined) checkLowFrequencyFromInput(lowFrequencyFromInput, `${MANIFEST_FILE} settings`);
    if (mirrorEnsemble !== undefined) checkMirrorEnsemble(mirrorEnsemble, `${MANIFEST_FILE} settings`);
  } catch (e) {
    throw new ModelDirError(dir, `${(e as Error).message}; reinstall or export the model again`);
  }
  return m;
}

export { HOW_TO_CONVERT };

/** What the pipeline runs with: the manifest's settings and the model's VQ codebook (for Node and browser loaders alike). */
export function pipelineSettings(m: Manifest, codebook: FloatTensor): PipelineSettings {
  const { nMin, timestep, alphaCumprod, processSize, scalingFactor } = m.settings;
  return { codebook, nMin, timestep, alphaCumprod, processSize, scalingFactor, ...outputSettings(m.settings) };
}
