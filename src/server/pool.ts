/**
 * A pool of worker threads, each holding one loaded model, with a bounded queue in front.
 *
 * - `run` refuses at once (QueueFullError, 503 + Retry-After) when every worker is busy and the
 *   queue holds `queueLimit` requests; otherwise the job waits for the next free worker.
 * - Each job has a deadline (`timeoutMs`, from when it was queued): one still queued is dropped;
 *   one running is answered with a TimeoutError and its worker is terminated and replaced, so a
 *   stuck job cannot hold a worker forever.
 * - A job whose AbortSignal fires (the client went away) while queued is dropped from the queue.
 * - A worker that exits or crashes while running a job fails that job with WorkerCrashedError
 *   (never a hang); the pool starts a replacement and counts the restart.
 * - `drain` stops taking jobs and waits for the queued and running ones (up to a grace period).
 */
import { EventEmitter } from 'node:events';
import { Worker } from 'node:worker_threads';
import { ClientClosedError, HttpError, QueueFullError, ShuttingDownError, TimeoutError, WorkerCrashedError } from './errors.js';
import type { JobInput, JobResult } from './job.js';
import type { FromWorker, ToWorker, WorkerConfig } from './worker.js';

export interface PoolOptions {
  size: number;
  queueLimit: number;
  timeoutMs: number;
  modelDir: string;
  threadsPerWorker: number;
  /** OSDFace.load lowMemory for every worker (undefined: the model's default). */
  lowMemory?: boolean;
  /** Seconds a refused client is told to wait (Retry-After). */
  retryAfterS?: number;
}

interface Job {
  id: number;
  input: JobInput;
  resolve: (r: JobResult) => void;
  reject: (e: Error) => void;
  timer: NodeJS.Timeout;
  signal: AbortSignal | undefined;
  onAbort: () => void;
  settled: boolean;
}

interface Slot {
  worker: Worker;
  state: 'starting' | 'idle' | 'busy' | 'dead';
  job: Job | null;
}

const WORKER_URL = new URL('./worker.js', import.meta.url);

export class WorkerPool extends EventEmitter {
  private readonly slots: Slot[] = [];
  private readonly queue: Job[] = [];
  private nextId = 1;
  private closing = false;
  private restarts = 0;

  constructor(private readonly opts: PoolOptions) {
    super();
  }

  /** Starts every worker; resolves when all have loaded the model, rejects with the first load error. */
  async start(): Promise<void> {
    const ready = Array.from({ length: this.opts.size }, () => this.spawn());
    await Promise.all(ready);
  }

  get size(): number {
    return this.opts.size;
  }

  get queueDepth(): number {
    return this.queue.length;
  }

  get busyWorkers(): number {
    return this.slots.filter((s) => s.state === 'busy').length;
  }

  get readyWorkers(): number {
    return this.slots.filter((s) => s.state === 'idle' || s.state === 'busy').length;
  }

  get queueFull(): boolean {
    return this.queue.length >= this.opts.queueLimit && this.slots.every((s) => s.state !== 'idle');
  }

  get workerRestarts(): number {
    return this.restarts;
  }

  /** Jobs queued or running. */
  get pending(): number {
    return this.queue.length + this.busyWorkers;
  }

  /** The thread ids of the workers running a job (for operators and tests). */
  busyThreadIds(): number[] {
    return this.slots.filter((s) => s.state === 'busy').map((s) => s.worker.threadId);
  }

  /** Terminates the worker with this thread id, as a crash would (its job fails, it is replaced). */
  async terminateWorker(threadId: number): Promise<void> {
    const s = this.slots.find((x) => x.worker.threadId === threadId);
    if (s) await s.worker.terminate();
  }

  /** Runs one job on the next free worker. */
  run(input: JobInput, signal?: AbortSignal): Promise<JobResult> {
    if (this.closing) return Promise.reject(new ShuttingDownError());
    if (signal?.aborted) return Promise.reject(new ClientClosedError());
    if (this.queueFull) return Promise.reject(new QueueFullError(this.opts.queueLimit, this.opts.retryAfterS ?? 1));
    return new Promise<JobResult>((resolve, reject) => {
      const job: Job = {
        id: this.nextId++, input, resolve, reject, signal, settled: false,
        timer: setTimeout(() => this.onTimeout(job), this.opts.timeoutMs),
        onAbort: () => this.onAbort(job),
      };
      signal?.addEventListener('abort', job.onAbort, { once: true });
      this.queue.push(job);
      this.emit('queued', job.id);
      this.dispatch();
    });
  }

  /** Stops taking jobs; waits for queued and running jobs up to `graceMs`, then fails the rest. Terminates the workers. */
  async drain(graceMs: number): Promise<{ finished: boolean }> {
    this.closing = true;
    let finished = true;
    if (this.pending > 0) {
      finished = await new Promise<boolean>((resolve) => {
        const timer = setTimeout(() => { this.off('idle', onIdle); resolve(false); }, graceMs);
        const onIdle = () => { clearTimeout(timer); resolve(true); };
        this.once('idle', onIdle);
      });
    }
    for (const job of this.queue.splice(0)) this.settle(job, new ShuttingDownError());
    await Promise.all(this.slots.map(async (s) => {
      if (s.job) this.settle(s.job, new ShuttingDownError());
      s.state = 'dead';
      await s.worker.terminate();
    }));
    return { finished };
  }

  private spawn(index?: number): Promise<void> {
    const data: WorkerConfig = { modelDir: this.opts.modelDir, threads: this.opts.threadsPerWorker, ...(this.opts.lowMemory !== undefined ? { lowMemory: this.opts.lowMemory } : {}) };
    const worker = new Worker(WORKER_URL, { workerData: data });
    const slot: Slot = { worker, state: 'starting', job: null };
    if (index === undefined) this.slots.push(slot);
    else this.slots[index] = slot;
    return new Promise<void>((resolve, reject) => {
      let loaded = false;
      worker.on('message', (m: FromWorker) => {
        if (m.type === 'ready') {
          loaded = true;
          if (slot.state === 'starting') slot.state = 'idle';
          this.emit('worker-ready', worker.threadId);
          resolve();
          this.dispatch();
        } else if (m.type === 'load-error') {
          slot.state = 'dead';
          void worker.terminate();
          reject(new Error(`a worker could not load the model: ${m.message}`));
        } else if (m.type === 'result' || m.type === 'error') {
          const job = slot.job;
          if (!job || job.id !== m.id) return;
          slot.job = null;
          slot.state = 'idle';
          if (m.type === 'result') this.settle(job, m.result);
          else this.settle(job, new HttpError(500, 'internal', `restoring failed: ${m.message}`));
          this.dispatch();
        }
      });
      worker.on('error', (e) => {
        // An uncaught exception in the worker; 'exit' follows and does the replacing.
        this.emit('worker-error', worker.threadId, e);
      });
      worker.on('exit', (code) => {
        const wasLoaded = loaded;
        const job = slot.job;
        slot.job = null;
        slot.state = 'dead';
        if (job) this.settle(job, new WorkerCrashedError(`worker ${worker.threadId} exited with code ${code}`));
        if (!wasLoaded) {
          reject(new Error(`a worker stopped (exit code ${code}) before it loaded the model`));
          return;
        }
        if (this.closing) return;
        this.restarts++;
        const at = this.slots.indexOf(slot);
        this.emit('worker-restart', worker.threadId, code);
        this.spawn(at).catch((e: Error) => this.emit('worker-error', -1, e));
        this.dispatch();
      });
    });
  }

  private dispatch(): void {
    while (this.queue.length > 0) {
      const slot = this.slots.find((s) => s.state === 'idle');
      if (!slot) break;
      const job = this.queue.shift()!;
      slot.state = 'busy';
      slot.job = job;
      job.signal?.removeEventListener('abort', job.onAbort);
      const msg: ToWorker = { type: 'job', id: job.id, input: job.input };
      const transfer: ArrayBuffer[] = [job.input.image.data.buffer as ArrayBuffer];
      if (job.input.image.alpha) transfer.push(job.input.image.alpha.buffer as ArrayBuffer);
      slot.worker.postMessage(msg, transfer);
      this.emit('start', job.id, slot.worker.threadId);
    }
    if (this.pending === 0) this.emit('idle');
  }

  private onTimeout(job: Job): void {
    if (job.settled) return;
    const queued = this.queue.indexOf(job);
    const timeoutS = this.opts.timeoutMs / 1000;
    if (queued >= 0) {
      this.queue.splice(queued, 1);
      this.settle(job, new TimeoutError(timeoutS, 'queued'));
      this.dispatch();
      return;
    }
    const slot = this.slots.find((s) => s.job === job);
    this.settle(job, new TimeoutError(timeoutS, 'running'));
    if (slot) {
      // The model call cannot be interrupted: the worker goes, a fresh one takes its place.
      slot.job = null;
      void slot.worker.terminate();
    }
  }

  private onAbort(job: Job): void {
    const i = this.queue.indexOf(job);
    if (i < 0) return;
    this.queue.splice(i, 1);
    this.settle(job, new ClientClosedError());
    this.emit('dropped', job.id);
    this.dispatch();
  }

  private settle(job: Job, outcome: JobResult | Error): void {
    if (job.settled) return;
    job.settled = true;
    clearTimeout(job.timer);
    job.signal?.removeEventListener('abort', job.onAbort);
    if (outcome instanceof Error) job.reject(outcome);
    else job.resolve(outcome);
  }
}
