/**
 * The `osdface web` server: the built browser app from its folder, the packaged model under
 * MODEL_URL_PREFIX, cross-origin isolation headers on every response, nothing outside those two
 * folders. GET and HEAD only; listens on 127.0.0.1 unless told otherwise.
 */
import type { AddressInfo } from 'node:net';
import Fastify, { type FastifyInstance } from 'fastify';
import fastifyStatic from '@fastify/static';
import { contentTypeOf } from './content_types.js';
import { addIsolationHeaders } from './isolation.js';
import { MODEL_URL_PREFIX, modelFiles } from './model_files.js';
import { insideRoot, screenRequestPath } from './path_guard.js';

export const WEB_DEFAULTS = { host: '127.0.0.1', port: 8090 } as const;

export interface WebServerOptions {
  /** The built app folder (resolveAppDir). */
  appDir: string;
  /** The model directory served under MODEL_URL_PREFIX (resolveModelDir()), or null for none. */
  modelDir: string | null;
  host?: string;
  /** 0 picks a free port. */
  port?: number;
}

export interface RunningWebServer {
  app: FastifyInstance;
  /** http://host:port/ */
  url: string;
  port: number;
  close(): Promise<void>;
}

/** Listening failed: the port is taken, or the address cannot be used. */
export class ListenError extends Error {
  constructor(message: string, readonly code: string | undefined) {
    super(message);
    this.name = 'ListenError';
  }
}

const setContentType = (reply: { header(k: string, v: string): unknown }, file: string) => {
  const type = contentTypeOf(file);
  if (type !== undefined) reply.header('content-type', type);
};

export async function buildWebApp(opts: Omit<WebServerOptions, 'host' | 'port'>): Promise<FastifyInstance> {
  const app = Fastify({ logger: false });
  addIsolationHeaders(app);
  app.addHook('onRequest', async (request, reply) => {
    const refused = screenRequestPath(request.raw.url ?? '');
    if (refused !== null) return reply.code(400).type('text/plain; charset=utf-8').send(`bad request path: ${refused}\n`);
  });
  await app.register(fastifyStatic, {
    root: opts.appDir,
    prefix: '/',
    index: ['index.html'],
    dotfiles: 'ignore',
    serveDotFiles: false,
    allowedPath: (pathName, root) => root !== undefined && insideRoot(pathName, root),
    setHeaders: setContentType,
  });
  if (opts.modelDir !== null) {
    const allowed = modelFiles(opts.modelDir);
    await app.register(fastifyStatic, {
      root: opts.modelDir,
      prefix: MODEL_URL_PREFIX,
      decorateReply: false,
      index: false,
      dotfiles: 'ignore',
      serveDotFiles: false,
      allowedPath: (pathName, root) => root !== undefined && allowed.has(pathName.replace(/^\//, '')) && insideRoot(pathName, root),
      setHeaders: setContentType,
    });
  }
  app.setNotFoundHandler((_request, reply) => reply.code(404).type('text/plain; charset=utf-8').send('not found\n'));
  return app;
}

export async function startWebServer(opts: WebServerOptions): Promise<RunningWebServer> {
  const app = await buildWebApp(opts);
  const host = opts.host ?? WEB_DEFAULTS.host;
  const port = opts.port ?? WEB_DEFAULTS.port;
  try {
    await app.listen({ host, port });
  } catch (e) {
    await app.close();
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'EADDRINUSE') throw new ListenError(`port ${port} on ${host} is already in use; give another with --port <N>, or --port 0 for any free port`, code);
    if (code === 'EADDRNOTAVAIL' || code === 'ENOTFOUND') throw new ListenError(`cannot listen on ${host}: not an address of this machine (--host)`, code);
    if (code === 'EACCES') throw new ListenError(`no permission to listen on port ${port} (ports below 1024 need privileges); give another with --port <N>`, code);
    throw e;
  }
  const addr = app.server.address() as AddressInfo;
  const shown = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
  return {
    app,
    url: `http://${shown}:${addr.port}/`,
    port: addr.port,
    close: () => app.close(),
  };
}
