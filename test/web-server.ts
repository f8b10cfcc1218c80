/**
 * The browser tests' server: the app of `npx osdface web` (src/webserve/server.ts: web/dist, the
 * packaged model under /models/osdface-small/, COOP/COEP headers), on a free 127.0.0.1 port, with
 * a log of every request it answers and the bytes each one sent, so a test can show that no image
 * reached it.
 */
import path from 'node:path';
import type { AddressInfo } from 'node:net';
import { buildWebApp } from '../src/webserve/server.js';
import { defaultModelDir } from '../src/pipeline/default_model.js';

export interface WebAppServer {
  url: string;
  log: { method: string; url: string; bytes: number }[];
  close(): Promise<void>;
}

export async function serveWebApp(appDir: string, modelDir: string = defaultModelDir()): Promise<WebAppServer> {
  const log: WebAppServer['log'] = [];
  const app = await buildWebApp({ appDir: path.resolve(appDir), modelDir });
  app.addHook('onRequest', async (request) => {
    let bytes = 0;
    request.raw.on('data', (c: Buffer) => { bytes += c.length; });
    request.raw.on('end', () => { log.push({ method: request.method, url: request.url, bytes }); });
    if (request.raw.readableEnded) log.push({ method: request.method, url: request.url, bytes });
  });
  await app.listen({ host: '127.0.0.1', port: 0 });
  const { port } = app.server.address() as AddressInfo;
  return { url: `http://127.0.0.1:${port}/`, log, close: () => app.close() };
}
