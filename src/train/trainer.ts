/**
 * Training an OSDFace-shaped model in TypeScript: the forward pipeline (VAE encode -> UNet at the
 * fixed timestep -> x0 -> VAE decode), its loss and the loss's gradients are one ONNX graph run by
 * ONNX Runtime; the trainable parameters are fed as inputs and updated here with AdamW.
 * The VRE stays frozen (its code selection is discrete) and runs as its own session.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { Graph, type Value } from '../graph/ir.js';
import * as op from '../graph/ops.js';
import { gradients } from '../graph/autodiff.js';
import { emitOnnx, type WeightSource } from '../graph/emit.js';
import { OnnxSession } from '../graph/runtime.js';
import { Config } from '../models/config.js';
import { UNet2DConditionModel } from '../models/unet_2d_condition.js';
import { AutoencoderKL } from '../models/autoencoder_kl.js';
import { AutoencoderTiny } from '../models/autoencoder_tiny.js';
import { taef2Store } from '../weights/taesd.js';
import { Random } from '../degrade/random.js';
import { VQVAEEncoder } from '../models/vre/vqvae_encoder.js';
import { TwoLayerConv1x1 } from '../models/vre/embedding_change.js';
import { selectCodes } from '../models/vre/vq_select.js';
import { vreGraph } from '../pipeline/graphs.js';
import { alphasCumprod } from '../pipeline/scheduler.js';
import { SafetensorsFile, writeSafetensors } from '../weights/safetensors.js';
import { type FloatTensor, type Tensor, floatTensor } from '../tensor.js';
import { OPTIONAL_LOSS_TERMS, type TrainConfig } from './config.js';
import { FaceDataset, type Batch } from './data.js';
import { initParam } from './init.js';
import { writeFileAtomic } from '../degrade/args.js';
import { adamWStep, newAdamWState, type AdamWState } from './optim.js';
import { lossCurvePng, sampleSheetPng } from './plot.js';
import { GanCritic, shiftKernel, shiftKernelShape } from './discriminator.js';
import { SpectralNorm } from './spectral_norm.js';
import { identityLoss, isRecognitionParam, loadRecognitionWeights } from '../face/recognition.js';
import { Dists, edgeAwareDists, loadDistsWeights } from './dists.js';
import { EncoderDists } from './encoder_dists.js';
import { LATTICE_CELL, LATTICE_PATCH, latticeDistance } from './lattice.js';
import { ssimDistance } from './ssim_loss.js';
import { DETAIL_ENERGY_PATCH, detailEnergyDistance } from './detail_energy.js';
import { deepenUNetParams } from './deepen_unet.js';

/** Loss terms the training graph outputs under these names and StepLog records, before their weights. */
const LOGGED_TERMS = ['identity', 'latent', ...OPTIONAL_LOSS_TERMS] as const;

export interface StepLog {
  step: number;
  loss: number;
  lr: number;
  gradNorm: number;
  imagesPerSecond: number;
  /** With GAN guidance: the hinge discriminator loss and the generator's adversarial term. */
  discriminatorLoss?: number;
  adversarial?: number;
  /** With loss.identity > 0: the identity loss (1 - mean cosine of face descriptors), before its weight. */
  identity?: number;
  /** With loss.latent > 0: the latent MSE, before its weight. */
  latent?: number;
  /** With loss.encoderDists > 0: that distance, before its weight. */
  encoderDists?: number;
  /** With loss.encoderDistsEdges > 0: that distance between the edge maps, before its weight. */
  encoderDistsEdges?: number;
  /** With loss.encoderGram > 0: that texture distance, before its weight. */
  encoderGram?: number;
  /** With loss.lattice > 0: that distance, before its weight. */
  lattice?: number;
  /** With loss.ssim > 0: 1 - SSIM, before its weight. */
  ssim?: number;
  /** With loss.detailEnergy > 0: that distance, before its weight. */
  detailEnergy?: number;
  val?: { loss: number; psnr: number; inputPsnr: number };
}

export const SD_SCHEDULE = new Config({ beta_start: 0.00085, beta_end: 0.012, beta_schedule: 'scaled_linear', num_train_timesteps: 1000 }, 'SD schedule');

/** The mean of `f` over a critic's scales (a pixel critic has one). */
function meanOverScales(logits: Value[], f: (l: Value) => Value): Value {
  return op.div(logits.map(f).reduce((sum, v) => op.add(sum, v)), logits.length);
}

function psnr(a: Float32Array, b: Float32Array, from: number, n: number): number {
  let se = 0;
  for (let i = from; i < from + n; i++) {
    const d = Math.min(1, Math.max(0, a[i]!)) - b[i]!;
    se += d * d;
  }
  return se === 0 ? Infinity : 10 * Math.log10(n / se);
}

/**
 * Starting weights from `init`: the pretrained autoencoder, then an earlier stage's checkpoint over
 * it (its UNet deepened first when `init.unetLayersAdded` says so).
 */
export function startingWeights(cfg: TrainConfig, vaeModule: AutoencoderKL | AutoencoderTiny, shapes: Map<string, number[]>): Map<string, Float32Array> {
  const out = new Map<string, Float32Array>();
  const { vae, from, unetLayersAdded } = cfg.init;
  if (vae) {
    const store = taef2Store(vae);
    for (const [k] of vaeModule.namedParameters()) {
      if (!store.has(k)) throw new Error(`init.vae: ${vae} has no tensor '${k}' for the configured autoencoder`);
      const t = store.read(k);
      if (t.shape.join(',') !== shapes.get(k)?.join(',')) throw new Error(`init.vae: '${k}' is [${t.shape}] in ${vae}, the configured autoencoder needs [${shapes.get(k)}]`);
      out.set(k, t.data as Float32Array);
    }
  }
  for (const source of from === null ? [] : Array.isArray(from) ? from : [from]) {
    const file = checkpointFile(source);
    const critic = new Map<string, Float32Array>();
    let otherCritic = false;
    const params = readCheckpointParams(file);
    const grown = unetLayersAdded ? deepenUNetParams(params, shapes, cfg.model.unet['layers_per_block'] as number, unetLayersAdded) : params;
    for (const [k, t] of grown) {
      const shape = shapes.get(k);
      if (!shape) continue;
      const isCritic = k.startsWith('discriminator.');
      if (t.shape.join(',') !== shape.join(',')) {
        if (isCritic) otherCritic = true;
        else throw new Error(`init.from: '${k}' is [${t.shape}] in ${file}, the configured model needs [${shape}]; start from a stage of the same architecture`);
      }
      (isCritic ? critic : out).set(k, t.data);
    }
    // A critic of another size (the `discriminator` setting) is left out, all of it: the new one starts afresh.
    if (!otherCritic) for (const [k, v] of critic) out.set(k, v);
  }
  return out;
}

/** The parameters (not the optimizer moments) of a checkpoint file, by graph key, with their shapes. */
export function readCheckpointParams(file: string): Map<string, { shape: number[]; data: Float32Array }> {
  const out = new Map<string, { shape: number[]; data: Float32Array }>();
  const f = SafetensorsFile.open(file);
  try {
    for (const key of f.keys()) {
      if (!key.startsWith('param/')) continue;
      const t = f.read(key);
      out.set(key.slice(6), { shape: t.shape, data: t.data as Float32Array });
    }
  } finally {
    f.close();
  }
  return out;
}

/** The format of Trainer.saveWeights: `param/<key>` tensors, the step and the config hash. */
function writeWeightsOnly(file: string, tensors: Map<string, Tensor>, step: number, config: string, float16: boolean): void {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  writeSafetensors(file, tensors, { step: String(step), config, weightsOnly: 'true' }, { float16 });
}

/**
 * Full checkpoints (parameters and moments) or saved weights reduced to their parameters, as
 * Trainer.saveWeights writes them. Several are mixed, `mix[i]` times file i (default: equal
 * weights, the average of the last checkpoints of a run, which smooths the noise of small-batch
 * training; other weights blend two stages of a recipe). Only parameters every file holds are
 * kept (a GAN stage's discriminator drops out of a blend with a stage that had none); the step
 * and config are the last file's.
 */
export function weightsFromCheckpoints(checkpoints: string[], file: string, float16 = true, mix: number[] = checkpoints.map(() => 1 / checkpoints.length)): void {
  if (mix.length !== checkpoints.length) throw new Error(`${mix.length} mixing weights for ${checkpoints.length} files`);
  const sums = new Map<string, { shape: number[]; sum: Float64Array; count: number }>();
  let meta: Record<string, string> = {};
  checkpoints.forEach((checkpoint, n) => {
    const f = SafetensorsFile.open(checkpoint);
    try {
      meta = f.metadata;
      for (const k of f.keys()) {
        if (!k.startsWith('param/')) continue;
        const t = f.read(k);
        const entry = sums.get(k);
        const w = mix[n]!;
        if (!entry) sums.set(k, { shape: t.shape, sum: Float64Array.from(t.data as Float32Array, (v) => w * v), count: 1 });
        else {
          (t.data as Float32Array).forEach((v, i) => { entry.sum[i]! += w * v; });
          entry.count++;
        }
      }
    } finally {
      f.close();
    }
  });
  const tensors = new Map<string, Tensor>();
  for (const [k, { shape, sum, count }] of sums) if (count === checkpoints.length) tensors.set(k, floatTensor(shape, Float32Array.from(sum)));
  writeWeightsOnly(file, tensors, Number(meta['step']), meta['config'] ?? '', float16);
}

/** The run folder's checkpoints, oldest first. */
export function listCheckpoints(runDir: string): string[] {
  const dir = path.join(runDir, 'checkpoints');
  if (!fs.existsSync(dir)) return [];
  return fs.readdirSync(dir).filter((f) => /^step-\d+\.safetensors$/.test(f)).sort().map((f) => path.join(dir, f));
}

/** A checkpoint file from a run folder (its latest), a checkpoints folder, or the file itself. */
export function checkpointFile(from: string): string {
  if (fs.statSync(from).isFile()) return from;
  for (const dir of [path.join(from, 'checkpoints'), from]) {
    const latest = path.join(dir, 'latest.json');
    if (fs.existsSync(latest)) return path.join(dir, (JSON.parse(fs.readFileSync(latest, 'utf8')) as { file: string }).file);
  }
  throw new Error(`${from}: no checkpoints/latest.json: not a training run folder or checkpoint`);
}

/** The same random crop x crop window (aligned to the autoencoder's 8 pixels) of every LQ/HQ pair. */
function cropBatch(batch: Batch, crop: number, rng: Random): Batch {
  const [n, c, h, w] = batch.lq.shape as [number, number, number, number];
  const lq = floatTensor([n, c, crop, crop]);
  const hq = floatTensor([n, c, crop, crop]);
  for (let b = 0; b < n; b++) {
    const top = 8 * rng.int((h - crop) / 8 + 1);
    const left = 8 * rng.int((w - crop) / 8 + 1);
    for (let ch = 0; ch < c; ch++) {
      for (let y = 0; y < crop; y++) {
        const from = ((b * c + ch) * h + top + y) * w + left;
        const to = ((b * c + ch) * crop + y) * crop;
        lq.data.set(batch.lq.data.subarray(from, from + crop), to);
        hq.data.set(batch.hq.data.subarray(from, from + crop), to);
      }
    }
  }
  return { lq, hq };
}

export class Trainer {
  readonly unet: UNet2DConditionModel;
  readonly vae: AutoencoderKL | AutoencoderTiny;
  readonly vre: VQVAEEncoder;
  readonly ec: TwoLayerConv1x1;
  /** GAN guidance (loss.gan > 0): the discriminator, its parameters and optimizer, trained in alternation. */
  private readonly critic?: GanCritic;
  readonly dParams = new Map<string, Float32Array>();
  private dOpt?: AdamWState;
  private dSession?: OnnxSession;
  /** discriminator.spectralNorm: the graphs receive the critic's weights as W / sigma(W). */
  private readonly spectralNorm?: SpectralNorm;
  /** The edge-aware DISTS term (loss.perceptual > 0); its weights are frozen. */
  private dists?: Dists;
  /** The frozen TAEF2 encoder copy: DISTS on its features (loss.encoderDists or loss.encoderDistsEdges > 0), the projected critic's features (discriminator.input 'encoder'). */
  private encoderDists?: EncoderDists;
  /** Trainable parameters (graph keys), updated in place. */
  readonly params = new Map<string, Float32Array>();
  private readonly frozen = new Map<string, Float32Array>();
  private opt: AdamWState;
  private trainSession?: OnnxSession;
  private evalSession?: OnnxSession;
  private vreSession?: OnnxSession;
  private codebook!: FloatTensor;
  readonly logs: StepLog[] = [];
  private val?: Batch;
  private valTokens?: FloatTensor;

  constructor(readonly cfg: TrainConfig, private readonly dataset: FaceDataset, private readonly valSet: FaceDataset) {
    const m = cfg.model;
    this.unet = new UNet2DConditionModel(new Config(m.unet, 'config model.unet'));
    const vaeConfig = new Config(m.vae, 'config model.vae');
    this.vae = m.vae['_class_name'] === 'AutoencoderTiny' ? new AutoencoderTiny(vaeConfig) : new AutoencoderKL(vaeConfig);
    this.vre = new VQVAEEncoder(new Config(m.vre, 'config model.vre'));
    if (this.unet.crossAttentionDim !== m.promptChannels) {
      throw new Error(`config: model.promptChannels (${m.promptChannels}) must equal model.unet.cross_attention_dim (${this.unet.crossAttentionDim})`);
    }
    this.ec = new TwoLayerConv1x1(this.vre.quantize.embedDim, m.promptChannels);
    if (cfg.loss.perceptual > 0) this.dists = new Dists();
    const projectedCritic = cfg.loss.gan > 0 && cfg.discriminator?.input === 'encoder';
    if ((cfg.loss.encoderDists ?? 0) > 0 || (cfg.loss.encoderDistsEdges ?? 0) > 0 || (cfg.loss.encoderGram ?? 0) > 0 || projectedCritic) this.encoderDists = new EncoderDists(this.vae as AutoencoderTiny);
    const graph = this.buildGraph(false);
    const trainable = (k: string) => !cfg.trainable.frozen.some((prefix) => k.startsWith(prefix)) &&
      (cfg.trainable.mode === 'lora' ? /\.lora_[AB]\.weight$/.test(k) || this.ec.namedParameters().some(([e]) => e === k) : true);
    const perceptualKeys = new Set([...this.dists?.namedParameters() ?? [], ...this.encoderDists?.namedParameters() ?? []].map(([k]) => k));
    const critic = cfg.loss.gan > 0 ? new GanCritic(cfg.discriminator, projectedCritic ? (this.vae as AutoencoderTiny).encoder.config.blockOut : undefined) : undefined;
    const shapes = new Map([...graph.params].map(([k, v]) => [k, v.shape]));
    // An earlier GAN stage's discriminator goes on with its generator (read from init.from with the
    // rest): a fresh critic would first have to relearn what the generator already fools.
    for (const [k, shape] of critic?.namedParameters() ?? []) shapes.set(k, shape);
    const pretrained = startingWeights(cfg, this.vae, shapes);
    for (const [k, v] of graph.params) if (!perceptualKeys.has(k)) (trainable(k) ? this.params : this.frozen).set(k, pretrained.get(k) ?? initParam(k, v.shape, cfg.seed));
    // Identity loss (loss.identity > 0): the face recognition network keeps face-api's pretrained weights, frozen.
    if (cfg.loss.identity > 0) {
      for (const k of [...this.params.keys()].filter(isRecognitionParam)) this.params.delete(k);
      for (const [k, v] of loadRecognitionWeights()) this.frozen.set(k, v);
    }
    if (this.encoderDists) for (const [k, v] of this.encoderDists.weightsFrom(taef2Store(cfg.init.vae!))) this.frozen.set(k, v);
    for (const [k, shape] of this.vre.namedParameters()) this.frozen.set(`vre.${k}`, initParam(k, shape, cfg.seed));
    if (this.params.size === 0 && !critic) throw new Error(`config: every weight is frozen (trainable.frozen) and there is no GAN critic to train (loss.gan is 0): nothing would learn`);
    this.opt = newAdamWState(this.params);
    if (critic) {
      this.critic = critic;
      for (const [k, shape] of critic.namedParameters()) this.dParams.set(k, pretrained.get(k) ?? initParam(k, shape, cfg.seed));
      this.dOpt = newAdamWState(this.dParams);
      if (cfg.discriminator?.spectralNorm) this.spectralNorm = new SpectralNorm(`${cfg.seed}:spectral-norm`);
    }
  }

  get step(): number {
    return this.opt.step;
  }

  /** A hash of everything that shapes the run, so a resume refuses a different config. */
  get configHash(): string {
    const { steps: _steps, checkpointEvery: _c, sampleEvery: _s, evalEvery: _e, threads: _t, ...shape } = this.cfg;
    return crypto.createHash('sha256').update(JSON.stringify(shape)).digest('hex').slice(0, 16);
  }

  private loraTargets(): Set<string> {
    const suffixes = this.cfg.trainable.lora.targets;
    const modules = new Set<string>();
    for (const [k] of this.unet.namedParameters()) {
      const mod = k.replace(/\.(weight|bias)$/, '');
      if (k.endsWith('.weight') && suffixes.some((s) => mod === s || mod.endsWith(`.${s}`))) modules.add(mod);
    }
    return modules;
  }

  /** The forward pipeline and its loss; with `withGradients`, the gradients of the trainable parameters too. */
  private buildGraph(withGradients: boolean): Graph {
    const { batch } = this.cfg.data;
    const size = withGradients && this.cfg.data.crop > 0 ? this.cfg.data.crop : this.cfg.data.size;
    const n = withGradients ? batch : this.valSet.length;
    const g = new Graph(withGradients ? 'train_step' : 'eval');
    g.fusedAttention = false;
    if (this.cfg.trainable.mode === 'lora') {
      g.lora = { rank: this.cfg.trainable.lora.rank, scale: this.cfg.trainable.lora.alpha / this.cfg.trainable.lora.rank, targets: this.loraTargets() };
    }
    const lq = g.input('lq', 'float32', [n, 3, size, size]);
    const hq = g.input('hq', 'float32', [n, 3, size, size]);
    const tokens = g.input('tokens', 'float32', [n, this.vre.nMin, this.vre.quantize.embedDim]);
    const t = g.input('timestep', 'float32', [1]);
    const sf = this.vae.scalingFactor;
    const f = Math.fround;
    const a = alphasCumprod(SD_SCHEDULE)[this.cfg.model.timestep]!;
    const vae = this.vae;
    const encode = (x: Value) => {
      const image = op.sub(op.mul(x, 2), 1);
      return op.mul(vae instanceof AutoencoderKL ? vae.encode(g, image).mean : vae.encode(g, image), sf);
    };
    const latent = encode(lq);
    const eps = this.unet.forward(g, latent, t, this.ec.forward(g, tokens));
    const x0 = op.div(op.sub(latent, op.mul(eps, f(Math.sqrt(f(1 - a))))), f(Math.sqrt(a)));
    const out = op.add(op.mul(this.vae.decode(g, op.div(x0, sf)), 0.5), 0.5);
    const diff = op.sub(out, hq);
    const all = diff.shape.map((_, i) => i);
    const terms: Value[] = [];
    // Pixel losses in [-1, 1] units (x2 of the [0, 1] difference), as the reference trains.
    if (this.cfg.loss.mse > 0) terms.push(op.mul(op.reduceMean(op.mul(diff, diff), all, false), 4 * this.cfg.loss.mse));
    if (this.cfg.loss.l1 > 0) terms.push(op.mul(op.reduceMean(op.abs(diff), all, false), 2 * this.cfg.loss.l1));
    if (this.cfg.loss.latent > 0) {
      const d = op.sub(x0, encode(hq));
      const latentLoss = op.reduceMean(op.mul(d, d), d.shape.map((_, i) => i), false);
      g.output(latentLoss, 'latent');
      terms.push(op.mul(latentLoss, this.cfg.loss.latent));
    }
    if (this.cfg.loss.identity > 0) {
      // 1 - cosine similarity of face-api recognition descriptors of the output and the HQ image (src/face/recognition.ts).
      const identity = identityLoss(g, out, hq);
      g.output(identity, 'identity');
      terms.push(op.mul(identity, this.cfg.loss.identity));
    }
    if (this.dists) {
      const perceptual = edgeAwareDists(this.dists, g, out, hq);
      g.output(perceptual, 'perceptual');
      terms.push(op.mul(perceptual, this.cfg.loss.perceptual));
    }
    // Per-image distances, averaged over the batch; logged before their weight (StepLog's key).
    const distanceTerms: [key: (typeof LOGGED_TERMS)[number], weight: number | undefined, distance: () => Value][] = [
      ['encoderDists', this.cfg.loss.encoderDists, () => this.encoderDists!.forward(g, out, hq)],
      ['encoderDistsEdges', this.cfg.loss.encoderDistsEdges, () => this.encoderDists!.forwardEdges(g, out, hq)],
      ['encoderGram', this.cfg.loss.encoderGram, () => this.encoderDists!.texture(g, out, hq)],
      ['lattice', this.cfg.loss.lattice, () => latticeDistance(g, out, hq, LATTICE_CELL, LATTICE_PATCH)],
      ['ssim', this.cfg.loss.ssim, () => ssimDistance(g, out, hq)],
      ['detailEnergy', this.cfg.loss.detailEnergy, () => detailEnergyDistance(g, out, hq, DETAIL_ENERGY_PATCH)],
    ];
    for (const [key, weight, distance] of distanceTerms) {
      if ((weight ?? 0) <= 0) continue;
      const batchMean = op.reduceMean(distance(), [0], false);
      g.output(batchMean, key);
      terms.push(op.mul(batchMean, weight!));
    }
    if (this.critic) {
      // Hinge generator loss: raise the discriminator's score of the restored image.
      const adv = op.neg(meanOverScales(this.criticLogits(g, out, this.criticShiftInput(g)), (l) => op.reduceMean(l, l.shape.map((_, i) => i), false)));
      g.output(adv, 'adversarial');
      terms.push(op.mul(adv, this.cfg.loss.gan));
    }
    const loss = terms.reduce((s, v) => op.add(s, v));
    g.output(loss, 'loss');
    g.output(out, 'out');
    if (withGradients) {
      const keys = [...g.params.keys()].filter((k) => (this.params.has(k) || !this.frozen.has(k)) && !this.dParams.has(k));
      // Every generator weight frozen: a critic warm-up stage, where only the discriminator learns.
      if (keys.length > 0) gradients(g, loss, keys.map((k) => g.params.get(k)!)).forEach((gv, i) => g.output(gv, `grad:${keys[i]}`));
    }
    return g;
  }

  /** Hinge discriminator loss on real HQ and detached restored images, and its gradients. */
  private discriminatorGraph(): Graph {
    const { batch, crop } = this.cfg.data;
    const size = crop > 0 ? crop : this.cfg.data.size;
    const g = new Graph('discriminator_step');
    const real = g.input('real', 'float32', [batch, 3, size, size]);
    const fake = g.input('fake', 'float32', [batch, 3, size, size]);
    const shift = this.criticShiftInput(g);
    const hinge = (image: Value, sign: number) =>
      meanOverScales(this.criticLogits(g, image, shift), (l) => op.reduceMean(op.relu(op.add(op.mul(l, sign), 1)), l.shape.map((_, i) => i), false));
    const loss = op.add(hinge(real, -1), hinge(fake, 1));
    g.output(loss, 'loss');
    // The projected critic's frozen encoder is a constant here: only the critic's own weights learn.
    const keys = [...g.params.keys()].filter((k) => this.dParams.has(k));
    gradients(g, loss, keys.map((k) => g.params.get(k)!)).forEach((gv, i) => g.output(gv, `grad:${keys[i]}`));
    return g;
  }

  /** The critic's logits (one map per scale) of an image in [0, 1]. */
  private criticLogits(g: Graph, image01: Value, shift: Value | undefined): Value[] {
    return this.critic!.logits(g, op.sub(op.mul(image01, 2), 1), (x) => this.encoderDists!.encoder.features(g, x), shift);
  }

  /** discriminator.shift: the graph input that carries each step's shift kernel (`shiftKernel`). */
  private criticShiftInput(g: Graph): Value | undefined {
    const m = this.cfg.discriminator?.shift;
    return m ? g.input('critic_shift', 'float32', shiftKernelShape(3, m)) : undefined;
  }

  /** The `critic_shift` feed of a step (a random move drawn from the run's seed), or of an evaluation (no move). */
  private criticShiftFeed(step?: number): Record<string, Tensor> {
    const m = this.cfg.discriminator?.shift;
    if (!m || !this.critic) return {};
    const rng = step === undefined ? undefined : new Random(`${this.cfg.seed}:${step}:critic-shift`);
    const [dy, dx] = rng ? [rng.int(2 * m + 1) - m, rng.int(2 * m + 1) - m] : [0, 0];
    return { critic_shift: shiftKernel(3, m, dy, dx) };
  }

  /**
   * The critic's weights as the graphs receive them (spectrally normalized where set). Only a
   * training step advances the power iteration (`advance`), so evaluations leave a run's course as it was.
   */
  private criticWeights(advance: boolean): Map<string, Float32Array> {
    return this.spectralNorm?.weights(this.dParams, (k) => this.dShape(k), advance) ?? this.dParams;
  }

  private weights(prefix = ''): WeightSource {
    return {
      read: (key) => {
        const v = this.frozen.get(prefix + key);
        if (!v) throw new Error(`no frozen weight '${prefix + key}'`);
        return v;
      },
    };
  }

  async init(): Promise<void> {
    const runtime = { threads: this.cfg.threads };
    if (this.dists) for (const [k, v] of await loadDistsWeights(this.cfg.loss.perceptualWeights)) this.frozen.set(k, v);
    const keys = new Set([...this.params.keys(), ...this.dParams.keys()]);
    if (this.critic) this.dSession = await OnnxSession.create(emitOnnx(this.discriminatorGraph(), { weights: this.weights(), paramInputs: new Set(this.dParams.keys()) }), runtime);
    this.trainSession = await OnnxSession.create(emitOnnx(this.buildGraph(true), { weights: this.weights(), paramInputs: keys }), runtime);
    this.evalSession = await OnnxSession.create(emitOnnx(this.buildGraph(false), { weights: this.weights(), paramInputs: keys }), runtime);
    this.vreSession = await OnnxSession.create(emitOnnx(vreGraph(this.vre), { weights: this.weights('vre.') }), runtime);
    const cb = this.vre.namedParameters().find(([k]) => k === 'quantize.embedding.weight')!;
    this.codebook = floatTensor(cb[1], this.frozen.get('vre.quantize.embedding.weight')!);
    this.val = await this.valSet.fixed(this.cfg.seed, this.cfg.data.degradation);
    this.valTokens = await this.tokens(this.val.lq);
  }

  private async tokens(lq: FloatTensor): Promise<FloatTensor> {
    const image = floatTensor(lq.shape, lq.data.map((v) => v * 2 - 1));
    const out = await this.vreSession!.run({ image });
    return selectCodes(out.min_distance!, out.code_index!, this.codebook, this.vre.nMin).tokens;
  }

  private paramFeeds(critic = this.critic ? this.criticWeights(false) : new Map<string, Float32Array>()): Record<string, Tensor> {
    const feeds: Record<string, Tensor> = {};
    const graphParams = new Map(this.buildShapes());
    for (const [k, v] of this.params) feeds[k] = floatTensor(graphParams.get(k)!, v);
    for (const [k, v] of critic) feeds[k] = floatTensor(graphParams.get(k)!, v);
    return feeds;
  }

  private dShape(k: string): number[] {
    return this.critic!.namedParameters().find(([n]) => n === k)![1];
  }

  private shapes?: [string, number[]][];
  private buildShapes(): [string, number[]][] {
    this.shapes ??= [...this.buildGraph(false).params].map(([k, v]) => [k, v.shape]);
    return this.shapes;
  }

  private prefetched?: { step: number; batch: Promise<Batch> };

  private batchFor(step: number): Promise<Batch> {
    const batch = this.dataset.batch(`${this.cfg.seed}:${step}`, this.cfg.data.batch, this.cfg.data.augment, this.cfg.data.degradation);
    batch.catch(() => {}); // a prefetch that is never awaited must not become an unhandled rejection
    return batch;
  }

  async trainStep(): Promise<StepLog> {
    const t0 = performance.now();
    const step = this.opt.step;
    // The next step's batch is made (degraded on the CPU) while ONNX Runtime runs this one.
    const batch = await (this.prefetched?.step === step ? this.prefetched.batch : this.batchFor(step));
    this.prefetched = { step: step + 1, batch: this.batchFor(step + 1) };
    const tokens = await this.tokens(batch.lq);
    const critic = this.critic ? this.criticWeights(true) : new Map<string, Float32Array>();
    const { lq, hq } = this.cfg.data.crop > 0 ? cropBatch(batch, this.cfg.data.crop, new Random(`${this.cfg.seed}:${step}:crop`)) : batch;
    // The generator and the critic step see the same move of this step.
    const shift = this.criticShiftFeed(step);
    const out = await this.trainSession!.run({
      lq, hq, tokens, timestep: floatTensor([1], Float32Array.of(this.cfg.model.timestep)), ...this.paramFeeds(critic), ...shift,
    });
    const grads = new Map<string, Float32Array>();
    for (const k of this.params.keys()) grads.set(k, out[`grad:${k}`]!.data as Float32Array);
    const { lr, gradNorm } = adamWStep(this.cfg.optim, this.opt, this.params, grads);
    const loss = (out.loss!.data as Float32Array)[0]!;
    const log: StepLog = { step: this.opt.step, loss, lr, gradNorm, imagesPerSecond: 0 };
    for (const key of LOGGED_TERMS) if (out[key]) log[key] = (out[key].data as Float32Array)[0]!;
    if (this.dSession) {
      // The alternating discriminator step on this batch's real images and the generator's outputs.
      const d = await this.dSession.run({ real: hq, fake: out.out!, ...shift, ...Object.fromEntries([...critic].map(([k, v]) => [k, floatTensor(this.dShape(k), v)])) });
      const graphGrads = new Map([...this.dParams.keys()].map((k) => [k, d[`grad:${k}`]!.data as Float32Array]));
      const dGrads = this.spectralNorm?.gradients(this.dParams, graphGrads, (k) => this.dShape(k)) ?? graphGrads;
      // The critic may learn faster than the generator (discriminator.lr), on the same schedule.
      adamWStep({ ...this.cfg.optim, lr: this.cfg.discriminator?.lr ?? this.cfg.optim.lr }, this.dOpt!, this.dParams, dGrads);
      log.discriminatorLoss = (d.loss!.data as Float32Array)[0]!;
      log.adversarial = (out.adversarial!.data as Float32Array)[0]!;
    }
    log.imagesPerSecond = this.cfg.data.batch / ((performance.now() - t0) / 1000);
    this.logs.push(log);
    return log;
  }

  /** Validation loss, mean PSNR of the outputs and of the degraded inputs, and the outputs. */
  async evaluate(): Promise<{ loss: number; psnr: number; inputPsnr: number; out: FloatTensor }> {
    const val = this.val!;
    const out = await this.evalSession!.run({
      lq: val.lq, hq: val.hq, tokens: this.valTokens!, timestep: floatTensor([1], Float32Array.of(this.cfg.model.timestep)), ...this.paramFeeds(), ...this.criticShiftFeed(),
    });
    const pred = out.out as FloatTensor;
    const per = 3 * this.cfg.data.size ** 2;
    let p = 0;
    let q = 0;
    for (let i = 0; i < this.valSet.length; i++) {
      p += psnr(pred.data, val.hq.data, i * per, per);
      q += psnr(val.lq.data, val.hq.data, i * per, per);
    }
    return { loss: (out.loss!.data as Float32Array)[0]!, psnr: p / this.valSet.length, inputPsnr: q / this.valSet.length, out: pred };
  }

  async writeSamples(file: string, out: FloatTensor): Promise<void> {
    writeFileAtomic(file, await sampleSheetPng([this.val!.lq, out, this.val!.hq], 4));
  }

  async writeCurve(file: string): Promise<void> {
    const train = this.logs.map((l) => ({ step: l.step, value: l.loss }));
    const val = this.logs.filter((l) => l.val).map((l) => ({ step: l.step, value: l.val!.loss }));
    writeFileAtomic(file, await lossCurvePng([{ name: 'train loss', colour: '#1f77b4', points: train }, { name: 'validation loss', colour: '#d62728', points: val }], 'OSDFace training'));
  }

  /** Parameters, optimizer moments and the step, written atomically; `latest.json` is updated last. */
  saveCheckpoint(dir: string): string {
    fs.mkdirSync(dir, { recursive: true });
    const name = `step-${String(this.opt.step).padStart(7, '0')}.safetensors`;
    const tensors = new Map<string, Tensor>();
    const shapes = new Map(this.buildShapes());
    for (const [k, v] of this.params) {
      const shape = shapes.get(k)!;
      tensors.set(`param/${k}`, floatTensor(shape, v));
      tensors.set(`adam_m/${k}`, floatTensor(shape, this.opt.m.get(k)!));
      tensors.set(`adam_v/${k}`, floatTensor(shape, this.opt.v.get(k)!));
    }
    for (const [k, v] of this.dParams) {
      const shape = this.dShape(k);
      tensors.set(`param/${k}`, floatTensor(shape, v));
      tensors.set(`adam_m/${k}`, floatTensor(shape, this.dOpt!.m.get(k)!));
      tensors.set(`adam_v/${k}`, floatTensor(shape, this.dOpt!.v.get(k)!));
    }
    for (const [k, u] of this.spectralNorm?.vectors() ?? []) tensors.set(`spectral_u/${k}`, floatTensor([u.length], u));
    writeSafetensors(path.join(dir, name), tensors, { step: String(this.opt.step), config: this.configHash, momentSteps: String(this.opt.momentSteps ?? this.opt.step) });
    writeFileAtomic(path.join(dir, 'latest.json'), JSON.stringify({ step: this.opt.step, file: name, config: this.configHash }));
    for (const f of fs.readdirSync(dir)) {
      if (/^step-\d+\.safetensors$/.test(f) && f !== name && Number(f.slice(5, 12)) < this.opt.step - 2 * this.cfg.checkpointEvery) fs.rmSync(path.join(dir, f));
    }
    return name;
  }

  /** Restores the state saved by saveCheckpoint; returns the step it resumes from, or 0 when there is none. */
  loadCheckpoint(dir: string): number {
    const latest = path.join(dir, 'latest.json');
    if (!fs.existsSync(latest)) return 0;
    const meta = JSON.parse(fs.readFileSync(latest, 'utf8')) as { step: number; file: string; config: string };
    if (meta.config !== this.configHash) {
      throw new Error(`${dir} holds checkpoints of a run with a different configuration; choose another 'out' folder or remove it`);
    }
    const f = SafetensorsFile.open(path.join(dir, meta.file));
    const momentSteps = f.metadata?.['momentSteps'];
    try {
      for (const k of this.params.keys()) {
        this.params.get(k)!.set(f.read(`param/${k}`).data as Float32Array);
        this.opt.m.get(k)!.set(f.read(`adam_m/${k}`).data as Float32Array);
        this.opt.v.get(k)!.set(f.read(`adam_v/${k}`).data as Float32Array);
      }
      for (const k of this.dParams.keys()) {
        this.dParams.get(k)!.set(f.read(`param/${k}`).data as Float32Array);
        this.dOpt!.m.get(k)!.set(f.read(`adam_m/${k}`).data as Float32Array);
        this.dOpt!.v.get(k)!.set(f.read(`adam_v/${k}`).data as Float32Array);
        if (this.spectralNorm && f.has(`spectral_u/${k}`)) this.spectralNorm.restore(k, f.read(`spectral_u/${k}`).data as Float32Array);
      }
    } finally {
      f.close();
    }
    this.opt.step = meta.step;
    if (momentSteps !== undefined) this.opt.momentSteps = Number(momentSteps);
    if (this.dOpt) {
      this.dOpt.step = meta.step;
      if (momentSteps !== undefined) this.dOpt.momentSteps = Number(momentSteps);
    }
    return meta.step;
  }

  /**
   * The trained parameters alone (float16 when asked: a quarter of a full checkpoint), for a
   * training run to go on elsewhere with `loadWeights` (the optimizer moments start again from zero).
   */
  saveWeights(file: string, float16 = true): void {
    const shapes = new Map(this.buildShapes());
    const tensors = new Map<string, Tensor>();
    for (const [k, v] of this.params) tensors.set(`param/${k}`, floatTensor(shapes.get(k)!, v));
    for (const [k, v] of this.dParams) tensors.set(`param/${k}`, floatTensor(this.dShape(k), v));
    writeWeightsOnly(file, tensors, this.opt.step, this.configHash, float16);
  }

  /** Parameters and step from a `saveWeights` file of this configuration; the moments restart at zero. */
  loadWeights(file: string): number {
    const f = SafetensorsFile.open(file);
    try {
      const meta = f.metadata ?? {};
      if (meta['config'] !== this.configHash) throw new Error(`${file} holds weights of a run with a different configuration`);
      for (const [k, v] of [...this.params, ...this.dParams]) {
        if (!f.has(`param/${k}`)) throw new Error(`${file} has no weights for '${k}'`);
        v.set(f.read(`param/${k}`).data as Float32Array);
      }
      const step = Number(meta['step']);
      this.opt.step = step;
      this.opt.momentSteps = 0;
      if (this.dOpt) Object.assign(this.dOpt, { step, momentSteps: 0 });
      return step;
    } finally {
      f.close();
    }
  }

  async dispose(): Promise<void> {
    for (const s of [this.trainSession, this.evalSession, this.vreSession, this.dSession]) await s?.release();
  }
}
