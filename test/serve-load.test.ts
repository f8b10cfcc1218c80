/**
 * `osdface serve` under load and failure (in this process, tiny parity-a model): 16 clients
 * sending 64 requests to 2 workers with a queue of 8 (every answer 200 or 503, nothing hangs, the
 * queue never exceeds its bound); a worker killed mid-request (that request gets a clean 500, the
 * pool replaces the worker, the next requests are served); and, with workers that have not loaded
 * yet (so nothing runs and every step is deterministic): a full queue refused at once with 503 and
 * Retry-After, a client that goes away dropped from the queue, and a request over --timeout.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import type { AddressInfo } from 'node:net';
import { startServer, type RunningServer } from '../src/server/server.js';
import { WorkerPool } from '../src/server/pool.js';
import { buildApp } from '../src/server/app.js';
import { modelBytes, poolSize, workerMemoryEstimate } from '../src/server/sizing.js';
import { convertParityA, noFixtures } from './helpers.js';
import { get, makeInputs, metric, restore, type Inputs } from './serve-helpers.js';

const skip = noFixtures;
let work: string;
let modelDir: string;
let inputs: Inputs;
const quiet = () => new Writable({ write(_c, _e, done) { done(); } });

before(async () => {
  if (skip) return;
  work = fs.mkdtempSync(path.join(os.tmpdir(), 'osdface-serve-load-'));
  modelDir = path.join(work, 'model');
  await convertParityA(modelDir);
  inputs = await makeInputs();
});

after(() => {
  if (!skip) fs.rmSync(work, { recursive: true, force: true });
});

test('16 clients, 64 requests, 2 workers, queue 8: every answer is 200 or 503 (with Retry-After), the queue stays bounded; then a worker killed mid-request', { skip }, async (t) => {
  const server: RunningServer = await startServer({ modelDir, port: 0, workers: 2, threadsPerWorker: 1, queue: 8, lowMemory: false, logStream: quiet() });
  t.after(() => server.close());
  let maxQueue = 0;
  server.pool.on('queued', () => { maxQueue = Math.max(maxQueue, server.pool.queueDepth); });

  const statuses: number[] = [];
  let next = 0;
  const client = async () => {
    while (next < 64) {
      next++;
      const r = await restore(server.url, inputs.face, { mode: 'aligned' });
      statuses.push(r.status);
      if (r.status === 503) {
        assert.equal(r.json().error.code, 'queue_full');
        assert.equal(r.headers.get('retry-after'), '1');
      } else {
        assert.equal(r.status, 200, r.body.toString().slice(0, 300));
      }
    }
  };
  await Promise.all(Array.from({ length: 16 }, client));
  const ok = statuses.filter((s) => s === 200).length;
  const refused = statuses.filter((s) => s === 503).length;
  t.diagnostic(`${ok} answered 200, ${refused} refused 503; deepest queue ${maxQueue}`);
  assert.equal(statuses.length, 64);
  assert.equal(ok + refused, 64);
  assert.ok(ok >= 10, 'at least the workers and the queue were served');
  assert.ok(maxQueue <= 8, `queue reached ${maxQueue}`);
  const text = (await get(server.url, '/metrics')).body.toString();
  assert.equal(metric(text, 'osdface_http_requests_total', 'route="/v1/restore",status="200"'), ok);
  assert.equal(metric(text, 'osdface_http_requests_total', 'route="/v1/restore",status="503"'), refused);
  assert.equal(metric(text, 'osdface_faces_restored_total'), ok);
  assert.equal(metric(text, 'osdface_queue_depth'), 0);

  // Kill (SIGKILL) the worker process that picks up the next request, while it runs it.
  server.pool.once('start', (_job: number, pid: number) => { process.kill(pid, 'SIGKILL'); });
  const replaced = once(server.pool, 'worker-ready');
  const crashed = await restore(server.url, inputs.bigFace, { mode: 'aligned' });
  assert.equal(crashed.status, 500);
  assert.equal(crashed.json().error.code, 'worker_crashed');
  assert.match(crashed.json().error.message, /the worker restoring this request stopped .*it has been replaced, retry/);
  // The service keeps serving, on the other worker and then on the replacement.
  const again = await Promise.all(Array.from({ length: 4 }, () => restore(server.url, inputs.face, { mode: 'aligned' })));
  assert.deepEqual(again.map((r) => r.status), [200, 200, 200, 200]);
  await replaced;
  const ready = (await get(server.url, '/readyz')).json();
  assert.equal(ready.workers, 2);
  assert.equal(metric((await get(server.url, '/metrics')).body.toString(), 'osdface_worker_restarts_total'), 1);
});

test('a full queue is refused at once with 503 + Retry-After; a client that goes away is dropped from the queue; over --timeout is 504', { skip }, async (t) => {
  // The workers start only when the test says so: until then every request waits in the queue.
  const pool = new WorkerPool({ size: 1, queueLimit: 2, timeoutMs: 600_000, modelDir, threadsPerWorker: 1, lowMemory: false });
  const { app } = await buildApp({ pool, maxBodyBytes: 1 << 20, maxPixels: 4e6, logStream: quiet() });
  await app.listen({ host: '127.0.0.1', port: 0 });
  t.after(async () => { await pool.drain(0); await app.close(); });
  const base = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
  let started = 0;
  pool.on('start', () => { started++; });

  const queued = () => once(pool, 'queued');
  let q = queued();
  const first = restore(base, inputs.face, { mode: 'aligned' });
  await q;
  q = queued();
  const leaving = new AbortController();
  const second = fetch(`${base}/v1/restore?mode=aligned`, { method: 'POST', body: new Uint8Array(inputs.face), headers: { 'content-type': 'image/png' }, signal: leaving.signal });
  await q;
  assert.equal(pool.queueDepth, 2);

  const full = await restore(base, inputs.face, { mode: 'aligned' });
  assert.equal(full.status, 503);
  assert.equal(full.headers.get('retry-after'), '1');
  assert.equal(full.json().error.code, 'queue_full');
  const notReady = await get(base, '/readyz');
  assert.equal(notReady.status, 503);
  assert.equal(notReady.json().reason, 'no worker has loaded the model yet');

  const dropped = once(pool, 'dropped');
  leaving.abort();
  await assert.rejects(second);
  await dropped;
  assert.equal(pool.queueDepth, 1, 'the request of the client that left is out of the queue');

  await pool.start();
  const r = await first;
  assert.equal(r.status, 200);
  assert.equal(started, 1, 'only the request whose client stayed was run');
  assert.equal((await get(base, '/readyz')).status, 200);

  // --timeout, for a request that never gets a worker
  const slow = new WorkerPool({ size: 1, queueLimit: 2, timeoutMs: 200, modelDir, threadsPerWorker: 1 });
  const built = await buildApp({ pool: slow, maxBodyBytes: 1 << 20, maxPixels: 4e6, logStream: quiet() });
  await built.app.listen({ host: '127.0.0.1', port: 0 });
  t.after(async () => { await slow.drain(0); await built.app.close(); });
  const late = await restore(`http://127.0.0.1:${(built.app.server.address() as AddressInfo).port}`, inputs.face, { mode: 'aligned' });
  assert.equal(late.status, 504);
  assert.equal(late.json().error.code, 'timeout');
  assert.match(late.json().error.message, /waited in the queue longer than the 0\.2 s limit \(--timeout\)/);
});

test('pool size: from --workers, else from the cores and the memory a worker needs', { skip }, () => {
  const perWorker = workerMemoryEstimate(modelBytes(modelDir));
  assert.deepEqual(poolSize(modelDir, 3, undefined, 8, 1e12), { workers: 3, threadsPerWorker: 2, reason: '--workers' });
  assert.equal(poolSize(modelDir, undefined, undefined, 8, 100 * perWorker).workers, 8, 'memory for many: one per core');
  assert.equal(poolSize(modelDir, undefined, 2, 8, 100 * perWorker).workers, 4, 'two threads each: half as many');
  const tight = poolSize(modelDir, undefined, undefined, 8, 2.5 * perWorker);
  assert.deepEqual([tight.workers, tight.threadsPerWorker], [2, 4], 'memory for two: two workers with the cores shared out');
  assert.equal(poolSize(modelDir, undefined, undefined, 8, 0.1 * perWorker).workers, 1, 'always at least one');
});
