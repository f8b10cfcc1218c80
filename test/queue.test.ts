/**
 * `osdface queue` end to end against a real Redis: a redis-server (Debian package redis-server)
 * started here on a free 127.0.0.1 port in a temporary folder, with appendonly persistence; two
 * worker processes on the tiny parity-a model; 30 small aligned crops and one corrupt image.
 * One run goes through everything a user depends on: a second submit adds nothing, a worker
 * killed with -9 in the middle of a job loses nothing (the other redoes it), Redis stopped and
 * started again does not stop the run, the corrupt image fails with its reason after its attempts,
 * every output is byte-identical to `osdface restore`, SIGTERM finishes the job in progress, and
 * afterwards only the documented keys are left, with the documented expiry.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess, type SpawnSyncReturns } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Redis } from 'ioredis';
import sharp from 'sharp';
import { convertParityA, noFixtures, repoRoot } from './helpers.js';
import { freePort, startRedisServer, type RedisServer } from '../src/queue/redis_server.js';

const cli = path.join(repoRoot, 'dist/src/cli/main.js');
const haveRedis = spawnSync('sh', ['-c', 'command -v redis-server'], { encoding: 'utf8' }).status === 0;
const skip = noFixtures || (haveRedis ? false : 'redis-server is not installed (Debian: apt-get install redis-server)');

let work = '';
let modelDir = '';

before(async () => {
  if (skip) return;
  work = fs.mkdtempSync(path.join(os.tmpdir(), 'osdface-queue-'));
  modelDir = path.join(work, 'model');
  await convertParityA(modelDir);
});

after(() => {
  if (work) fs.rmSync(work, { recursive: true, force: true });
});

function osdface(args: string[], env: NodeJS.ProcessEnv = {}): SpawnSyncReturns<string> {
  return spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8', env: { ...process.env, ...env }, timeout: 120_000 });
}

/** A spawned osdface process with its stderr collected, and a way to wait for a line. */
class Proc {
  readonly p: ChildProcess;
  stderr = '';
  stdout = '';
  readonly exited: Promise<number | null>;
  private waiters: { re: RegExp; resolve: (m: RegExpMatchArray) => void }[] = [];

  constructor(args: string[], env: NodeJS.ProcessEnv = {}) {
    this.p = spawn(process.execPath, [cli, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    this.p.stdout!.on('data', (b: Buffer) => { this.stdout += b.toString(); });
    this.p.stderr!.on('data', (b: Buffer) => {
      this.stderr += b.toString();
      this.waiters = this.waiters.filter((w) => {
        const m = this.stderr.match(w.re);
        if (m) w.resolve(m);
        return !m;
      });
    });
    this.exited = new Promise((r) => this.p.once('exit', (code) => r(code)));
  }

  /** The first match of `re` in stderr (now or later). */
  waitFor(re: RegExp, what: string, ms = 90_000): Promise<RegExpMatchArray> {
    const m = this.stderr.match(re);
    if (m) return Promise.resolve(m);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`gave up waiting for ${what}; stderr:\n${this.stderr}`)), ms);
      this.waiters.push({ re, resolve: (x) => { clearTimeout(timer); resolve(x); } });
    });
  }

  kill(sig: NodeJS.Signals): void {
    if (this.p.exitCode === null && this.p.signalCode === null) this.p.kill(sig);
  }
}

async function until(check: () => Promise<boolean>, what: string, ms = 90_000): Promise<void> {
  const t0 = Date.now();
  while (!(await check())) {
    if (Date.now() - t0 > ms) throw new Error(`gave up waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** 30 distinct 16x16 png crops in `dir`. */
async function makeCrops(dir: string): Promise<string[]> {
  fs.mkdirSync(dir, { recursive: true });
  const names: string[] = [];
  for (let i = 0; i < 30; i++) {
    const data = Buffer.alloc(16 * 16 * 3);
    for (let j = 0; j < data.length; j++) data[j] = (j * (i + 3) * 7 + i * 31) % 256;
    const name = `face${String(i).padStart(2, '0')}.png`;
    await sharp(data, { raw: { width: 16, height: 16, channels: 3 } }).png().toFile(path.join(dir, name));
    names.push(name);
  }
  return names;
}

const json = <T>(r: SpawnSyncReturns<string>): T => {
  try {
    return JSON.parse(r.stdout) as T;
  } catch {
    throw new Error(`not JSON (exit ${r.status}):\n${r.stdout}\n${r.stderr}`);
  }
};

interface SubmitJson { enqueued: number; done: number; pending: number; failedBefore: number; rejected: number; images: { input: string; id?: string; status: string }[] }

/** Every key a finished run may leave, as the README's "Redis keys" lists them. */
const DOCUMENTED_KEYS = [
  /^bull:osdface:(meta|id|events|stalled-check|marker|failed)$/,
  /^bull:osdface:img-[0-9a-f]{40}$/,
  /^osdface:osdface:results$/,
  /^osdface:osdface:result:img-[0-9a-f]{40}$/,
];

test('queue: 30 images, 2 workers, kill -9, Redis restart, a corrupt image, submitted twice: all outputs byte-identical to restore', { skip, timeout: 240_000 }, async (t) => {
  const dir = path.join(work, 'run');
  const crops = path.join(dir, 'crops');
  const names = await makeCrops(crops);
  fs.mkdirSync(path.join(dir, 'bad'));
  const broken = path.join(dir, 'bad', 'broken.png');
  fs.writeFileSync(broken, fs.readFileSync(path.join(crops, names[0]!)).subarray(0, 40));
  const redisDir = path.join(dir, 'redis');
  fs.mkdirSync(redisDir);
  const port = await freePort();
  const url = `redis://127.0.0.1:${port}`;
  let redisServer: RedisServer = await startRedisServer(redisDir, port);
  const workers: Proc[] = [];
  const redis = new Redis(url, { maxRetriesPerRequest: null, lazyConnect: true });
  redis.on('error', () => {});
  t.after(async () => {
    for (const w of workers) w.kill('SIGKILL');
    redis.disconnect();
    await redisServer.stop();
  });
  await redis.connect();

  // Submit twice: the second adds nothing.
  const submitArgs = ['queue', 'submit', crops, broken, '--redis', url, '--aligned', '--attempts', '2', '--backoff', '0.2', '--json'];
  const s1 = osdface(submitArgs);
  assert.equal(s1.status, 0, s1.stderr);
  const first = json<SubmitJson>(s1);
  assert.deepEqual([first.enqueued, first.done, first.pending, first.rejected], [31, 0, 0, 0]);
  assert.match(s1.stderr, /enqueued 31, already done 0, already pending 0/);
  const s2 = osdface(submitArgs);
  assert.equal(s2.status, 0, s2.stderr);
  assert.deepEqual([json<SubmitJson>(s2).enqueued, json<SubmitJson>(s2).pending], [0, 31]);
  assert.match(s2.stderr, /enqueued 0, already done 0, already pending 31/);
  assert.equal(await redis.llen('bull:osdface:wait'), 31, 'one job per image, none twice');
  const brokenId = first.images.find((i) => i.input === broken)!.id!;

  // Two workers; a pause at the start of each job leaves time to act while one is in progress.
  const workerArgs = ['queue', 'worker', '--redis', url, '--model', modelDir, '--threads', '1', '--lock', '2', '--stall-check', '1'];
  const env = { OSDFACE_QUEUE_TEST_DELAY_MS: '300' };
  const a = new Proc(workerArgs, env);
  workers.push(a);
  const killed = (await a.waitFor(/started (img-[0-9a-f]{40})/, 'worker A to start a job'))[1]!;
  a.kill('SIGKILL'); // in the middle of its first job (it is still loading the model, or in the pause)
  assert.equal(await a.exited, null);
  const b = new Proc(workerArgs, env);
  workers.push(b);
  await b.waitFor(/worker (\S+) on queue osdface/, 'worker B to start');
  const bName = b.stderr.match(/worker (\S+) on queue osdface/)![1]!;

  // Stop Redis and start it again while B works.
  await until(async () => (await redis.zcard('osdface:osdface:results')) >= 5, '5 results');
  const runId = async () => /run_id:(\w+)/.exec(await redis.info('server'))![1]!;
  const before = await runId();
  assert.ok((await redis.zcard('osdface:osdface:results')) < 30, 'Redis is restarted in the middle of the run');
  await redisServer.stop();
  redisServer = await startRedisServer(redisDir, port);
  assert.notEqual(await runId(), before, 'a new redis-server process');

  const collect = new Proc(['queue', 'collect', '--redis', url, '-o', path.join(dir, 'out'), '--wait', '--interval', '0.5', '--json']);
  const collectCode = await collect.exited;
  assert.equal(collectCode, 1, `collect --wait exits 1 when a job failed:\n${collect.stderr}`);
  const summary = JSON.parse(collect.stdout) as { written: number; failed: number; pending: number };
  assert.deepEqual([summary.written, summary.failed, summary.pending], [30, 1, 0], collect.stderr);
  assert.match(collect.stderr, /done, 1 failed, 0 pending .* images\/s {2}ETA/, 'progress lines: done / failed / pending, images/s, ETA');

  // The killed job was redone by B.
  const killedMeta = JSON.parse((await redis.hget(`osdface:osdface:result:${killed}`, 'meta'))!) as { worker: string };
  assert.equal(killedMeta.worker, bName, 'the job killed with worker A was restored by worker B');
  // Collected results keep only their summary in Redis.
  assert.deepEqual(await redis.hkeys(`osdface:osdface:result:${killed}`), ['meta'], 'collect frees the bytes it wrote');

  // Byte-identical to `osdface restore`.
  const ref = osdface(['restore', crops, '-o', path.join(dir, 'ref'), '--model', modelDir, '--aligned', '--threads', '1']);
  assert.equal(ref.status, 0, ref.stderr);
  for (const n of names) {
    assert.ok(fs.readFileSync(path.join(dir, 'out', n)).equals(fs.readFileSync(path.join(dir, 'ref', n))), `${n}: queue output differs from osdface restore`);
  }
  assert.deepEqual(fs.readdirSync(path.join(dir, 'out')).sort(), names, 'only the outputs, no temporary files left');

  // The corrupt image failed after its 2 attempts, with its reason.
  const st = osdface(['queue', 'status', '--redis', url, '--json']);
  assert.equal(st.status, 0, st.stderr);
  const status = json<{ counts: { failed: number; pending: number; results: number }; failures: { id: string; input: string; reason: string; attempts: number }[]; workers: { name: string }[] }>(st);
  assert.deepEqual([status.counts.failed, status.counts.pending, status.counts.results], [1, 0, 30]);
  assert.equal(status.failures[0]!.id, brokenId);
  assert.equal(status.failures[0]!.attempts, 2);
  assert.match(status.failures[0]!.reason, /broken\.png: cannot read image/);
  assert.deepEqual(status.workers.map((w) => w.name), [bName], 'the worker connected now');
  assert.match(osdface(['queue', 'status', '--redis', url]).stdout, /broken\.png .*2 attempts\): .*cannot read image/);

  // A third submit: everything done or failed, nothing new.
  const s3 = osdface(submitArgs);
  assert.deepEqual([json<SubmitJson>(s3).enqueued, json<SubmitJson>(s3).done, json<SubmitJson>(s3).failedBefore], [0, 30, 1]);
  assert.match(s3.stderr, /enqueued 0, already done 30, already pending 0, already failed 1/);
  // Collecting again writes nothing: every output is already there.
  const again = osdface(['queue', 'collect', '--redis', url, '-o', path.join(dir, 'out'), '--json']);
  assert.equal(again.status, 0, again.stderr);
  assert.deepEqual([json<{ written: number; already: number }>(again).written, json<{ written: number; already: number }>(again).already], [0, 30]);

  // SIGTERM in the middle of a job: it finishes, then the worker exits 0. Its result lives 2 s.
  const s4 = osdface(['queue', 'submit', path.join(crops, names[0]!), '--redis', url, '--aligned', '--format', 'jpg', '--result-ttl', '2', '--json']);
  assert.equal(json<SubmitJson>(s4).enqueued, 1, s4.stderr);
  const lastId = json<SubmitJson>(s4).images[0]!.id!;
  await b.waitFor(new RegExp(`started ${lastId}`), 'worker B to start the last job');
  b.kill('SIGTERM');
  assert.equal(await b.exited, 0, b.stderr);
  assert.match(b.stderr, new RegExp(`SIGTERM: finishing[^]*done ${lastId}[^]*stopped`));
  await until(async () => (await redis.exists(`osdface:osdface:result:${lastId}`)) === 0, 'the 2 s result to expire', 30_000);

  // Only the documented keys are left; results expire within the default 7 days.
  const keys = await redis.keys('*');
  const stray = keys.filter((k) => !DOCUMENTED_KEYS.some((re) => re.test(k)));
  assert.deepEqual(stray, [], 'keys beyond those documented');
  assert.ok(keys.includes(`bull:osdface:${brokenId}`), 'the failed job is kept, with its reason');
  assert.equal(keys.filter((k) => /^bull:osdface:img-/.test(k)).length, 1, 'no job record is kept for finished jobs');
  const resultKeys = keys.filter((k) => k.startsWith('osdface:osdface:result:'));
  assert.equal(resultKeys.length, 30);
  for (const k of resultKeys) {
    const ttl = await redis.ttl(k);
    assert.ok(ttl > 0 && ttl <= 604800, `${k} expires (TTL ${ttl} s)`);
  }
  const indexTtl = await redis.ttl('osdface:osdface:results');
  assert.ok(indexTtl > 0 && indexTtl <= 604800, `the index expires with the last result (TTL ${indexTtl} s)`);
  assert.ok(fs.readdirSync(redisDir).some((f) => f.startsWith('appendonly')), 'Redis ran with appendonly persistence');
});

test('queue: usage errors and an unreachable Redis are reported clearly', { skip }, async () => {
  const noRedis = osdface(['queue', 'submit', 'x.png']);
  assert.equal(noRedis.status, 2);
  assert.match(noRedis.stderr, /--redis <url> is required/);
  const sample = osdface(['queue', 'submit', 'x.png', '--redis', 'redis://127.0.0.1:1', '--latent', 'sample']);
  assert.equal(sample.status, 2);
  assert.match(sample.stderr, /--latent sample needs --seed/);
  const badUrl = osdface(['queue', 'status', '--redis', 'http://x']);
  assert.equal(badUrl.status, 2);
  assert.match(badUrl.stderr, /redis:\/\/ or rediss:\/\/ URL/);
  const port = await freePort();
  const down = osdface(['queue', 'status', '--redis', `redis://127.0.0.1:${port}`]);
  assert.equal(down.status, 1);
  assert.match(down.stderr, new RegExp(`cannot reach Redis at redis://127.0.0.1:${port}`));
});

test('queue: --shared-path sends paths, not bytes; each worker reads its own mount point and refuses a changed file', { skip, timeout: 120_000 }, async (t) => {
  const dir = path.join(work, 'shared');
  const storage = path.join(dir, 'storage');
  fs.mkdirSync(path.join(storage, 'photos'), { recursive: true });
  const mount = path.join(dir, 'mnt'); // the same storage, mounted elsewhere on the worker's machine
  fs.symlinkSync(storage, mount);
  for (const n of ['a', 'b', 'c']) fs.writeFileSync(path.join(storage, 'photos', `${n}.png`), `bytes of ${n}`);
  const outside = path.join(dir, 'outside.png');
  fs.writeFileSync(outside, 'not on the shared storage');
  const redisDir = path.join(dir, 'redis');
  fs.mkdirSync(redisDir);
  const server = await startRedisServer(redisDir, await freePort());
  const redis = new Redis(server.url, { maxRetriesPerRequest: null });
  redis.on('error', () => {});
  let worker: Proc | null = null;
  t.after(async () => {
    worker?.kill('SIGKILL');
    redis.disconnect();
    await server.stop();
  });

  const sub = osdface(['queue', 'submit', path.join(storage, 'photos'), outside, '--redis', server.url, '--shared-path', storage, '--attempts', '3', '--json']);
  assert.equal(sub.status, 1, 'an input outside --shared-path is rejected');
  const s = json<SubmitJson>(sub);
  assert.deepEqual([s.enqueued, s.rejected], [3, 1]);
  assert.match(sub.stderr, /rejected .*outside\.png: not under --shared-path/);
  const jobs = await redis.lrange('bull:osdface:wait', 0, -1);
  for (const id of jobs) {
    const data = JSON.parse((await redis.hget(`bull:osdface:${id}`, 'data'))!) as { shared?: string; image?: string };
    assert.equal(data.image, undefined, 'no image bytes in the job');
    assert.match(data.shared!, /^photos\/[abc]\.png$/);
  }
  fs.writeFileSync(path.join(storage, 'photos', 'c.png'), 'changed after submit');

  worker = new Proc(['queue', 'worker', '--redis', server.url, '--shared-path', mount, '--no-restore']);
  const collect = osdface(['queue', 'collect', '--redis', server.url, '-o', path.join(dir, 'out'), '--wait', '--interval', '0.2', '--json']);
  assert.equal(collect.status, 1, collect.stderr);
  assert.deepEqual(fs.readdirSync(path.join(dir, 'out')).sort(), ['a.png', 'b.png']);
  assert.equal(fs.readFileSync(path.join(dir, 'out', 'a.png'), 'utf8'), 'bytes of a', '--no-restore: the result is the input');
  const st = json<{ failures: { input: string; reason: string; attempts: number }[] }>(osdface(['queue', 'status', '--redis', server.url, '--json']));
  assert.equal(st.failures.length, 1);
  assert.match(st.failures[0]!.reason, /c\.png changed since it was submitted/);
  assert.equal(st.failures[0]!.attempts, 1, 'a changed file is not retried');
  worker.kill('SIGTERM');
  assert.equal(await worker.exited, 0);
});
