/**
 * `osdface web`: serves the browser app (restoration runs in the page; photos never leave the
 * machine) and the packaged model it loads. Runs until Ctrl-C / SIGTERM, then stops and exits 0.
 *
 * Exit codes: 0 stopped by a signal; 1 could not listen (port taken, bad address); 2 usage error,
 * or the app or the packaged model is missing.
 */
import { ArgumentError, parseFlags, reportUsageError } from './args.js';
import { resolveModelDir } from '../pipeline/default_model.js';
import { ModelDirError } from '../pipeline/manifest.js';
import { APP_DIR_ENV, AppDirError, resolveAppDir } from '../webserve/app_dir.js';
import { MODEL_URL_PREFIX } from '../webserve/model_files.js';
import { ListenError, startWebServer, WEB_DEFAULTS } from '../webserve/server.js';

export const WEB_USAGE = `usage: osdface web [--port <N>] [--host <addr>] [--app-dir <dir>]

Serves the osdface browser app: open the printed URL, drop a photo, and it is restored in the
page (WebGPU, or WebAssembly where there is no WebGPU adapter) with the packaged model, which is
served read-only under ${MODEL_URL_PREFIX}. Images are never uploaded: the server only sends
the app's and the model's files. Responses carry the cross-origin isolation headers
(COOP same-origin, COEP require-corp) that multi-threaded WebAssembly needs.
Ctrl-C stops it.

options:
  --port <N>       port (default ${WEB_DEFAULTS.port}; 0: any free port, printed)
  --host <addr>    address to listen on (default ${WEB_DEFAULTS.host}: this machine only; the
                   page needs a secure context, which plain http has only on localhost)
  --app-dir <dir>  serve this built app folder instead of the packaged one (web/dist;
                   also $${APP_DIR_ENV})
  -h, --help       this help

exit codes: 0 stopped by Ctrl-C or SIGTERM, 1 could not listen (port in use), 2 usage error or
the app / packaged model missing.
`;

const FLAGS = {
  port: { kind: 'int' }, host: { kind: 'string' }, 'app-dir': { kind: 'string' }, help: { kind: 'bool', short: 'h' },
} as const;

const LOOPBACK = new Set(['127.0.0.1', 'localhost', '::1']);

export async function main(argv: string[]): Promise<number> {
  let flags: Map<string, string | number | true>;
  let positionals: string[];
  try {
    ({ flags, positionals } = parseFlags(argv, FLAGS));
  } catch (e) {
    if (e instanceof ArgumentError) return reportUsageError('web', e.message);
    throw e;
  }
  if (flags.has('help')) {
    process.stdout.write(WEB_USAGE);
    return 0;
  }
  if (positionals.length > 0) return reportUsageError('web', `unexpected argument '${positionals[0]}'`);
  const port = flags.get('port') as number | undefined;
  if (port !== undefined && port > 65535) return reportUsageError('web', `--port must be from 0 to 65535, got ${port}`);
  const host = (flags.get('host') as string | undefined) ?? WEB_DEFAULTS.host;
  if (host === '') return reportUsageError('web', '--host needs an address, such as 127.0.0.1');

  let appDir: string;
  let modelDir: string;
  try {
    appDir = resolveAppDir(flags.has('app-dir') ? { given: flags.get('app-dir') as string } : {});
    modelDir = resolveModelDir();
  } catch (e) {
    if (e instanceof AppDirError || e instanceof ModelDirError) {
      process.stderr.write(`osdface web: ${e.message}\n`);
      return 2;
    }
    throw e;
  }

  let server: Awaited<ReturnType<typeof startWebServer>>;
  try {
    server = await startWebServer({ appDir, modelDir, host, ...(port !== undefined ? { port } : {}) });
  } catch (e) {
    if (e instanceof ListenError) {
      process.stderr.write(`osdface web: ${e.message}\n`);
      return 1;
    }
    throw e;
  }
  if (!LOOPBACK.has(host)) {
    process.stderr.write(`osdface web: listening on ${host}: other machines can load the app; over plain http they get no secure context (no threads, no offline cache)\n`);
  }
  process.stdout.write(`osdface web: open ${server.url} (serving ${appDir}; Ctrl-C to stop)\n`);
  return new Promise<number>((resolve) => {
    const onSignal = () => {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      process.stderr.write('osdface web: stopping\n');
      server.close().then(() => resolve(0), (e: unknown) => {
        process.stderr.write(`osdface web: stopping failed: ${e instanceof Error ? e.message : String(e)}\n`);
        resolve(1);
      });
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  });
}
