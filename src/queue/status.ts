/** `queue status`: job counts, the failed jobs with their reasons, and the workers connected. */
import { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import type { JobData } from './job.js';
import { countResults } from './results.js';
import { BULL_PREFIX, redisOptions } from './redis.js';
import { PENDING_STATES } from './collect.js';

export interface QueueStatus {
  queue: string;
  counts: { waiting: number; active: number; delayed: number; failed: number; pending: number; results: number };
  /** Failed jobs, newest first (at most `limit`). */
  failures: { id: string; input: string; name: string; reason: string; attempts: number; at?: number }[];
  failuresLeftOut: number;
  /** Workers connected now (BullMQ's list of the queue's worker connections). */
  workers: { name: string; addr: string; ageSeconds: number; idleSeconds: number }[];
}

export async function queueStatus(redis: Redis, redisUrl: string, queueName: string, limit = 100): Promise<QueueStatus> {
  const queue = new Queue<JobData>(queueName, { connection: redisOptions(redisUrl, false), prefix: BULL_PREFIX });
  queue.on('error', () => { /* reported by the failing call */ });
  try {
    const c = await queue.getJobCounts(...PENDING_STATES, 'failed');
    const failed = await queue.getFailed(0, limit - 1);
    const clients = await queue.getWorkers();
    return {
      queue: queueName,
      counts: {
        waiting: (c.waiting ?? 0) + (c.prioritized ?? 0),
        active: c.active ?? 0,
        delayed: c.delayed ?? 0,
        failed: c.failed ?? 0,
        pending: PENDING_STATES.reduce((n, k) => n + (c[k] ?? 0), 0),
        results: await countResults(redis, queueName),
      },
      failures: failed.filter((j) => j).map((j) => ({
        id: j.id!, input: j.data?.input ?? '?', name: j.data?.name ?? j.name, reason: j.failedReason, attempts: j.attemptsMade,
        ...(j.finishedOn ? { at: j.finishedOn } : {}),
      })),
      failuresLeftOut: Math.max(0, (c.failed ?? 0) - failed.length),
      workers: clients.map((w) => ({
        name: workerLabel(w.rawname ?? w.name ?? ''),
        addr: w.addr ?? '',
        ageSeconds: Number(w.age ?? 0),
        idleSeconds: Number(w.idle ?? 0),
      })),
    };
  } finally {
    await queue.close();
  }
}

/** A worker connection's name without BullMQ's `bull:<queue in base64>:w:` (osdface names workers `<host>:<pid>`). */
function workerLabel(raw: string): string {
  const i = raw.indexOf(':w:');
  return i < 0 ? '' : raw.slice(i + 3);
}
