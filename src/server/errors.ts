/**
 * The errors the service answers with: an HTTP status, a stable machine-readable code and a
 * message for people that names what was wrong (the field, the option, the limit) and what to do.
 * Every error response body is `{ "error": { "code", "message" } }`.
 */

export type ErrorCode =
  | 'missing_body'
  | 'invalid_option'
  | 'invalid_image'
  | 'image_too_large'
  | 'body_too_large'
  | 'unsupported_media_type'
  | 'unauthorized'
  | 'not_found'
  | 'queue_full'
  | 'shutting_down'
  | 'not_ready'
  | 'timeout'
  | 'worker_crashed'
  | 'client_closed'
  | 'internal';

export class HttpError extends Error {
  constructor(
    readonly statusCode: number,
    readonly code: ErrorCode,
    message: string,
    /** Extra response headers (Retry-After, WWW-Authenticate). */
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
    this.name = 'HttpError';
  }

  body(): { error: { code: ErrorCode; message: string } } {
    return { error: { code: this.code, message: this.message } };
  }
}

/** The request queue is full: try again shortly. */
export class QueueFullError extends HttpError {
  constructor(queueLimit: number, retryAfterS: number) {
    super(503, 'queue_full', `the service is at capacity (every worker busy and ${queueLimit} requests queued); retry after ${retryAfterS} s`, { 'retry-after': String(retryAfterS) });
  }
}

/** A request ran (or waited) longer than --timeout. */
export class TimeoutError extends HttpError {
  constructor(timeoutS: number, where: 'queued' | 'running') {
    super(504, 'timeout', `the request ${where === 'queued' ? 'waited in the queue' : 'ran'} longer than the ${timeoutS} s limit (--timeout); retry later or send a smaller image`);
  }
}

/** The worker running the request died (crashed or was killed); the pool replaces it. */
export class WorkerCrashedError extends HttpError {
  constructor(detail: string) {
    super(500, 'worker_crashed', `the worker restoring this request stopped (${detail}); it has been replaced, retry the request`);
  }
}

/** The service is shutting down and takes no new work. */
export class ShuttingDownError extends HttpError {
  constructor() {
    super(503, 'shutting_down', 'the service is shutting down; retry on another instance or later', { 'retry-after': '5' });
  }
}

/** The client went away before its request was run. */
export class ClientClosedError extends HttpError {
  constructor() {
    super(499, 'client_closed', 'the client closed the connection before the request was run');
  }
}
