// The model server's HTTP side (fastify): the routes, the JSON schema of a request built from the input
// shape, the mapping of errors to status codes, and the count of requests in flight that close() waits for.
import Fastify, { type FastifyError, type FastifyInstance, type FastifyReply } from 'fastify';
import { KilnError } from '../errors.js';
import {
  BatcherClosedError,
  ModelError,
  QueueFullError,
  RequestAbortedError,
  RequestTimeoutError,
  type SubmitOptions,
} from './batcher.js';
import type { RequestLog } from './log.js';
import type { ServerMetrics } from './metrics.js';

const F32_MAX = 3.4028234663852886e38;

/** The JSON schema of one example: nested to the input shape, or flat; numbers within float32 range. */
function rowSchema(shape: readonly number[], ids: boolean): object {
  const leaf = ids
    ? { type: 'integer', minimum: 0, maximum: 2 ** 31 - 1 }
    : { type: 'number', minimum: -F32_MAX, maximum: F32_MAX };
  const nested = (s: readonly number[]): object =>
    s.length === 0 ? leaf : { type: 'array', minItems: s[0], maxItems: s[0], items: nested(s.slice(1)) };
  const per = shape.reduce((a, b) => a * b, 1);
  const flat = { type: 'array', minItems: per, maxItems: per, items: leaf };
  return shape.length === 1 ? flat : { anyOf: [nested(shape), flat] };
}

/** The JSON schema of one raw record (for a pipeline): an object of scalar field values. */
const recordSchema = {
  type: 'object',
  maxProperties: 4096,
  additionalProperties: {
    anyOf: [{ type: 'string', maxLength: 4096 }, { type: 'number' }, { type: 'boolean' }, { type: 'null' }],
  },
};

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

function argmax(v: Float32Array): number {
  let k = 0;
  for (let i = 1; i < v.length; i++) if (v[i]! > v[k]!) k = i;
  return k;
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

/** One prediction as the server makes it (cache, batcher, version). */
export type Predict = (
  input: Float32Array,
  opts: SubmitOptions,
) => Promise<{ output: Float32Array; version: string; cached: boolean }>;

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
}

/** The fastify app with every route, and a promise for "no HTTP request in flight". */
export function httpApp(o: HttpOptions): { app: FastifyInstance; idle(): Promise<void> } {
  const { inputShape, maxRows, metrics: m, log, predict } = o;
  const per = inputShape.reduce((a, b) => a * b, 1);
  const app = Fastify({
    logger: o.logger ?? false,
    bodyLimit: o.bodyLimit ?? Math.max(1 << 20, maxRows * per * 32 + 4096),
    ajv: { customOptions: { coerceTypes: false, removeAdditional: false, allErrors: false } },
  });
  app.removeContentTypeParser('text/plain'); // JSON only: anything else is 415
  const bodySchema = {
    type: 'object',
    additionalProperties: false,
    properties: {
      input: rowSchema(inputShape, o.ids === true),
      inputs: { type: 'array', minItems: 1, maxItems: maxRows, items: rowSchema(inputShape, o.ids === true) },
      id: { type: 'string', maxLength: 200 },
      ...(o.records
        ? {
            record: recordSchema,
            records: { type: 'array', minItems: 1, maxItems: maxRows, items: recordSchema },
          }
        : {}),
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

  app.get('/health', async () => ({ status: 'ok', version: o.version(), uptimeSeconds: process.uptime() }));
  app.get('/ready', async (_req, reply) =>
    o.ready() ? { ready: true, version: o.version() } : reply.code(503).send({ ready: false, message: 'warming up' }),
  );
  app.get('/metrics', async (_req, reply) => reply.type(m.registry.contentType).send(await m.registry.metrics()));

  app.post('/predict', { schema: { body: bodySchema } }, async (req, reply) => {
    const body = req.body as {
      input?: unknown[];
      inputs?: unknown[][];
      record?: unknown;
      records?: unknown[];
      id?: string;
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
    if (bad) {
      const { code, kind } = statusOf(bad.reason);
      if (code === 503) reply.header('retry-after', '1');
      return fail(reply, code, kind, bad.reason instanceof KilnError ? bad.reason.message : 'internal error');
    }
    const outShape = o.outputShape() ?? [];
    const res = (settled as PromiseFulfilledResult<{ output: Float32Array; version: string; cached: boolean }>[]).map(
      ({ value }) => ({
        output: Array.from(value.output),
        ...(outShape.length === 1 && value.output.length > 1 ? { argmax: argmax(value.output) } : {}),
        version: value.version,
        cached: value.cached,
      }),
    );
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
