/**
 * The Fastify application of `osdface serve`: the routes, the body parsers, auth, metrics,
 * structured logs (JSON, with the request id; bodies and images are never logged) and the
 * mapping of every error to `{ "error": { "code", "message" } }` with a 4xx or 5xx status.
 */
import crypto from 'node:crypto';
import type { Writable } from 'node:stream';
import Fastify, { type FastifyError, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import multipart from '@fastify/multipart';
import swagger from '@fastify/swagger';
import { HttpError } from './errors.js';
import { OPTIONS_SCHEMA, describeValidation, resolveOptions } from './options.js';
import { decodeChecked, readRequestImage } from './input.js';
import { createMetrics, type ServiceMetrics } from './metrics.js';
import { bearerCheck } from './auth.js';
import { swaggerOptions } from './openapi.js';
import type { WorkerPool } from './pool.js';
import type { JobInput } from './job.js';

export interface AppOptions {
  pool: WorkerPool;
  /** --max-body, bytes. */
  maxBodyBytes: number;
  /** --max-pixels, pixels. */
  maxPixels: number;
  /** The API key (from --api-key-file), or none. */
  apiKey?: string;
  /** Log level (default 'info'), and where the JSON lines go (default stdout). */
  logLevel?: string;
  logStream?: Writable;
}

const MIME = { png: 'image/png', jpg: 'image/jpeg', webp: 'image/webp' } as const;

/** Header-safe JSON: non-ASCII characters escaped. */
const asciiJson = (v: unknown) => JSON.stringify(v).replace(/[^\x20-\x7e]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);

/** An error (ours, Fastify's, multipart's) as the HttpError the client gets. */
function toHttpError(err: FastifyError & { validationContext?: string }): HttpError {
  if (err instanceof HttpError) return err;
  if (err.validation) return new HttpError(400, 'invalid_option', describeValidation(err.validation as never, err.validationContext === 'querystring' ? 'query string' : String(err.validationContext ?? 'request')));
  switch (err.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
    case 'FST_REQ_FILE_TOO_LARGE':
      return new HttpError(413, 'body_too_large', `the body is larger than the limit (--max-body); send a smaller image${err.message ? ` (${err.message})` : ''}`);
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
    case 'FST_INVALID_MULTIPART_CONTENT_TYPE':
      return new HttpError(415, 'unsupported_media_type', 'send the image as the body with Content-Type image/* (image/png, image/jpeg, ...) or as the field \'image\' of a multipart/form-data form');
    case 'FST_ERR_CTP_EMPTY_TYPE':
    case 'FST_ERR_CTP_INVALID_CONTENT_LENGTH':
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return new HttpError(400, 'missing_body', `the request body is missing or unreadable: ${err.message}`);
    case 'FST_PARTS_LIMIT':
    case 'FST_FILES_LIMIT':
    case 'FST_FIELDS_LIMIT':
      return new HttpError(400, 'invalid_option', `the multipart form has too many parts: one file field 'image' and the options as fields (${err.message})`);
    default:
      break;
  }
  const status = err.statusCode ?? 500;
  if (status >= 400 && status < 500) {
    return new HttpError(status, status === 413 ? 'body_too_large' : status === 415 ? 'unsupported_media_type' : 'missing_body', `the request could not be read: ${err.message}`);
  }
  return new HttpError(500, 'internal', 'internal error; the request id in X-Request-Id finds it in the logs');
}

export async function buildApp(o: AppOptions): Promise<{ app: FastifyInstance; metrics: ServiceMetrics }> {
  const { pool } = o;
  const app = Fastify({
    logger: { level: o.logLevel ?? 'info', ...(o.logStream ? { stream: o.logStream } : {}) },
    bodyLimit: o.maxBodyBytes,
    requestIdHeader: 'x-request-id',
    genReqId: () => crypto.randomUUID(),
    return503OnClosing: true,
    forceCloseConnections: 'idle',
    ajv: { customOptions: { removeAdditional: false, useDefaults: false, coerceTypes: true, allErrors: false } },
  });
  const metrics = createMetrics(pool);
  const check = o.apiKey !== undefined ? bearerCheck(o.apiKey) : null;

  app.removeAllContentTypeParsers();
  app.addContentTypeParser(/^image\/[a-z0-9.+-]+$/i, { parseAs: 'buffer', bodyLimit: o.maxBodyBytes }, (_req, body, done) => done(null, body));
  await app.register(multipart, { limits: { fileSize: o.maxBodyBytes } });
  await app.register(swagger, swaggerOptions(check !== null));

  // Once closing, every answer closes its connection, so keep-alive clients do not hold the shutdown up.
  const shuttingDown = () => !app.server.listening;
  app.addHook('onSend', async (_request, reply) => {
    if (shuttingDown()) reply.header('connection', 'close');
  });
  app.addHook('onRequest', async (request, reply) => {
    reply.header('x-request-id', request.id);
    const route = request.url.split('?')[0];
    if (check && route !== '/healthz') check(request.headers.authorization);
    // At capacity: refuse at once, before the body is read or decoded.
    if (request.method === 'POST' && route === '/v1/restore') {
      const refused = pool.admissionError();
      if (refused) throw refused;
    }
  });
  app.addHook('onResponse', async (request, reply) => {
    const route = request.routeOptions.url ?? 'unmatched';
    metrics.requests.inc({ method: request.method, route, status: String(reply.statusCode) });
    metrics.latency.observe({ route }, reply.elapsedTime / 1000);
  });
  app.setErrorHandler((err: FastifyError, request, reply) => {
    const e = toHttpError(err);
    if (e.statusCode >= 500) request.log.error({ err }, e.message);
    else request.log.info({ code: e.code, status: e.statusCode }, e.message);
    void reply.code(e.statusCode).headers(e.headers).send(e.body());
  });
  app.setNotFoundHandler((request, reply) => {
    const e = new HttpError(404, 'not_found', `no route ${request.method} ${request.url.split('?')[0]}; see /openapi.json for the routes`);
    void reply.code(404).send(e.body());
  });

  app.get('/healthz', { schema: { summary: 'liveness: the process answers' } }, async () => ({ status: 'ok' }));

  app.get('/readyz', { schema: { summary: 'readiness: the model is loaded in a worker and the queue is not full' } }, async (_request, reply) => {
    const state = { workers: pool.readyWorkers, busy: pool.busyWorkers, queued: pool.queueDepth };
    const why = shuttingDown() ? 'shutting down' : pool.readyWorkers === 0 ? 'no worker has loaded the model yet' : pool.queueFull ? 'the queue is full' : null;
    if (why) return reply.code(503).send({ status: 'not ready', reason: why, ...state });
    return { status: 'ready', ...state };
  });

  app.get('/metrics', { schema: { summary: 'Prometheus metrics' } }, async (_request, reply) => {
    const text = await metrics.registry.metrics();
    return reply.type(metrics.registry.contentType).send(text);
  });

  app.get('/openapi.json', { schema: { summary: 'this OpenAPI document' } }, async () => app.swagger());

  app.post('/v1/restore', {
    schema: { summary: 'restore the faces of a photo, or one aligned face crop', querystring: OPTIONS_SCHEMA },
  }, async (request: FastifyRequest, reply: FastifyReply) => {
    const { bytes, fields } = await readRequestImage(request, o.maxBodyBytes);
    const options = resolveOptions(request.query as Record<string, unknown>, fields);
    const image = await decodeChecked(bytes, o.maxPixels);
    const input: JobInput = {
      image: { data: image.data, width: image.width, height: image.height, channels: 3, sourceFormat: image.sourceFormat, ...(image.alpha ? { alpha: image.alpha } : {}) },
      options,
    };
    // A client that goes away while its request waits takes it out of the queue.
    const gone = new AbortController();
    const onClose = () => { if (!reply.raw.writableFinished) gone.abort(); };
    reply.raw.once('close', onClose);
    const t0 = performance.now();
    const result = await pool.run(input, gone.signal);
    metrics.facesRestored.inc(result.facesRestored);
    request.log.info({
      mode: options.mode, bytesIn: bytes.length, width: image.width, height: image.height, outWidth: result.width, outHeight: result.height,
      format: options.format, facesRestored: result.facesRestored, facesDetected: result.faces.length, ms: Math.round(performance.now() - t0),
    }, 'restored');
    reply.header('x-faces-restored', String(result.facesRestored));
    if (options.mode === 'photo') reply.header('x-faces-detected', String(result.faces.length));
    reply.header('x-notices', asciiJson(result.notices));
    if (result.seed !== undefined) reply.header('x-seed', String(result.seed));
    const out = Buffer.from(result.bytes.buffer, result.bytes.byteOffset, result.bytes.byteLength);
    if ((request.headers.accept ?? '').toLowerCase().includes('application/json')) {
      return reply.type('application/json').send({
        image: out.toString('base64'), format: options.format, width: result.width, height: result.height,
        faces_restored: result.facesRestored, faces: result.faces, notices: result.notices,
        ...(result.seed !== undefined ? { seed: result.seed } : {}),
      });
    }
    return reply.type(MIME[options.format]).send(out);
  });

  return { app, metrics };
}
