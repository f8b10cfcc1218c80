/**
 * `osdface serve` as a process (the command line, tiny parity-a model): the API key from
 * --api-key-file (every route but /healthz needs it, a missing or wrong key gets 401), and
 * SIGTERM with work in flight: the requests already taken are all answered, new connections are
 * refused, and the process exits 0.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';
import { convertParityA, noFixtures, repoRoot, tempDir } from './helpers.js';
import { get, makeInputs, restore } from './serve-helpers.js';

interface LogLine { msg: string; url?: string; inFlight?: number; level: number; finished?: boolean }

test('osdface serve: API key on every route but /healthz; SIGTERM finishes the work in flight and exits 0', { skip: noFixtures, timeout: 120_000 }, async (t) => {
  const dir = tempDir(t, 'osdface-serve-shutdown-');
  const modelDir = path.join(dir, 'model');
  await convertParityA(modelDir);
  const inputs = await makeInputs();
  const keyFile = path.join(dir, 'key');
  const key = 'k3y-Of-The-Test_0123456789';
  fs.writeFileSync(keyFile, `${key}\n`);

  const child = spawn(process.execPath, [
    path.join(repoRoot, 'dist/src/cli/main.js'), 'serve', '--model', modelDir, '--port', '0', '--workers', '1',
    '--threads-per-worker', '1', '--no-low-memory', '--api-key-file', keyFile, '--grace', '60',
  ], { stdio: ['ignore', 'pipe', 'pipe'] });
  t.after(() => { if (child.exitCode === null) child.kill('SIGKILL'); });
  let stderr = '';
  child.stderr.on('data', (d) => { stderr += String(d); });
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const logs: LogLine[] = [];
  const waiters: [(l: LogLine) => boolean, (l: LogLine) => void][] = [];
  readline.createInterface({ input: child.stdout }).on('line', (line) => {
    const l = JSON.parse(line) as LogLine; // every line is JSON
    logs.push(l);
    for (const w of waiters.splice(0)) if (w[0](l)) w[1](l); else waiters.push(w);
  });
  const logged = (pred: (l: LogLine) => boolean) => new Promise<LogLine>((resolve, reject) => {
    const seen = logs.find(pred);
    if (seen) return resolve(seen);
    waiters.push([pred, resolve]);
    void exited.then((code) => reject(new Error(`the server exited (${code}) before logging it: ${stderr}`)));
  });
  const base = (await logged((l) => l.msg === 'ready')).url!;
  assert.match(base, /^http:\/\/127\.0\.0\.1:\d+$/, 'listens on 127.0.0.1 by default');

  // --- the API key
  const auth = { authorization: `Bearer ${key}` };
  assert.equal((await get(base, '/healthz')).status, 200, '/healthz needs no key');
  for (const route of ['/readyz', '/metrics', '/openapi.json']) {
    const none = await get(base, route);
    assert.equal(none.status, 401, route);
    assert.equal(none.json().error.code, 'unauthorized');
    assert.match(none.json().error.message, /Authorization: Bearer <key>/);
    assert.equal(none.headers.get('www-authenticate'), 'Bearer realm="osdface"');
    const wrong = await get(base, route, { authorization: `Bearer ${key}x` });
    assert.equal(wrong.status, 401, route);
    assert.match(wrong.json().error.message, /the API key is not valid/);
    assert.equal((await get(base, route, { authorization: `Bearer ${key.slice(0, -1)}` })).status, 401, 'a prefix of the key is wrong');
    assert.equal((await get(base, route, { authorization: key })).status, 401, 'the key without the Bearer scheme');
    assert.equal((await get(base, route, auth)).status, 200, route);
  }
  assert.equal((await restore(base, inputs.face, { mode: 'aligned' })).status, 401);
  assert.equal((await restore(base, inputs.face, { mode: 'aligned' }, { authorization: 'Bearer nope' })).status, 401);
  assert.equal((await get(base, '/no/such/route')).status, 401, 'unknown routes say nothing without the key');
  assert.equal((await restore(base, inputs.face, { mode: 'aligned' }, { authorization: `bearer ${key}` })).status, 200);

  // --- SIGTERM with work in flight: 6 photos on one worker
  const work = Array.from({ length: 6 }, () => restore(base, inputs.group, {}, { ...auth, 'content-type': 'image/jpeg' }));
  for (;;) {
    const r = (await get(base, '/readyz', auth)).json();
    if ((r.queued as number) >= 2) break; // one running, more waiting: work in flight
  }
  child.kill('SIGTERM');
  const answers = await Promise.all(work);
  assert.deepEqual(answers.map((a) => a.status), [200, 200, 200, 200, 200, 200], 'every request taken before SIGTERM is answered');
  assert.equal(await exited, 0, stderr);
  const down = logs.find((l) => l.msg.startsWith('shutting down'))!;
  assert.ok(down.inFlight! >= 2, `in flight at SIGTERM: ${down.inFlight}`);
  assert.equal(logs.find((l) => l.msg.startsWith('stopped'))!.finished, true);
  await assert.rejects(fetch(`${base}/healthz`), 'the port is closed');
});

test('osdface serve: --help, usage errors and an unusable model directory exit before listening', { skip: noFixtures }, (t) => {
  const dir = tempDir(t, 'osdface-serve-usage-');
  const run = (...args: string[]) => spawnSync(process.execPath, [path.join(repoRoot, 'dist/src/cli/main.js'), ...args], { encoding: 'utf8' });
  const help = run('serve', '--help');
  assert.equal(help.status, 0);
  assert.match(help.stdout, /usage: osdface serve \[options\]/);
  assert.match(help.stdout, /--api-key-file <file>/);
  assert.match(run('help', 'serve').stdout, /usage: osdface serve/);
  assert.match(run('--help').stdout, /serve {5}an HTTP service/);
  const zero = run('serve', '--model', dir, '--workers', '0');
  assert.equal(zero.status, 2);
  assert.match(zero.stderr, /--workers must be greater than 0, got 0/);
  const port = run('serve', '--model', dir, '--port', '70000');
  assert.equal(port.status, 2);
  assert.match(port.stderr, /--port must be from 0 to 65535/);
  const model = run('serve', '--model', dir, '--port', '0');
  assert.equal(model.status, 2);
  assert.match(model.stderr, new RegExp(`${dir.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}.*manifest`));
  const noKey = run('serve', '--model', dir, '--api-key-file', path.join(dir, 'missing'));
  assert.equal(noKey.status, 2);
  assert.match(noKey.stderr, /--api-key-file .*missing: cannot read it \(ENOENT\)/);
});
