// Model server: fastify for HTTP and JSON-schema request validation, prom-client for /metrics, lru-cache for
// repeated inputs, the Batcher for dynamic batching. Loopback by default. Lifecycle: listen -> warm up (every
// batch size the batcher can form) -> ready. reload() swaps models only after the candidate warms up with
// finite outputs of the same shape; for a probation window after a swap, a failing batch rolls the server
// back to the previous version and is retried there.
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { basename } from 'node:path';
import Fastify, { type FastifyError, type FastifyInstance, type FastifyReply } from 'fastify';
import { LRUCache } from 'lru-cache';
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { BackendName } from '../backends/backend.js';
import { ArgumentError, KilnError, describe } from '../errors.js';
import { modelFromBytes } from '../io/index.js';
import { Module } from '../nn/module.js';
import {
  Batcher,
  BatcherClosedError,
  ModelError,
  QueueFullError,
  RequestAbortedError,
  RequestTimeoutError,
  ServeError,
} from './batcher.js';
import { RequestLog } from './log.js';
import {
  INPUT_SHAPE_METADATA_KEY,
  resolveInputShape,
  rowModel,
  type BatchTransform,
  type RowModel,
  type ServableModel,
} from './model.js';

/** A reload that was refused (the server keeps serving the version it had). */
export class ReloadError extends ServeError {}

export { INPUT_SHAPE_METADATA_KEY };

/** createServer options. */
export interface ServerOptions {
  /** TCP port (default 8080; 0 picks a free one). */
  port?: number;
  /** Interface to bind (default 127.0.0.1: loopback only). */
  host?: string;
  /** Shape of one example; default from the file's metadata or a first Linear layer. */
  inputShape?: readonly number[];
  backend?: BackendName;
  /** A fitted scaler applied to every batch before the model. */
  transform?: BatchTransform;
  /** Version label (default: file name and content hash, or v1, v2, ... for modules). */
  version?: string;
  maxBatchSize?: number;
  maxDelayMs?: number;
  /** Per-request timeout in ms, queueing included (default 5000). */
  timeoutMs?: number;
  maxQueue?: number;
  /** Most examples in one /predict request (default 64). */
  maxRowsPerRequest?: number;
  /** Request body limit in bytes (default: enough for maxRowsPerRequest examples). */
  bodyLimit?: number;
  /** LRU cache size in entries for repeated inputs (default 0: off). */
  cache?: number;
  /** JSONL file that gets one line per served example. */
  requestLog?: string;
  /** Run the warm-up before /ready turns 200 (default true). */
  warmup?: boolean;
  /** Batches after a reload during which a model failure rolls back (default 20). */
  probationBatches?: number;
  /** false: every example runs the model alone, at once (no queue, no batching, no timeout) (default true). */
  batching?: boolean;
  /** fastify's logger (default off). */
  logger?: boolean;
}

/** A running model server. */
export interface ModelServer {
  readonly app: FastifyInstance;
  readonly url: string;
  readonly port: number;
  readonly version: string;
  readonly ready: boolean;
  readonly inputShape: readonly number[];
  /** The batcher behind /predict (queue depth, stats). */
  readonly batcher: Batcher<Float32Array, Served>;
  /** Runs one example through the same path as /predict (cache, batcher, log). */
  predict(
    input: ArrayLike<number>,
    opts?: { signal?: AbortSignal; timeoutMs?: number },
  ): Promise<{ output: Float32Array; version: string; cached: boolean }>;
  /** Loads a new model (path or module); refused with ReloadError when it fails to load or warm up. */
  reload(source: ServableModel | string, opts?: { version?: string; transform?: BatchTransform }): Promise<string>;
  /** Goes back to the version served before the last reload. */
  rollback(): Promise<string>;
  /** The Prometheus text of /metrics. */
  metrics(): Promise<string>;
  /** Stops listening, drains the queue, flushes the request log. */
  close(): Promise<void>;
}

/** One output row and the version that made it. */
export interface Served {
  output: Float32Array;
  version: string;
}

interface Loaded {
  rm: RowModel;
  version: string;
  active: number;
  retired: boolean;
}

const F32_MAX = 3.4028234663852886e38;

function rowSchema(shape: readonly number[]): object {
  const leaf = { type: 'number', minimum: -F32_MAX, maximum: F32_MAX };
  const nested = (s: readonly number[]): object =>
    s.length === 0 ? leaf : { type: 'array', minItems: s[0], maxItems: s[0], items: nested(s.slice(1)) };
  const per = shape.reduce((a, b) => a * b, 1);
  const flat = { type: 'array', minItems: per, maxItems: per, items: leaf };
  return shape.length === 1 ? flat : { anyOf: [nested(shape), flat] };
}

/** A validated example (flat or nested numbers) as float32 values. Array.prototype.flat costs ~80 us for 784
 * numbers, which capped throughput; this costs ~3. */
function toRow(r: unknown[], per: number): Float32Array {
  if (typeof r[0] === 'number') return new Float32Array(r as number[]);
  const out = new Float32Array(per);
  let k = 0;
  const walk = (a: unknown[]): void => {
    for (const v of a) {
      if (typeof v === 'number') out[k++] = v;
      else walk(v as unknown[]);
    }
  };
  walk(r);
  return out;
}

function sameShape(a: readonly number[] | null, b: readonly number[] | null): boolean {
  return !a || !b || (a.length === b.length && a.every((d, i) => d === b[i]));
}

function argmax(v: Float32Array): number {
  let k = 0;
  for (let i = 1; i < v.length; i++) if (v[i]! > v[k]!) k = i;
  return k;
}

function statusOf(e: unknown): { code: number; kind: string } {
  if (e instanceof QueueFullError) return { code: 503, kind: 'queue_full' };
  if (e instanceof RequestTimeoutError) return { code: 504, kind: 'timeout' };
  if (e instanceof RequestAbortedError) return { code: 499, kind: 'aborted' };
  if (e instanceof BatcherClosedError) return { code: 503, kind: 'closing' };
  if (e instanceof ModelError) return { code: 500, kind: 'model' };
  return { code: 500, kind: 'internal' };
}

async function loadSource(
  source: ServableModel | string,
  opts: ServerOptions,
  counter: number,
  transform: BatchTransform | undefined,
  version?: string,
): Promise<{ rm: RowModel; version: string }> {
  let model: ServableModel,
    owned = false,
    metadata: Record<string, string> = {},
    v = version;
  if (typeof source === 'string') {
    const bytes = await readFile(source);
    ({ model, metadata } = modelFromBytes(bytes, {
      where: source,
      ...(opts.backend ? { backend: opts.backend } : {}),
    }));
    owned = true;
    v ??=
      metadata['kiln.version'] ??
      `${basename(source)}@${createHash('sha256').update(bytes).digest('hex').slice(0, 12)}`;
  } else {
    model = source;
  }
  const inputShape = resolveInputShape(model, metadata, opts.inputShape);
  if (!inputShape) {
    if (owned) (model as Module).dispose();
    throw new ArgumentError(
      'the server needs inputShape (the shape of one example): pass it, or save the model with ' +
        `metadata '${INPUT_SHAPE_METADATA_KEY}', or start the model with a Linear layer`,
    );
  }
  try {
    return {
      rm: rowModel(model, {
        inputShape,
        ...(opts.backend ? { backend: opts.backend } : {}),
        ...(transform ? { transform } : {}),
        dispose: owned,
      }),
      version: v ?? `v${counter}`,
    };
  } catch (e) {
    if (owned) (model as Module).dispose();
    throw e;
  }
}

function checkOpts(o: ServerOptions): void {
  if (o === null || typeof o !== 'object')
    throw new ArgumentError(`server options must be an object, got ${describe(o)}`);
  const int = (k: keyof ServerOptions, min: number, max = Number.MAX_SAFE_INTEGER): void => {
    const v = o[k];
    if (v !== undefined && (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max)) {
      throw new ArgumentError(`server option ${k} must be an integer in [${min}, ${max}], got ${describe(v)}`);
    }
  };
  int('port', 0, 65535);
  int('maxRowsPerRequest', 1);
  int('bodyLimit', 64);
  int('cache', 0);
  int('probationBatches', 0);
  if (o.host !== undefined && (typeof o.host !== 'string' || o.host === ''))
    throw new ArgumentError(`server option host must be a host name, got ${describe(o.host)}`);
  if (o.requestLog !== undefined && (typeof o.requestLog !== 'string' || o.requestLog === ''))
    throw new ArgumentError(`server option requestLog must be a file path, got ${describe(o.requestLog)}`);
}

/**
 * Starts a model server and resolves once it listens (warm-up then runs in the background; /ready says when
 * it is done). `model` is a kn.nn Module, a function of a batch tensor, or a safetensors file saved by
 * kn.io.save. Routes: POST /predict, GET /health, /ready, /metrics.
 */
export async function createServer(model: ServableModel | string, opts: ServerOptions = {}): Promise<ModelServer> {
  checkOpts(opts);
  let loads = 0;
  let current: Loaded = {
    ...(await loadSource(model, opts, ++loads, opts.transform, opts.version)),
    active: 0,
    retired: false,
  };
  let previous: Loaded | null = null;
  let probation = 0;
  let ready = false;
  const inputShape = current.rm.inputShape;
  const per = inputShape.reduce((a, b) => a * b, 1);
  const maxRows = opts.maxRowsPerRequest ?? 64;

  // ---- metrics ----
  const registry = new Registry();
  const maxBatch = opts.maxBatchSize ?? 32;
  const pow2: number[] = [];
  for (let b = 1; b < maxBatch; b *= 2) pow2.push(b);
  pow2.push(maxBatch);
  const m = {
    requests: new Counter({
      name: 'kiln_requests_total',
      help: 'HTTP /predict requests by status code',
      labelNames: ['code'],
      registers: [registry],
    }),
    latency: new Histogram({
      name: 'kiln_request_duration_seconds',
      help: '/predict latency (receipt to reply)',
      registers: [registry],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    }),
    batchSize: new Histogram({
      name: 'kiln_batch_size',
      help: 'examples per model call',
      buckets: pow2,
      registers: [registry],
    }),
    batchSeconds: new Histogram({
      name: 'kiln_batch_duration_seconds',
      help: 'time in the model per batch',
      registers: [registry],
      buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
    }),
    queueWait: new Histogram({
      name: 'kiln_queue_wait_seconds',
      help: 'wait of the oldest request of each batch',
      registers: [registry],
      buckets: [0.0001, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1],
    }),
    errors: new Counter({
      name: 'kiln_errors_total',
      help: 'failed requests and internal errors by kind',
      labelNames: ['kind'],
      registers: [registry],
    }),
    cacheHits: new Counter({
      name: 'kiln_cache_hits_total',
      help: 'examples answered from the cache',
      registers: [registry],
    }),
    cacheMisses: new Counter({
      name: 'kiln_cache_misses_total',
      help: 'examples that ran the model',
      registers: [registry],
    }),
    reloads: new Counter({
      name: 'kiln_model_reloads_total',
      help: 'model reloads by result',
      labelNames: ['result'],
      registers: [registry],
    }),
    modelInfo: new Gauge({
      name: 'kiln_model_info',
      help: 'the model version being served (value 1)',
      labelNames: ['version'],
      registers: [registry],
    }),
    warmup: new Gauge({ name: 'kiln_warmup_seconds', help: 'duration of the last warm-up', registers: [registry] }),
  };
  let batcher!: Batcher<Float32Array, Served>;
  new Gauge({
    name: 'kiln_queue_depth',
    help: 'requests waiting for a batch',
    registers: [registry],
    collect() {
      this.set(batcher.queueDepth);
    },
  });
  new Gauge({
    name: 'kiln_batches_in_flight',
    help: 'batches in the model now',
    registers: [registry],
    collect() {
      this.set(batcher.inFlight);
    },
  });
  new Gauge({
    name: 'kiln_ready',
    help: '1 once warm-up is done',
    registers: [registry],
    collect() {
      this.set(ready ? 1 : 0);
    },
  });
  const cache = opts.cache ? new LRUCache<string, Served>({ max: opts.cache }) : null;
  new Gauge({
    name: 'kiln_cache_entries',
    help: 'entries in the input cache',
    registers: [registry],
    collect() {
      this.set(cache?.size ?? 0);
    },
  });
  m.modelInfo.set({ version: current.version }, 1);

  const log = opts.requestLog ? new RequestLog(opts.requestLog, () => m.errors.inc({ kind: 'request_log' })) : null;

  // ---- model versions ----
  const retire = (l: Loaded): void => {
    l.retired = true;
    if (l.active === 0) l.rm.dispose();
  };
  const swap = (next: Loaded, keepPrevious: boolean): void => {
    if (previous && previous !== next) retire(previous);
    const old = current;
    current = next;
    current.retired = false;
    previous = keepPrevious ? old : null;
    if (!keepPrevious) retire(old);
    cache?.clear();
    m.modelInfo.reset();
    m.modelInfo.set({ version: current.version }, 1);
  };
  const runOn = async (l: Loaded, rows: Float32Array[]): Promise<Served[]> => {
    l.active++;
    try {
      const outs = await l.rm.run(rows);
      return outs.map((output) => ({ output, version: l.version }));
    } finally {
      l.active--;
      if (l.retired && l.active === 0) l.rm.dispose();
    }
  };
  const runBatch = async (rows: Float32Array[]): Promise<Served[]> => {
    const l = current;
    try {
      const out = await runOn(l, rows);
      if (l === current && probation > 0) probation--;
      return out;
    } catch (e) {
      if (l === current && probation > 0 && previous) {
        m.reloads.inc({ result: 'rolled_back' });
        if (opts.logger)
          app.log.error(
            `model ${l.version} failed in probation (${(e as Error).message}); rolling back to ${previous.version}`,
          );
        probation = 0;
        swap(previous, false);
        return runOn(current, rows);
      }
      throw e;
    }
  };
  batcher = new Batcher<Float32Array, Served>(runBatch, {
    maxBatchSize: maxBatch,
    maxDelayMs: opts.maxDelayMs ?? 2,
    timeoutMs: opts.timeoutMs ?? 5000,
    maxQueue: opts.maxQueue ?? 1024,
    onBatch: (b) => {
      m.batchSize.observe(b.size);
      m.batchSeconds.observe(b.ms / 1000);
      m.queueWait.observe(b.waitMs / 1000);
      if (b.error) m.errors.inc({ kind: 'model' });
    },
  });

  /** Runs every batch size the batcher can form on zeros; throws unless outputs are finite and of one shape. */
  const warm = async (l: Loaded): Promise<void> => {
    const t0 = performance.now();
    const sizes = [...new Set([...pow2, maxBatch])];
    let shape: readonly number[] | null = null;
    for (const n of sizes) {
      const outs = await runOn(
        l,
        Array.from({ length: n }, () => new Float32Array(per)),
      );
      for (const o of outs) {
        if (!o.output.every(Number.isFinite))
          throw new ModelError(`model ${l.version} gives non-finite outputs on the warm-up input (zeros)`);
      }
      if (shape && !sameShape(shape, l.rm.outputShape))
        throw new ModelError(`model ${l.version} changes its output shape with the batch size`);
      shape = l.rm.outputShape;
    }
    m.warmup.set((performance.now() - t0) / 1000);
  };

  const runAlone = async (row: Float32Array): Promise<Served> => {
    const t0 = performance.now();
    try {
      return (await runBatch([row]))[0]!;
    } catch (e) {
      m.errors.inc({ kind: 'model' });
      throw new ModelError(`the model failed: ${e instanceof Error ? e.message : String(e)}`, e);
    } finally {
      m.batchSize.observe(1);
      m.batchSeconds.observe((performance.now() - t0) / 1000);
    }
  };

  const key = (v: string, x: Float32Array): string =>
    v +
    ':' +
    createHash('sha1')
      .update(new Uint8Array(x.buffer, x.byteOffset, x.byteLength))
      .digest('base64');

  const predict: ModelServer['predict'] = async (input, o = {}) => {
    const row = input instanceof Float32Array ? input : Float32Array.from(input);
    if (row.length !== per)
      throw new ArgumentError(`an example has ${per} values (shape [${inputShape.join(', ')}]), got ${row.length}`);
    const k = cache ? key(current.version, row) : '';
    const hit = cache?.get(k);
    if (hit) {
      m.cacheHits.inc();
      return { output: hit.output, version: hit.version, cached: true };
    }
    if (cache) m.cacheMisses.inc();
    const served = opts.batching === false ? await runAlone(row) : await batcher.submit(row, o);
    if (cache && served.version === current.version) cache.set(k, served);
    return { ...served, cached: false };
  };

  // ---- HTTP ----
  const app = Fastify({
    logger: opts.logger ?? false,
    bodyLimit: opts.bodyLimit ?? Math.max(1 << 20, maxRows * per * 32 + 4096),
    ajv: { customOptions: { coerceTypes: false, removeAdditional: false, allErrors: false } },
  });
  app.removeContentTypeParser('text/plain'); // JSON only: anything else is 415
  const bodySchema = {
    type: 'object',
    additionalProperties: false,
    properties: {
      input: rowSchema(inputShape),
      inputs: { type: 'array', minItems: 1, maxItems: maxRows, items: rowSchema(inputShape) },
      id: { type: 'string', maxLength: 200 },
    },
  };
  const fail = (reply: FastifyReply, code: number, kind: string, message: string): FastifyReply => {
    m.errors.inc({ kind });
    return reply.code(code).send({ error: kind, message });
  };
  app.setErrorHandler((err: FastifyError, _req, reply) => {
    if (err.validation) return fail(reply, 400, 'bad_request', `invalid request: ${err.message}`);
    if (err.code === 'FST_ERR_CTP_BODY_TOO_LARGE')
      return fail(
        reply,
        413,
        'too_large',
        `the request body is over the limit of ${app.initialConfig.bodyLimit} bytes`,
      );
    if (err.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE')
      return fail(reply, 415, 'bad_media_type', 'send the request as application/json');
    const code = err.statusCode && err.statusCode >= 400 && err.statusCode < 500 ? err.statusCode : 500;
    return fail(reply, code, code === 500 ? 'internal' : 'bad_request', err.message);
  });
  // HTTP requests not yet answered (close() waits for them, then cuts connections that carry none)
  let httpInFlight = 0;
  let httpIdle: (() => void) | null = null;
  app.addHook('onRequest', async (_req, reply) => {
    httpInFlight++;
    reply.raw.once('close', () => {
      if (--httpInFlight === 0 && httpIdle) httpIdle();
    });
  });
  app.addHook('onResponse', async (req, reply) => {
    if (req.routeOptions.url === '/predict') {
      m.requests.inc({ code: String(reply.statusCode) });
      m.latency.observe(reply.elapsedTime / 1000);
    }
  });

  app.get('/health', async () => ({ status: 'ok', version: current.version, uptimeSeconds: process.uptime() }));
  app.get('/ready', async (_req, reply) =>
    ready ? { ready: true, version: current.version } : reply.code(503).send({ ready: false, message: 'warming up' }),
  );
  app.get('/metrics', async (_req, reply) => reply.type(registry.contentType).send(await registry.metrics()));

  app.post('/predict', { schema: { body: bodySchema } }, async (req, reply) => {
    const body = req.body as { input?: unknown[]; inputs?: unknown[][]; id?: string };
    if ((body.input === undefined) === (body.inputs === undefined)) {
      return fail(
        reply,
        400,
        'bad_request',
        "invalid request: send exactly one of 'input' (one example) or 'inputs' (a list of examples)",
      );
    }
    if (!ready) return fail(reply, 503, 'not_ready', 'the model is warming up; retry when /ready returns 200');
    const rows = (body.input !== undefined ? [body.input] : body.inputs!).map((r) => toRow(r, per));
    const ac = new AbortController();
    const onClose = (): void => {
      if (!reply.raw.writableEnded) ac.abort();
    };
    reply.raw.on('close', onClose);
    const t0 = performance.now();
    const settled = await Promise.allSettled(rows.map((r) => predict(r, { signal: ac.signal })));
    reply.raw.off('close', onClose);
    const id = body.id ?? String(req.id);
    if (log) {
      const ms = performance.now() - t0;
      settled.forEach((s, i) =>
        log.write({
          ts: new Date().toISOString(),
          id: rows.length > 1 ? `${id}#${i}` : id,
          version: s.status === 'fulfilled' ? s.value.version : current.version,
          input: Array.from(rows[i]!),
          output: s.status === 'fulfilled' ? Array.from(s.value.output) : null,
          error: s.status === 'rejected' ? String((s.reason as Error)?.message ?? s.reason) : null,
          latencyMs: ms,
          cached: s.status === 'fulfilled' && s.value.cached,
        }),
      );
    }
    const bad = settled.find((s): s is PromiseRejectedResult => s.status === 'rejected');
    if (bad) {
      const { code, kind } = statusOf(bad.reason);
      if (code === 503) reply.header('retry-after', '1');
      return fail(reply, code, kind, bad.reason instanceof KilnError ? bad.reason.message : 'internal error');
    }
    const outShape = current.rm.outputShape ?? [];
    const res = (settled as PromiseFulfilledResult<{ output: Float32Array; version: string; cached: boolean }>[]).map(
      ({ value }) => ({
        output: Array.from(value.output),
        ...(outShape.length === 1 && value.output.length > 1 ? { argmax: argmax(value.output) } : {}),
        version: value.version,
        cached: value.cached,
      }),
    );
    return body.input !== undefined ? { id, shape: outShape, ...res[0] } : { id, shape: outShape, outputs: res };
  });

  const warmNow = async (): Promise<void> => {
    await warm(current);
    ready = true;
  };

  await app.listen({ port: opts.port ?? 8080, host: opts.host ?? '127.0.0.1' });
  const addr = app.server.address();
  const port = typeof addr === 'object' && addr ? addr.port : (opts.port ?? 8080);
  const host = opts.host ?? '127.0.0.1';
  const warming =
    opts.warmup === false
      ? ((ready = true), Promise.resolve())
      : warmNow().catch((e: unknown) => {
          m.errors.inc({ kind: 'warmup' });
          app.log.error(`warm-up failed: ${(e as Error).message}`);
        });
  let closed = false;

  const server: ModelServer = {
    app,
    url: `http://${host.includes(':') ? `[${host}]` : host}:${port}`,
    port,
    get version() {
      return current.version;
    },
    get ready() {
      return ready;
    },
    inputShape,
    batcher,
    predict,
    async reload(source, o = {}) {
      if (closed) throw new ReloadError('the server is closed');
      await warming;
      let cand: Loaded;
      try {
        cand = {
          ...(await loadSource(source, { ...opts, inputShape }, ++loads, o.transform ?? opts.transform, o.version)),
          active: 0,
          retired: false,
        };
      } catch (e) {
        m.reloads.inc({ result: 'failed' });
        throw new ReloadError(`reload refused, still serving ${current.version}: ${(e as Error).message}`);
      }
      try {
        await warm(cand);
        if (!sameShape(cand.rm.outputShape, current.rm.outputShape)) {
          throw new ModelError(
            `its output shape [${cand.rm.outputShape?.join(', ')}] differs from the served model's [${current.rm.outputShape?.join(', ')}]`,
          );
        }
      } catch (e) {
        cand.rm.dispose();
        m.reloads.inc({ result: 'failed' });
        throw new ReloadError(
          `reload of ${cand.version} refused, still serving ${current.version}: ${(e as Error).message}`,
        );
      }
      swap(cand, true);
      probation = opts.probationBatches ?? 20;
      m.reloads.inc({ result: 'ok' });
      return current.version;
    },
    async rollback() {
      if (!previous) throw new ReloadError(`no previous version to roll back to (serving ${current.version})`);
      probation = 0;
      swap(previous, false);
      m.reloads.inc({ result: 'rolled_back' });
      return current.version;
    },
    metrics: () => registry.metrics(),
    async close() {
      if (closed) return;
      closed = true;
      await warming;
      // stop accepting, let the requests in flight finish (the batcher drains them), then close the keep-alive
      // and pre-opened connections that carry no request, which would otherwise hold close() until they time out
      const stopped = app.close();
      if (httpInFlight > 0)
        await new Promise<void>((r) => {
          httpIdle = r;
        });
      app.server.closeAllConnections();
      await stopped;
      await batcher.close();
      await log?.close();
      previous?.rm.dispose();
      current.rm.dispose();
    },
  };
  return server;
}
