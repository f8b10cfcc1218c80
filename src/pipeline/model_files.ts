/**
 * Loading a converted model directory from its files' bytes, with no file system: the browser
 * app reads them from URLs (the packaged model, served beside the page) or from a folder the user
 * picks (File objects, nothing uploaded). Node loads directories with ./model.ts (file paths,
 * optimized-graph cache, tiled VAE); both end in the same OSDFacePipeline.
 */
import type { CreateSession, InferenceSessionLike } from '../graph/session.js';
import { readSafetensorsFloat } from '../weights/safetensors_bytes.js';
import { MANIFEST_FILE, ModelDirError, parseManifest, pipelineSettings, type Manifest } from './manifest_core.js';
import { OSDFacePipeline, type StageName, type StageSessions } from './pipeline.js';

/** A model directory's files by name. */
export interface ModelFiles {
  /** The directory's name in messages (a URL, a folder name). */
  readonly name: string;
  /** The bytes of `file`, or null when there is no such file. */
  bytes(file: string, onProgress?: (loaded: number, total: number) => void): Promise<Uint8Array | null>;
}

/** Stages of loading, for a progress display: 'download' (a file's bytes) then 'compile' (its session). */
export interface ModelLoadProgress {
  stage: 'download' | 'compile';
  file: string;
  /** Files done so far and in all (graphs with their data, plus the codebook). */
  done: number;
  total: number;
  /** Within the current download. */
  loaded?: number;
  size?: number;
}

export interface LoadModelFilesOptions {
  onProgress?: (p: ModelLoadProgress) => void;
  threads?: number;
}

export interface LoadedModelFiles {
  pipeline: OSDFacePipeline;
  manifest: Manifest;
}

function baseName(file: string): string {
  return file.split('/').pop()!;
}

/** Whether ONNX bytes name `location` (an external data file's name is stored verbatim in the graph). */
function mentions(bytes: Uint8Array, location: string): boolean {
  const needle = new TextEncoder().encode(location);
  outer: for (let i = 0; i + needle.length <= bytes.length; i++) {
    for (let j = 0; j < needle.length; j++) if (bytes[i + j] !== needle[j]) continue outer;
    return true;
  }
  return false;
}

export async function loadModelFiles(files: ModelFiles, createSession: CreateSession, opts: LoadModelFilesOptions = {}): Promise<LoadedModelFiles> {
  const need = async (file: string, onProgress?: (loaded: number, total: number) => void): Promise<Uint8Array> => {
    const b = await files.bytes(file, onProgress);
    if (!b) throw new ModelDirError(files.name, `${file} is missing; pick the whole converted model directory (the one with ${MANIFEST_FILE})`);
    return b;
  };
  const manifestBytes = await files.bytes(MANIFEST_FILE);
  if (!manifestBytes) throw new ModelDirError(files.name, `no ${MANIFEST_FILE}: this is not a converted osdface model directory`);
  const manifest = parseManifest(new TextDecoder().decode(manifestBytes), files.name);
  const stages = Object.entries(manifest.graphs) as [StageName, string][];
  const total = stages.length + 1;
  let done = 0;
  const report = (p: Omit<ModelLoadProgress, 'done' | 'total'>) => opts.onProgress?.({ ...p, done, total });

  report({ stage: 'download', file: manifest.codebookFile });
  const codebook = readSafetensorsFloat(await need(manifest.codebookFile), 'codebook', `${files.name}/${manifest.codebookFile}`);
  done++;
  const sessions: Partial<Record<StageName, InferenceSessionLike>> = {};
  try {
    for (const [stage, file] of stages) {
      report({ stage: 'download', file });
      const graph = await need(file);
      // the weights beside the graph, when the graph refers to them
      const location = `${baseName(file)}.data`;
      const data = mentions(graph, location) ? await need(`${file}.data`, (loaded, size) => report({ stage: 'download', file: `${file}.data`, loaded, size })) : null;
      report({ stage: 'compile', file });
      sessions[stage] = await createSession(graph, {
        ...(data ? { externalData: [{ path: location, data }] } : {}),
        ...(opts.threads !== undefined ? { threads: opts.threads } : {}),
      });
      done++;
    }
  } catch (e) {
    for (const s of Object.values(sessions)) await s.release();
    throw e;
  }
  report({ stage: 'compile', file: '' });
  return { pipeline: new OSDFacePipeline(pipelineSettings(manifest, codebook), sessions as StageSessions), manifest };
}
