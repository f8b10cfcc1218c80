/**
 * The browser side of the runtime seam (src/graph/session.ts): sessions on onnxruntime-web, on
 * WebGPU when the browser has an adapter, else on WASM (threads when the page is cross-origin
 * isolated, which `npx osdface web` arranges with its COOP/COEP headers).
 */
import * as ort from 'onnxruntime-web';
import { fromOrtTensor, toOrtTensor, type CreateSession, type InferenceSessionLike } from '../../src/graph/session.js';

export type BackendName = 'webgpu' | 'wasm';

export interface Backend {
  name: BackendName;
  /** WASM threads (1 without cross-origin isolation). */
  threads: number;
  /** For the page: "WebGPU (adapter ...)" or "WASM, 2 threads". */
  label: string;
  createSession: CreateSession;
}

/** Milliseconds spent in each graph's runs (keyed by its input names), for the bench and the curious: `osdfaceProfile` in the console. */
export const profile: Record<string, number> = {};
(globalThis as unknown as { osdfaceProfile: Record<string, number> }).osdfaceProfile = profile;

/** Why WebGPU is not used (for the page and the tests), or null when it is. */
export let webgpuUnavailable: string | null = null;

async function webgpuAdapter(): Promise<string | null> {
  const gpu = (navigator as unknown as { gpu?: { requestAdapter(): Promise<{ info?: { vendor?: string; architecture?: string; description?: string } } | null> } }).gpu;
  if (!gpu) {
    webgpuUnavailable = 'navigator.gpu is missing (this browser has no WebGPU)';
    return null;
  }
  try {
    const adapter = await gpu.requestAdapter();
    if (!adapter) {
      webgpuUnavailable = 'navigator.gpu.requestAdapter() gave no adapter';
      return null;
    }
    const i = adapter.info ?? {};
    return [i.vendor, i.architecture, i.description].filter(Boolean).join(' ') || 'adapter';
  } catch (e) {
    webgpuUnavailable = `requestAdapter failed: ${(e as Error).message}`;
    return null;
  }
}

/** Picks the backend: `want` 'webgpu' / 'wasm' forces one (URL ?backend=), else WebGPU when an adapter exists. */
export async function chooseBackend(want: BackendName | 'auto', threadsWanted?: number): Promise<Backend> {
  ort.env.wasm.wasmPaths = new URL('ort/', document.baseURI).href;
  const isolated = globalThis.crossOriginIsolated === true;
  const threads = isolated ? Math.max(1, Math.min(threadsWanted ?? Math.min(4, navigator.hardwareConcurrency || 1), navigator.hardwareConcurrency || 1)) : 1;
  ort.env.wasm.numThreads = threads;
  ort.env.logLevel = 'error';
  // ?gpuprofile=1: ONNX Runtime logs each WebGPU kernel it runs to the console (which ops ran on the GPU)
  if (new URLSearchParams(location.search).get('gpuprofile') === '1') ort.env.webgpu.profiling = { mode: 'default' };
  let name: BackendName = 'wasm';
  let adapterName: string | null = null;
  if (want !== 'wasm') {
    adapterName = await webgpuAdapter();
    if (adapterName) name = 'webgpu';
    else if (want === 'webgpu') throw new Error(`WebGPU was asked for but is not available: ${webgpuUnavailable}`);
  }
  const executionProviders = name === 'webgpu' ? ['webgpu'] : ['wasm'];
  const createSession: CreateSession = async (model, opts = {}) => {
    const options: ort.InferenceSession.SessionOptions = { executionProviders, graphOptimizationLevel: 'all', logSeverityLevel: 3 };
    if (opts.externalData) options.externalData = opts.externalData.map((d) => ({ path: d.path, data: d.data }));
    const session = typeof model === 'string' ? await ort.InferenceSession.create(model, options) : await ort.InferenceSession.create(model, options);
    const wrapped: InferenceSessionLike = {
      run: async (feeds) => {
        const t0 = performance.now();
        const key = session.inputNames.join(',');
        const ortFeeds: Record<string, ort.Tensor> = {};
        for (const [k, v] of Object.entries(feeds)) ortFeeds[k] = toOrtTensor(ort.Tensor, v);
        const results = await session.run(ortFeeds);
        const out: Record<string, ReturnType<typeof fromOrtTensor>> = {};
        for (const [k, v] of Object.entries(results)) {
          // WebGPU outputs may live on the GPU: bring them to the CPU
          const t = v.location === 'cpu' || v.location === undefined ? v : new ort.Tensor(v.type as 'float32', await v.getData(), v.dims);
          out[k] = fromOrtTensor(t);
        }
        profile[key] = (profile[key] ?? 0) + performance.now() - t0;
        return out;
      },
      release: () => session.release(),
    };
    return wrapped;
  };
  const label = name === 'webgpu' ? `WebGPU (${adapterName})` : `WASM, ${threads} thread${threads === 1 ? '' : 's'}${isolated ? '' : ' (no cross-origin isolation: threads need COOP/COEP headers)'}`;
  return { name, threads, label, createSession };
}
