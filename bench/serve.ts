/**
 * `npm run bench:serve -- [--model DIR] [--duration S] [--workers 1,2,4 | none] [--capacity R] [--no-low-memory] [--out FILE]`:
 * load on `osdface serve` over loopback with autocannon, bounded in time. For each worker count
 * (a fresh server process each, one ONNX thread per worker): throughput and p50/p95/p99 latency of
 * 512x512 aligned faces, then of a whole photo (400x225, one face restored), with two connections
 * per worker; the peak RSS of the server and its worker processes (the sum of their VmHWM); then
 * the refusal rate over capacity: 2 workers, queue 4, requests offered open-loop at 3 times the
 * measured 2-worker rate (or --capacity R times 3). The model is --model, or the packaged default
 * (resolveModelDir). Output: a markdown table on stdout, the rows as JSON with --out.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import autocannon from 'autocannon';
import sharp from 'sharp';
import { parseFlags } from '../src/cli/args.js';
import { resolveModelDir } from '../src/pipeline/default_model.js';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const shared = path.resolve(repoRoot, '../shared');

interface Server { child: ChildProcess; url: string; stop(): Promise<void> }

async function startServer(modelDir: string, args: string[]): Promise<Server> {
  const child = spawn(process.execPath, [path.join(repoRoot, 'dist/src/cli/main.js'), 'serve', '--model', modelDir, '--port', '0', '--log-level', 'info', ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
  const exited = new Promise<void>((resolve) => child.on('exit', (code, signal) => {
    if (code !== 0) process.stderr.write(`bench:serve: the server (${args.join(' ')}) exited with ${code ?? signal}\n`);
    resolve();
  }));
  const url = await new Promise<string>((resolve, reject) => {
    const rl = readline.createInterface({ input: child.stdout! });
    rl.on('line', (line) => {
      try {
        const l = JSON.parse(line) as { url?: string; msg?: string };
        if (l.msg === 'ready' && l.url) resolve(l.url);
      } catch { /* not JSON */ }
    });
    void exited.then(() => reject(new Error('the server exited before it was ready')));
  });
  return {
    child, url,
    stop: async () => { child.kill('SIGTERM'); await exited; },
  };
}

/** A /proc/<pid>/status field in kB (0 when the process is gone). */
function statusKb(pid: number, field: 'VmHWM' | 'VmRSS'): number {
  try {
    const m = new RegExp(`${field}:\\s+(\\d+) kB`).exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : 0;
  } catch {
    return 0;
  }
}

/** The server and its worker processes. */
function processTree(pid: number): number[] {
  try {
    const kids = fs.readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
    return [pid, ...kids];
  } catch {
    return [pid];
  }
}

/** Peak RSS of the server plus its workers: the sum of each process's own peak (VmHWM), MB. */
function peakRssMb(pid: number): number {
  return Math.round(processTree(pid).reduce((n, p) => n + statusKb(p, 'VmHWM'), 0) / 1024);
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

interface LoadResult { ok: number; refused: number; other: number; rps: number; p50: number; p95: number; p99: number; seconds: number }

async function load(url: string, body: Buffer, contentType: string, connections: number, run: { duration: number } | { amount: number }): Promise<LoadResult> {
  const latencies: number[] = [];
  let ok = 0;
  let refused = 0;
  let other = 0;
  let done!: (r: autocannon.Result) => void;
  let fail!: (e: Error) => void;
  const finished = new Promise<autocannon.Result>((resolve, reject) => { done = resolve; fail = reject; });
  const inst = autocannon({ url, method: 'POST', body, headers: { 'content-type': contentType }, connections, ...run, timeout: 600 }, (err, r) => (err ? fail(err) : done(r)));
  inst.on('response', (_client: unknown, status: number, _bytes: number, ms: number) => {
    if (status === 200) {
      ok++;
      latencies.push(ms);
    } else if (status === 503) refused++;
    else other++;
  });
  const res = await finished;
  latencies.sort((a, b) => a - b);
  const seconds = res.duration;
  return { ok, refused, other, rps: ok / seconds, p50: percentile(latencies, 50), p95: percentile(latencies, 95), p99: percentile(latencies, 99), seconds };
}

/**
 * Open-loop load: a request every 1/rate seconds for `duration` seconds, whatever the answers (as
 * independent clients arrive), so the offered rate stays above capacity; closed-loop autocannon
 * connections would slow down to the service's pace, or spin on instant 503s.
 */
async function offer(url: string, body: Buffer, contentType: string, rate: number, duration: number): Promise<LoadResult> {
  const latencies: number[] = [];
  let ok = 0;
  let refused = 0;
  let other = 0;
  const sent: Promise<void>[] = [];
  const t0 = performance.now();
  for (let k = 0; k < Math.round(rate * duration); k++) {
    const due = t0 + (k * 1000) / rate;
    const wait = due - performance.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    const start = performance.now();
    sent.push(fetch(url, { method: 'POST', body: new Uint8Array(body), headers: { 'content-type': contentType } }).then(async (res) => {
      await res.arrayBuffer();
      if (res.status === 200) {
        ok++;
        latencies.push(performance.now() - start);
      } else if (res.status === 503) refused++;
      else other++;
    }, () => { other++; }));
  }
  await Promise.all(sent);
  latencies.sort((a, b) => a - b);
  const seconds = (performance.now() - t0) / 1000;
  return { ok, refused, other, rps: ok / seconds, p50: percentile(latencies, 50), p95: percentile(latencies, 95), p99: percentile(latencies, 99), seconds };
}

async function main(): Promise<void> {
  const { flags } = parseFlags(process.argv.slice(2), {
    model: { kind: 'string' }, duration: { kind: 'number' }, workers: { kind: 'string' }, 'no-low-memory': { kind: 'bool' }, out: { kind: 'string' }, capacity: { kind: 'number' },
  });
  const modelDir = resolveModelDir(flags.get('model') as string | undefined);
  const duration = (flags.get('duration') as number | undefined) ?? 10;
  const workerList = (flags.get('workers') as string | undefined) ?? '1,2,4';
  const workerCounts = workerList === 'none' ? [] : workerList.split(',').map(Number);
  const capacityFlag = flags.get('capacity') as number | undefined;
  const extra = flags.has('no-low-memory') ? ['--no-low-memory'] : [];
  const face = await sharp(path.join(shared, 'data/faces-hq/test/ffhq_00000.png')).resize(512, 512).png().toBuffer();
  const photo = fs.readFileSync(path.join(shared, 'data/whole/codeformer_03.jpg'));
  const log = (s: string) => process.stderr.write(`bench:serve: ${s}\n`);
  log(`model ${modelDir}; ${os.availableParallelism()} cores; ${duration} s per run; ${extra.join(' ') || 'the model\'s default low-memory setting'}`);

  const rows: Record<string, unknown>[] = [];
  for (const workers of workerCounts) {
    const server = await startServer(modelDir, ['--workers', String(workers), '--threads-per-worker', '1', '--queue', '64', ...extra]);
    try {
      const connections = workers * 2; // every worker busy, one request waiting for each
      for (const [kind, bytes, type, query] of [['aligned 512', face, 'image/png', '?mode=aligned'], ['photo 400x225', photo, 'image/jpeg', '']] as const) {
        // one request per worker first, so the first-run costs of each ONNX session are not counted
        await load(`${server.url}/v1/restore${query}`, bytes, type, workers, { amount: workers * 2 });
        const r = await load(`${server.url}/v1/restore${query}`, bytes, type, connections, { duration });
        const row = { workers, input: kind, connections, ...r, peakRssMb: peakRssMb(server.child.pid!) };
        rows.push(row);
        log(JSON.stringify(row));
      }
    } finally {
      await server.stop();
    }
  }
  // Over capacity: 2 workers, room for 4 waiting, offered 3x what 2 workers served above.
  const capacity = (rows.find((r) => r.workers === 2 && r.input === 'aligned 512') as LoadResult | undefined)?.rps ?? capacityFlag ?? 1;
  const offered = Math.max(1, Math.round(3 * capacity * 10) / 10);
  const server = await startServer(modelDir, ['--workers', '2', '--threads-per-worker', '1', '--queue', '4', ...extra]);
  try {
    await load(`${server.url}/v1/restore?mode=aligned`, face, 'image/png', 2, { amount: 4 });
    const r = await offer(`${server.url}/v1/restore?mode=aligned`, face, 'image/png', offered, duration);
    const row = { workers: 2, input: `aligned 512, ${offered} req/s offered (open loop), queue 4`, connections: '-', ...r, refusalRate: r.refused / (r.ok + r.refused + r.other), peakRssMb: peakRssMb(server.child.pid!) };
    rows.push(row);
    log(JSON.stringify(row));
  } finally {
    await server.stop();
  }

  const f = (v: number, d = 0) => (Number.isFinite(v) ? v.toFixed(d) : '-');
  const lines = [
    '| workers | input | connections | 200 | 503 | req/s (200) | p50 ms | p95 ms | p99 ms | peak RSS MB (server + workers) |',
    '|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|',
    ...rows.map((r) => {
      const x = r as unknown as LoadResult & { workers: number; input: string; connections: number; peakRssMb: number };
      return `| ${x.workers} | ${x.input} | ${x.connections} | ${x.ok} | ${x.refused} | ${f(x.rps, 2)} | ${f(x.p50)} | ${f(x.p95)} | ${f(x.p99)} | ${x.peakRssMb} |`;
    }),
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
  const out = flags.get('out') as string | undefined;
  if (out) fs.writeFileSync(out, JSON.stringify({ modelDir, duration, cores: os.availableParallelism(), options: extra, rows }, null, 2));
}

main().catch((e: unknown) => {
  process.stderr.write(`bench:serve: ${e instanceof Error ? e.stack ?? e.message : String(e)}\n`);
  process.exitCode = 1;
});
