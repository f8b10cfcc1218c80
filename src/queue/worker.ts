/**
 * `queue worker`: pulls jobs with BullMQ, which renews each job's lock while it runs, puts the
 * jobs of a worker that stopped renewing (killed, frozen, cut off) back in the queue, and retries
 * failed jobs with exponential backoff. Each job runs in a worker thread (processor.ts), which
 * restores the image and stores the result. SIGTERM / SIGINT: the jobs in progress finish, then
 * the process exits.
 */
import os from 'node:os';
import { Worker } from 'bullmq';
import { readManifest } from '../pipeline/manifest.js';
import type { JobData } from './job.js';
import { CONFIG_ENV, type ProcessorConfig, type ProcessorResult } from './processor.js';
import { BULL_PREFIX, redisOptions } from './redis.js';

export interface QueueWorkerOptions {
  redisUrl: string;
  queue: string;
  /** The model directory (resolved); unused with noRestore. */
  modelDir: string;
  /** Jobs at once, each in its own thread with its own copy of the model. */
  concurrency: number;
  threads?: number;
  /** Where this machine mounts the shared storage of jobs submitted with --shared-path. */
  sharedPath?: string;
  /** Store each input as its own result, without a model (measures the queue alone). */
  noRestore: boolean;
  /** BullMQ job lock, ms: a job whose worker has not renewed it for this long is stalled. */
  lockMs: number;
  /** How often this worker looks for stalled jobs, ms. */
  stalledIntervalMs: number;
  log: (msg: string) => void;
}

export const workerName = (): string => `${os.hostname()}:${process.pid}`;

/** Runs until SIGTERM / SIGINT; resolves to the exit code. */
export async function runWorker(o: QueueWorkerOptions): Promise<number> {
  const me = workerName();
  if (!o.noRestore) readManifest(o.modelDir); // an unusable model directory fails here, before any job is taken
  const config: ProcessorConfig = {
    redisUrl: o.redisUrl, queue: o.queue, modelDir: o.modelDir, noRestore: o.noRestore, worker: me,
    ...(o.threads !== undefined ? { threads: o.threads } : {}),
    ...(o.sharedPath !== undefined ? { sharedPath: o.sharedPath } : {}),
  };
  process.env[CONFIG_ENV] = JSON.stringify(config);
  const worker = new Worker<JobData, ProcessorResult>(o.queue, new URL('./processor.js', import.meta.url), {
    connection: redisOptions(o.redisUrl, true),
    prefix: BULL_PREFIX,
    name: me,
    concurrency: o.concurrency,
    useWorkerThreads: true,
    lockDuration: o.lockMs,
    stalledInterval: o.stalledIntervalMs,
    // A job whose worker died is put back in the queue; the third time it counts as failed.
    maxStalledCount: 2,
    autorun: false,
  });
  let lastError = '';
  worker.on('error', (e) => {
    // One line per different error (a Redis outage repeats the same one on every reconnect).
    const msg = e instanceof Error ? e.message : String(e);
    if (msg !== lastError) o.log(`Redis: ${msg} (retrying)`);
    lastError = msg;
  });
  // Jobs taken and not yet finished in Redis (a job whose result cannot be stored yet still counts).
  let inProgress = 0;
  worker.on('active', (job) => {
    inProgress++;
    if (lastError) o.log('Redis: working again');
    lastError = '';
    o.log(`started ${job.id} ${job.data.input} (attempt ${job.attemptsMade + 1} of ${job.opts.attempts ?? 1})`);
  });
  worker.on('completed', (job, r) => {
    inProgress--;
    o.log(`done ${job.id} ${job.data.input} -> ${job.data.name} (${r.seconds.toFixed(2)} s)`);
  });
  worker.on('failed', (job, err) => {
    if (!job) return;
    inProgress--;
    const attempts = job.opts.attempts ?? 1;
    const final = job.attemptsMade >= attempts || err.name === 'UnrecoverableError';
    o.log(`failed ${job.id} ${job.data?.input}: ${err.message} (attempt ${job.attemptsMade} of ${attempts}${final ? ', giving up' : ', will retry'})`);
  });

  let signal: NodeJS.Signals | null = null;
  const stopped = new Promise<void>((resolve) => {
    const onSignal = (sig: NodeJS.Signals) => {
      if (signal) {
        o.log(`${sig} again: exiting now; the job in progress goes back to the queue when its lock expires`);
        process.exit(sig === 'SIGINT' ? 130 : 143);
      }
      signal = sig;
      o.log(`${sig}: finishing the job in progress, then exiting (${sig} again to exit now)`);
      void worker.close().then(resolve, resolve);
      // BullMQ's close waits for Redis; with no job in progress there is nothing to wait for.
      const since = Date.now();
      setInterval(() => {
        if (inProgress <= 0 && Date.now() - since > 5000) {
          o.log('no job in progress, and Redis does not answer: exiting without it');
          process.exit(0);
        }
      }, 500).unref();
    };
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
  });
  o.log(`worker ${me} on queue ${o.queue}, concurrency ${o.concurrency}${o.noRestore ? ', --no-restore (results are the inputs)' : `, model ${o.modelDir}`}`);
  void worker.run().catch((e: unknown) => o.log(`stopped: ${e instanceof Error ? e.message : String(e)}`));
  await stopped;
  o.log('stopped');
  return 0;
}
