/**
 * Loads the official OSDFace release layout: a diffusers SD-2.1-base folder plus the OSDFace
 * folder (pytorch_lora_weights.safetensors, embedding_change_weights.pth, associate_2.ckpt, and
 * optionally a config.json overriding the release defaults). Builds every network from its
 * config and binds its weights, LoRA merged into the UNet.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { WeightSource } from '../graph/emit.js';
import { Config } from '../models/config.js';
import { UNet2DConditionModel } from '../models/unet_2d_condition.js';
import { AutoencoderKL } from '../models/autoencoder_kl.js';
import type { AutoencoderTiny } from '../models/autoencoder_tiny.js';
import { VQVAEEncoder } from '../models/vre/vqvae_encoder.js';
import { TwoLayerConv1x1 } from '../models/vre/embedding_change.js';
import { loadDiffusersModel, loadSchedulerConfig, readJsonObject } from '../weights/diffusers.js';
import { loadEmbeddingChange, loadVreCheckpoint } from '../weights/osdface.js';
import { SafetensorsFile } from '../weights/safetensors.js';
import { mergeLora } from '../weights/lora.js';
import { WeightFileError } from '../weights/errors.js';
import { bindWeights, mapStore, readAllFloats, safetensorsStore } from '../weights/bind.js';
import { alphasCumprod } from './scheduler.js';
import type { FloatTensor } from '../tensor.js';

/** The official release's settings (infer.py and lq_embed defaults). */
export const RELEASE_DEFAULTS = {
  vre: { ch: 64, ch_mult: [1, 2, 2, 2, 4, 8], num_res_blocks: 2, attn_resolutions: [16], resolution: 512, z_channels: 512, n_embed: 1024, embed_dim: 512, head_size: 1, n_min: 77 },
  lora: { rank: 16, alpha: 16 },
  timestep: 399,
  process_size: 512,
  vre_input_size: 512,
};

export interface ReleaseOptions {
  loraRank?: number;
  loraAlpha?: number;
  /** Skip the LoRA merge (the plain SD UNet). */
  noLora?: boolean;
}

export interface Network<M> {
  module: M;
  weights: WeightSource;
}

/**
 * The networks and settings of an OSDFace-structured model: the paper's (loadRelease, with
 * SD-2.1-base's AutoencoderKL) or a trained one such as the packaged osdface-small (AutoencoderTiny).
 */
export interface OSDFaceNetworks {
  /** What manifest.json records: 'osdface-sd21' for the paper's network, else the trained model's name. */
  architecture: string;
  unet: Network<UNet2DConditionModel>;
  vae: Network<AutoencoderKL | AutoencoderTiny>;
  vre: Network<VQVAEEncoder>;
  embeddingChange: Network<TwoLayerConv1x1>;
  codebook: FloatTensor;
  alphasCumprod: Float32Array;
  timestep: number;
  processSize: number;
  lora: { rank: number; alpha: number; modules: number } | null;
  close(): void;
}

/** The paper's network from the official release files. */
export const PAPER_ARCHITECTURE = 'osdface-sd21';

/** The paper's network: SD-2.1-base's AutoencoderKL. */
export interface OSDFaceRelease extends OSDFaceNetworks {
  vae: Network<AutoencoderKL>;
}

export const OSDFACE_FILES = {
  lora: 'pytorch_lora_weights.safetensors',
  embeddingChange: 'embedding_change_weights.pth',
  vre: 'associate_2.ckpt',
  config: 'config.json',
};

const LEGACY_ATTENTION_NAMES: Record<string, string> = { to_q: 'query', to_k: 'key', to_v: 'value', 'to_out.0': 'proj_attn' };

/** Older VAE files name the mid-block attention projections query/key/value/proj_attn. */
export function legacyVaeAttentionName(key: string): string[] {
  const m = /^(.*\bmid_block\.attentions\.\d+\.)(to_q|to_k|to_v|to_out\.0)\.(weight|bias)$/.exec(key);
  return m ? [`${m[1]}${LEGACY_ATTENTION_NAMES[m[2]!]}.${m[3]}`] : [];
}

function requireFile(file: string, what: string): string {
  if (!fs.existsSync(file)) {
    throw new WeightFileError(file, `${what} does not exist`, {
      hint: `the OSDFace folder must hold ${OSDFACE_FILES.lora}, ${OSDFACE_FILES.embeddingChange} and ${OSDFACE_FILES.vre} from the official release`,
    });
  }
  return file;
}

export function loadRelease(sdDir: string, osdfaceDir: string, opts: ReleaseOptions = {}): OSDFaceRelease {
  const cfgFile = path.join(osdfaceDir, OSDFACE_FILES.config);
  const osd = fs.existsSync(cfgFile) ? new Config(readJsonObject(cfgFile), cfgFile) : new Config({}, `${osdfaceDir} (release defaults)`);
  const vreCfg = new Config((osd.raw['vre'] as Record<string, unknown> | undefined) ?? RELEASE_DEFAULTS.vre, osd.source + ' [vre]');
  const loraCfg = (osd.raw['lora'] as Record<string, number> | undefined) ?? RELEASE_DEFAULTS.lora;

  const unetFiles = loadDiffusersModel(sdDir, 'unet');
  const vaeFiles = loadDiffusersModel(sdDir, 'vae');
  const opened: SafetensorsFile[] = [unetFiles.weights, vaeFiles.weights];
  try {
    const unet = new UNet2DConditionModel(new Config(unetFiles.config, path.join(sdDir, 'unet/config.json')));
    const vae = new AutoencoderKL(new Config(vaeFiles.config, path.join(sdDir, 'vae/config.json')));

    let unetWeights: WeightSource;
    let lora: OSDFaceRelease['lora'] = null;
    if (opts.noLora) {
      unetWeights = bindWeights(safetensorsStore(unetFiles.weights), unet.namedParameters());
    } else {
      const loraFile = requireFile(path.join(osdfaceDir, OSDFACE_FILES.lora), 'LoRA weight file');
      const loraTensors = SafetensorsFile.open(loraFile);
      opened.push(loraTensors);
      const merged = readAllFloats(safetensorsStore(unetFiles.weights));
      const rank = opts.loraRank ?? loraCfg['rank'] ?? RELEASE_DEFAULTS.lora.rank;
      const alpha = opts.loraAlpha ?? loraCfg['alpha'] ?? RELEASE_DEFAULTS.lora.alpha;
      const { merged: modules } = mergeLora(merged, loraTensors.readAll(), { rank, alpha, file: loraFile });
      lora = { rank, alpha, modules };
      unetWeights = bindWeights(mapStore(unetFiles.path, merged), unet.namedParameters());
    }
    const vaeWeights = bindWeights(safetensorsStore(vaeFiles.weights), vae.namedParameters(), { aliases: legacyVaeAttentionName });

    const vreFile = requireFile(path.join(osdfaceDir, OSDFACE_FILES.vre), 'VRE checkpoint');
    const vre = new VQVAEEncoder(vreCfg, osd.isSet('vre_input_size') ? osd.int('vre_input_size') : RELEASE_DEFAULTS.vre_input_size);
    const vreStore = mapStore(vreFile, loadVreCheckpoint(vreFile));
    const vreWeights = bindWeights(vreStore, vre.namedParameters());
    const codebookKey = 'quantize.embedding.weight';
    const codebook = { dtype: 'float32', shape: vreStore.shape(codebookKey), data: vreWeights.read(codebookKey, vreStore.shape(codebookKey)) } as FloatTensor;

    const ecFile = requireFile(path.join(osdfaceDir, OSDFACE_FILES.embeddingChange), 'embedding_change weight file');
    const ecTensors = loadEmbeddingChange(ecFile);
    const [hidden, inCh] = ecTensors.get('conv1.weight')!.shape as [number, number];
    const outCh = ecTensors.get('conv2.weight')!.shape[0]!;
    if (inCh !== codebook.shape[1]) {
      throw new WeightFileError(ecFile, `conv1.weight takes ${inCh} channels but the VRE codes have ${codebook.shape[1]}`, { key: 'conv1.weight' });
    }
    if (outCh !== unet.crossAttentionDim) {
      throw new WeightFileError(ecFile, `conv2.weight gives ${outCh} channels but the UNet's cross_attention_dim is ${unet.crossAttentionDim}`, { key: 'conv2.weight' });
    }
    const embeddingChange = new TwoLayerConv1x1(inCh, outCh, hidden);
    const ecWeights = bindWeights(mapStore(ecFile, ecTensors), embeddingChange.namedParameters());

    const scheduler = new Config(loadSchedulerConfig(sdDir), path.join(sdDir, 'scheduler/scheduler_config.json'));
    return {
      architecture: PAPER_ARCHITECTURE,
      unet: { module: unet, weights: unetWeights },
      vae: { module: vae, weights: vaeWeights },
      vre: { module: vre, weights: vreWeights },
      embeddingChange: { module: embeddingChange, weights: ecWeights },
      codebook,
      alphasCumprod: alphasCumprod(scheduler),
      timestep: osd.int('timestep', RELEASE_DEFAULTS.timestep),
      processSize: osd.int('process_size', RELEASE_DEFAULTS.process_size),
      lora,
      close: () => opened.forEach((f) => f.close()),
    };
  } catch (e) {
    opened.forEach((f) => f.close());
    throw e;
  }
}
