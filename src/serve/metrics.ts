// The model server's Prometheus metrics (prom-client), in a registry of its own per server so several servers
// in one process do not mix their counts. Gauges of live state read it when /metrics is scraped.
import { Counter, Gauge, Histogram, Registry } from 'prom-client';

/** What the collect-time gauges read. */
export interface LiveState {
  queueDepth(): number;
  batchesInFlight(): number;
  ready(): boolean;
  cacheEntries(): number;
}

/** Batch sizes 1, 2, 4, ... up to maxBatch (and maxBatch itself): the histogram buckets and the warm-up sizes. */
export function batchSizes(maxBatch: number): number[] {
  const sizes: number[] = [];
  for (let b = 1; b < maxBatch; b *= 2) sizes.push(b);
  sizes.push(maxBatch);
  return sizes;
}

export function serverMetrics(maxBatch: number, live: LiveState) {
  const registry = new Registry();
  const registers = [registry];
  const m = {
    registry,
    requests: new Counter({
      name: 'kiln_requests_total',
      help: 'HTTP /predict requests by status code',
      labelNames: ['code'],
      registers,
    }),
    latency: new Histogram({
      name: 'kiln_request_duration_seconds',
      help: '/predict latency (receipt to reply)',
      registers,
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    }),
    batchSize: new Histogram({
      name: 'kiln_batch_size',
      help: 'examples per model call',
      buckets: batchSizes(maxBatch),
      registers,
    }),
    batchSeconds: new Histogram({
      name: 'kiln_batch_duration_seconds',
      help: 'time in the model per batch',
      registers,
      buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
    }),
    queueWait: new Histogram({
      name: 'kiln_queue_wait_seconds',
      help: 'wait of the oldest request of each batch',
      registers,
      buckets: [0.0001, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1],
    }),
    errors: new Counter({
      name: 'kiln_errors_total',
      help: 'failed requests and internal errors by kind',
      labelNames: ['kind'],
      registers,
    }),
    cacheHits: new Counter({ name: 'kiln_cache_hits_total', help: 'examples answered from the cache', registers }),
    cacheMisses: new Counter({ name: 'kiln_cache_misses_total', help: 'examples that ran the model', registers }),
    reloads: new Counter({
      name: 'kiln_model_reloads_total',
      help: 'model reloads by result',
      labelNames: ['result'],
      registers,
    }),
    modelInfo: new Gauge({
      name: 'kiln_model_info',
      help: 'the model version being served (value 1)',
      labelNames: ['version'],
      registers,
    }),
    warmup: new Gauge({ name: 'kiln_warmup_seconds', help: 'duration of the last warm-up', registers }),
    maxBatch: new Gauge({
      name: 'kiln_max_batch_size',
      help: 'largest batch handed to the model (sized after warm-up with --max-batch auto)',
      registers,
    }),
    versionRequests: new Counter({
      name: 'kiln_version_requests_total',
      help: 'examples per model version and role (primary, canary, sticky, shadow) by result (ok, error)',
      labelNames: ['version', 'role', 'result'],
      registers,
    }),
    versionLatency: new Histogram({
      name: 'kiln_version_latency_seconds',
      help: 'time from submit to answer per model version and role',
      labelNames: ['version', 'role'],
      registers,
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    }),
    versionPredictions: new Counter({
      name: 'kiln_version_predictions_total',
      help: 'predicted class (argmax, models with 2 to 64 outputs) per model version',
      labelNames: ['version', 'class'],
      registers,
    }),
    shadowAgreement: new Counter({
      name: 'kiln_shadow_agreement_total',
      help: 'shadow answers that agree with the primary (same argmax; within 1e-3 relative for one output)',
      labelNames: ['version', 'agree'],
      registers,
    }),
    trafficWeight: new Gauge({
      name: 'kiln_version_weight',
      help: 'share of requests each deployed version takes (shadow: 1, mirrored)',
      labelNames: ['version', 'role'],
      registers,
    }),
    autoRollbacks: new Counter({
      name: 'kiln_auto_rollbacks_total',
      help: 'deployed versions taken out by the automatic rollback rule',
      labelNames: ['version'],
      registers,
    }),
    authFailures: new Counter({
      name: 'kiln_auth_failures_total',
      help: 'requests refused by authentication (401), scope (403) or rate limit (429)',
      labelNames: ['code'],
      registers,
    }),
    /** Marks `version` as the one served (kiln_model_info{version} 1, no other label). */
    serving(version: string): void {
      m.modelInfo.reset();
      m.modelInfo.set({ version }, 1);
    },
  };
  const live_ = (name: string, help: string, read: () => number): void => {
    new Gauge({
      name,
      help,
      registers,
      collect() {
        this.set(read());
      },
    });
  };
  live_('kiln_queue_depth', 'requests waiting for a batch', live.queueDepth);
  live_('kiln_batches_in_flight', 'batches in the model now', live.batchesInFlight);
  live_('kiln_ready', '1 once warm-up is done', () => (live.ready() ? 1 : 0));
  live_('kiln_cache_entries', 'entries in the input cache', live.cacheEntries);
  return m;
}

export type ServerMetrics = ReturnType<typeof serverMetrics>;
