/**
 * `osdface queue submit | worker | collect | status`: restoring many images on many machines
 * through a BullMQ queue in Redis (src/queue/).
 *
 * Exit codes: 0 success; 1 some image was rejected or failed, or Redis cannot be reached;
 * 2 usage error (or an unusable model directory for the worker).
 */
import fs from 'node:fs';
import path from 'node:path';
import type { Redis } from 'ioredis';
import { ArgumentError, parseFlags, reportUsageError, type FlagSpec, type Flags } from './args.js';
import { expandInputs, isDirectory } from './inputs.js';
import { IMAGE_FLAGS, parseRestoreSettings, RESTORE_FLAGS } from './restore_options.js';
import { ModelDirError } from '../pipeline/manifest.js';
import { resolveModelDir } from '../pipeline/default_model.js';
import { checkQueueName, checkRedisUrl, connect, DEFAULT_QUEUE } from '../queue/redis.js';

export const QUEUE_USAGE = `usage: osdface queue submit <file | folder | glob>... --redis <url> [--queue <name>] [restore options]
  osdface queue worker --redis <url> [--model <dir>] [--concurrency N] [--threads N]
  osdface queue collect --redis <url> -o <out dir> [--wait]
  osdface queue status --redis <url> [--json]

Restores images on many machines: submit puts one job per image into a BullMQ queue in Redis,
workers (on any machine that reaches Redis) restore them and store the results in Redis, and
collect writes the results into a folder. The job id comes from the image's bytes, its output
name and the options, so submitting the same images again adds nothing already done or pending.

common options:
  --redis <url>           redis://[user:password@]host:port[/db] (rediss:// for TLS); required
  --queue <name>          queue name (default ${DEFAULT_QUEUE}); letters, digits, . _ -
  -h, --help              this help

submit:
  restore options         --aligned, --size, --latent, --seed, --format, --upscale,
                          --bg-upsampler, --only-center-face, --max-faces, --min-eye-distance, as
                          for \`osdface restore\`: each output has the bytes restore writes. With
                          --latent sample, --seed is required (image k of the list uses seed + k)
  --inline-limit <MB>     images travel inside their job up to this size (default 16)
  --shared-path <dir>     instead, the image stays where it is, under <dir>, storage every worker
                          mounts (workers get their own mount point with --shared-path); the
                          worker checks its sha256 before restoring
  --attempts <N>          tries per image before it counts as failed (default 3)
  --backoff <s>           delay before the first retry, doubled for each next one (default 10)
  --result-ttl <s>        seconds results stay in Redis (default 604800, 7 days)
  --retry-failed          retry the images whose jobs failed before (default: report them)
  --json                  print a JSON summary on stdout
  prints: enqueued, already done, already pending (and already failed, rejected) counts

worker:
  --model <dir>           model directory (default: the packaged model)
  --concurrency <N>       jobs in progress at once (default 1); the network runs one at a time,
                          the others are read, decoded, encoded and stored meanwhile
  --threads <N>           ONNX Runtime threads (default: all cores)
  --shared-path <dir>     where this machine mounts the storage of --shared-path submits
  --lock <s>              a job's lock (default 30): a worker that stops renewing it (killed,
                          frozen, cut off) loses the job to another worker after this long
  --stall-check <s>       how often this worker looks for such jobs (default 30)
  --no-restore            store each input as its result, without a model (measures the queue)
  SIGTERM / SIGINT: the job in progress finishes, then the worker exits (twice: at once)

collect:
  -o, --out <dir>         folder the outputs are written to (created if missing); an output
                          already there with the same bytes is skipped, one with other bytes
                          is left alone and reported
  --wait                  follow the queue until nothing is pending, with a progress bar
  --keep                  keep each result's bytes in Redis once written (default: free them;
                          the result's summary stays until it expires, so a new submit of the
                          image still counts it done)
  --interval <s>          --wait: seconds between looks at the queue (default 1)
  --json                  print a JSON summary on stdout

status:
  --json                  print JSON: counts, failures with their reasons, workers connected

exit codes: 0 success, 1 an image was rejected or failed (or Redis cannot be reached), 2 usage
error.
`;

const COMMON: Record<string, FlagSpec> = {
  redis: { kind: 'string' },
  queue: { kind: 'string' },
  help: { kind: 'bool', short: 'h' },
};

const SUBMIT_FLAGS: Record<string, FlagSpec> = {
  ...COMMON,
  ...Object.fromEntries(IMAGE_FLAGS.map((f) => [f, RESTORE_FLAGS[f]!])),
  'inline-limit': { kind: 'number' },
  'shared-path': { kind: 'string' },
  attempts: { kind: 'int' },
  backoff: { kind: 'number' },
  'result-ttl': { kind: 'int' },
  'retry-failed': { kind: 'bool' },
  json: { kind: 'bool' },
};

const WORKER_FLAGS: Record<string, FlagSpec> = {
  ...COMMON,
  model: { kind: 'string' },
  concurrency: { kind: 'int' },
  threads: { kind: 'int' },
  'shared-path': { kind: 'string' },
  lock: { kind: 'number' },
  'stall-check': { kind: 'number' },
  'no-restore': { kind: 'bool' },
};

const COLLECT_FLAGS: Record<string, FlagSpec> = {
  ...COMMON,
  out: { kind: 'string', short: 'o' },
  wait: { kind: 'bool' },
  keep: { kind: 'bool' },
  interval: { kind: 'number' },
  json: { kind: 'bool' },
};

const STATUS_FLAGS: Record<string, FlagSpec> = { ...COMMON, json: { kind: 'bool' } };

const usage = (msg: string) => new ArgumentError(msg);

function positive(flags: Flags, name: string, fallback: number): number {
  const v = (flags.get(name) as number | undefined) ?? fallback;
  if (!(v > 0)) throw usage(`--${name} must be greater than 0, got ${v}`);
  return v;
}

function common(flags: Flags): { redisUrl: string; queue: string } {
  const redisUrl = flags.get('redis') as string | undefined;
  if (redisUrl === undefined) throw usage('--redis <url> is required, e.g. --redis redis://127.0.0.1:6379');
  const bad = checkRedisUrl(redisUrl);
  if (bad) throw usage(bad);
  const queue = (flags.get('queue') as string | undefined) ?? DEFAULT_QUEUE;
  const badQueue = checkQueueName(queue);
  if (badQueue) throw usage(badQueue);
  return { redisUrl, queue };
}

function sharedDir(flags: Flags): string | undefined {
  const dir = flags.get('shared-path') as string | undefined;
  if (dir !== undefined && !isDirectory(dir)) throw usage(`--shared-path ${dir}: not a folder (give the folder every worker mounts)`);
  return dir;
}

/** Runs `osdface queue` with the arguments after `queue`; returns the exit code. */
export async function main(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  const name = `osdface queue${sub && ['submit', 'worker', 'collect', 'status'].includes(sub) ? ` ${sub}` : ''}`;
  const log = (msg: string) => process.stderr.write(`${name}: ${msg}\n`);
  let redis: Redis | null = null;
  const open = async (url: string, persistent: boolean): Promise<Redis> => (redis = await connect(url, persistent));
  try {
    switch (sub) {
      case 'submit': return await submitCommand(rest, open, log);
      case 'worker': return await workerCommand(rest, open, log);
      case 'collect': return await collectCommand(rest, open, log);
      case 'status': return await statusCommand(rest, open);
      case '--help': case '-h': case 'help': case undefined:
        if (sub === undefined) throw usage('no queue command given (submit, worker, collect or status)');
        process.stdout.write(QUEUE_USAGE);
        return 0;
      default:
        throw usage(sub.startsWith('-') ? `unknown option ${sub}` : `unknown queue command '${sub}' (submit, worker, collect or status)`);
    }
  } catch (e) {
    if (e instanceof ArgumentError) {
      return reportUsageError(name.replace(/^osdface /, ''), e.message);
    }
    if (e instanceof ModelDirError) {
      log(e.message);
      return 2;
    }
    log(e instanceof Error ? e.message : String(e));
    return 1;
  } finally {
    (redis as Redis | null)?.disconnect();
  }
}

type Open = (url: string, persistent: boolean) => Promise<Redis>;

async function submitCommand(argv: string[], open: Open, log: (m: string) => void): Promise<number> {
  const { flags, positionals } = parseFlags(argv, SUBMIT_FLAGS);
  if (flags.has('help')) return help();
  const { redisUrl, queue } = common(flags);
  const settings = parseRestoreSettings(flags, usage);
  if (settings.latent === 'sample' && settings.seed === undefined) {
    throw usage('--latent sample needs --seed in a queue: the seed is part of each job id, so a random one would make the same images new jobs on every submit');
  }
  if (positionals.length === 0) throw usage('no input images given');
  const sharedPath = sharedDir(flags);
  const inlineLimit = positive(flags, 'inline-limit', 16) * 1e6;
  const attempts = positive(flags, 'attempts', 3);
  const backoffMs = Math.round(((flags.get('backoff') as number | undefined) ?? 10) * 1000);
  if (backoffMs < 0) throw usage('--backoff must be 0 or more seconds');
  const resultTtl = positive(flags, 'result-ttl', 7 * 24 * 3600);
  const items = expandInputs(positionals);
  const redis = await open(redisUrl, false);
  const { submit } = await import('../queue/submit.js');
  const s = await submit(redis, items, {
    redisUrl, queue, settings, inlineLimit, attempts, backoffMs, resultTtl, retryFailed: flags.has('retry-failed'),
    ...(sharedPath !== undefined ? { sharedPath } : {}),
  });
  for (const e of s.entries) {
    if (e.status === 'rejected') log(`rejected ${e.input}: ${e.error}`);
    else if (e.status === 'failed-before') log(`failed before ${e.input} (job ${e.id}): ${e.error} (submit with --retry-failed to try again)`);
  }
  const parts = [`enqueued ${s.enqueued}`, `already done ${s.done}`, `already pending ${s.pending}`];
  if (s.failedBefore > 0) parts.push(`already failed ${s.failedBefore}`);
  if (s.retried > 0) parts.push(`retried ${s.retried}`);
  if (s.rejected > 0) parts.push(`rejected ${s.rejected}`);
  log(`queue ${queue}: ${parts.join(', ')}`);
  if (flags.has('json')) {
    const { entries, ...counts } = s;
    process.stdout.write(`${JSON.stringify({ ...counts, images: entries }, null, 2)}\n`);
  }
  return s.rejected > 0 ? 1 : 0;
}

async function workerCommand(argv: string[], open: Open, log: (m: string) => void): Promise<number> {
  const { flags, positionals } = parseFlags(argv, WORKER_FLAGS);
  if (flags.has('help')) return help();
  if (positionals.length > 0) throw usage(`unexpected argument '${positionals[0]}' (a worker takes its images from the queue)`);
  const { redisUrl, queue } = common(flags);
  const noRestore = flags.has('no-restore');
  if (noRestore && flags.has('model')) throw usage('--no-restore runs without a model; leave out --model');
  const modelDir = noRestore ? '' : resolveModelDir(flags.get('model') as string | undefined);
  const threads = flags.has('threads') ? positive(flags, 'threads', 1) : undefined;
  const sharedPath = sharedDir(flags);
  await open(redisUrl, false); // Redis is reachable (the worker itself rides out later outages)
  const { runWorker } = await import('../queue/worker.js');
  return runWorker({
    redisUrl, queue, modelDir, noRestore, log,
    concurrency: positive(flags, 'concurrency', 1),
    lockMs: Math.round(positive(flags, 'lock', 30) * 1000),
    stalledIntervalMs: Math.round(positive(flags, 'stall-check', 30) * 1000),
    ...(threads !== undefined ? { threads } : {}),
    ...(sharedPath !== undefined ? { sharedPath } : {}),
  });
}

async function collectCommand(argv: string[], open: Open, log: (m: string) => void): Promise<number> {
  const { flags, positionals } = parseFlags(argv, COLLECT_FLAGS);
  if (flags.has('help')) return help();
  if (positionals.length > 0) throw usage(`unexpected argument '${positionals[0]}' (the folder is given with -o)`);
  const { redisUrl, queue } = common(flags);
  const outDir = flags.get('out') as string | undefined;
  if (outDir === undefined) throw usage('-o <out dir> is required: the folder the restored images go to');
  if (fs.existsSync(outDir) && !isDirectory(outDir)) throw usage(`-o ${outDir} is a file; give a folder (it is created if missing)`);
  const wait = flags.has('wait');
  if (flags.has('interval') && !wait) throw usage('--interval applies to --wait');
  const intervalMs = Math.round(positive(flags, 'interval', 1) * 1000);
  const redis = await open(redisUrl, wait);
  const { collect } = await import('../queue/collect.js');
  const s = await collect(redis, { redisUrl, queue, outDir: path.resolve(outDir), wait, keep: flags.has('keep'), intervalMs, log });
  log(`${s.written} written, ${s.already} already there${s.gone.length > 0 ? `, ${s.gone.length} collected before (bytes gone from Redis)` : ''}${s.conflicts.length > 0 ? `, ${s.conflicts.length} left alone (other bytes there)` : ''}; queue ${queue}: ${s.failed} failed, ${s.pending} pending${s.failed > 0 ? ' (osdface queue status lists the failures)' : ''}`);
  if (flags.has('json')) process.stdout.write(`${JSON.stringify({ queue, out: path.resolve(outDir), ...s }, null, 2)}\n`);
  return s.conflicts.length > 0 || s.gone.length > 0 || (wait && s.failed > 0) ? 1 : 0;
}

async function statusCommand(argv: string[], open: Open): Promise<number> {
  const { flags, positionals } = parseFlags(argv, STATUS_FLAGS);
  if (flags.has('help')) return help();
  if (positionals.length > 0) throw usage(`unexpected argument '${positionals[0]}'`);
  const { redisUrl, queue } = common(flags);
  const redis = await open(redisUrl, false);
  const { queueStatus } = await import('../queue/status.js');
  const st = await queueStatus(redis, redisUrl, queue);
  if (flags.has('json')) {
    process.stdout.write(`${JSON.stringify(st, null, 2)}\n`);
    return 0;
  }
  const c = st.counts;
  const lines = [
    `queue ${queue}: ${c.waiting} waiting, ${c.active} in progress, ${c.delayed} waiting to retry, ${c.failed} failed; ${c.results} results stored`,
  ];
  if (st.failures.length > 0) {
    lines.push('failed:');
    for (const f of st.failures) lines.push(`  ${f.input} (job ${f.id}, ${f.attempts} attempt${f.attempts === 1 ? '' : 's'}): ${f.reason}`);
    if (st.failuresLeftOut > 0) lines.push(`  ... and ${st.failuresLeftOut} more`);
  }
  lines.push(`workers connected: ${st.workers.length}`);
  for (const w of st.workers) lines.push(`  ${w.name || '(unnamed)'} from ${w.addr}, connected ${w.ageSeconds} s, idle ${w.idleSeconds} s`);
  process.stdout.write(`${lines.join('\n')}\n`);
  return 0;
}

function help(): number {
  process.stdout.write(QUEUE_USAGE);
  return 0;
}
