/**
 * The OSDFace one-step pipeline over ONNX Runtime sessions:
 *   lq [0,1] -> lq*2-1 resized to process_size -> VRE prompt + VAE posterior -> UNet eps at t
 *   -> x0 (float64) -> VAE decode -> clamp to [0, 1].
 * Every intermediate is returned so parity checks can compare each stage.
 */
import { emitOnnx } from '../graph/emit.js';
import type { Graph } from '../graph/ir.js';
import { OnnxSession, type RuntimeOptions } from '../graph/runtime.js';
import type { WeightSource } from '../graph/emit.js';
import { type FloatTensor, type Tensor, floatTensor } from '../tensor.js';
import { selectCodes } from '../models/vre/vq_select.js';
import type { OSDFaceRelease } from './release.js';
import { embeddingChangeGraph, preprocessGraph, unetGraph, vaeDecoderGraph, vaeEncoderGraph, vreGraph } from './graphs.js';
import { x0FromEps } from './scheduler.js';
import { gaussianNoise } from './random.js';

const NO_WEIGHTS: WeightSource = { read: (k) => { throw new Error(`graph has no parameters, asked for ${k}`); } };

async function session(graph: Graph, weights: WeightSource, runtime: RuntimeOptions): Promise<OnnxSession> {
  return OnnxSession.create(emitOnnx(graph, { weights }), runtime);
}

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
}

export interface RestoreResult extends VreResult {
  lqProcessed: FloatTensor;
  mean: FloatTensor;
  logvar: FloatTensor;
  latent: FloatTensor;
  epsPred: FloatTensor;
  x0: FloatTensor;
  decoded: FloatTensor;
  /** Restored image in [0, 1], (B, 3, H, W). */
  out: FloatTensor;
}

export class OSDFacePipeline {
  private constructor(
    private readonly release: OSDFaceRelease,
    private readonly s: Record<'preprocess' | 'vre' | 'embeddingChange' | 'vaeEncoder' | 'unet' | 'vaeDecoder', OnnxSession>,
  ) {}

  /** Builds every stage's graph with its weights inline (fine for models under 2 GB). */
  static async create(release: OSDFaceRelease, runtime: RuntimeOptions = {}): Promise<OSDFacePipeline> {
    const r = release;
    return new OSDFacePipeline(r, {
      preprocess: await session(preprocessGraph(r.processSize), NO_WEIGHTS, runtime),
      vre: await session(vreGraph(r.vre.module), r.vre.weights, runtime),
      embeddingChange: await session(embeddingChangeGraph(r.embeddingChange.module, r.vre.module.nMin), r.embeddingChange.weights, runtime),
      vaeEncoder: await session(vaeEncoderGraph(r.vae.module), r.vae.weights, runtime),
      unet: await session(unetGraph(r.unet.module, r.vre.module.nMin), r.unet.weights, runtime),
      vaeDecoder: await session(vaeDecoderGraph(r.vae.module), r.vae.weights, runtime),
    });
  }

  get scalingFactor(): number {
    return this.release.vae.module.scalingFactor;
  }

  async preprocess(lq: FloatTensor): Promise<FloatTensor> {
    return (await this.s.preprocess.run({ lq })).lq_processed as FloatTensor;
  }

  /** image in [-1, 1] -> tokens (B, n_min, E), code indices (-1 = zero row), prompt (B, n_min, C). */
  async vre(image: FloatTensor): Promise<VreResult> {
    const out = await this.s.vre.run({ image });
    const { tokens, indices } = selectCodes(out.min_distance!, out.code_index!, this.release.codebook, this.release.vre.module.nMin);
    const prompt = (await this.s.embeddingChange.run({ tokens })).prompt as FloatTensor;
    return { z: out.z as FloatTensor, tokens, indices, prompt };
  }

  async embeddingChange(tokens: FloatTensor): Promise<FloatTensor> {
    return (await this.s.embeddingChange.run({ tokens })).prompt as FloatTensor;
  }

  async encode(image: FloatTensor): Promise<{ mean: FloatTensor; logvar: FloatTensor }> {
    const out = await this.s.vaeEncoder.run({ image });
    return { mean: out.mean as FloatTensor, logvar: out.logvar as FloatTensor };
  }

  async unet(sample: FloatTensor, prompt: FloatTensor, timestep = this.release.timestep): Promise<FloatTensor> {
    const t = floatTensor([1], Float32Array.of(timestep));
    return (await this.s.unet.run({ sample, timestep: t, encoder_hidden_states: prompt })).eps as FloatTensor;
  }

  /** unscaled latent -> image in about [-1, 1] (not clamped). */
  async decode(latent: FloatTensor): Promise<FloatTensor> {
    return (await this.s.vaeDecoder.run({ latent })).image as FloatTensor;
  }

  /** lq: (B, 3, H, W) in [0, 1], square. */
  async restore(lq: FloatTensor, opts: RestoreOptions = {}): Promise<RestoreResult> {
    const f = Math.fround;
    const sf = this.scalingFactor;
    const lqProcessed = await this.preprocess(lq);
    const vre = await this.vre(lqProcessed);
    const { mean, logvar } = await this.encode(lqProcessed);
    const latent = floatTensor(mean.shape);
    if ((opts.latent ?? 'mode') === 'sample') {
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
    const x0 = x0FromEps(latent, epsPred, this.release.alphasCumprod[this.release.timestep]!);
    const decoded = await this.decode(floatTensor(x0.shape, x0.data.map((v) => f(v / sf))));
    const out = floatTensor(decoded.shape, decoded.data.map((v) => Math.min(1, Math.max(0, f(f(Math.min(1, Math.max(-1, v)) * 0.5) + 0.5)))));
    return { ...vre, lqProcessed, mean, logvar, latent, epsPred, x0, decoded, out };
  }

  async dispose(): Promise<void> {
    for (const s of Object.values(this.s)) await s.release();
  }
}
