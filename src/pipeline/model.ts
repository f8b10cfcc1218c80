/** Loading a converted model directory into a ready pipeline. */
import path from 'node:path';
import { OnnxSession, type RuntimeOptions } from '../graph/runtime.js';
import { SafetensorsFile } from '../weights/safetensors.js';
import type { FloatTensor } from '../tensor.js';
import { OSDFacePipeline, type StageName, type StageSessions } from './pipeline.js';
import { readManifest, type Manifest } from './manifest.js';

export async function loadModelDir(dir: string, runtime: RuntimeOptions = {}): Promise<{ pipeline: OSDFacePipeline; manifest: Manifest }> {
  const manifest = readManifest(dir);
  const cb = SafetensorsFile.open(path.join(dir, manifest.codebookFile));
  const codebook = cb.read('codebook') as FloatTensor;
  cb.close();
  const sessions: Partial<StageSessions> = {};
  try {
    for (const [stage, file] of Object.entries(manifest.graphs) as [StageName, string][]) {
      sessions[stage] = await OnnxSession.create(path.join(dir, file), runtime);
    }
  } catch (e) {
    for (const s of Object.values(sessions)) await s.release();
    throw e;
  }
  const { nMin, timestep, alphaCumprod, processSize, scalingFactor } = manifest.settings;
  return {
    pipeline: new OSDFacePipeline({ codebook, nMin, timestep, alphaCumprod, processSize, scalingFactor }, sessions as StageSessions),
    manifest,
  };
}
