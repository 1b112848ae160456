// Model server: wires the parts together. http.ts (fastify routes, JSON-schema request validation, status
// codes), metrics.ts (prom-client), versions.ts (served/previous versions, warm-up, probation rollback),
// lru-cache for repeated inputs and the Batcher for dynamic batching. Loopback by default. Lifecycle:
// listen -> warm up (every batch size the batcher can form) -> ready. reload() swaps models only after the
// candidate warms up with finite outputs of the same shape; for a probation window after a swap, a failing
// batch rolls the server back to the previous version and is retried there.
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { basename } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { LRUCache } from 'lru-cache';
import type { BackendName } from '../backends/backend.js';
import { ColumnPipeline } from '../data/pipeline.js';
import { ArgumentError, describe } from '../errors.js';
import { modelFromBytes } from '../io/index.js';
import { Module } from '../nn/module.js';
import { Batcher, ModelError } from './batcher.js';
import { httpApp } from './http.js';
import { RequestLog } from './log.js';
import { batchSizes, serverMetrics } from './metrics.js';
import {
  INPUT_SHAPE_METADATA_KEY,
  resolveInputShape,
  rowModel,
  type BatchTransform,
  type ServableModel,
} from './model.js';
import { ModelVersions, ReloadError, type ModelVersion, type Served } from './versions.js';
import { own } from '../records.js';

export { INPUT_SHAPE_METADATA_KEY, ReloadError, type Served };

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
  /**
   * A fitted kn.data.ColumnPipeline: requests may then send raw fields ('record' / 'records'), which it turns
   * into the model's input rows, exactly as it made the training features.
   */
  pipeline?: ColumnPipeline;
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

async function loadSource(
  source: ServableModel | string,
  opts: ServerOptions,
  counter: number,
  transform: BatchTransform | undefined,
  version?: string,
): Promise<ModelVersion> {
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
      own(metadata, 'kiln.version') ??
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
  let ready = false;
  let batcher!: Batcher<Float32Array, Served>;
  const first = await loadSource(model, opts, ++loads, opts.transform, opts.version);
  const inputShape = first.rm.inputShape;
  const per = inputShape.reduce((a, b) => a * b, 1);
  const pipe = opts.pipeline ?? null;
  if (pipe !== null) {
    if (!(pipe instanceof ColumnPipeline))
      throw new ArgumentError(`pipeline must be a fitted kn.data.ColumnPipeline, got ${describe(pipe)}`);
    const width = pipe.featureNames().length;
    if (width !== per)
      throw new ArgumentError(
        `the pipeline makes ${width} features per record but the model takes ${per} values (input shape [${inputShape.join(', ')}])`,
      );
  }
  const maxBatch = opts.maxBatchSize ?? 32;
  const cache = opts.cache ? new LRUCache<string, Served>({ max: opts.cache }) : null;
  const m = serverMetrics(maxBatch, {
    queueDepth: () => batcher.queueDepth,
    batchesInFlight: () => batcher.inFlight,
    ready: () => ready,
    cacheEntries: () => cache?.size ?? 0,
  });
  m.serving(first.version);
  const log = opts.requestLog ? new RequestLog(opts.requestLog, () => m.errors.inc({ kind: 'request_log' })) : null;

  const versions = new ModelVersions(first, {
    warmupSizes: batchSizes(maxBatch),
    ...(opts.probationBatches !== undefined ? { probationBatches: opts.probationBatches } : {}),
    onSwap: (version) => {
      cache?.clear();
      m.serving(version);
    },
    onProbationRollback: (failed, restored, e) => {
      m.reloads.inc({ result: 'rolled_back' });
      if (opts.logger)
        app.log.error(`model ${failed} failed in probation (${(e as Error).message}); rolling back to ${restored}`);
    },
  });
  batcher = new Batcher<Float32Array, Served>((rows) => versions.run(rows), {
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

  /** batching: false — one example, one model call, no queue. */
  const runAlone = async (row: Float32Array): Promise<Served> => {
    const t0 = performance.now();
    try {
      return (await versions.run([row]))[0]!;
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
    const version = versions.current.version;
    const k = cache ? key(version, row) : '';
    const hit = cache?.get(k);
    if (hit) {
      m.cacheHits.inc();
      return { output: hit.output, version: hit.version, cached: true };
    }
    if (cache) m.cacheMisses.inc();
    const served = opts.batching === false ? await runAlone(row) : await batcher.submit(row, o);
    if (cache && served.version === versions.current.version) cache.set(k, served);
    return { ...served, cached: false };
  };

  const records = (recs: readonly unknown[]): Float32Array[] => {
    const x = pipe!.transformRecords(recs);
    try {
      const a = x.toArray() as Float32Array;
      return Array.from({ length: recs.length }, (_, i) => a.slice(i * per, (i + 1) * per));
    } finally {
      x.dispose();
    }
  };
  const { app, idle } = httpApp({
    ...(pipe ? { records } : {}),
    inputShape,
    ids: versions.current.rm.ids,
    maxRows: opts.maxRowsPerRequest ?? 64,
    ...(opts.bodyLimit !== undefined ? { bodyLimit: opts.bodyLimit } : {}),
    ...(opts.logger !== undefined ? { logger: opts.logger } : {}),
    metrics: m,
    log,
    predict,
    ready: () => ready,
    version: () => versions.current.version,
    outputShape: () => versions.current.rm.outputShape,
  });

  await app.listen({ port: opts.port ?? 8080, host: opts.host ?? '127.0.0.1' });
  const addr = app.server.address();
  const port = typeof addr === 'object' && addr ? addr.port : (opts.port ?? 8080);
  const host = opts.host ?? '127.0.0.1';
  const warming =
    opts.warmup === false
      ? ((ready = true), Promise.resolve())
      : versions.warm().then(
          (seconds) => {
            m.warmup.set(seconds);
            ready = true;
          },
          (e: unknown) => {
            m.errors.inc({ kind: 'warmup' });
            app.log.error(`warm-up failed: ${(e as Error).message}`);
          },
        );
  let closed = false;

  const server: ModelServer = {
    app,
    url: `http://${host.includes(':') ? `[${host}]` : host}:${port}`,
    port,
    get version() {
      return versions.current.version;
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
      let cand: ModelVersion;
      try {
        cand = await loadSource(source, { ...opts, inputShape }, ++loads, o.transform ?? opts.transform, o.version);
      } catch (e) {
        m.reloads.inc({ result: 'failed' });
        throw new ReloadError(`reload refused, still serving ${versions.current.version}: ${(e as Error).message}`);
      }
      const t0 = performance.now();
      try {
        await versions.promote(cand);
      } catch (e) {
        m.reloads.inc({ result: 'failed' });
        throw e;
      }
      m.warmup.set((performance.now() - t0) / 1000);
      m.reloads.inc({ result: 'ok' });
      return versions.current.version;
    },
    async rollback() {
      const v = versions.rollback();
      m.reloads.inc({ result: 'rolled_back' });
      return v;
    },
    metrics: () => m.registry.metrics(),
    async close() {
      if (closed) return;
      closed = true;
      await warming;
      // stop accepting, let the requests in flight finish (the batcher drains them), then close the keep-alive
      // and pre-opened connections that carry no request, which would otherwise hold close() until they time out
      const stopped = app.close();
      await idle();
      app.server.closeAllConnections();
      await stopped;
      await batcher.close();
      await log?.close();
      versions.dispose();
    },
  };
  return server;
}
