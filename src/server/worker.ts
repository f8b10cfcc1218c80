/**
 * A worker process of the pool (forked by pool.ts, one per worker): loads one model (and one
 * face detector) with its share of the threads, says 'ready', then runs one job at a time and
 * answers each with its result or error. On 'stop' it releases its sessions and exits; it also
 * exits when the server goes away (the IPC channel closes).
 *
 * Workers are processes, not threads: a worker thread terminated while ONNX Runtime runs in it
 * aborts the whole process (onnxruntime-node calls back into the torn-down thread), so a crash, a
 * kill or a timed-out run could not be confined to one worker. A process can be killed safely.
 */
import { OSDFace } from '../osdface.js';
import { DEFAULT_DETECTOR, loadDetector, type Detector } from '../face/detectors.js';
import { runJob, type JobInput, type JobResult } from './job.js';

export interface WorkerConfig {
  modelDir: string;
  threads: number;
  /** OSDFace.load lowMemory (undefined: the model's default). */
  lowMemory?: boolean;
}

/** The environment variable that carries a worker's WorkerConfig (JSON). */
export const WORKER_CONFIG_ENV = 'OSDFACE_SERVE_WORKER';

export type ToWorker = { type: 'job'; id: number; input: JobInput } | { type: 'stop' };
export type FromWorker =
  | { type: 'ready' }
  | { type: 'load-error'; message: string }
  | { type: 'result'; id: number; result: JobResult }
  | { type: 'error'; id: number; name: string; message: string };

const send = (m: FromWorker) => process.send!(m);

async function main(): Promise<void> {
  const cfg = JSON.parse(process.env[WORKER_CONFIG_ENV]!) as WorkerConfig;
  process.on('disconnect', () => process.exit(0));
  let model: OSDFace;
  let detector: Detector;
  try {
    model = await OSDFace.load(cfg.modelDir, { threads: cfg.threads, ...(cfg.lowMemory !== undefined ? { lowMemory: cfg.lowMemory } : {}) });
    // The detector `osdface restore` uses by default, so the service's photos are restore's bytes.
    detector = await loadDetector(DEFAULT_DETECTOR, { threads: cfg.threads });
  } catch (e) {
    send({ type: 'load-error', message: e instanceof Error ? e.message : String(e) });
    return;
  }
  process.on('message', (m: ToWorker) => {
    if (m.type === 'stop') {
      void Promise.allSettled([model.dispose(), detector.dispose()]).then(() => process.exit(0));
      return;
    }
    runJob(model, detector, m.input).then(
      (result) => send({ type: 'result', id: m.id, result }),
      (e: unknown) => send({ type: 'error', id: m.id, name: e instanceof Error ? e.name : 'Error', message: e instanceof Error ? e.message : String(e) }),
    );
  });
  send({ type: 'ready' });
}

if (process.send !== undefined && process.env[WORKER_CONFIG_ENV] !== undefined) void main();
