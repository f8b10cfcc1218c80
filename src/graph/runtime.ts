/**
 * A thin typed wrapper around onnxruntime-node sessions, speaking our host Tensor type: the Node
 * side of the runtime seam (./session.ts; the browser's is web/src/ort_web.ts).
 */
import path from 'node:path';
import ort from 'onnxruntime-node';
import type { Tensor } from '../tensor.js';
import { fromOrtTensor, toOrtTensor, type CreateSession } from './session.js';

export interface RuntimeOptions {
  /** Intra-op threads; default: ONNX Runtime's choice (all cores). */
  threads?: number;
  optimization?: 'disabled' | 'basic' | 'extended' | 'all';
  executionProviders?: string[];
  /**
   * Let idle intra-op threads spin for work (ONNX Runtime's default). Off by default here: the
   * pipeline runs several sessions one after another, and threads spinning in an idle session
   * take the cores from the one running.
   */
  spinning?: boolean;
  /**
   * Keep freed activation memory in a per-session arena (ONNX Runtime's default). Off by default
   * here: with the arena, every stage's session holds on to its own peak, so the pipeline's
   * peak RSS becomes their sum instead of the largest one.
   */
  memoryArena?: boolean;
  /** Write the optimized graph here (weights to `<file>.data` beside it) while creating the session. */
  saveOptimizedTo?: string;
  /** Skip MatMul weight prepacking: lower memory, slightly slower products. */
  disablePrepacking?: boolean;
}

function toOrt(t: Tensor): ort.Tensor {
  return toOrtTensor(ort.Tensor, t);
}

const fromOrt = fromOrtTensor;

export class OnnxSession {
  private constructor(private readonly session: ort.InferenceSession) {}

  /** `model` is ONNX bytes (weights inline) or a path to an .onnx file (external data beside it). */
  static async create(model: Uint8Array | string, opts: RuntimeOptions = {}): Promise<OnnxSession> {
    const options: ort.InferenceSession.SessionOptions = {
      graphOptimizationLevel: opts.optimization ?? 'all',
      executionProviders: opts.executionProviders ?? ['cpu'],
      // Warnings (e.g. that an optimized graph is specific to this CPU, which we know) are not for users.
      logSeverityLevel: 3,
    };
    const config: Record<string, unknown> = {
      intra_op: { allow_spinning: opts.spinning ? '1' : '0' },
      inter_op: { allow_spinning: opts.spinning ? '1' : '0' },
    };
    if (opts.disablePrepacking) config['disable_prepacking'] = '1';
    if (opts.saveOptimizedTo) {
      options.optimizedModelFilePath = opts.saveOptimizedTo;
      config['optimized_model_external_initializers_file_name'] = `${path.basename(opts.saveOptimizedTo)}.data`;
      config['optimized_model_external_initializers_min_size_in_bytes'] = '1024';
    }
    options.extra = { session: config };
    options.enableCpuMemArena = opts.memoryArena ?? false;
    if (opts.threads) {
      options.intraOpNumThreads = opts.threads;
      options.interOpNumThreads = 1;
    }
    const session = typeof model === 'string'
      ? await ort.InferenceSession.create(model, options)
      : await ort.InferenceSession.create(model, options);
    return new OnnxSession(session);
  }

  get inputNames(): readonly string[] {
    return this.session.inputNames;
  }

  get outputNames(): readonly string[] {
    return this.session.outputNames;
  }

  async run(feeds: Record<string, Tensor>): Promise<Record<string, Tensor>> {
    const ortFeeds: Record<string, ort.Tensor> = {};
    for (const [k, v] of Object.entries(feeds)) ortFeeds[k] = toOrt(v);
    const results = await this.session.run(ortFeeds);
    const out: Record<string, Tensor> = {};
    for (const [k, v] of Object.entries(results)) out[k] = fromOrt(v);
    return out;
  }

  async release(): Promise<void> {
    await this.session.release();
  }
}

/** The seam's CreateSession on onnxruntime-node (a path reads its external data from beside it). */
export const createNodeSession: CreateSession = async (model, opts = {}) => {
  if (opts.externalData?.length) throw new Error('createNodeSession: pass the .onnx path; its external data is read from beside it');
  return OnnxSession.create(model, opts.threads !== undefined ? { threads: opts.threads } : {});
};
