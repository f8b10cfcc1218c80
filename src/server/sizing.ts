/**
 * How many workers, and threads each, when `--workers` / `--threads-per-worker` are not given:
 * from the cores and from the memory one loaded model needs (estimated from the model directory).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

/** Bytes of the files in a model directory (not recursive: the graphs and their weights). */
export function modelBytes(dir: string): number {
  let n = 0;
  for (const f of fs.readdirSync(dir, { withFileTypes: true })) if (f.isFile()) n += fs.statSync(path.join(dir, f.name)).size;
  return n;
}

/**
 * Memory one worker needs, estimated: the weights once, the working memory of a 512x512 run
 * (about as much again for the full-size model: 4.5 GB peak for 3.4 GB of UNet, bench/RESULTS.md),
 * and the face detector with its buffers (about 200 MB).
 */
export function workerMemoryEstimate(modelDirBytes: number): number {
  return Math.round(modelDirBytes * 1.4) + 200e6;
}

export interface PoolSize {
  workers: number;
  threadsPerWorker: number;
  /** How it was decided, for the startup log. */
  reason: string;
}

export function poolSize(modelDir: string, workers?: number, threadsPerWorker?: number, cores = os.availableParallelism(), freeBytes = os.totalmem() * 0.8 - process.memoryUsage().rss): PoolSize {
  if (workers !== undefined) {
    return { workers, threadsPerWorker: threadsPerWorker ?? Math.max(1, Math.floor(cores / workers)), reason: '--workers' };
  }
  const perWorker = workerMemoryEstimate(modelBytes(modelDir));
  const byMemory = Math.max(1, Math.floor(freeBytes / perWorker));
  const byCores = Math.max(1, Math.floor(cores / (threadsPerWorker ?? 1)));
  const n = Math.min(byMemory, byCores);
  return {
    workers: n,
    threadsPerWorker: threadsPerWorker ?? Math.max(1, Math.floor(cores / n)),
    reason: `${cores} cores, ${(freeBytes / 1e9).toFixed(1)} GB for workers of about ${(perWorker / 1e9).toFixed(2)} GB each`,
  };
}
