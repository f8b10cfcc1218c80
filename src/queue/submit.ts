/**
 * `queue submit`: one BullMQ job per image, its id derived from the image and the options
 * (job.ts), so a second submit of the same images adds nothing already done or pending.
 */
import fs from 'node:fs';
import path from 'node:path';
import { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { jobId, outputName, sha256, type JobData, type JobSettings } from './job.js';
import { BULL_PREFIX, redisOptions, resultKey } from './redis.js';
import { SEED_LIMIT, type ImageSettings } from '../cli/restore_options.js';
import type { InputItem } from '../cli/inputs.js';

export interface SubmitOptions {
  redisUrl: string;
  queue: string;
  settings: ImageSettings;
  /** Images are read from this shared storage by the workers instead of travelling in the job. */
  sharedPath?: string;
  /** Largest image sent inside a job, bytes. */
  inlineLimit: number;
  attempts: number;
  /** First retry delay, ms (doubled on each retry). */
  backoffMs: number;
  resultTtl: number;
  /** Retry jobs of these images that failed before. */
  retryFailed: boolean;
}

export type SubmitStatus = 'enqueued' | 'done' | 'pending' | 'failed-before' | 'retried' | 'rejected';

export interface SubmitEntry {
  input: string;
  status: SubmitStatus;
  id?: string;
  name?: string;
  /** Why the input was rejected, or why the earlier job failed. */
  error?: string;
}

export interface SubmitSummary {
  queue: string;
  entries: SubmitEntry[];
  enqueued: number;
  done: number;
  pending: number;
  failedBefore: number;
  retried: number;
  rejected: number;
}

/** Jobs added per round trip. */
const CHUNK = 200;

/** Reads, hashes and enqueues `items` (from expandInputs). */
export async function submit(redis: Redis, items: readonly InputItem[], o: SubmitOptions): Promise<SubmitSummary> {
  const queue: Queue<JobData> = new Queue<JobData>(o.queue, { connection: redisOptions(o.redisUrl, false), prefix: BULL_PREFIX });
  queue.on('error', () => { /* surfaced by the failing call */ });
  const entries: SubmitEntry[] = [];
  try {
    const names = new Map<string, string>();
    let pending: { entry: SubmitEntry; data: JobData }[] = [];
    const shared = o.sharedPath === undefined ? undefined : fs.realpathSync(o.sharedPath);
    for (let k = 0; k < items.length; k++) {
      const item = items[k]!;
      const entry: SubmitEntry = { input: item.input, status: 'rejected' };
      entries.push(entry);
      if (item.error !== undefined) {
        entry.error = item.error;
        continue;
      }
      const made = makeJob(item.input, k, o, shared, names);
      if ('error' in made) {
        entry.error = made.error;
        continue;
      }
      entry.id = jobId(made.data.sha256, made.data.name, made.data.settings);
      entry.name = made.data.name;
      pending.push({ entry, data: made.data });
      if (pending.length >= CHUNK) {
        await addChunk(queue, redis, pending, o);
        pending = [];
      }
    }
    if (pending.length > 0) await addChunk(queue, redis, pending, o);
  } finally {
    await queue.close();
  }
  const count = (s: SubmitStatus) => entries.filter((e) => e.status === s).length;
  return {
    queue: o.queue, entries,
    enqueued: count('enqueued'), done: count('done'), pending: count('pending'),
    failedBefore: count('failed-before'), retried: count('retried'), rejected: count('rejected'),
  };
}

function makeJob(input: string, k: number, o: SubmitOptions, shared: string | undefined, names: Map<string, string>): { data: JobData } | { error: string } {
  const s = o.settings;
  const name = outputName(input, s.format);
  const first = names.get(name);
  if (first !== undefined) return { error: `its output ${name} is already made for ${first}; submit files with the same name to separate queues (--queue)` };
  let bytes: Buffer;
  let rel: string | undefined;
  try {
    if (shared !== undefined) {
      const real = fs.realpathSync(input);
      rel = path.relative(shared, real);
      if (rel.startsWith('..') || path.isAbsolute(rel)) {
        return { error: `not under --shared-path ${o.sharedPath}: workers could not read it there; move it under that folder, or submit without --shared-path to send the image inside the job` };
      }
      rel = rel.split(path.sep).join('/');
    } else {
      const size = fs.statSync(input).size;
      if (size > o.inlineLimit) {
        return { error: `${(size / 1e6).toFixed(1)} MB is over the --inline-limit of ${(o.inlineLimit / 1e6).toFixed(1)} MB for images sent inside a job; raise --inline-limit, or put the images on storage every worker reaches and submit with --shared-path` };
      }
    }
    bytes = fs.readFileSync(input);
  } catch (e) {
    return { error: `cannot read it: ${e instanceof Error ? e.message : String(e)}` };
  }
  names.set(name, input);
  const settings: JobSettings = {
    mode: s.mode, latent: s.latent, format: s.format,
    ...(s.fidelity !== undefined ? { fidelity: s.fidelity } : {}), upscale: s.upscale, background: s.background, onlyCenterFace: s.onlyCenterFace,
    ...(s.seed !== undefined ? { seed: (s.seed + k) % SEED_LIMIT } : {}),
    ...(s.size !== undefined ? { size: s.size } : {}),
    ...(s.maxFaces !== undefined ? { maxFaces: s.maxFaces } : {}),
    ...(s.minEyeDistance !== undefined ? { minEyeDistance: s.minEyeDistance } : {}),
  };
  const data: JobData = {
    v: 1, name, input, sha256: sha256(bytes), settings, resultTtl: o.resultTtl,
    ...(rel !== undefined ? { shared: rel } : { image: bytes.toString('base64') }),
  };
  return { data };
}

/** Classifies each job (already done / pending / failed) and adds the new ones in one call. */
async function addChunk(queue: Queue<JobData>, redis: Redis, chunk: { entry: SubmitEntry; data: JobData }[], o: SubmitOptions): Promise<void> {
  // One round trip for the whole chunk: is there a result, a job, a failed job?
  const p = redis.pipeline();
  for (const c of chunk) {
    p.exists(resultKey(o.queue, c.entry.id!));
    p.exists(queue.toKey(c.entry.id!));
    p.zscore(queue.keys.failed!, c.entry.id!);
  }
  const r = (await p.exec()) ?? [];
  const err = r.find(([e]) => e);
  if (err) throw err[0]!;
  const fresh: typeof chunk = [];
  for (let i = 0; i < chunk.length; i++) {
    const c = chunk[i]!;
    const [hasRes, hasJob, failedScore] = [r[3 * i]![1], r[3 * i + 1]![1], r[3 * i + 2]![1]];
    if (hasRes === 1) {
      c.entry.status = 'done';
    } else if (hasJob !== 1) {
      fresh.push(c);
    } else if (failedScore !== null) {
      const job = await queue.getJob(c.entry.id!);
      c.entry.error = job?.failedReason ?? 'failed';
      if (o.retryFailed && job) {
        await job.retry('failed');
        c.entry.status = 'retried';
      } else {
        c.entry.status = 'failed-before';
      }
    } else {
      // waiting, active, delayed: a worker will (or does) restore it
      c.entry.status = 'pending';
    }
  }
  if (fresh.length === 0) return;
  await queue.addBulk(fresh.map((c) => ({
    name: c.data.name,
    data: c.data,
    opts: {
      jobId: c.entry.id!,
      attempts: o.attempts,
      backoff: { type: 'exponential', delay: o.backoffMs },
      // The result lives in the result store; the finished job record is not kept.
      removeOnComplete: true,
      // Failed jobs (with their reason) are kept as long as results are, then removed by BullMQ
      // the next time a job fails.
      removeOnFail: { age: o.resultTtl },
    },
  })));
  for (const c of fresh) c.entry.status = 'enqueued';
}
