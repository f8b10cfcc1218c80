/**
 * `queue collect`: writes the stored results into a folder (temporary file, then rename), leaving
 * those already there alone; with `wait`, follows the queue until nothing is pending.
 */
import fs from 'node:fs';
import path from 'node:path';
import { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { writeImageAtomic } from '../image/io.js';
import { sha256 } from './job.js';
import { countResults, dropData, getData, getMeta, listResults } from './results.js';
import { BULL_PREFIX, redisOptions } from './redis.js';
import { QueueProgress } from './progress.js';

export interface CollectOptions {
  redisUrl: string;
  queue: string;
  outDir: string;
  wait: boolean;
  /** Keep each result's bytes in Redis once written (default: free them, keeping the summary). */
  keep: boolean;
  /** --wait: ms between looks at the queue. */
  intervalMs: number;
  log: (msg: string) => void;
}

export interface CollectSummary {
  written: number;
  /** Results whose output was already there with the same bytes. */
  already: number;
  /** Results collected before whose output is not in this folder; their bytes are no longer in Redis. */
  gone: { name: string; id: string }[];
  /** Outputs already there with other bytes (left alone). */
  conflicts: { name: string; id: string }[];
  /** Jobs failed for good, when collect ended. */
  failed: number;
  /** Jobs waiting or in progress, when collect ended. */
  pending: number;
}

/** Jobs not finished yet (waiting, in progress, waiting for a retry). */
export const PENDING_STATES = ['waiting', 'active', 'delayed', 'prioritized', 'waiting-children'] as const;

export async function collect(redis: Redis, o: CollectOptions): Promise<CollectSummary> {
  const queue = new Queue(o.queue, { connection: redisOptions(o.redisUrl, o.wait), prefix: BULL_PREFIX });
  queue.on('error', () => { /* reported by the failing call */ });
  const handled = new Set<string>();
  const s: CollectSummary = { written: 0, already: 0, gone: [], conflicts: [], failed: 0, pending: 0 };
  fs.mkdirSync(o.outDir, { recursive: true });

  const writeOne = async (id: string): Promise<void> => {
    const meta = await getMeta(redis, o.queue, id);
    if (meta === null) return; // expired a moment ago
    if (meta.name !== path.basename(meta.name) || meta.name.startsWith('.') || meta.name.includes('\\')) {
      handled.add(id);
      s.conflicts.push({ name: meta.name, id });
      o.log(`job ${id}: its output name '${meta.name}' is not a plain file name; not written`);
      return;
    }
    const out = path.join(o.outDir, meta.name);
    if (fs.existsSync(out)) {
      handled.add(id);
      if (fs.statSync(out).size === meta.bytes && sha256(fs.readFileSync(out)) === meta.sha256) {
        s.already++;
        if (!o.keep) await dropData(redis, o.queue, id);
      } else {
        s.conflicts.push({ name: meta.name, id });
        o.log(`${out} exists with other bytes than the result of ${meta.input} (job ${id}); left as it is (move it away and collect again to get this one)`);
      }
      return;
    }
    const data = await getData(redis, o.queue, id);
    if (data === null) {
      handled.add(id);
      s.gone.push({ name: meta.name, id });
      o.log(`${meta.input}: its result was collected before (into another folder?) and its bytes are no longer in Redis; ${out} is not written (submit the image to another --queue to restore it again)`);
      return;
    }
    if (sha256(data) !== meta.sha256) throw new Error(`the stored result of job ${id} (${meta.input}) does not match its sha256; it was not written`);
    await writeImageAtomic(out, data);
    handled.add(id);
    s.written++;
    if (!o.keep) await dropData(redis, o.queue, id);
  };
  const pass = async (): Promise<void> => {
    const page = 500;
    for (let offset = 0; ; offset += page) {
      const ids = await listResults(redis, o.queue, offset, page);
      for (const id of ids) if (!handled.has(id)) await writeOne(id);
      if (ids.length < page) break;
    }
  };
  const counts = async (): Promise<{ pending: number; failed: number }> => {
    const c = await queue.getJobCounts(...PENDING_STATES, 'failed');
    return { pending: PENDING_STATES.reduce((n, k) => n + (c[k] ?? 0), 0), failed: c.failed ?? 0 };
  };

  try {
    if (!o.wait) {
      await pass();
      Object.assign(s, await counts());
      return s;
    }
    const progress = new QueueProgress();
    let lastError = '';
    for (;;) {
      try {
        await pass();
        const c = await counts();
        Object.assign(s, c);
        progress.update(await countResults(redis, o.queue), c.failed, c.pending);
        if (lastError) o.log('Redis: connected again');
        lastError = '';
        if (c.pending === 0) {
          await pass(); // results stored by the last jobs
          break;
        }
      } catch (e) {
        const msg = e instanceof Error ? e.message : String(e);
        if (msg !== lastError) o.log(`Redis: ${msg} (retrying)`);
        lastError = msg;
      }
      await new Promise((r) => setTimeout(r, o.intervalMs));
    }
    progress.end();
    return s;
  } finally {
    await queue.close();
  }
}
