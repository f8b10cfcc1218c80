/**
 * A pool of worker processes (./worker.ts), each holding one loaded model, with a bounded queue.
 *
 * - `run` refuses at once (QueueFullError, 503 + Retry-After) when every worker is busy and the
 *   queue holds `queueLimit` requests; otherwise the job waits for the next free worker.
 * - Each job has a deadline (`timeoutMs`, from when it was queued): one still queued is dropped;
 *   one running is answered with a TimeoutError and its worker is killed and replaced, so a stuck
 *   job cannot hold a worker forever.
 * - A job whose AbortSignal fires (the client went away) while queued is dropped from the queue.
 * - A worker that exits, crashes or is killed while running a job fails that job with
 *   WorkerCrashedError (never a hang); the pool starts a replacement and counts the restart.
 * - `drain` stops taking jobs, waits for the queued and running ones (up to a grace period),
 *   fails what is left and stops the workers.
 *
 * Workers are processes rather than worker_threads: terminating a thread while ONNX Runtime runs
 * in it aborts the whole server (measured: "terminate called after throwing an instance of
 * 'Napi::Error'", exit 134), so with threads a killed or timed-out worker would take every other
 * request down with it. Killing a process is confined to that process.
 */
import { EventEmitter } from 'node:events';
import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { ClientClosedError, HttpError, QueueFullError, ShuttingDownError, TimeoutError, WorkerCrashedError } from './errors.js';
import type { JobInput, JobResult } from './job.js';
import { WORKER_CONFIG_ENV, type FromWorker, type ToWorker, type WorkerConfig } from './worker.js';

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
  child: ChildProcess;
  state: 'starting' | 'idle' | 'busy' | 'dead';
  job: Job | null;
}

const WORKER_FILE = fileURLToPath(new URL('./worker.js', import.meta.url));
/** How long a worker asked to stop may take before it is killed. */
const STOP_WAIT_MS = 10_000;

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

  /** Process ids of the live workers (for operators, the bench and tests). */
  workerPids(): number[] {
    return this.slots.filter((s) => s.state !== 'dead' && s.child.pid !== undefined).map((s) => s.child.pid!);
  }

  /** Why a new job would be refused right now (shutting down, queue full), or null: lets a caller refuse before reading the body. */
  admissionError(): HttpError | null {
    if (this.closing) return new ShuttingDownError();
    if (this.queueFull) return new QueueFullError(this.opts.queueLimit, this.opts.retryAfterS ?? 1);
    return null;
  }

  /** Runs one job on the next free worker. */
  run(input: JobInput, signal?: AbortSignal): Promise<JobResult> {
    const refused = this.admissionError();
    if (refused) return Promise.reject(refused);
    if (signal?.aborted) return Promise.reject(new ClientClosedError());
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

  /**
   * Stops taking jobs; waits for the queued and running ones up to `graceMs`, then fails the
   * rest (503) and stops the workers (idle ones end by themselves, busy ones are killed).
   */
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
    await Promise.all(this.slots.map((s) => this.stopWorker(s)));
    return { finished };
  }

  /** Ends one worker for good: an idle one is asked to stop (it releases its sessions), a busy or unresponsive one is killed. */
  private async stopWorker(s: Slot): Promise<void> {
    if (s.state === 'dead' || s.child.exitCode !== null || s.child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => s.child.once('exit', () => resolve()));
    const busy = s.job !== null;
    if (s.job) this.settle(s.job, new ShuttingDownError());
    s.job = null;
    s.state = 'dead';
    if (busy || !s.child.connected) {
      s.child.kill('SIGKILL');
    } else {
      s.child.send({ type: 'stop' } satisfies ToWorker);
      const timer = setTimeout(() => s.child.kill('SIGKILL'), STOP_WAIT_MS);
      await exited;
      clearTimeout(timer);
      return;
    }
    await exited;
  }

  private spawn(index?: number): Promise<void> {
    const cfg: WorkerConfig = { modelDir: this.opts.modelDir, threads: this.opts.threadsPerWorker, ...(this.opts.lowMemory !== undefined ? { lowMemory: this.opts.lowMemory } : {}) };
    const child = fork(WORKER_FILE, [], {
      serialization: 'advanced', // typed arrays cross as they are, not as JSON
      execArgv: [],
      env: { ...process.env, [WORKER_CONFIG_ENV]: JSON.stringify(cfg) },
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    const slot: Slot = { child, state: 'starting', job: null };
    if (index === undefined) this.slots.push(slot);
    else this.slots[index] = slot;
    return new Promise<void>((resolve, reject) => {
      let loaded = false;
      child.on('message', (m: FromWorker) => {
        if (m.type === 'ready') {
          loaded = true;
          if (slot.state === 'starting') slot.state = 'idle';
          this.emit('worker-ready', child.pid);
          resolve();
          this.dispatch();
        } else if (m.type === 'load-error') {
          slot.state = 'dead';
          child.kill('SIGKILL');
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
      child.on('error', (e) => {
        // could not be started, or a message could not be sent; 'exit' follows where it ran
        this.emit('worker-error', child.pid ?? -1, e);
      });
      child.on('exit', (code, signal) => {
        const job = slot.job;
        const wasDead = slot.state === 'dead';
        slot.job = null;
        slot.state = 'dead';
        const how = signal !== null ? `killed by ${signal}` : `exited with code ${code}`;
        if (job) this.settle(job, new WorkerCrashedError(`worker process ${child.pid} ${how}`));
        if (!loaded) {
          reject(new Error(`a worker process stopped (${how}) before it loaded the model`));
          return;
        }
        if (this.closing || wasDead) {
          this.dispatch();
          return;
        }
        this.restarts++;
        const at = this.slots.indexOf(slot);
        this.emit('worker-restart', child.pid, how);
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
      slot.child.send({ type: 'job', id: job.id, input: job.input } satisfies ToWorker);
      this.emit('start', job.id, slot.child.pid);
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
    this.settle(job, new TimeoutError(timeoutS, 'running'));
    const slot = this.slots.find((s) => s.job === job);
    // A model call cannot be interrupted: the worker is killed, a fresh one takes its place.
    if (slot) slot.child.kill('SIGKILL');
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
