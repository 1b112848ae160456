// The model server's HTTP side (fastify): the routes, the JSON schema of a request built from the input
// shape, the mapping of errors to status codes, and the count of requests in flight that close() waits for.
import Fastify, { type FastifyError, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import { KilnError } from '../errors.js';
import {
  BatcherClosedError,
  ModelError,
  QueueFullError,
  RequestAbortedError,
  RequestTimeoutError,
  type SubmitOptions,
} from './batcher.js';
import { isLoopback, type ApiKeys, type AuthResult, type Scope } from './auth.js';
import type { RequestLog } from './log.js';
import type { ServerMetrics } from './metrics.js';
import type { MonitorReport } from './monitor.js';
import { docsHtml, predictBodySchema } from './openapi.js';
import { UnknownVersionError, type DeployOptions, type VersionInfo } from './traffic.js';
import { ReloadError } from './versions.js';

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

/** The HTTP status and the error kind (for kiln_errors_total) of a failed prediction. */
function statusOf(e: unknown): { code: number; kind: string } {
  if (e instanceof QueueFullError) return { code: 503, kind: 'queue_full' };
  if (e instanceof RequestTimeoutError) return { code: 504, kind: 'timeout' };
  if (e instanceof RequestAbortedError) return { code: 499, kind: 'aborted' };
  if (e instanceof BatcherClosedError) return { code: 503, kind: 'closing' };
  if (e instanceof ModelError) return { code: 500, kind: 'model' };
  return { code: 500, kind: 'internal' };
}

/** Routing facts of a request: its sticky key (body) and its headers (for a sticky header). */
export interface Route {
  key?: string | undefined;
  header?: (name: string) => string | undefined;
}

/** One prediction as the server makes it (routing, cache, batcher, version). */
/**
 * One example's answer: the output, and for a model whose output is a vector of two or more scores the index of
 * the largest (`argmax`) and, when the version has class names, its name (`label`).
 */
export interface Answer {
  output: Float32Array;
  version: string;
  cached: boolean;
  argmax?: number;
  label?: string;
}

export type Predict = (input: Float32Array, opts: SubmitOptions & Route) => Promise<Answer>;

/** One line of the audit log: an admin action, a refused request, or a model access. */
export interface AuditRecord {
  ts: string;
  event: string;
  /** the API key's id (first 12 hex digits of its hash), never the key */
  key: string | null;
  ip: string;
  route: string;
  status: number;
  detail?: Record<string, unknown>;
}

/** The HTTP status of a failed admin action: 409 refused (load or warm-up failed), 404 unknown version, 400. */
export function adminStatus(e: unknown): 400 | 404 | 409 | 500 {
  if (e instanceof ReloadError) return 409;
  if (e instanceof UnknownVersionError) return 404;
  return e instanceof KilnError ? 400 : 500;
}

/** Runs an admin action and writes its audit record (the result, or the error and its status). */
export async function audited<T>(
  audit: ((r: AuditRecord) => void) | null,
  who: Pick<AuditRecord, 'event' | 'key' | 'ip' | 'route'>,
  detail: Record<string, unknown>,
  run: () => Promise<T>,
): Promise<T> {
  const rec = (status: number, extra: Record<string, unknown>): void =>
    audit?.({ ts: new Date().toISOString(), ...who, status, detail: { ...detail, ...extra } });
  try {
    const r = await run();
    rec(200, { result: r });
    return r;
  } catch (e) {
    rec(adminStatus(e), { error: (e as Error).message });
    throw e;
  }
}

/** What the admin routes call (server.ts). `who` is the key id of the caller (null without auth). */
export interface Admin {
  versions(): VersionInfo[];
  deploy(path: string, opts: DeployOptions, who: string | null): Promise<VersionInfo>;
  promote(version: string, who: string | null): Promise<string>;
  rollback(who: string | null): Promise<{ version: string; removed: string[] }>;
}

export interface HttpOptions {
  inputShape: readonly number[];
  /** the model takes token ids: rows must hold integers in [0, 2^31) */
  ids?: boolean;
  maxRows: number;
  bodyLimit?: number;
  logger?: boolean;
  metrics: ServerMetrics;
  log: RequestLog | null;
  predict: Predict;
  ready(): boolean;
  version(): string;
  outputShape(): readonly number[] | null;
  /** raw records -> model rows (a fitted kn.data.ColumnPipeline); enables 'record' / 'records' in requests */
  records?: (records: readonly unknown[]) => Float32Array[];
  /** API keys: every route but /health, /ready, /openapi.json and /docs then needs one */
  auth?: ApiKeys | null;
  /** writes an audit record (admin actions, refused requests, model access) */
  audit?: ((r: AuditRecord) => void) | null;
  admin: Admin;
  /** the monitor's report (GET /alerts), or null without a monitor */
  alerts(): MonitorReport | null;
  /** the OpenAPI document */
  spec(): object;
  /** TLS certificate and key (PEM): the server speaks HTTPS */
  tls?: { cert: string | Buffer; key: string | Buffer } | undefined;
}

/** The fastify app with every route, and a promise for "no HTTP request in flight". */
export function httpApp(o: HttpOptions): { app: FastifyInstance; idle(): Promise<void> } {
  const { inputShape, maxRows, metrics: m, log, predict } = o;
  const per = inputShape.reduce((a, b) => a * b, 1);
  const app = Fastify({
    ...(o.tls ? { https: { cert: o.tls.cert, key: o.tls.key } } : {}),
    logger: o.logger ?? false,
    bodyLimit: o.bodyLimit ?? Math.max(1 << 20, maxRows * per * 32 + 4096),
    ajv: { customOptions: { coerceTypes: false, removeAdditional: false, allErrors: false } },
  });
  app.removeContentTypeParser('text/plain'); // JSON only: anything else is 415
  const bodySchema = predictBodySchema({
    inputShape,
    ids: o.ids === true,
    maxRows,
    records: o.records !== undefined,
    outputShape: null,
  });
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
  let inFlight = 0;
  let onIdle: (() => void) | null = null;
  app.addHook('onRequest', async (_req, reply) => {
    inFlight++;
    reply.raw.once('close', () => {
      if (--inFlight === 0 && onIdle) onIdle();
    });
  });
  app.addHook('onResponse', async (req, reply) => {
    if (req.routeOptions.url === '/predict') {
      m.requests.inc({ code: String(reply.statusCode) });
      m.latency.observe(reply.elapsedTime / 1000);
    }
  });

  const audit = o.audit ?? null;
  const ipOf = (req: FastifyRequest): string => req.ip;
  /** the API key a request authenticated with (its id), set by the guard */
  const keyOf = new WeakMap<FastifyRequest, { id: string; maxRows: number | undefined }>();
  /** An onRequest hook that lets a request through only with a key that has `scope` (no-op without auth). */
  const guard =
    (scope: Scope) =>
    async (req: FastifyRequest, reply: FastifyReply): Promise<FastifyReply | undefined> => {
      const r: AuthResult = o.auth
        ? o.auth.check(req.headers.authorization, scope)
        : scope === 'predict' || isLoopback(req.ip)
          ? { ok: true, key: '', maxRows: undefined }
          : {
              ok: false,
              status: 403,
              error: 'forbidden',
              message: 'without auth keys, admin routes answer only callers on this machine (loopback)',
            };
      if (r.ok && !o.auth) return undefined;
      if (r.ok) {
        keyOf.set(req, { id: r.key, maxRows: r.maxRows });
        return undefined;
      }
      m.authFailures.inc({ code: String(r.status) });
      audit?.({
        ts: new Date().toISOString(),
        event: r.status === 429 ? 'rate_limited' : 'auth_failed',
        key: r.key ?? null,
        ip: ipOf(req),
        route: `${req.method} ${req.url.split('?')[0]}`,
        status: r.status,
      });
      if (r.status === 401) reply.header('www-authenticate', 'Bearer realm="kiln"');
      if (r.retryAfter) reply.header('retry-after', String(r.retryAfter));
      return reply.code(r.status).send({ error: r.error, message: r.message });
    };
  const who = (req: FastifyRequest): string | null => keyOf.get(req)?.id ?? null;
  const admin = { onRequest: guard('admin') };

  app.get('/health', async () => ({ status: 'ok', version: o.version(), uptimeSeconds: process.uptime() }));
  app.get('/ready', async (_req, reply) =>
    o.ready() ? { ready: true, version: o.version() } : reply.code(503).send({ ready: false, message: 'warming up' }),
  );
  app.get('/openapi.json', async () => o.spec());
  app.get('/docs', async (_req, reply) => reply.type('text/html; charset=utf-8').send(docsHtml(o.spec())));
  app.get('/metrics', admin, async (_req, reply) =>
    reply.type(m.registry.contentType).send(await m.registry.metrics()),
  );
  app.get('/alerts', admin, async (_req, reply) => {
    const r = o.alerts();
    return (
      r ??
      reply.code(404).send({ error: 'no_monitor', message: 'this server has no monitor (start it with a reference)' })
    );
  });
  app.get('/admin/versions', admin, async () => ({ primary: o.version(), versions: o.admin.versions() }));
  /** Runs an admin action; KilnErrors become 400 (bad arguments), 404 (unknown version) or 409 (refused). */
  const act = async (
    req: FastifyRequest,
    reply: FastifyReply,
    event: string,
    detail: Record<string, unknown>,
    run: () => Promise<object>,
  ): Promise<FastifyReply | object> => {
    try {
      return await audited(
        audit,
        { event, key: who(req), ip: ipOf(req), route: `${req.method} ${req.url.split('?')[0]}` },
        detail,
        run,
      );
    } catch (e) {
      if (!(e instanceof KilnError)) throw e;
      const code = adminStatus(e);
      return reply
        .code(code)
        .send({ error: code === 409 ? 'refused' : code === 404 ? 'not_found' : 'bad_request', message: e.message });
    }
  };
  const str = (max: number) => ({ type: 'string', minLength: 1, maxLength: max });
  app.post(
    '/admin/deploy',
    {
      ...admin,
      schema: {
        body: {
          type: 'object',
          required: ['path', 'version'],
          additionalProperties: false,
          properties: {
            path: str(4096),
            version: str(128),
            weight: { type: 'number' },
            shadow: { type: 'boolean' },
            stickyKey: str(64),
          },
        },
      },
    },
    async (req, reply) => {
      const b = req.body as { path: string } & DeployOptions;
      const { path, ...opts } = b;
      return act(req, reply, 'deploy', { path, ...opts }, async () => ({
        deployed: await o.admin.deploy(path, opts, who(req)),
      }));
    },
  );
  const versionBody = {
    type: 'object',
    required: ['version'],
    additionalProperties: false,
    properties: { version: str(128) },
  };
  app.post('/admin/promote', { ...admin, schema: { body: versionBody } }, async (req, reply) => {
    const { version } = req.body as { version: string };
    return act(req, reply, 'promote', { version }, async () => ({ primary: await o.admin.promote(version, who(req)) }));
  });
  app.post('/admin/rollback', admin, async (req, reply) =>
    act(req, reply, 'rollback', {}, async () => {
      const r = await o.admin.rollback(who(req));
      return { primary: r.version, removed: r.removed };
    }),
  );

  app.post('/predict', { onRequest: guard('predict'), schema: { body: bodySchema } }, async (req, reply) => {
    const body = req.body as {
      input?: unknown[];
      inputs?: unknown[][];
      record?: unknown;
      records?: unknown[];
      id?: string;
      key?: string;
    };
    const given = [body.input, body.inputs, body.record, body.records].filter((v) => v !== undefined).length;
    if (given !== 1) {
      return fail(
        reply,
        400,
        'bad_request',
        "invalid request: send exactly one of 'input' (one example) or 'inputs' (a list of examples)" +
          (o.records ? ", or 'record' / 'records' (raw fields for the pipeline)" : ''),
      );
    }
    if (!o.ready()) return fail(reply, 503, 'not_ready', 'the model is warming up; retry when /ready returns 200');
    let rows: Float32Array[];
    if (body.record !== undefined || body.records !== undefined) {
      try {
        rows = o.records!(body.record !== undefined ? [body.record] : body.records!);
      } catch (e) {
        if (e instanceof KilnError) return fail(reply, 400, 'bad_request', `invalid record: ${e.message}`);
        throw e;
      }
    } else rows = (body.input !== undefined ? [body.input] : body.inputs!).map((r) => toRow(r, per));
    const single = body.input !== undefined || body.record !== undefined;
    const lim = keyOf.get(req)?.maxRows;
    if (lim !== undefined && rows.length > lim)
      return fail(
        reply,
        413,
        'too_large',
        `this API key may send at most ${lim} examples per request, got ${rows.length}`,
      );
    const ac = new AbortController();
    const onClose = (): void => {
      if (!reply.raw.writableEnded) ac.abort();
    };
    reply.raw.on('close', onClose);
    const t0 = performance.now();
    const header = (name: string): string | undefined => {
      const v = req.headers[name];
      return typeof v === 'string' ? v : undefined;
    };
    const settled = await Promise.allSettled(rows.map((r) => predict(r, { signal: ac.signal, key: body.key, header })));
    reply.raw.off('close', onClose);
    const id = body.id ?? String(req.id);
    if (log) {
      const ms = performance.now() - t0;
      settled.forEach((s, i) =>
        log.write({
          ts: new Date().toISOString(),
          id: rows.length > 1 ? `${id}#${i}` : id,
          version: s.status === 'fulfilled' ? s.value.version : o.version(),
          input: Array.from(rows[i]!),
          output: s.status === 'fulfilled' ? Array.from(s.value.output) : null,
          error: s.status === 'rejected' ? String((s.reason as Error)?.message ?? s.reason) : null,
          latencyMs: ms,
          cached: s.status === 'fulfilled' && s.value.cached,
        }),
      );
    }
    const bad = settled.find((s): s is PromiseRejectedResult => s.status === 'rejected');
    if (audit)
      audit({
        ts: new Date().toISOString(),
        event: 'predict',
        key: who(req),
        ip: ipOf(req),
        route: 'POST /predict',
        status: bad ? statusOf(bad.reason).code : 200,
        detail: {
          id,
          rows: rows.length,
          versions: [...new Set(settled.flatMap((s) => (s.status === 'fulfilled' ? [s.value.version] : [])))],
        },
      });
    if (bad) {
      const { code, kind } = statusOf(bad.reason);
      if (code === 503) reply.header('retry-after', '1');
      return fail(reply, code, kind, bad.reason instanceof KilnError ? bad.reason.message : 'internal error');
    }
    const outShape = o.outputShape() ?? [];
    const res = (settled as PromiseFulfilledResult<Answer>[]).map(({ value }) => ({
      output: Array.from(value.output),
      ...(value.argmax !== undefined ? { argmax: value.argmax } : {}),
      ...(value.label !== undefined ? { label: value.label } : {}),
      version: value.version,
      cached: value.cached,
    }));
    return single ? { id, shape: outShape, ...res[0] } : { id, shape: outShape, outputs: res };
  });

  const idle = (): Promise<void> =>
    inFlight === 0
      ? Promise.resolve()
      : new Promise<void>((r) => {
          onIdle = r;
        });
  return { app, idle };
}
