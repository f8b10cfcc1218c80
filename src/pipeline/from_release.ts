/** An OSDFacePipeline built from a release's modules, every stage's graph emitted with its weights inline (Node). */
import { emitOnnx, type WeightSource } from '../graph/emit.js';
import type { Graph } from '../graph/ir.js';
import { OnnxSession, type RuntimeOptions } from '../graph/runtime.js';
import { AutoencoderTiny } from '../models/autoencoder_tiny.js';
import { OSDFacePipeline, releaseSettings, stageGraphs, type StageSessions } from './pipeline.js';
import type { OSDFaceNetworks } from './release.js';
import { TiledVae } from './tiled_vae.js';

async function session(graph: Graph, weights: WeightSource, runtime: RuntimeOptions): Promise<OnnxSession> {
  return OnnxSession.create(emitOnnx(graph, { weights }), runtime);
}

/**
 * Builds every stage's graph with its weights inline (fine for models under 2 GB). The tiled
 * VAE reads the release's weights when it is first used: keep the release open until then.
 */
export async function pipelineFromRelease(release: OSDFaceNetworks, runtime: RuntimeOptions = {}): Promise<OSDFacePipeline> {
  const sessions: Partial<StageSessions> = {};
  for (const stage of stageGraphs(release)) sessions[stage.name] = await session(stage.graph, stage.weights, runtime);
  const vae = release.vae.module;
  return new OSDFacePipeline(releaseSettings(release), sessions as StageSessions, vae instanceof AutoencoderTiny ? undefined : new TiledVae(vae, release.vae.weights, runtime));
}
