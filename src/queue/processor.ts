/**
 * The job processor, run by BullMQ in a worker thread of `queue worker` (a sandboxed processor),
 * so that restoring, which keeps its thread busy for seconds, never stops the worker's main thread
 * from renewing the job's lock in Redis. Each thread loads the model once, on its first job, and
 * stores each result itself (results.ts); it returns only the result's summary.
 *
 * Its settings come from the worker in the environment variable OSDFACE_QUEUE_WORKER (JSON,
 * ProcessorConfig).
 */
import fs from 'node:fs';
import path from 'node:path';
import { UnrecoverableError, type SandboxedJob } from 'bullmq';
import type { Redis } from 'ioredis';
import { OSDFace } from '../osdface.js';
import { sha256, type JobData, type ResultMeta } from './job.js';
import { putResult } from './results.js';
import { decodeJobImage, restoreJob, type RestoredJob } from './restore_job.js';
import { connect } from './redis.js';

export interface ProcessorConfig {
  redisUrl: string;
  queue: string;
  /** Empty with noRestore. */
  modelDir: string;
  threads?: number;
  sharedPath?: string;
  noRestore: boolean;
  /** `<host>:<pid>` of the worker process. */
  worker: string;
}

export const CONFIG_ENV = 'OSDFACE_QUEUE_WORKER';

let state: Promise<{ config: ProcessorConfig; redis: Redis; model: OSDFace | null }> | null = null;

function setup(): NonNullable<typeof state> {
  state ??= (async () => {
    const config = JSON.parse(process.env[CONFIG_ENV] ?? 'null') as ProcessorConfig | null;
    if (!config) throw new UnrecoverableError(`the processor runs inside \`osdface queue worker\` (${CONFIG_ENV} is not set)`);
    const redis = await connect(config.redisUrl, true);
    const model = config.noRestore ? null : await OSDFace.load(config.modelDir, config.threads !== undefined ? { threads: config.threads } : {});
    return { config, redis, model };
  })();
  state.catch(() => { state = null; });
  return state;
}

export interface ProcessorResult {
  sha256: string;
  bytes: number;
  seconds: number;
}

export default async function process_(job: SandboxedJob<JobData>): Promise<ProcessorResult> {
  const d = job.data;
  if (d?.v !== 1) throw new UnrecoverableError(`job ${job.id}: not an osdface queue job (layout ${String(d?.v)}); submit it with this version of osdface`);
  const { config, redis, model } = await setup();
  // Test hook: a pause at the start of every job, so a test can act while a job is in progress.
  const testDelay = Number(process.env.OSDFACE_QUEUE_TEST_DELAY_MS ?? 0);
  if (testDelay > 0) await new Promise((r) => setTimeout(r, testDelay));
  const t0 = performance.now();
  const input = readInput(d, config.sharedPath);
  let out: RestoredJob;
  if (model === null) {
    out = { bytes: input, faces: 0, notices: [] };
  } else {
    out = await restoreJob(model, await decodeJobImage(input, d.input), d.settings);
  }
  const seconds = Number(((performance.now() - t0) / 1000).toFixed(3));
  const meta: ResultMeta = {
    name: d.name, input: d.input, sha256: sha256(out.bytes), bytes: out.bytes.length,
    faces: out.faces, notices: out.notices,
    ...(out.detected !== undefined ? { detected: out.detected } : {}),
    ...(d.settings.seed !== undefined ? { seed: d.settings.seed } : {}),
    seconds, worker: config.worker, at: Date.now(),
  };
  await putResult(redis, config.queue, job.id!, meta, out.bytes, d.resultTtl);
  return { sha256: meta.sha256, bytes: meta.bytes, seconds };
}

function readInput(d: JobData, sharedPath: string | undefined): Buffer {
  if (d.image !== undefined) return Buffer.from(d.image, 'base64');
  if (d.shared === undefined) throw new UnrecoverableError(`${d.input}: the job carries no image`);
  if (sharedPath === undefined) {
    throw new UnrecoverableError(`${d.input}: this job's image is on shared storage (${d.shared}); start the worker with --shared-path <where this machine mounts it>`);
  }
  const file = path.join(sharedPath, ...d.shared.split('/'));
  let bytes: Buffer;
  try {
    bytes = fs.readFileSync(file);
  } catch (e) {
    throw new Error(`${d.input}: cannot read ${file}: ${e instanceof Error ? e.message : String(e)}`);
  }
  if (sha256(bytes) !== d.sha256) throw new UnrecoverableError(`${d.input}: ${file} changed since it was submitted (its sha256 differs); submit it again`);
  return bytes;
}
