/**
 * `osdface serve`: the HTTP service (src/server). Runs until SIGTERM or SIGINT, then stops
 * accepting, finishes the work in flight (up to --grace seconds) and exits 0.
 *
 * Exit codes: 0 stopped by a signal; 1 could not start (port taken, the model failed to load in
 * a worker); 2 usage error or unusable model directory.
 */
import { ArgumentError, parseFlags, reportUsageError } from './args.js';
import { resolveModelDir } from '../pipeline/default_model.js';
import { ModelDirError } from '../pipeline/manifest.js';
import { readApiKey } from '../server/auth.js';
import { DEFAULTS, startServer, type ServeConfig } from '../server/server.js';

export const SERVE_USAGE = `usage: osdface serve [options]

Serves restoration over HTTP: POST /v1/restore (the image as the body, Content-Type image/*, or
the multipart field 'image'; options as query parameters or fields), GET /healthz, /readyz,
/metrics (Prometheus) and /openapi.json. Logs are JSON lines on stdout. Each worker process holds
one loaded model; requests beyond the workers wait in a bounded queue, and beyond that are
refused at once with 503 and Retry-After. SIGTERM / SIGINT: stop accepting, finish the work in
flight, exit 0.

options:
  --port <N>                port (default ${DEFAULTS.port}; 0: any free port, printed in the log)
  --host <addr>             address to listen on (default ${DEFAULTS.host}: this machine only)
  --model <dir>             converted model directory (default: the packaged model)
  --workers <N>             worker processes, one model each (default: from the cores and memory)
  --threads-per-worker <N>  ONNX Runtime threads in each worker (default: cores / workers)
  --low-memory              load the UNet only while it runs (the default for fp32 models over 256 MB: lower
                            peak memory per worker, a UNet reload on every request)
  --no-low-memory           keep the UNet loaded in each worker (faster, more memory)
  --queue <N>               requests that may wait for a worker (default ${DEFAULTS.queue})
  --timeout <s>             per-request limit, waiting included (default ${DEFAULTS.timeoutS}); 504 after it
  --max-body <MB>           largest request body (default ${DEFAULTS.maxBodyBytes / 1024 / 1024}); 413 above it
  --max-pixels <MP>         largest image, width x height from its header, before decoding
                            (default ${DEFAULTS.maxPixels / 1e6}); 413 above it
  --api-key-file <file>     require Authorization: Bearer <the key in this file> on every route
                            but /healthz
  --grace <s>               on SIGTERM / SIGINT, how long to wait for work in flight (default ${DEFAULTS.graceS})
  --log-level <level>       fatal, error, warn, info (default), debug
  -h, --help                this help
`;

const FLAGS = {
  port: { kind: 'int' }, host: { kind: 'string' }, model: { kind: 'string' }, workers: { kind: 'int' },
  'threads-per-worker': { kind: 'int' }, queue: { kind: 'int' }, timeout: { kind: 'number' }, 'max-body': { kind: 'number' },
  'max-pixels': { kind: 'number' }, 'low-memory': { kind: 'bool' }, 'no-low-memory': { kind: 'bool' }, 'api-key-file': { kind: 'string' }, grace: { kind: 'number' },
  'log-level': { kind: 'string', choices: ['fatal', 'error', 'warn', 'info', 'debug', 'trace'] }, help: { kind: 'bool', short: 'h' },
} as const;

function usageError(msg: string): number {
  return reportUsageError('serve', msg);
}

export async function main(argv: string[]): Promise<number> {
  let flags: Map<string, string | number | true>;
  let positionals: string[];
  try {
    ({ flags, positionals } = parseFlags(argv, FLAGS));
  } catch (e) {
    if (e instanceof ArgumentError) return usageError(e.message);
    throw e;
  }
  if (flags.has('help')) {
    process.stdout.write(SERVE_USAGE);
    return 0;
  }
  if (positionals.length > 0) return usageError(`unexpected argument '${positionals[0]}'`);
  const num = (name: string) => flags.get(name) as number | undefined;
  for (const name of ['workers', 'threads-per-worker', 'queue', 'timeout', 'max-body', 'max-pixels'] as const) {
    const v = num(name);
    if (v !== undefined && !(v > 0)) return usageError(`--${name} must be greater than 0, got ${v}`);
  }
  const port = num('port');
  if (port !== undefined && port > 65535) return usageError(`--port must be from 0 to 65535, got ${port}`);
  if (flags.has('low-memory') && flags.has('no-low-memory')) return usageError('--low-memory and --no-low-memory contradict each other; give one');
  const grace = num('grace');
  if (grace !== undefined && grace < 0) return usageError(`--grace must be 0 or more, got ${grace}`);
  const cfg: Partial<ServeConfig> = {};
  try {
    cfg.modelDir = resolveModelDir(flags.get('model') as string | undefined);
    if (flags.has('api-key-file')) cfg.apiKey = readApiKey(flags.get('api-key-file') as string);
  } catch (e) {
    process.stderr.write(`osdface serve: ${e instanceof Error ? e.message : String(e)}\n`);
    return 2;
  }
  if (flags.has('host')) cfg.host = flags.get('host') as string;
  if (port !== undefined) cfg.port = port;
  if (num('workers') !== undefined) cfg.workers = num('workers')!;
  if (num('threads-per-worker') !== undefined) cfg.threadsPerWorker = num('threads-per-worker')!;
  if (num('queue') !== undefined) cfg.queue = num('queue')!;
  if (num('timeout') !== undefined) cfg.timeoutS = num('timeout')!;
  if (num('max-body') !== undefined) cfg.maxBodyBytes = Math.round(num('max-body')! * 1024 * 1024);
  if (num('max-pixels') !== undefined) cfg.maxPixels = Math.round(num('max-pixels')! * 1e6);
  if (grace !== undefined) cfg.graceS = grace;
  if (flags.has('low-memory') || flags.has('no-low-memory')) cfg.lowMemory = flags.has('low-memory');
  if (flags.has('log-level')) cfg.logLevel = flags.get('log-level') as string;

  let server: Awaited<ReturnType<typeof startServer>>;
  try {
    server = await startServer(cfg as ServeConfig);
  } catch (e) {
    process.stderr.write(`osdface serve: ${e instanceof Error ? e.message : String(e)}\n`);
    return e instanceof ModelDirError ? 2 : 1;
  }
  return new Promise<number>((resolve) => {
    const onSignal = (sig: NodeJS.Signals) => {
      server.app.log.info({ signal: sig }, 'signal received');
      process.off('SIGTERM', onSignal);
      process.off('SIGINT', onSignal);
      server.close().then(() => resolve(0), (e: unknown) => {
        process.stderr.write(`osdface serve: shutdown failed: ${e instanceof Error ? e.message : String(e)}\n`);
        resolve(1);
      });
    };
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
  });
}
