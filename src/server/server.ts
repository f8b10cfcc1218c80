/**
 * Starting and stopping the service: the worker pool, the Fastify app, listening, and the
 * graceful shutdown (stop accepting, let queued and running requests finish within a grace
 * period, fail what is left with 503, terminate the workers).
 */
import type { Writable } from 'node:stream';
import type { AddressInfo } from 'node:net';
import type { FastifyInstance } from 'fastify';
import { readManifest } from '../pipeline/manifest.js';
import { WorkerPool } from './pool.js';
import { buildApp } from './app.js';
import { poolSize } from './sizing.js';

export interface ServeConfig {
  /** A converted model directory (resolved by the caller, e.g. with resolveModelDir). */
  modelDir: string;
  host?: string;
  /** 0 picks a free port. */
  port?: number;
  workers?: number;
  threadsPerWorker?: number;
  /** Load the UNet only while it runs (OSDFace.load lowMemory; default: the model's, on for fp32). */
  lowMemory?: boolean;
  /** Requests that may wait for a worker (default 16). */
  queue?: number;
  /** Per-request limit, seconds (default 120). */
  timeoutS?: number;
  /** Body limit, bytes (default 25 MB). */
  maxBodyBytes?: number;
  /** Image size limit, pixels (default 40 megapixels). */
  maxPixels?: number;
  apiKey?: string;
  /** Seconds shutdown waits for work in flight (default 30). */
  graceS?: number;
  logLevel?: string;
  logStream?: Writable;
}

export const DEFAULTS = { host: '127.0.0.1', port: 8080, queue: 16, timeoutS: 120, maxBodyBytes: 25 * 1024 * 1024, maxPixels: 40e6, graceS: 30 } as const;

export interface RunningServer {
  app: FastifyInstance;
  pool: WorkerPool;
  /** http://host:port */
  url: string;
  /** Graceful shutdown; resolves when the workers are gone. `finished`: all work in flight was answered in time. */
  close(): Promise<{ finished: boolean }>;
}

export async function startServer(cfg: ServeConfig): Promise<RunningServer> {
  readManifest(cfg.modelDir); // a clear ModelDirError before anything starts
  const size = poolSize(cfg.modelDir, cfg.workers, cfg.threadsPerWorker);
  const queue = cfg.queue ?? DEFAULTS.queue;
  const timeoutS = cfg.timeoutS ?? DEFAULTS.timeoutS;
  const pool = new WorkerPool({ size: size.workers, threadsPerWorker: size.threadsPerWorker, queueLimit: queue, timeoutMs: timeoutS * 1000, modelDir: cfg.modelDir, ...(cfg.lowMemory !== undefined ? { lowMemory: cfg.lowMemory } : {}) });
  const { app } = await buildApp({
    pool,
    maxBodyBytes: cfg.maxBodyBytes ?? DEFAULTS.maxBodyBytes,
    maxPixels: cfg.maxPixels ?? DEFAULTS.maxPixels,
    ...(cfg.apiKey !== undefined ? { apiKey: cfg.apiKey } : {}),
    ...(cfg.logLevel !== undefined ? { logLevel: cfg.logLevel } : {}),
    ...(cfg.logStream !== undefined ? { logStream: cfg.logStream } : {}),
  });
  pool.on('worker-restart', (pid: number, how: string) => app.log.warn({ workerPid: pid, how }, 'worker stopped; starting a replacement'));
  pool.on('worker-error', (pid: number, err: Error) => app.log.error({ workerPid: pid, err }, 'worker error'));
  pool.on('dropped', (job: number) => app.log.info({ job }, 'client went away: request dropped from the queue'));

  await app.listen({ host: cfg.host ?? DEFAULTS.host, port: cfg.port ?? DEFAULTS.port });
  const addr = app.server.address() as AddressInfo;
  const host = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
  const url = `http://${host}:${addr.port}`;
  app.log.info({ url, modelDir: cfg.modelDir, workers: size.workers, threadsPerWorker: size.threadsPerWorker, sizing: size.reason, queue, timeoutS }, 'listening; loading the model in the workers');
  try {
    await pool.start();
  } catch (e) {
    await pool.drain(0);
    await app.close();
    throw e;
  }
  app.log.info({ url, workers: pool.readyWorkers }, 'ready');

  let closing: Promise<{ finished: boolean }> | null = null;
  const close = () => {
    closing ??= (async () => {
      const graceMs = (cfg.graceS ?? DEFAULTS.graceS) * 1000;
      app.log.info({ inFlight: pool.pending, queued: pool.queueDepth, busy: pool.busyWorkers, graceS: graceMs / 1000 }, 'shutting down: no new requests, finishing the ones in flight');
      // Fastify stops accepting (new requests on open connections get 503) and waits for the
      // requests it has taken, which still go through the pool; after the grace period the pool
      // fails what is left (503), so those answer too.
      const deadline = Date.now() + graceMs;
      const appClosed = app.close();
      let timer: NodeJS.Timeout | undefined;
      const inTime = await Promise.race([
        appClosed.then(() => true),
        new Promise<boolean>((resolve) => { timer = setTimeout(resolve, graceMs, false); }),
      ]);
      clearTimeout(timer);
      // Jobs whose clients left are still running: they get the rest of the grace period.
      const left = await pool.drain(Math.max(0, deadline - Date.now()));
      await appClosed;
      const drained = { finished: inTime && left.finished };
      app.log.info({ finished: drained.finished }, drained.finished ? 'stopped: all work in flight was answered' : 'stopped: the grace period ran out, the rest was answered 503');
      return drained;
    })();
    return closing;
  };
  return { app, pool, url, close };
}
