/**
 * The service's Prometheus metrics (prom-client, one registry per server): requests by route and
 * status, latency, queue depth, busy workers, faces restored, worker restarts, and the process
 * metrics prom-client collects by default (resident memory, event loop lag, ...).
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { WorkerPool } from './pool.js';

export interface ServiceMetrics {
  registry: Registry;
  requests: Counter<'method' | 'route' | 'status'>;
  latency: Histogram<'route'>;
  facesRestored: Counter;
}

export function createMetrics(pool: WorkerPool): ServiceMetrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'osdface_' });
  const requests = new Counter({
    name: 'osdface_http_requests_total', help: 'HTTP requests answered, by method, route and status code',
    labelNames: ['method', 'route', 'status'] as const, registers: [registry],
  });
  const latency = new Histogram({
    name: 'osdface_http_request_duration_seconds', help: 'Time from request to response, by route',
    labelNames: ['route'] as const, buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120], registers: [registry],
  });
  const facesRestored = new Counter({ name: 'osdface_faces_restored_total', help: 'Faces restored (an aligned crop counts as one)', registers: [registry] });
  new Gauge({ name: 'osdface_queue_depth', help: 'Requests waiting for a worker', registers: [registry], collect() { this.set(pool.queueDepth); } });
  new Gauge({ name: 'osdface_workers_busy', help: 'Workers running a request', registers: [registry], collect() { this.set(pool.busyWorkers); } });
  new Gauge({ name: 'osdface_workers', help: 'Workers in the pool (loaded and ready)', registers: [registry], collect() { this.set(pool.readyWorkers); } });
  new Counter({ name: 'osdface_worker_restarts_total', help: 'Workers replaced after a crash, a kill or a timeout', registers: [registry], collect() { this.reset(); this.inc(pool.workerRestarts); } });
  return { registry, requests, latency, facesRestored };
}
