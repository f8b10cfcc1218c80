/**
 * The worker thread of the pool: loads one model (and one face detector) with its share of the
 * threads, says 'ready', then runs one job at a time and answers each with its result or error.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { OSDFace } from '../osdface.js';
import { FaceDetector } from '../face/detector.js';
import { runJob, type JobInput, type JobResult } from './job.js';

export interface WorkerConfig {
  modelDir: string;
  threads: number;
  /** OSDFace.load lowMemory (undefined: the model's default). */
  lowMemory?: boolean;
}

export type ToWorker = { type: 'job'; id: number; input: JobInput };
export type FromWorker =
  | { type: 'ready' }
  | { type: 'load-error'; message: string }
  | { type: 'result'; id: number; result: JobResult }
  | { type: 'error'; id: number; name: string; message: string };

async function main(): Promise<void> {
  const port = parentPort!;
  const cfg = workerData as WorkerConfig;
  let model: OSDFace;
  let detector: FaceDetector;
  try {
    model = await OSDFace.load(cfg.modelDir, { threads: cfg.threads, ...(cfg.lowMemory !== undefined ? { lowMemory: cfg.lowMemory } : {}) });
    detector = await FaceDetector.load({ threads: cfg.threads });
  } catch (e) {
    port.postMessage({ type: 'load-error', message: e instanceof Error ? e.message : String(e) } satisfies FromWorker);
    return;
  }
  port.on('message', (m: ToWorker) => {
    if (m.type !== 'job') return;
    runJob(model, detector, m.input).then(
      (result) => {
        // a copy of its own, so the buffer can be transferred (sharp hands back native memory)
        const bytes = Uint8Array.from(result.bytes);
        port.postMessage({ type: 'result', id: m.id, result: { ...result, bytes } } satisfies FromWorker, [bytes.buffer]);
      },
      (e: unknown) => port.postMessage({ type: 'error', id: m.id, name: e instanceof Error ? e.name : 'Error', message: e instanceof Error ? e.message : String(e) } satisfies FromWorker),
    );
  });
  port.postMessage({ type: 'ready' } satisfies FromWorker);
}

void main();
