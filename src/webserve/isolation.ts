/**
 * The headers that make the page cross-origin isolated (window.crossOriginIsolated), which
 * SharedArrayBuffer, and with it onnxruntime-web's multi-threaded WASM, requires: COOP
 * same-origin and COEP require-corp. CORP same-origin keeps other sites from embedding our files.
 * Sent on every response, errors and 404s included.
 */
import type { FastifyInstance } from 'fastify';

export const ISOLATION_HEADERS: Readonly<Record<string, string>> = {
  'cross-origin-opener-policy': 'same-origin',
  'cross-origin-embedder-policy': 'require-corp',
  'cross-origin-resource-policy': 'same-origin',
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
};

export function addIsolationHeaders(app: FastifyInstance): void {
  app.addHook('onSend', async (_request, reply, payload) => {
    reply.headers(ISOLATION_HEADERS);
    return payload;
  });
}
