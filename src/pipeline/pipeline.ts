/**
 * The OSDFace one-step pipeline over ONNX Runtime sessions (any binding: ../graph/session.ts; built
 * from a release by ./from_release.ts, from a model directory by ./model.ts, in the browser by
 * ./model_files.ts):
 *   lq [0,1] -> lq*2-1 resized to process_size -> VRE prompt + VAE posterior -> UNet eps at t
 *   -> x0 (float64) -> VAE decode -> clamp to [0, 1] (for a model directory that asks for them:
 *   -> the mean with the mirrored input's restoration, ./mirror_ensemble.ts -> the input's low
 *   frequencies, ./input_low_frequency.ts).
 * Every intermediate is returned so parity checks can compare each stage.
 */
import type { Graph } from '../graph/ir.js';
import type { InferenceSessionLike } from '../graph/session.js';
import type { WeightSource } from '../graph/emit.js';
import { type FloatTensor, type Tensor, floatTensor } from '../tensor.js';
import { selectCodes } from '../models/vre/vq_select.js';
import type { OSDFaceNetworks } from './release.js';

/** What the pipeline needs besides the networks' sessions (and how a trained model's output is finished: OutputSettings). */
export interface PipelineSettings extends OutputSettings {
  codebook: FloatTensor;
  nMin: number;
  timestep: number;
  /** alphas_cumprod[timestep] of the float32 training schedule. */
  alphaCumprod: number;
  processSize: number;
  scalingFactor: number;
}

export type StageName = 'preprocess' | 'vre' | 'embeddingChange' | 'vaeEncoder' | 'unet' | 'vaeDecoder';
/** What the pipeline needs of a stage's session (calibration wraps sessions to record activation ranges). */
export type StageSession = InferenceSessionLike;
export type StageSessions = Record<StageName, StageSession>;
import { embeddingChangeGraph, preprocessGraph, unetGraph, vaeDecoderGraph, vaeEncoderGraph, vreGraph } from './graphs.js';
import { x0FromEps } from './scheduler.js';
import { addInputResidual, towardsInput } from './fidelity.js';
import { keepInputLowFrequency } from './input_low_frequency.js';
import { meanWithMirrored, mirrored } from './mirror_ensemble.js';
import type { OutputSettings } from './manifest_core.js';
import { gaussianNoise } from './random.js';
import type { TiledVae } from './tiled_vae.js';
import { vaeTilingFor, type VaeTileOptions, type VaeTiling } from './tiling.js';

const NO_WEIGHTS: WeightSource = { read: (k) => { throw new Error(`graph has no parameters, asked for ${k}`); } };

export interface VreResult {
  z: FloatTensor;
  tokens: FloatTensor;
  indices: Tensor;
  prompt: FloatTensor;
}

export interface RestoreOptions {
  latent?: 'mode' | 'sample';
  /** Posterior noise for the sample path (B, C, h, w); drawn from `seed` when absent. */
  eps?: FloatTensor;
  seed?: number;
  /**
   * VAE tiling (tiling.ts): options (defaults for the ones left out: images over 1024 x 1024
   * pixels run in 512-pixel tiles), or false to never tile. The tiled result equals the
   * untiled one up to float rounding.
   */
  vaeTiling?: VaeTiling;
  /**
   * Fidelity to the input, w in [0, 1] (fidelity.ts). 0 (default) is the model as trained; 1
   * returns the input. In between, the latent moves from the predicted x0 towards the input's
   * latent, and the decoded image gets w times what the decoder cannot rebuild of the input.
   */
  fidelity?: number;
}

export interface RestoreResult extends VreResult {
  lqProcessed: FloatTensor;
  mean: FloatTensor;
  logvar: FloatTensor | null;
  latent: FloatTensor;
  epsPred: FloatTensor;
  x0: FloatTensor;
  decoded: FloatTensor;
  /** Restored image in [0, 1], (B, 3, H, W). */
  out: FloatTensor;
}

export interface StageGraph {
  name: StageName;
  graph: Graph;
  weights: WeightSource;
}

/** Every network stage of the pipeline, built from the release's modules. */
export function stageGraphs(r: OSDFaceNetworks): StageGraph[] {
  const nMin = r.vre.module.nMin;
  const vae = r.vae.module;
  return [
    { name: 'preprocess', graph: preprocessGraph(r.processSize), weights: NO_WEIGHTS },
    { name: 'vre', graph: vreGraph(r.vre.module), weights: r.vre.weights },
    { name: 'embeddingChange', graph: embeddingChangeGraph(r.embeddingChange.module, nMin), weights: r.embeddingChange.weights },
    { name: 'vaeEncoder', graph: vaeEncoderGraph(vae), weights: r.vae.weights },
    { name: 'unet', graph: unetGraph(r.unet.module, nMin), weights: r.unet.weights },
    { name: 'vaeDecoder', graph: vaeDecoderGraph(vae), weights: r.vae.weights },
  ];
}

export function releaseSettings(r: OSDFaceNetworks): PipelineSettings {
  const acp = r.alphasCumprod[r.timestep];
  if (acp === undefined) throw new Error(`timestep ${r.timestep} is outside the ${r.alphasCumprod.length}-step schedule`);
  return {
    codebook: r.codebook, nMin: r.vre.module.nMin, timestep: r.timestep, alphaCumprod: acp,
    processSize: r.processSize, scalingFactor: r.vae.module.scalingFactor,
  };
}

export class OSDFacePipeline {
  /** `tiledVae` runs encode / decode when tiling applies; without one, the VAE always runs untiled. */
  constructor(readonly settings: PipelineSettings, private readonly s: StageSessions, private readonly tiledVae?: TiledVae) {}

  /** The tile options for a VAE run on an H x W image, or null for untiled. */
  private tilingFor(height: number, width: number, tiling: VaeTiling | undefined): { tiled: TiledVae; o: VaeTileOptions } | null {
    if (!this.tiledVae) {
      // Pipelines built without one keep running untiled unless tiling was asked for.
      if (tiling === undefined || tiling === false) return null;
      throw new Error(`this pipeline has no tiled VAE, so it cannot tile a ${height} x ${width} image (pass vaeTiling: false to run it untiled)`);
    }
    const o = vaeTilingFor(height, width, tiling);
    if (!o) return null;
    return { tiled: this.tiledVae, o };
  }

  get scalingFactor(): number {
    return this.settings.scalingFactor;
  }

  /**
   * lq in [0, 1] -> lq * 2 - 1, resized to process_size when square. Like infer.py, a non-square
   * input is not resized (the networks take any size that is a multiple of the VAE's factor).
   */
  async preprocess(lq: FloatTensor): Promise<FloatTensor> {
    if (lq.shape[2] !== lq.shape[3]) return floatTensor(lq.shape, lq.data.map((v) => v * 2 - 1));
    return (await this.s.preprocess.run({ lq })).lq_processed as FloatTensor;
  }

  /** image in [-1, 1] -> tokens (B, n_min, E), code indices (-1 = zero row), prompt (B, n_min, C). */
  async vre(image: FloatTensor): Promise<VreResult> {
    const out = await this.s.vre.run({ image });
    const { tokens, indices } = selectCodes(out.min_distance!, out.code_index!, this.settings.codebook, this.settings.nMin);
    return { z: out.z as FloatTensor, tokens, indices, prompt: await this.embeddingChange(tokens) };
  }

  async embeddingChange(tokens: FloatTensor): Promise<FloatTensor> {
    return (await this.s.embeddingChange.run({ tokens })).prompt as FloatTensor;
  }

  /** image in [-1, 1] -> posterior; tiled when `tiling` says so for its size. */
  /** image in [-1, 1] -> posterior (a tiny autoencoder's latent is deterministic: logvar null); tiled when `tiling` says so for its size. */
  async encode(image: FloatTensor, tiling?: VaeTiling): Promise<{ mean: FloatTensor; logvar: FloatTensor | null }> {
    const t = this.tilingFor(image.shape[2]!, image.shape[3]!, tiling);
    if (t) return t.o.independent ? t.tiled.encodeIndependent(image, t.o.tileSize, t.o.overlap) : t.tiled.encode(image, t.o.tileSize);
    const out = await this.s.vaeEncoder.run({ image });
    if (out.latent) return { mean: out.latent as FloatTensor, logvar: null };
    return { mean: out.mean as FloatTensor, logvar: out.logvar as FloatTensor };
  }

  async unet(sample: FloatTensor, prompt: FloatTensor, timestep = this.settings.timestep): Promise<FloatTensor> {
    const t = floatTensor([1], Float32Array.of(timestep));
    return (await this.s.unet.run({ sample, timestep: t, encoder_hidden_states: prompt })).eps as FloatTensor;
  }

  /** unscaled latent -> image in about [-1, 1] (not clamped); tiled when `tiling` says so for the image size. */
  async decode(latent: FloatTensor, tiling?: VaeTiling): Promise<FloatTensor> {
    const f = this.tiledVae?.vae.downFactor ?? 1;
    const t = this.tilingFor(latent.shape[2]! * f, latent.shape[3]! * f, tiling);
    if (t) return t.o.independent ? t.tiled.decodeIndependent(latent, t.o.tileSize, t.o.overlap) : t.tiled.decode(latent, t.o.tileSize);
    return (await this.s.vaeDecoder.run({ latent })).image as FloatTensor;
  }

  /**
   * lq: (B, 3, H, W) in [0, 1], square. The intermediates returned are those of `lq` itself; `out`
   * is finished as the model's settings say.
   */
  async restore(lq: FloatTensor, opts: RestoreOptions = {}): Promise<RestoreResult> {
    const result = await this.restoreOnce(lq, opts);
    let { out } = result;
    // The mirrored pass gets the same options (and, on the sample path, the same posterior noise unmirrored).
    if (this.settings.mirrorEnsemble) out = meanWithMirrored(out, (await this.restoreOnce(mirrored(lq), opts)).out);
    // Last, so that fidelity 1 still returns the input itself.
    if (this.settings.lowFrequencyFromInput) out = keepInputLowFrequency(out, result.lqProcessed, this.settings.lowFrequencyFromInput);
    return { ...result, out };
  }

  /** One pass of the networks (and the fidelity knob) over `lq`. */
  private async restoreOnce(lq: FloatTensor, opts: RestoreOptions): Promise<RestoreResult> {
    const f = Math.fround;
    const sf = this.scalingFactor;
    const lqProcessed = await this.preprocess(lq);
    const vre = await this.vre(lqProcessed);
    const { mean, logvar } = await this.encode(lqProcessed, opts.vaeTiling);
    const latent = floatTensor(mean.shape);
    // A deterministic (tiny) autoencoder has no posterior noise: 'sample' is 'mode' there.
    if ((opts.latent ?? 'mode') === 'sample' && logvar) {
      const eps = opts.eps?.data ?? gaussianNoise(mean.data.length, opts.seed ?? 0);
      if (eps.length !== mean.data.length) throw new Error(`eps has ${eps.length} values, the latent needs ${mean.data.length}`);
      for (let i = 0; i < latent.data.length; i++) {
        const std = f(Math.exp(f(0.5 * logvar.data[i]!)));
        latent.data[i] = f(f(mean.data[i]! + f(std * eps[i]!)) * sf);
      }
    } else {
      for (let i = 0; i < latent.data.length; i++) latent.data[i] = f(mean.data[i]! * sf);
    }
    const epsPred = await this.unet(latent, vre.prompt);
    const x0 = x0FromEps(latent, epsPred, this.settings.alphaCumprod);
    const w = opts.fidelity ?? 0;
    const decoded = await this.decode(floatTensor(x0.shape, (w > 0 ? towardsInput(x0, latent, w) : x0).data.map((v) => f(v / sf))), opts.vaeTiling);
    let out = floatTensor(decoded.shape, decoded.data.map((v) => Math.min(1, Math.max(0, f(f(Math.min(1, Math.max(-1, v)) * 0.5) + 0.5)))));
    if (w > 0) {
      const rebuilt = await this.decode(floatTensor(latent.shape, latent.data.map((v) => f(v / sf))), opts.vaeTiling);
      out = addInputResidual(out, lqProcessed, rebuilt, w);
    }
    return { ...vre, lqProcessed, mean, logvar, latent, epsPred, x0, decoded, out };
  }

  async dispose(): Promise<void> {
    for (const s of Object.values(this.s)) await s.release();
    await this.tiledVae?.dispose();
  }
}
