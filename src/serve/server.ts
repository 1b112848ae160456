// Model server: wires the parts together. http.ts (fastify routes, JSON-schema request validation, status
// codes), metrics.ts (prom-client), versions.ts (served/previous versions, warm-up, probation rollback),
// lru-cache for repeated inputs and the Batcher for dynamic batching. Loopback by default. Lifecycle:
// listen -> warm up (every batch size the batcher can form) -> ready. reload() swaps models only after the
// candidate warms up with finite outputs of the same shape; for a probation window after a swap, a failing
// batch rolls the server back to the previous version and is retried there.
import { createHash } from 'node:crypto';
import { realpathSync } from 'node:fs';
import { readFileFor } from '../io/atomic.js';
import { basename, dirname, isAbsolute, relative, resolve } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { LRUCache } from 'lru-cache';
import type { BackendName } from '../backends/backend.js';
import { getBackend } from '../backends/registry.js';
import { ColumnPipeline } from '../data/pipeline.js';
import { ArgumentError, checkOptions, describe, messageOf, optionKeys } from '../errors.js';
import { modelFromBytes } from '../io/index.js';
import { Module } from '../nn/module.js';
import { ApiKeys, isLoopback, type AuthOptions } from './auth.js';
import {
  Batcher,
  BatcherClosedError,
  ModelError,
  RequestAbortedError,
  type BatchInfo,
  type BatcherOptions,
} from './batcher.js';
import { audited, httpApp, type Admin, type Answer, type AuditRecord, type Route } from './http.js';
import { JsonLines, RequestLog } from './log.js';
import { Monitor, type MonitorOptions, type MonitorReport, type Notification } from './monitor.js';
import { openApiSpec } from './openapi.js';
import {
  Outcomes,
  Traffic,
  checkDeploy,
  checkRule,
  type AutoRollbackRule,
  type Deployed,
  type DeployOptions,
  type VersionInfo,
} from './traffic.js';
import { batchSizes, serverMetrics } from './metrics.js';
import {
  INPUT_SHAPE_METADATA_KEY,
  CLASSES_METADATA_KEY,
  metadataNames,
  resolveInputShape,
  rowModel,
  tuneBatchSize,
  type BatchTiming,
  type BatchTransform,
  type ServableModel,
} from './model.js';
import { ModelVersions, ReloadError, type ModelVersion, type Served } from './versions.js';
import { own } from '../records.js';

export { INPUT_SHAPE_METADATA_KEY, CLASSES_METADATA_KEY, ReloadError, type Served };

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
  /**
   * Largest batch (default 32). 'auto': after warm-up the server times the model at batch sizes up to
   * maxAutoBatch and takes the smallest that reaches 90% of the best rows per second (see tuneBatchSize).
   */
  maxBatchSize?: number | 'auto';
  /** Largest size 'auto' tries (default 256 on webgpu and cuda, 64 on the CPU backends). */
  maxAutoBatch?: number;
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
  /**
   * API keys: `{keys: {[token]: ['predict'] | ['admin'] | ...}}` (tokens, or 'sha256:<hex>' hashes). Requests
   * then need 'Authorization: Bearer <token>'; /health, /ready, /openapi.json and /docs stay open.
   */
  auth?: AuthOptions;
  /** Serve HTTPS with this PEM certificate and key. */
  tls?: { cert: string | Buffer; key: string | Buffer };
  /** JSONL file that gets a line per admin action, refused request and /predict call (key ids, never keys). */
  auditLog?: string;
  /** Drift and alert monitoring against the training reference (GET /alerts, kiln_monitor_* metrics). */
  monitor?: MonitorOptions;
  /** Called when an alert fires or resolves (after the webhook, if any, was tried). */
  onAlert?: (n: Notification) => void;
  /** The rule that takes a canary or A/B version out on errors or latency (default {maxErrorRate: 0.05}). */
  autoRollback?: AutoRollbackRule | false;
  /** Directory that POST /admin/deploy paths must lie in (default: the first model file's directory, or the cwd). */
  modelDir?: string;
}

/** A running model server. */
export interface ModelServer {
  readonly app: FastifyInstance;
  readonly url: string;
  readonly port: number;
  readonly version: string;
  readonly ready: boolean;
  readonly inputShape: readonly number[];
  /** With maxBatchSize 'auto': the measured batch sizes (null until warm-up is done, or without 'auto'). */
  readonly batchTiming: BatchTiming[] | null;
  /** The batcher behind /predict (queue depth, stats). */
  readonly batcher: Batcher<Float32Array, Served>;
  /**
   * Runs one example through the same path as /predict (cache, batcher, log). For an output vector of two or
   * more scores the answer also holds `argmax` and, for a version with class names (kiln.classes), `label`.
   */
  predict(input: ArrayLike<number>, opts?: { signal?: AbortSignal; timeoutMs?: number } & Route): Promise<Answer>;
  /**
   * Loads a model beside the primary one: a canary (`weight`: that share of requests), an A/B variant
   * (`stickyKey`: a header name; requests are split by a hash of its value, or of the body's `key`), or a shadow
   * (`shadow: true`: gets a copy of every request; its answers are logged and measured, never returned).
   * Refused with ReloadError when it fails to load or warm up, or its output shape differs.
   */
  deploy(source: ServableModel | string, opts: DeployOptions & { transform?: BatchTransform }): Promise<VersionInfo>;
  /** Makes a deployed version the primary (the old primary is kept for rollback()). */
  promote(version: string): Promise<string>;
  /** Takes one deployed version out. */
  undeploy(version: string): Promise<void>;
  /** Every version with its role, weight and recent numbers (the primary first). */
  versions(): VersionInfo[];
  /** The monitor's numbers and alert states, evaluated now (null without a monitor). */
  alerts(): MonitorReport | null;
  /** The monitor (null without one). */
  readonly monitor: Monitor | null;
  /** The OpenAPI 3.1 document (GET /openapi.json). */
  openapi(): object;
  /** Loads a new model (path or module); refused with ReloadError when it fails to load or warm up. */
  reload(source: ServableModel | string, opts?: { version?: string; transform?: BatchTransform }): Promise<string>;
  /**
   * Takes out every canary, A/B and shadow version when there are any; otherwise goes back to the version
   * served before the last reload or promote. Resolves to the primary version.
   */
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
    const bytes = await readFileFor(source, 'serve');
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
    const on = source instanceof Module ? source.parameters().find((p) => p.backend !== opts.backend) : undefined;
    if (opts.backend && on)
      throw new ArgumentError(
        `the model's parameters are on the ${on.backend} backend but the server runs on ${opts.backend}: ` +
          `serve its file (the server loads it there) or load it with kn.io.loadModel(path, {backend: '${opts.backend}'})`,
      );
  }
  const classes = metadataNames(metadata, CLASSES_METADATA_KEY, typeof source === 'string' ? source : 'the model');
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
      classes,
    };
  } catch (e) {
    if (owned) (model as Module).dispose();
    throw e;
  }
}

const SERVER_OPTIONS = optionKeys<ServerOptions>({
  port: true,
  host: true,
  inputShape: true,
  backend: true,
  transform: true,
  pipeline: true,
  version: true,
  maxBatchSize: true,
  maxAutoBatch: true,
  maxDelayMs: true,
  timeoutMs: true,
  maxQueue: true,
  maxRowsPerRequest: true,
  bodyLimit: true,
  cache: true,
  requestLog: true,
  warmup: true,
  probationBatches: true,
  batching: true,
  logger: true,
  auth: true,
  tls: true,
  auditLog: true,
  monitor: true,
  onAlert: true,
  autoRollback: true,
  modelDir: true,
});

function checkOpts(o: ServerOptions): void {
  checkOptions(o, 'server', SERVER_OPTIONS);
  const int = (k: keyof ServerOptions, min: number, max = Number.MAX_SAFE_INTEGER): void => {
    const v = o[k];
    if (v !== undefined && (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max)) {
      throw new ArgumentError(`server option ${k} must be an integer in [${min}, ${max}], got ${describe(v)}`);
    }
  };
  int('port', 0, 65535);
  int('maxRowsPerRequest', 1);
  int('maxAutoBatch', 1, 65536);
  if (o.maxBatchSize !== undefined && o.maxBatchSize !== 'auto') int('maxBatchSize', 1);
  int('bodyLimit', 64);
  int('cache', 0, 2 ** 24);
  int('probationBatches', 0);
  if (
    o.inputShape !== undefined &&
    !(Array.isArray(o.inputShape) && o.inputShape.length > 0 && o.inputShape.every((d) => Number.isInteger(d) && d > 0))
  )
    throw new ArgumentError(`server option inputShape must be a list of positive sizes, got ${describe(o.inputShape)}`);
  if (
    o.backend !== undefined &&
    !(typeof o.backend === 'string' && (['cpu', 'js', 'webgpu', 'cuda'] as readonly string[]).includes(o.backend))
  )
    throw new ArgumentError(`server option backend must be cpu, js, webgpu or cuda, got ${describe(o.backend)}`);
  if (o.host !== undefined && (typeof o.host !== 'string' || o.host === ''))
    throw new ArgumentError(`server option host must be a host name, got ${describe(o.host)}`);
  if (o.requestLog !== undefined && (typeof o.requestLog !== 'string' || o.requestLog === ''))
    throw new ArgumentError(`server option requestLog must be a file path, got ${describe(o.requestLog)}`);
  if (o.auditLog !== undefined && (typeof o.auditLog !== 'string' || o.auditLog === ''))
    throw new ArgumentError(`server option auditLog must be a file path, got ${describe(o.auditLog)}`);
  if (o.modelDir !== undefined && (typeof o.modelDir !== 'string' || o.modelDir === ''))
    throw new ArgumentError(`server option modelDir must be a directory, got ${describe(o.modelDir)}`);
  if (o.tls !== undefined) {
    const pem = (v: unknown): boolean => (typeof v === 'string' && v.includes('-----BEGIN')) || Buffer.isBuffer(v);
    checkOptions(o.tls, 'server tls', ['cert', 'key']);
    if (!pem(o.tls.cert) || !pem(o.tls.key))
      throw new ArgumentError(
        'server option tls must be {cert, key}, each a PEM string or Buffer (file contents, not paths)',
      );
  }
  if (o.autoRollback !== undefined && o.autoRollback !== false) checkRule(o.autoRollback, 'autoRollback');
}

/** Does a model file requested over HTTP lie inside `dir`? Returns its real path or throws ArgumentError. */
function insideDir(dir: string, path: string): string {
  const base = realpathSync(dir);
  let full: string;
  try {
    full = realpathSync(resolve(base, path));
  } catch {
    throw new ArgumentError(`model file ${JSON.stringify(path)} does not exist under the model directory`);
  }
  const rel = relative(base, full);
  if (rel === '' || rel.startsWith('..') || isAbsolute(rel))
    throw new ArgumentError(`model file ${JSON.stringify(path)} is outside the model directory; deploy files under it`);
  return full;
}

/** Do two output rows agree (same argmax; one output: within 1e-3 relative)? */
function agree(a: Float32Array, b: Float32Array): boolean {
  if (a.length !== b.length) return false;
  if (a.length === 1) return Math.abs(a[0]! - b[0]!) <= 1e-3 * Math.max(1, Math.abs(a[0]!));
  let i = 0,
    j = 0;
  for (let k = 1; k < a.length; k++) {
    if (a[k]! > a[i]!) i = k;
    if (b[k]! > b[j]!) j = k;
  }
  return i === j;
}

/**
 * Starts a model server and resolves once it listens (warm-up then runs in the background; /ready says when
 * it is done). `model` is a kn.nn Module, a function of a batch tensor, or a safetensors file saved by
 * kn.io.save. Routes: POST /predict, GET /health, /ready, /metrics.
 */
export async function createServer(model: ServableModel | string, opts: ServerOptions = {}): Promise<ModelServer> {
  checkOpts(opts);
  const keys = opts.auth !== undefined ? new ApiKeys(opts.auth) : null;
  const host = opts.host ?? '127.0.0.1';
  const modelDir = opts.modelDir ?? (typeof model === 'string' ? dirname(resolve(model)) : process.cwd());
  let loads = 0;
  let ready = false;
  let batcher!: Batcher<Float32Array, Served>;
  // the class names of every version loaded, by version (a response names its argmax class with them)
  const classNames = new Map<string, readonly string[]>();
  const remember = (v: ModelVersion): ModelVersion => {
    if (v.classes) classNames.set(v.version, v.classes);
    else classNames.delete(v.version);
    return v;
  };
  const first = remember(await loadSource(model, opts, ++loads, opts.transform, opts.version));
  const inputShape = first.rm.inputShape;
  const per = inputShape.reduce((a, b) => a * b, 1);
  const pipe = opts.pipeline ?? null;
  let monitor: Monitor | null = null;
  try {
    if (pipe !== null) {
      if (!(pipe instanceof ColumnPipeline))
        throw new ArgumentError(`pipeline must be a fitted kn.data.ColumnPipeline, got ${describe(pipe)}`);
      const width = pipe.featureNames().length;
      if (width !== per)
        throw new ArgumentError(
          `the pipeline makes ${width} features per record but the model takes ${per} values (input shape [${inputShape.join(', ')}])`,
        );
    }
    if (opts.monitor !== undefined)
      monitor = new Monitor(
        { ...opts.monitor, ...(pipe && !opts.monitor.featureNames ? { featureNames: pipe.featureNames() } : {}) },
        per,
        (n) => {
          audit?.({
            ts: new Date().toISOString(),
            event: `alert_${n.status}`,
            key: null,
            ip: 'server',
            route: 'monitor',
            status: n.ok ? 200 : 502,
            detail: { alert: n.alert.name, value: n.alert.value, webhook: n.ok ? 'sent' : (n.error ?? 'not sent') },
          });
          opts.onAlert?.(n);
        },
      );
  } catch (e) {
    first.rm.dispose();
    throw e;
  }
  const autoBatch = opts.maxBatchSize === 'auto';
  const device = opts.backend ?? getBackend();
  const maxBatch = autoBatch
    ? (opts.maxAutoBatch ?? (device === 'webgpu' || device === 'cuda' ? 256 : 64))
    : ((opts.maxBatchSize as number | undefined) ?? 32);
  let tuning: BatchTiming[] | null = null;
  const cache = opts.cache ? new LRUCache<string, Served>({ max: opts.cache }) : null;
  const m = serverMetrics(maxBatch, {
    queueDepth: () => batcher.queueDepth,
    batchesInFlight: () => batcher.inFlight,
    ready: () => ready,
    cacheEntries: () => cache?.size ?? 0,
  });
  m.serving(first.version);
  m.maxBatch.set(maxBatch);
  monitor?.register(m.registry);
  const log = opts.requestLog ? new RequestLog(opts.requestLog, () => m.errors.inc({ kind: 'request_log' })) : null;
  const auditLog = opts.auditLog
    ? new JsonLines<AuditRecord>(opts.auditLog, () => m.errors.inc({ kind: 'audit_log' }), 'the audit log')
    : null;
  const audit = auditLog ? (r: AuditRecord): void => auditLog.write(r) : null;
  /** The model's outputs on the monitor's reference rows (the prediction and confidence reference). */
  const referenceOutputs = async (): Promise<void> => {
    if (!monitor) return;
    const rows = monitor.referenceRows,
      outs: Float32Array[] = [];
    for (let i = 0; i < rows.length; i += maxBatch)
      outs.push(...(await versions.current.rm.run(rows.slice(i, i + maxBatch))));
    monitor.setReferenceOutputs(outs);
  };

  const versions = new ModelVersions(first, {
    warmupSizes: batchSizes(maxBatch),
    ...(opts.probationBatches !== undefined ? { probationBatches: opts.probationBatches } : {}),
    onSwap: (version) => {
      cache?.clear();
      m.serving(version);
      primaryOutcomes.o = new Outcomes(100);
      referenceOutputs().catch((e: unknown) => {
        m.errors.inc({ kind: 'monitor' });
        app.log.error(`monitor reference outputs failed: ${(e as Error).message}`);
      });
    },
    onProbationRollback: (failed, restored, e) => {
      m.reloads.inc({ result: 'rolled_back' });
      if (opts.logger)
        app.log.error(`model ${failed} failed in probation (${(e as Error).message}); rolling back to ${restored}`);
    },
  });
  const batcherOpts: BatcherOptions = {
    maxBatchSize: maxBatch,
    maxDelayMs: opts.maxDelayMs ?? 2,
    timeoutMs: opts.timeoutMs ?? 5000,
    maxQueue: opts.maxQueue ?? 1024,
  };
  const onBatch = (b: BatchInfo): void => {
    m.batchSize.observe(b.size);
    m.batchSeconds.observe(b.ms / 1000);
    m.queueWait.observe(b.waitMs / 1000);
    if (b.error) m.errors.inc({ kind: 'model' });
  };
  batcher = new Batcher<Float32Array, Served>((rows) => versions.run(rows), { ...batcherOpts, onBatch });
  const traffic = new Traffic(batcherOpts, (_v, b) => onBatch(b));
  const weights = (): void => {
    m.trafficWeight.reset();
    let rest = 1;
    for (const d of traffic.all()) {
      m.trafficWeight.set({ version: d.version, role: d.role }, d.role === 'shadow' ? 1 : d.weight);
      if (d.role === 'canary') rest -= d.weight;
    }
    m.trafficWeight.set({ version: versions.current.version, role: 'primary' }, Math.max(0, rest));
  };
  weights();
  /** The automatic rollback rule broke for a deployed version: take it out. */
  const autoRollback = async (d: Deployed): Promise<void> => {
    if (traffic.get(d.version) !== d) return;
    const reason = traffic.reason(d);
    m.autoRollbacks.inc({ version: d.version });
    audit?.({
      ts: new Date().toISOString(),
      event: 'auto_rollback',
      key: null,
      ip: 'server',
      route: 'traffic',
      status: 200,
      detail: { version: d.version, role: d.role, reason },
    });
    app.log.warn(`version ${d.version} taken out: ${reason}`);
    await traffic.remove(d.version).catch(() => undefined);
    weights();
  };

  /** batching: false — one example, one model call, no queue. */
  const runAlone = async (row: Float32Array): Promise<Served> => {
    const t0 = performance.now();
    try {
      return (await versions.run([row]))[0]!;
    } catch (e) {
      m.errors.inc({ kind: 'model' });
      throw new ModelError(`the model failed: ${messageOf(e)}`, e);
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

  const primaryOutcomes = { o: new Outcomes(100) };
  /** Per-version metrics of one answered (or failed) example. */
  const served = (version: string, role: string, ok: boolean, ms: number, output?: Float32Array): void => {
    m.versionRequests.inc({ version, role, result: ok ? 'ok' : 'error' });
    m.versionLatency.observe({ version, role }, ms / 1000);
    if (output && output.length > 1 && output.length <= 64) {
      let k = 0;
      for (let i = 1; i < output.length; i++) if (output[i]! > output[k]!) k = i;
      m.versionPredictions.inc({ version, class: String(k) });
    }
  };
  const primaryRun = async (
    row: Float32Array,
    o: { signal?: AbortSignal; timeoutMs?: number },
  ): Promise<{ output: Float32Array; version: string; cached: boolean }> => {
    const version = versions.current.version;
    const k = cache ? key(version, row) : '';
    const hit = cache?.get(k);
    if (hit) {
      m.cacheHits.inc();
      return { output: hit.output, version: hit.version, cached: true };
    }
    if (cache) m.cacheMisses.inc();
    const t0 = performance.now();
    try {
      const s = opts.batching === false ? await runAlone(row) : await batcher.submit(row, o);
      const ms = performance.now() - t0;
      primaryOutcomes.o.add(true, ms);
      served(s.version, 'primary', true, ms, s.output);
      if (cache && s.version === versions.current.version) cache.set(k, s);
      return { ...s, cached: false };
    } catch (e) {
      if (!(e instanceof RequestAbortedError)) {
        const ms = performance.now() - t0;
        primaryOutcomes.o.add(false, ms);
        served(version, 'primary', false, ms);
      }
      throw e;
    }
  };
  /** A canary or A/B version's answer, or null to fall back to the primary (the version failed or left). */
  const deployedRun = async (
    d: Deployed,
    row: Float32Array,
    o: { signal?: AbortSignal; timeoutMs?: number },
  ): Promise<{ output: Float32Array; version: string; cached: boolean } | null> => {
    const t0 = performance.now();
    try {
      const output = await d.batcher.submit(row, o);
      const ms = performance.now() - t0;
      served(d.version, d.role, true, ms, output);
      if (traffic.record(d, true, ms)) void autoRollback(d);
      return { output, version: d.version, cached: false };
    } catch (e) {
      if (e instanceof RequestAbortedError) throw e;
      if (e instanceof BatcherClosedError && !traffic.get(d.version)) return null; // taken out meanwhile
      const ms = performance.now() - t0;
      served(d.version, d.role, false, ms);
      if (traffic.record(d, false, ms)) void autoRollback(d);
      if (e instanceof ModelError || e instanceof BatcherClosedError) return null;
      throw e;
    }
  };
  /** Mirrors an example to a shadow version: measured and logged, never returned; failures are only counted. */
  const shadowRun = (d: Deployed, row: Float32Array, answer: Promise<Float32Array | null>): void => {
    const t0 = performance.now();
    d.batcher.submit(row).then(
      async (output) => {
        const ms = performance.now() - t0;
        served(d.version, 'shadow', true, ms, output);
        traffic.record(d, true, ms);
        const primary = await answer;
        if (primary) m.shadowAgreement.inc({ version: d.version, agree: String(agree(primary, output)) });
        log?.write({
          ts: new Date().toISOString(),
          id: 'shadow',
          version: d.version,
          input: Array.from(row),
          output: Array.from(output),
          error: null,
          latencyMs: ms,
          cached: false,
          shadow: true,
        });
      },
      (e: unknown) => {
        const ms = performance.now() - t0;
        served(d.version, 'shadow', false, ms);
        traffic.record(d, false, ms);
        m.errors.inc({ kind: e instanceof ModelError ? 'shadow_model' : 'shadow_dropped' });
      },
    );
  };
  const noHeader = (): undefined => undefined;
  // the largest score's index of a vector output, and its class name when the answering version has names
  const named = (r: Answer): Answer => {
    const out = r.output;
    if ((versions.current.rm.outputShape ?? []).length !== 1 || out.length < 2) return r;
    let best = 0;
    for (let i = 1; i < out.length; i++) if (out[i]! > out[best]!) best = i;
    const names = classNames.get(r.version);
    return { ...r, argmax: best, ...(names && names.length === out.length ? { label: names[best]! } : {}) };
  };

  const predict: ModelServer['predict'] = async (input, o = {}) => {
    const row = input instanceof Float32Array ? input : Float32Array.from(input);
    if (row.length !== per)
      throw new ArgumentError(`an example has ${per} values (shape [${inputShape.join(', ')}]), got ${row.length}`);
    const { key: routeKey, header, ...submit } = o;
    const t0 = performance.now();
    const answer = (async () => {
      const d = traffic.size ? traffic.choose(header ?? noHeader, routeKey) : null;
      return (d && d.role !== 'shadow' ? await deployedRun(d, row, submit) : null) ?? (await primaryRun(row, submit));
    })();
    if (traffic.size)
      for (const d of traffic.shadows())
        shadowRun(
          d,
          row,
          answer.then(
            (r) => r.output,
            () => null,
          ),
        );
    try {
      const r = await answer;
      monitor?.observe(row, r.output);
      monitor?.outcome(true, performance.now() - t0);
      return named(r);
    } catch (e) {
      if (!(e instanceof RequestAbortedError)) monitor?.outcome(false, performance.now() - t0);
      throw e;
    }
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
  let closed = false;
  let warming: Promise<void> = Promise.resolve();
  const primaryInfo = (): VersionInfo => {
    const o = primaryOutcomes.o;
    let share = 1;
    for (const d of traffic.all()) if (d.role === 'canary') share -= d.weight;
    return {
      version: versions.current.version,
      role: 'primary',
      weight: Math.max(0, share),
      stickyKey: null,
      requests: o.total,
      errors: o.errors,
      errorRate: o.errorRate(),
      p99Ms: o.p99(),
      deployedAt: null,
    };
  };
  const listVersions = (): VersionInfo[] => [primaryInfo(), ...traffic.info()];
  const deploy = async (
    source: ServableModel | string,
    o: DeployOptions & { transform?: BatchTransform },
  ): Promise<VersionInfo> => {
    if (closed) throw new ReloadError('the server is closed');
    checkDeploy(o, ['transform']);
    if (o.autoRollback !== undefined && o.autoRollback !== false) checkRule(o.autoRollback, 'autoRollback');
    if (o.version === versions.current.version || traffic.get(o.version))
      throw new ArgumentError(`version ${o.version} is already deployed`);
    await warming;
    let cand: ModelVersion;
    try {
      cand = remember(
        await loadSource(source, { ...opts, inputShape }, ++loads, o.transform ?? opts.transform, o.version),
      );
    } catch (e) {
      throw new ReloadError(`deploy of ${o.version} refused: ${(e as Error).message}`);
    }
    try {
      await versions.warm(cand);
      const want = versions.current.rm.outputShape,
        got = cand.rm.outputShape;
      if (want && got && (want.length !== got.length || want.some((d, i) => d !== got[i])))
        throw new ModelError(`its output shape [${got.join(', ')}] differs from the primary's [${want.join(', ')}]`);
      const { transform: _t, ...dep } = o;
      traffic.add(cand, dep, opts.autoRollback);
    } catch (e) {
      cand.rm.dispose();
      if (e instanceof ArgumentError) throw e;
      throw new ReloadError(`deploy of ${o.version} refused: ${(e as Error).message}`);
    }
    weights();
    return traffic.info().find((v) => v.version === o.version)!;
  };
  const promote = async (version: string): Promise<string> => {
    if (closed) throw new ReloadError('the server is closed');
    if (typeof version !== 'string') throw new ArgumentError(`promote needs a version label, got ${describe(version)}`);
    if (version === versions.current.version) return version;
    const d = await traffic.detach(version);
    try {
      await versions.promote(d.model);
    } finally {
      weights();
    }
    m.reloads.inc({ result: 'ok' });
    return versions.current.version;
  };
  const rollback = async (): Promise<{ version: string; removed: string[] }> => {
    if (traffic.size) {
      const removed = await traffic.clear();
      weights();
      return { version: versions.current.version, removed };
    }
    const v = versions.rollback();
    m.reloads.inc({ result: 'rolled_back' });
    weights();
    return { version: v, removed: [] };
  };
  /** An in-process admin call, audited like an HTTP one. */
  const local = <T>(event: string, detail: Record<string, unknown>, run: () => Promise<T>): Promise<T> =>
    audited(audit, { event, key: null, ip: 'in-process', route: 'api' }, detail, run);
  const admin: Admin = {
    versions: listVersions,
    deploy: (path, o) => deploy(insideDir(modelDir, path), o),
    promote: (v) => promote(v),
    rollback: () => rollback(),
  };
  const spec = (): object =>
    openApiSpec({
      title: 'kiln model server',
      version: versions.current.version,
      inputShape,
      ids: versions.current.rm.ids,
      maxRows: opts.maxRowsPerRequest ?? 64,
      records: pipe !== null,
      ...(pipe ? { recordFields: pipe.inputColumns() } : {}),
      outputShape: versions.current.rm.outputShape,
      auth: keys !== null,
    });

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
    auth: keys,
    audit,
    admin,
    alerts: () => monitor?.evaluate() ?? null,
    spec,
    tls: opts.tls,
  });

  if (!keys && !isLoopback(host))
    process.emitWarning(
      `kiln serve listens on ${host} without auth: anyone who reaches it can call /predict (admin routes answer loopback callers only). Give auth keys.`,
      { code: 'KILN_NO_AUTH' },
    );
  /** Closes what the server holds besides its HTTP listener: the batcher, traffic, monitor, logs and versions. */
  const release = async (): Promise<void> => {
    await batcher.close();
    await traffic.clear();
    await monitor?.close();
    await log?.close();
    await auditLog?.close();
    versions.dispose();
  };
  try {
    await app.listen({ port: opts.port ?? 8080, host });
  } catch (e) {
    // a host that does not resolve, a port in use or not allowed: release what was set up, say where it tried
    closed = true;
    await app.close().catch(() => {});
    await release().catch(() => {});
    throw new ArgumentError(`cannot listen on ${host}:${opts.port ?? 8080}: ${(e as Error).message}`);
  }
  const addr = app.server.address();
  const port = typeof addr === 'object' && addr ? addr.port : (opts.port ?? 8080);
  warming =
    opts.warmup === false
      ? ((ready = true), referenceOutputs().then(() => monitor?.start()))
      : versions.warm().then(
          async (seconds) => {
            m.warmup.set(seconds);
            if (autoBatch) {
              const t = await tuneBatchSize(versions.current.rm, batchSizes(maxBatch));
              tuning = t.timings;
              batcher.setMaxBatchSize(t.size);
              batcherOpts.maxBatchSize = t.size;
            }
            m.maxBatch.set(batcher.maxBatchSize);
            await referenceOutputs();
            monitor?.start();
            ready = true;
          },
          (e: unknown) => {
            m.errors.inc({ kind: 'warmup' });
            app.log.error(`warm-up failed: ${(e as Error).message}`);
          },
        );

  const server: ModelServer = {
    app,
    url: `${opts.tls ? 'https' : 'http'}://${host.includes(':') ? `[${host}]` : host}:${port}`,
    port,
    get version() {
      return versions.current.version;
    },
    get ready() {
      return ready;
    },
    get batchTiming() {
      return tuning;
    },
    inputShape,
    batcher,
    predict,
    async reload(source, o = {}) {
      if (closed) throw new ReloadError('the server is closed');
      await warming;
      let cand: ModelVersion;
      try {
        cand = remember(
          await loadSource(source, { ...opts, inputShape }, ++loads, o.transform ?? opts.transform, o.version),
        );
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
      return (await local('rollback', {}, rollback)).version;
    },
    deploy(source, o) {
      return local('deploy', { source: typeof source === 'string' ? source : 'module', ...o }, () => deploy(source, o));
    },
    promote(version) {
      return local('promote', { version }, () => promote(version));
    },
    undeploy(version) {
      return local('undeploy', { version }, async () => {
        await traffic.remove(version);
        weights();
      });
    },
    versions: listVersions,
    alerts: () => monitor?.evaluate() ?? null,
    monitor,
    openapi: spec,
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
      await release();
    },
  };
  return server;
}
