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
