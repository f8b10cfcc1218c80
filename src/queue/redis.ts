/**
 * Where a queue lives in Redis: the connection (from a redis:// URL) and the names of every key
 * osdface itself writes. BullMQ's own keys are `bull:<queue>:*` (see the README, "Redis keys").
 *
 * osdface's keys, per queue:
 * - `osdface:<queue>:result:<job id>`: a hash, `meta` (JSON, ResultMeta) and `data` (the encoded
 *   output), expiring after the job's result TTL;
 * - `osdface:<queue>:results`: a sorted set of the job ids with a stored result, scored by when
 *   the result expires (ms since the epoch), so collect finds them without scanning; it expires
 *   with the last result.
 */
import { Redis } from 'ioredis';

export interface ConnectionSettings {
  url: string;
  maxRetriesPerRequest: number | null;
  retryStrategy: (times: number) => number;
}

export const DEFAULT_QUEUE = 'osdface';

/** BullMQ's key prefix (its default). */
export const BULL_PREFIX = 'bull';

export const resultKey = (queue: string, jobId: string): string => `osdface:${queue}:result:${jobId}`;
export const resultIndexKey = (queue: string): string => `osdface:${queue}:results`;

/** A queue name: letters, digits, `.`, `_` and `-` (it becomes part of Redis key names). */
export function checkQueueName(name: string): string | null {
  return /^[A-Za-z0-9._-]{1,100}$/.test(name) ? null : `--queue must be 1 to 100 letters, digits, '.', '_' or '-', got '${name}'`;
}

/** A redis:// or rediss:// URL, or null with the reason it is not one. */
export function checkRedisUrl(url: string): string | null {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return `--redis must be a URL like redis://host:6379 (or rediss:// for TLS), got '${url}'`;
  }
  if (u.protocol !== 'redis:' && u.protocol !== 'rediss:') return `--redis must be a redis:// or rediss:// URL, got '${url}'`;
  return null;
}

/**
 * Connection options for BullMQ and our own clients. `persistent`: commands wait for Redis to
 * come back however long it is away (workers, `collect --wait`); otherwise a command fails after
 * a few reconnection attempts (submit, status, collect).
 */
export function redisOptions(url: string, persistent: boolean): ConnectionSettings {
  return {
    url,
    maxRetriesPerRequest: persistent ? null : 3,
    // Reconnect with a growing delay, at most 2 s apart, for ever (ioredis' default caps at 2 s too).
    retryStrategy: (times: number) => Math.min(100 * times, 2000),
  };
}

/** A client for `url`, checked to answer a PING; a clear error when Redis cannot be reached. */
export async function connect(url: string, persistent: boolean): Promise<Redis> {
  const { maxRetriesPerRequest, retryStrategy } = redisOptions(url, persistent);
  const client = new Redis(url, { maxRetriesPerRequest, retryStrategy, lazyConnect: true });
  client.on('error', () => { /* reported by the command that fails; ioredis reconnects */ });
  try {
    await client.connect();
    await client.ping();
  } catch (e) {
    client.disconnect();
    throw new Error(`cannot reach Redis at ${redactUrl(url)}: ${e instanceof Error ? e.message : String(e)} (is redis-server running there, and is the URL right?)`);
  }
  return client;
}

/** The URL without its password, for messages. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return url;
  }
}
