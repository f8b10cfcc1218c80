/**
 * The result store: each finished job's output bytes and summary in Redis, where every machine
 * can reach them, expiring after the job's result TTL (see redis.ts for the keys).
 */
import type { Redis } from 'ioredis';
import type { ResultMeta } from './job.js';
import { resultIndexKey, resultKey } from './redis.js';

/** Stores a result and indexes it, in one transaction; both expire after `ttlSeconds`. */
export async function putResult(redis: Redis, queue: string, jobId: string, meta: ResultMeta, data: Buffer, ttlSeconds: number): Promise<void> {
  const key = resultKey(queue, jobId);
  const index = resultIndexKey(queue);
  const expiresAt = Date.now() + ttlSeconds * 1000;
  const res = await redis.multi()
    .hset(key, 'meta', JSON.stringify(meta), 'data', data)
    .expire(key, ttlSeconds)
    .zadd(index, expiresAt, jobId)
    // The index lives as long as its longest-lived result (GT: never shortened by a shorter TTL).
    .pexpire(index, ttlSeconds * 1000, 'GT')
    .pexpire(index, ttlSeconds * 1000, 'NX')
    .exec();
  const failed = res?.find(([err]) => err);
  if (!res || failed) throw new Error(`storing the result of ${jobId} in Redis failed: ${failed?.[0]?.message ?? 'transaction aborted'}`);
}

export async function hasResult(redis: Redis, queue: string, jobId: string): Promise<boolean> {
  return (await redis.exists(resultKey(queue, jobId))) === 1;
}

/** Job ids of the results not yet expired, oldest expiry first, `count` from `offset`. Expired index entries are dropped. */
export async function listResults(redis: Redis, queue: string, offset: number, count: number): Promise<string[]> {
  const index = resultIndexKey(queue);
  const now = Date.now();
  if (offset === 0) await redis.zremrangebyscore(index, '-inf', now);
  return redis.zrangebyscore(index, now, '+inf', 'LIMIT', offset, count);
}

export async function countResults(redis: Redis, queue: string): Promise<number> {
  return redis.zcount(resultIndexKey(queue), Date.now(), '+inf');
}

export async function getMeta(redis: Redis, queue: string, jobId: string): Promise<ResultMeta | null> {
  const s = await redis.hget(resultKey(queue, jobId), 'meta');
  return s === null ? null : (JSON.parse(s) as ResultMeta);
}

export async function getData(redis: Redis, queue: string, jobId: string): Promise<Buffer | null> {
  return redis.hgetBuffer(resultKey(queue, jobId), 'data');
}

/** Frees a collected result's bytes; its summary stays until it expires (so a new submit still finds the image done). */
export async function dropData(redis: Redis, queue: string, jobId: string): Promise<void> {
  await redis.hdel(resultKey(queue, jobId), 'data');
}
