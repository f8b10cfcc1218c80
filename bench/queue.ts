/**
 * `npm run bench:queue [-- --jobs 1000,10000] [--restore-jobs 20] [--json]`: `osdface queue` on
 * loopback against one local redis-server (appendonly on, as in production):
 *
 * 1. restore throughput: `--restore-jobs` aligned 16x16 crops on the tiny parity-a model, with 1
 *    and 2 worker processes (1 ONNX Runtime thread each), submit -> collect --wait;
 * 2. the queue's own cost per job: `--no-restore` workers (each result is its input), for each
 *    `--jobs` count with 1 and 2 worker processes (concurrency 4 each): submit time, submit ->
 *    everything collected, and Redis' own CPU time per job (INFO cpu), which bounds how many jobs
 *    per second one Redis (one core) can move.
 *
 * Everything goes through the real CLI (node dist/src/cli/main.js queue ...), as a user runs it.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawn, spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import sharp from 'sharp';
import { convertRelease } from '../src/pipeline/convert.js';
import { freePort, startRedisServer } from '../src/queue/redis_server.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, '../..');
const cli = path.join(repo, 'dist/src/cli/main.js');
const parityA = path.resolve(repo, '../shared/fixtures/parity-a');

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1]! : fallback;
}

const log = (msg: string) => process.stderr.write(`bench:queue: ${msg}\n`);

function run(args: string[]): { ms: number; stdout: string } {
  const t0 = performance.now();
  const r = spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8', maxBuffer: 256 * 1024 * 1024 });
  if (r.status !== 0) throw new Error(`osdface ${args.slice(0, 2).join(' ')} exited ${r.status}:\n${r.stderr.slice(-3000)}`);
  return { ms: performance.now() - t0, stdout: r.stdout };
}

async function redisCpu(redis: Redis): Promise<number> {
  const info = await redis.info('cpu');
  const get = (k: string) => Number(new RegExp(`${k}:([0-9.]+)`).exec(info)![1]);
  return get('used_cpu_user') + get('used_cpu_sys');
}

interface Measure {
  kind: 'restore' | 'no-restore';
  jobs: number;
  workers: number;
  submitMs: number;
  /** Workers started (after submit) -> every result written by collect --wait. */
  processMs: number;
  /** submit start -> collect end, per job. */
  perJobMs: number;
  jobsPerSecond: number;
  redisCpuMsPerJob: number;
  redisPeakMB: number;
}

async function measure(redis: Redis, url: string, kind: Measure['kind'], inputs: string, jobs: number, workers: number, modelDir: string, work: string): Promise<Measure> {
  await redis.flushall();
  await redis.config('RESETSTAT');
  const queue = `bench-${kind}-${jobs}-${workers}`;
  const cpu0 = await redisCpu(redis);
  const submitArgs = ['queue', 'submit', inputs, '--redis', url, '--queue', queue, ...(kind === 'restore' ? ['--aligned'] : [])];
  const sub = run(submitArgs);
  const t1 = performance.now();
  const workerArgs = ['queue', 'worker', '--redis', url, '--queue', queue,
    ...(kind === 'restore' ? ['--model', modelDir, '--threads', '1'] : ['--no-restore', '--concurrency', '4'])];
  const procs = Array.from({ length: workers }, () => spawn(process.execPath, [cli, ...workerArgs], { stdio: 'ignore' }));
  const out = path.join(work, `out-${queue}`);
  run(['queue', 'collect', '--redis', url, '--queue', queue, '-o', out, '--wait', '--interval', '0.2']);
  const t2 = performance.now();
  const cpu1 = await redisCpu(redis);
  const peak = Number(/used_memory_peak:(\d+)/.exec(await redis.info('memory'))![1]) / 1e6;
  await Promise.all(procs.map((p) => new Promise((r) => { p.once('exit', r); p.kill('SIGTERM'); })));
  const written = fs.readdirSync(out).length;
  if (written !== jobs) throw new Error(`${queue}: ${written} outputs for ${jobs} jobs`);
  fs.rmSync(out, { recursive: true, force: true });
  const m: Measure = {
    kind, jobs, workers,
    submitMs: sub.ms,
    processMs: t2 - t1,
    perJobMs: (sub.ms + (t2 - t1)) / jobs,
    jobsPerSecond: jobs / ((t2 - t1) / 1000),
    redisCpuMsPerJob: ((cpu1 - cpu0) * 1000) / jobs,
    redisPeakMB: peak,
  };
  log(`${kind} ${jobs} jobs, ${workers} worker${workers > 1 ? 's' : ''}: submit ${(m.submitMs / 1000).toFixed(1)} s, process+collect ${(m.processMs / 1000).toFixed(1)} s, ${m.jobsPerSecond.toFixed(1)} jobs/s, ${m.perJobMs.toFixed(2)} ms/job end to end, Redis CPU ${m.redisCpuMsPerJob.toFixed(3)} ms/job, Redis peak ${m.redisPeakMB.toFixed(1)} MB`);
  return m;
}

async function main(): Promise<void> {
  const jobCounts = arg('--jobs', '1000,10000').split(',').map(Number);
  const restoreJobs = Number(arg('--restore-jobs', '20'));
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'osdface-bench-queue-'));
  const server = await startRedisServer(work, await freePort());
  const redis = new Redis(server.url, { maxRetriesPerRequest: null });
  // Ctrl-C / SIGTERM: stop the redis-server and remove the work folder (a terminal's Ctrl-C reaches the workers too).
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.once(sig, () => {
      server.process.kill('SIGTERM');
      fs.rmSync(work, { recursive: true, force: true });
      process.exit(130);
    });
  }
  const results: Measure[] = [];
  try {
    const modelDir = path.join(work, 'model');
    await convertRelease({ sd: path.join(parityA, 'sd'), osdface: path.join(parityA, 'osdface'), out: modelDir });
    // Restore throughput on small aligned crops.
    const crops = path.join(work, 'crops');
    fs.mkdirSync(crops);
    for (let i = 0; i < restoreJobs; i++) {
      const data = Buffer.alloc(16 * 16 * 3);
      for (let j = 0; j < data.length; j++) data[j] = (j * (i + 3) * 7 + i * 31) % 256;
      await sharp(data, { raw: { width: 16, height: 16, channels: 3 } }).png().toFile(path.join(crops, `c${i}.png`));
    }
    for (const w of [1, 2]) results.push(await measure(redis, server.url, 'restore', crops, restoreJobs, w, modelDir, work));
    // The queue's own cost: distinct small files (never decoded by --no-restore workers).
    for (const n of jobCounts) {
      const inputs = path.join(work, `noop-${n}`);
      fs.mkdirSync(inputs);
      for (let i = 0; i < n; i++) fs.writeFileSync(path.join(inputs, `f${i}.png`), `${i}`.repeat(50));
      for (const w of [1, 2]) results.push(await measure(redis, server.url, 'no-restore', inputs, n, w, '', work));
      fs.rmSync(inputs, { recursive: true, force: true });
    }
  } finally {
    redis.disconnect();
    await server.stop();
    fs.rmSync(work, { recursive: true, force: true });
  }
  if (process.argv.includes('--json')) {
    process.stdout.write(`${JSON.stringify({ host: { cpus: os.cpus().length, cpu: os.cpus()[0]?.model, node: process.version }, results }, null, 2)}\n`);
    return;
  }
  process.stdout.write('| restore | jobs | worker processes | submit s | workers start -> all collected s | jobs/s | end to end ms/job | Redis CPU ms/job | Redis peak MB |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|\n');
  for (const m of results) {
    process.stdout.write(`| ${m.kind === 'restore' ? 'tiny model' : 'no-op'} | ${m.jobs} | ${m.workers} | ${(m.submitMs / 1000).toFixed(1)} | ${(m.processMs / 1000).toFixed(1)} | ${m.jobsPerSecond.toFixed(1)} | ${m.perJobMs.toFixed(2)} | ${m.redisCpuMsPerJob.toFixed(3)} | ${m.redisPeakMB.toFixed(1)} |\n`);
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`bench:queue: ${e instanceof Error ? e.stack ?? e.message : String(e)}\n`);
  process.exitCode = 1;
});
