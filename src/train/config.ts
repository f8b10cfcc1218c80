/**
 * `osdface train --config <json>`: the training configuration, validated with errors that name the
 * config file and the key (with the expected type or range) before anything runs.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { AdamWConfig } from './optim.js';
import { PRESET_NAMES, type PresetName } from '../degrade/recipe.js';
import { LATTICE_PATCH } from './lattice.js';
import { DETAIL_ENERGY_PATCH } from './detail_energy.js';

/** Loss weights a config may leave out: absent rather than 0, so configs older than a term keep their hash. */
export const OPTIONAL_LOSS_TERMS = ['encoderDists', 'encoderDistsEdges', 'encoderGram', 'lattice', 'ssim', 'detailEnergy'] as const;
export type OptionalLossTerm = (typeof OPTIONAL_LOSS_TERMS)[number];

/** What a GAN critic judges: the image, its detail (the image minus its blur), or the frozen TAEF2 encoder's features of it. */
export const CRITIC_INPUTS = ['image', 'detail', 'encoder'] as const;
export type CriticInput = (typeof CRITIC_INPUTS)[number];

export interface TrainConfig {
  /** Folder of HQ training images and of validation images (degraded with a fixed seed). */
  /**
   * `val` may be left out when `holdout` > 0: the last `holdout` training images (by name) are then the
   * validation set and are never trained on. `crop` > 0 trains on random crop x crop windows of the
   * size x size images (the VRE still sees the whole face), so the networks see faces at the scale
   * they restore at while a step costs a fraction of a whole face.
   */
  data: { train: string; val: string | null; holdout: number; crop: number; size: number; batch: number; valImages: number; degradation: PresetName;
    augment: { flip: boolean; scale: number; shift: number; colorJitter: number } };
  /** Network widths: diffusers/OSDFace config objects for a small OSDFace-shaped model trained from scratch. */
  model: { unet: Record<string, unknown>; vae: Record<string, unknown>; vre: Record<string, unknown>; promptChannels: number; timestep: number };
  /**
   * Starting weights: `vae`, a TAESD-family folder (taef2_encoder.pth, taef2_decoder.pth); `from`, a run
   * folder or checkpoint file of an earlier stage, or a list of them read in order (a later file's
   * tensors replace an earlier one's: a generator from one stage, a critic warmed up in another);
   * `unetLayersAdded`, the `from` files hold a UNet with that many fewer layers per block, grown
   * here with identity layers (src/train/deepen_unet.ts). Absent from a config that does not set
   * it, so older configs keep their hash.
   */
  init: { vae: string | null; from: string | string[] | null; unetLayersAdded?: number };
  /** Which weights train: all of unet/vae/embedding_change, or LoRA adapters on the UNet; `frozen` key prefixes stay fixed. */
  trainable: { mode: 'full' | 'lora'; lora: { rank: number; alpha: number; targets: string[] }; frozen: string[] };
  /**
   * perceptual: OSDFace's edge-aware DISTS term, needing `perceptualWeights` (VGG16 + DISTS files);
   * latent: MSE between the predicted x0 and the scaled latent of the HQ image;
   * encoderDists: DISTS's form on the features of TAEF2's pretrained encoder (frozen, from
   * `init.vae`), a perceptual term with no downloaded weights; encoderDistsEdges: the same distance
   * between the Sobel edge maps (OSDFace's edge-aware half); encoderGram: EnhanceNet's texture loss,
   * the mean squared difference of Gram matrices over 16x16-pixel patches of that encoder's full-,
   * half- and quarter-resolution features (src/train/patch_gram.ts); lattice: the mean squared
   * difference between output and target of the grey detail's per-patch means at each position of
   * the 8-pixel cell (src/train/lattice.ts), against a mesh locked to the latent grid; ssim: 1 - SSIM
   * as `osdface eval` measures it (src/train/ssim_loss.ts); detailEnergy: the mean squared
   * difference of the RMS of the two finest grey bands per 16-pixel patch (src/train/detail_energy.ts).
   * Absent from a config that does not set them, so older configs keep their hash.
   */
  loss: { mse: number; l1: number; gan: number; identity: number; perceptual: number; latent: number; perceptualWeights: string[] } & Partial<Record<OptionalLossTerm, number>>;
  /**
   * The PatchGAN discriminator of GAN guidance: `layers` strided 4x4 convolutions, the first `width`
   * channels wide, doubling after. Left out: width 32 and 2 layers (it sees 18-pixel patches); `lr`, the critic's peak learning rate on the generator's schedule (left
   * out: optim.lr); `input`, 'detail' to judge the image minus its blur (texture only; left out:
   * 'image'; 'encoder' for a projected critic: `width`-channel heads on the feature pyramid of the
   * frozen TAEF2 encoder copy, `layers` unused); `spectralNorm`, every critic convolution divided by
   * its largest singular value (Miyato et al. 2018), so the critic stays 1-Lipschitz per layer;
   * `levels`, the pyramid levels a projected critic has heads on (0 full resolution, 1 half, ...;
   * left out: every level), so that it can be kept off the finest ones; `blur`, the critic judges
   * real and restored images after a 5x5 binomial blur, so the gradient it gives the generator has
   * no content at the finest scale (where GAN guidance drew a cross-hatch); `shift`, the critic judges
   * real and restored images moved by a random whole number of pixels, up to `shift` each way
   * (one draw per step), so that no fixed alignment of the 8-pixel crops with the critic's strided
   * layers can be exploited (a 4-pixel hatch locked to that grid was measured at stages 21 and 22).
   * Absent from a config that does not set it, so older configs keep their hash.
   */
  discriminator?: { width: number; layers: number; lr?: number; input?: CriticInput; spectralNorm?: boolean; levels?: number[]; blur?: boolean; shift?: number };
  optim: AdamWConfig;
  steps: number;
  seed: number;
  threads: number;
  out: string;
  checkpointEvery: number;
  sampleEvery: number;
  evalEvery: number;
}

export class TrainConfigError extends Error {
  constructor(file: string, key: string, detail: string) {
    super(`${file}: '${key}' ${detail}`);
    this.name = 'TrainConfigError';
  }
}

/** OSDFace's LoRA targets: attention projections, transformer in/out projections, feed-forward, resnet convs. */
export const OSDFACE_LORA_TARGETS = ['to_q', 'to_k', 'to_v', 'to_out.0', 'proj_in', 'proj_out', 'ff.net.0.proj', 'ff.net.2', 'conv1', 'conv2'];

export const SMALL_MODEL: TrainConfig['model'] = {
  unet: {
    block_out_channels: [32, 64], down_block_types: ['CrossAttnDownBlock2D', 'DownBlock2D'], up_block_types: ['UpBlock2D', 'CrossAttnUpBlock2D'],
    attention_head_dim: [2, 4], cross_attention_dim: 64, layers_per_block: 1, norm_num_groups: 8, in_channels: 4, out_channels: 4,
    use_linear_projection: true, flip_sin_to_cos: true, freq_shift: 0,
  },
  vae: {
    block_out_channels: [32, 64], down_block_types: ['DownEncoderBlock2D', 'DownEncoderBlock2D'], up_block_types: ['UpDecoderBlock2D', 'UpDecoderBlock2D'],
    layers_per_block: 1, norm_num_groups: 8, latent_channels: 4, in_channels: 3, out_channels: 3,
  },
  vre: { ch: 16, ch_mult: [1, 1, 2], num_res_blocks: 1, attn_resolutions: [16], resolution: 64, z_channels: 32, n_embed: 64, embed_dim: 32, head_size: 1, n_min: 16, norm_num_groups: 8 },
  promptChannels: 64,
  timestep: 399,
};

type Json = Record<string, unknown>;

export function parseTrainConfig(raw: unknown, file: string): TrainConfig {
  const fail = (key: string, detail: string): never => { throw new TrainConfigError(file, key, detail); };
  const obj = (v: unknown, key: string): Json => (v === undefined ? {} : typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Json) : fail(key, 'must be an object'));
  const root = obj(raw, '<root>');
  const num = (o: Json, key: string, path_: string, dflt: number | undefined, min = -Infinity, max = Infinity, integer = false): number => {
    const v = o[key] ?? dflt;
    if (v === undefined) return fail(path_, 'is required');
    if (typeof v !== 'number' || !Number.isFinite(v) || v < min || v > max || (integer && !Number.isInteger(v))) {
      return fail(path_, `must be ${integer ? 'an integer' : 'a number'} in [${min}, ${max}], found ${JSON.stringify(v)}`);
    }
    return v;
  };
  const str = (o: Json, key: string, path_: string, dflt?: string): string => {
    const v = o[key] ?? dflt;
    return typeof v === 'string' && v.length > 0 ? v : fail(path_, v === undefined ? 'is required' : `must be a string, found ${JSON.stringify(v)}`);
  };
  const bool = (o: Json, key: string, path_: string, dflt: boolean): boolean => {
    const v = o[key] ?? dflt;
    return typeof v === 'boolean' ? v : fail(path_, `must be true or false, found ${JSON.stringify(v)}`);
  };
  const known = (o: Json, where: string, keys: string[]) => {
    for (const k of Object.keys(o)) if (!keys.includes(k)) fail(where ? `${where}.${k}` : k, `is not a known setting (known: ${keys.join(', ')})`);
  };
  known(root, '', ['data', 'model', 'init', 'trainable', 'loss', 'discriminator', 'optim', 'steps', 'seed', 'threads', 'out', 'checkpointEvery', 'sampleEvery', 'evalEvery']);
  const base = path.dirname(path.resolve(file));
  const dir = (o: Json, key: string, p: string) => {
    const d = path.resolve(base, str(o, key, p));
    if (!fs.existsSync(d) || !fs.statSync(d).isDirectory()) fail(p, `folder ${d} does not exist`);
    return d;
  };

  const data = obj(root['data'], 'data');
  known(data, 'data', ['train', 'val', 'holdout', 'crop', 'size', 'batch', 'valImages', 'degradation', 'augment']);
  const degradation = str(data, 'degradation', 'data.degradation', 'mild');
  if (!PRESET_NAMES.includes(degradation as PresetName)) fail('data.degradation', `must be one of ${PRESET_NAMES.join(', ')}`);
  const aug = obj(data['augment'], 'data.augment');
  known(aug, 'data.augment', ['flip', 'scale', 'shift', 'colorJitter']);
  // `model` may name a JSON file (relative to the config) so that several stages share one architecture.
  let modelRaw = root['model'];
  if (typeof modelRaw === 'string') {
    const f = path.resolve(base, modelRaw);
    if (!fs.existsSync(f)) fail('model', `file ${f} does not exist`);
    try {
      modelRaw = JSON.parse(fs.readFileSync(f, 'utf8'));
    } catch (e) {
      fail('model', `file ${f} is not valid JSON: ${(e as Error).message}`);
    }
  }
  const model = obj(modelRaw, 'model');
  known(model, 'model', ['unet', 'vae', 'vre', 'promptChannels', 'timestep']);
  const init = obj(root['init'], 'init');
  known(init, 'init', ['vae', 'from', 'unetLayersAdded']);
  const existing = (o: Json, key: string, p: string): string | null => {
    if (o[key] === undefined) return null;
    const f = path.resolve(base, str(o, key, p));
    if (!fs.existsSync(f)) fail(p, `${f} does not exist`);
    return f;
  };
  const trainable = obj(root['trainable'], 'trainable');
  known(trainable, 'trainable', ['mode', 'lora', 'frozen']);
  const frozen = trainable['frozen'] ?? [];
  if (!Array.isArray(frozen) || frozen.some((t) => typeof t !== 'string')) fail('trainable.frozen', 'must be a list of parameter key prefixes (e.g. "encoder.")');
  const mode = str(trainable, 'mode', 'trainable.mode', 'full');
  if (mode !== 'full' && mode !== 'lora') fail('trainable.mode', "must be 'full' or 'lora'");
  const lora = obj(trainable['lora'], 'trainable.lora');
  const targets = lora['targets'] ?? OSDFACE_LORA_TARGETS;
  if (!Array.isArray(targets) || targets.some((t) => typeof t !== 'string')) fail('trainable.lora.targets', 'must be a list of module name suffixes');
  const loss = obj(root['loss'], 'loss');
  known(loss, 'loss', ['mse', 'l1', 'gan', 'identity', 'perceptual', 'latent', 'perceptualWeights', ...OPTIONAL_LOSS_TERMS]);
  const pw = loss['perceptualWeights'] ?? [];
  if (!Array.isArray(pw) || pw.some((f) => typeof f !== 'string')) fail('loss.perceptualWeights', 'must be a list of weight file paths');
  const perceptualWeights = (pw as string[]).map((f) => path.resolve(base, f));
  for (const f of perceptualWeights) if (!fs.existsSync(f)) fail('loss.perceptualWeights', `file ${f} does not exist`);
  const optim = obj(root['optim'], 'optim');
  known(optim, 'optim', ['lr', 'betas', 'eps', 'weightDecay', 'clipNorm', 'warmupSteps', 'schedule', 'minLrRatio']);
  const betas = optim['betas'] ?? [0.9, 0.999];
  if (!Array.isArray(betas) || betas.length !== 2 || betas.some((b) => typeof b !== 'number' || b < 0 || b >= 1)) fail('optim.betas', 'must be two numbers in [0, 1)');
  const schedule = str(optim, 'schedule', 'optim.schedule', 'cosine');
  if (!['constant', 'cosine', 'linear'].includes(schedule)) fail('optim.schedule', "must be 'constant', 'cosine' or 'linear'");
  const steps = num(root, 'steps', 'steps', undefined, 1, 1e9, true);

  const size = num(data, 'size', 'data.size', 64, 16, 1024, true);
  const holdout = num(data, 'holdout', 'data.holdout', 0, 0, 1e6, true);
  const crop = num(data, 'crop', 'data.crop', 0, 0, size, true);
  if (holdout === 0 && data['val'] === undefined) fail('data.val', 'is required (or set data.holdout to validate on the last training images)');
  if (holdout > 0 && data['val'] !== undefined) fail('data.val', 'and data.holdout exclude each other: give one validation set');
  const cfg: TrainConfig = {
    data: {
      train: dir(data, 'train', 'data.train'), val: holdout > 0 ? null : dir(data, 'val', 'data.val'), holdout, crop, size,
      batch: num(data, 'batch', 'data.batch', 4, 1, 256, true), valImages: num(data, 'valImages', 'data.valImages', 8, 1, 1000, true),
      degradation: degradation as PresetName,
      augment: {
        flip: bool(aug, 'flip', 'data.augment.flip', true), scale: num(aug, 'scale', 'data.augment.scale', 0.05, 0, 0.5),
        shift: num(aug, 'shift', 'data.augment.shift', 0.05, 0, 0.5), colorJitter: num(aug, 'colorJitter', 'data.augment.colorJitter', 0.05, 0, 0.5),
      },
    },
    model: {
      unet: { ...SMALL_MODEL.unet, ...obj(model['unet'], 'model.unet') },
      // A tiny autoencoder (AutoencoderTiny) has its own defaults: the small KL VAE's keys do not apply.
      vae: obj(model['vae'], 'model.vae')['_class_name'] === 'AutoencoderTiny' ? obj(model['vae'], 'model.vae') : { ...SMALL_MODEL.vae, ...obj(model['vae'], 'model.vae') },
      vre: { ...SMALL_MODEL.vre, resolution: size, ...obj(model['vre'], 'model.vre') },
      promptChannels: num(model, 'promptChannels', 'model.promptChannels', SMALL_MODEL.promptChannels, 1, 4096, true),
      timestep: num(model, 'timestep', 'model.timestep', SMALL_MODEL.timestep, 0, 999, true),
    },
    init: {
      vae: existing(init, 'vae', 'init.vae'),
      from: Array.isArray(init['from'])
        ? (init['from'] as unknown[]).map((_, i) => existing(init['from'] as Json, String(i), `init.from[${i}]`)!)
        : existing(init, 'from', 'init.from'),
      ...(init['unetLayersAdded'] === undefined ? {} : { unetLayersAdded: num(init, 'unetLayersAdded', 'init.unetLayersAdded', undefined, 1, 16, true) }),
    },
    trainable: {
      mode: mode as 'full' | 'lora',
      lora: { rank: num(lora, 'rank', 'trainable.lora.rank', 4, 1, 1024, true), alpha: num(lora, 'alpha', 'trainable.lora.alpha', 4, 0), targets: targets as string[] },
      frozen: frozen as string[],
    },
    loss: {
      mse: num(loss, 'mse', 'loss.mse', 1, 0), l1: num(loss, 'l1', 'loss.l1', 0, 0), gan: num(loss, 'gan', 'loss.gan', 0, 0), identity: num(loss, 'identity', 'loss.identity', 0, 0),
      perceptual: num(loss, 'perceptual', 'loss.perceptual', 0, 0), latent: num(loss, 'latent', 'loss.latent', 0, 0), perceptualWeights,
      ...Object.fromEntries(OPTIONAL_LOSS_TERMS.filter((k) => loss[k] !== undefined).map((k) => [k, num(loss, k, `loss.${k}`, 0, 0)])),
    },
    optim: {
      lr: num(optim, 'lr', 'optim.lr', 1e-3, 0, 10), betas: betas as [number, number], eps: num(optim, 'eps', 'optim.eps', 1e-8, 0),
      weightDecay: num(optim, 'weightDecay', 'optim.weightDecay', 0.01, 0), clipNorm: num(optim, 'clipNorm', 'optim.clipNorm', 1, 0),
      warmupSteps: num(optim, 'warmupSteps', 'optim.warmupSteps', 10, 0, 1e9, true), schedule: schedule as AdamWConfig['schedule'],
      totalSteps: steps, minLrRatio: num(optim, 'minLrRatio', 'optim.minLrRatio', 0.1, 0, 1),
    },
    steps,
    seed: num(root, 'seed', 'seed', 0, 0, 2 ** 31, true),
    threads: num(root, 'threads', 'threads', 2, 1, 256, true),
    out: path.resolve(base, str(root, 'out', 'out')),
    checkpointEvery: num(root, 'checkpointEvery', 'checkpointEvery', 50, 1, 1e9, true),
    sampleEvery: num(root, 'sampleEvery', 'sampleEvery', 50, 1, 1e9, true),
    evalEvery: num(root, 'evalEvery', 'evalEvery', 50, 1, 1e9, true),
  };
  if (cfg.init.unetLayersAdded !== undefined) {
    if (cfg.init.from === null) fail('init.unetLayersAdded', 'grows the UNet of init.from: give init.from (the stage to deepen)');
    const layers = cfg.model.unet['layers_per_block'];
    if (typeof layers !== 'number' || layers - cfg.init.unetLayersAdded < 1) {
      fail('init.unetLayersAdded', `needs model.unet.layers_per_block (one number) above ${cfg.init.unetLayersAdded}, found ${JSON.stringify(layers)}`);
    }
  }
  // encoderDists and the projected critic read a frozen copy of a pretrained tiny autoencoder's encoder.
  const frozenEncoderCopy = cfg.model.vae['_class_name'] === 'AutoencoderTiny' && cfg.init.vae !== null;
  const needsFrozenEncoderCopy = 'needs a tiny autoencoder (model.vae._class_name "AutoencoderTiny") and its pretrained weights in init.vae';
  if (root['discriminator'] !== undefined) {
    const d = obj(root['discriminator'], 'discriminator');
    known(d, 'discriminator', ['width', 'layers', 'lr', 'input', 'spectralNorm', 'levels', 'blur', 'shift']);
    cfg.discriminator = { width: num(d, 'width', 'discriminator.width', 32, 1, 1024, true), layers: num(d, 'layers', 'discriminator.layers', 2, 1, 6, true) };
    if (d['lr'] !== undefined) cfg.discriminator.lr = num(d, 'lr', 'discriminator.lr', undefined, 0, 10);
    if (d['input'] !== undefined) {
      if (!CRITIC_INPUTS.includes(d['input'] as CriticInput)) fail('discriminator.input', `must be one of ${CRITIC_INPUTS.map((v) => `'${v}'`).join(', ')}, found ${JSON.stringify(d['input'])}`);
      cfg.discriminator.input = d['input'] as CriticInput;
    }
    if (d['spectralNorm'] !== undefined) {
      if (typeof d['spectralNorm'] !== 'boolean') fail('discriminator.spectralNorm', `must be true or false, found ${JSON.stringify(d['spectralNorm'])}`);
      cfg.discriminator.spectralNorm = d['spectralNorm'] as boolean;
    }
    if (d['blur'] !== undefined) {
      if (typeof d['blur'] !== 'boolean') fail('discriminator.blur', `must be true or false, found ${JSON.stringify(d['blur'])}`);
      cfg.discriminator.blur = d['blur'] as boolean;
    }
    if (d['shift'] !== undefined) cfg.discriminator.shift = num(d, 'shift', 'discriminator.shift', undefined, 1, 16, true);
    if (d['levels'] !== undefined) {
      const levels = d['levels'];
      if (cfg.discriminator.input !== 'encoder') fail('discriminator.levels', `chooses the heads of a projected critic: set discriminator.input to 'encoder', or leave levels out`);
      if (!Array.isArray(levels) || levels.length === 0 || levels.some((l, i) => !Number.isInteger(l) || l < 0 || (i > 0 && l <= levels[i - 1]))) {
        fail('discriminator.levels', `must be increasing pyramid levels (0 full resolution, 1 half, ...), found ${JSON.stringify(levels)}`);
      }
      cfg.discriminator.levels = levels as number[];
    }
    if (cfg.discriminator.input === 'encoder' && !frozenEncoderCopy) fail('discriminator.input', `'encoder' ${needsFrozenEncoderCopy}: the critic's frozen features come from them`);
    const downscale = 2 ** cfg.discriminator.layers;
    if ((crop > 0 ? crop : size) < 4 * downscale) fail('discriminator.layers', `${cfg.discriminator.layers} layers shrink a ${crop > 0 ? crop : size}-pixel training image below 4 pixels`);
  }
  if (crop > 0 && crop % 8 !== 0) fail('data.crop', `must be a multiple of 8 (the autoencoder's factor), found ${crop}`);
  const optionalWeights = OPTIONAL_LOSS_TERMS.reduce((sum, k) => sum + (cfg.loss[k] ?? 0), 0);
  if (cfg.loss.mse + cfg.loss.l1 + cfg.loss.gan + cfg.loss.identity + cfg.loss.perceptual + cfg.loss.latent + optionalWeights === 0) fail('loss', 'needs at least one positive weight');
  const trainedSide = crop > 0 ? crop : size;
  if ((cfg.loss.lattice ?? 0) > 0 && trainedSide % LATTICE_PATCH !== 0) {
    fail('loss.lattice', `averages ${LATTICE_PATCH}-pixel patches: data.${crop > 0 ? 'crop' : 'size'} must be a multiple of ${LATTICE_PATCH}, found ${trainedSide}`);
  }
  if ((cfg.loss.detailEnergy ?? 0) > 0 && trainedSide % DETAIL_ENERGY_PATCH !== 0) {
    fail('loss.detailEnergy', `compares ${DETAIL_ENERGY_PATCH}-pixel patches: data.${crop > 0 ? 'crop' : 'size'} must be a multiple of ${DETAIL_ENERGY_PATCH}, found ${trainedSide}`);
  }
  if ((cfg.loss.ssim ?? 0) > 0 && trainedSide < 11) fail('loss.ssim', `needs training images of at least 11 pixels (SSIM's Gaussian window), found data.${crop > 0 ? 'crop' : 'size'} ${trainedSide}`);
  for (const key of ['encoderDists', 'encoderDistsEdges', 'encoderGram'] as const) {
    if ((cfg.loss[key] ?? 0) > 0 && !frozenEncoderCopy) fail(`loss.${key}`, `${needsFrozenEncoderCopy}: the frozen feature encoder is a copy of them`);
  }
  if (cfg.loss.perceptual > 0 && perceptualWeights.length === 0) {
    fail('loss.perceptualWeights', 'is required when loss.perceptual > 0: torchvision VGG16 ImageNet weights and the DISTS alpha/beta weights (safetensors or zip-format .pth)');
  }
  return cfg;
}

export function readTrainConfig(file: string): TrainConfig {
  if (!fs.existsSync(file)) throw new TrainConfigError(file, '<file>', 'does not exist');
  let raw: unknown;
  try {
    raw = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    throw new TrainConfigError(file, '<file>', `is not valid JSON: ${(e as Error).message}`);
  }
  return parseTrainConfig(raw, file);
}

/** `cfg` as a config file again (absolute paths, every default spelled out), which parseTrainConfig reads back to `cfg`. */
export function configToJson(cfg: TrainConfig): Record<string, unknown> {
  const { totalSteps: _derived, ...optim } = cfg.optim;
  const { val, ...data } = cfg.data;
  const init = Object.fromEntries(Object.entries(cfg.init).filter(([, v]) => v !== null));
  return { ...cfg, data: val === null ? data : { ...data, val }, init, optim };
}
