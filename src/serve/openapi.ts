// The server's API description: the JSON schemas of a /predict request and answer, built from the model's
// real input and output shapes (http.ts validates requests with the same schemas), the OpenAPI 3.1 document
// served at GET /openapi.json, and the HTML page at GET /docs rendered from it.

const F32_MAX = 3.4028234663852886e38;

/** The JSON schema of one example: nested to the input shape, or flat; numbers within float32 range. */
export function rowSchema(shape: readonly number[], ids: boolean): object {
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
export const recordSchema = {
  type: 'object',
  maxProperties: 4096,
  additionalProperties: {
    anyOf: [{ type: 'string', maxLength: 4096 }, { type: 'number' }, { type: 'boolean' }, { type: 'null' }],
  },
};

/** What the request and answer schemas depend on. */
export interface ApiShape {
  inputShape: readonly number[];
  ids: boolean;
  maxRows: number;
  /** the server has a pipeline: requests may send raw records */
  records: boolean;
  /** raw field names the pipeline reads (documentation only) */
  recordFields?: readonly string[];
  outputShape: readonly number[] | null;
}

/** @internal The JSON schema of a POST /predict body (the server builds it from the model). */
export function predictBodySchema(a: ApiShape): object {
  return {
    type: 'object',
    additionalProperties: false,
    properties: {
      input: rowSchema(a.inputShape, a.ids),
      inputs: { type: 'array', minItems: 1, maxItems: a.maxRows, items: rowSchema(a.inputShape, a.ids) },
      id: { type: 'string', maxLength: 200 },
      key: { type: 'string', maxLength: 200 },
      ...(a.records
        ? {
            record: recordSchema,
            records: { type: 'array', minItems: 1, maxItems: a.maxRows, items: recordSchema },
          }
        : {}),
    },
  };
}

function outputSchema(shape: readonly number[] | null): object {
  const leaf = { type: 'number' };
  if (!shape) return { type: 'array', items: leaf };
  return {
    type: 'array',
    minItems: shape.reduce((x, y) => x * y, 1),
    maxItems: shape.reduce((x, y) => x * y, 1),
    items: leaf,
  };
}

const errorSchema = {
  type: 'object',
  required: ['error', 'message'],
  properties: { error: { type: 'string' }, message: { type: 'string' } },
};

/** @internal The OpenAPI 3.1 document of a server (served at GET /openapi.json). */
export function openApiSpec(a: ApiShape & { title: string; version: string; auth: boolean }): object {
  const answer = {
    type: 'object',
    required: ['output', 'version', 'cached'],
    properties: {
      output: outputSchema(a.outputShape),
      argmax: { type: 'integer', description: 'index of the largest output (models with one output axis)' },
      label: {
        type: 'string',
        description: "the argmax class's name (models saved with kiln.classes, as kiln train saves for string labels)",
      },
      version: { type: 'string', description: 'the model version that answered' },
      cached: { type: 'boolean' },
    },
  };
  const json = (schema: object, description: string): object => ({
    description,
    content: { 'application/json': { schema } },
  });
  const err = (d: string): object => json({ $ref: '#/components/schemas/Error' }, d);
  const sec = (scope: string): object =>
    a.auth ? { security: [{ bearer: [scope] }], 'x-kiln-scope': scope } : { security: [] };
  const authErrors = a.auth
    ? {
        401: err('missing or unknown API key'),
        403: err('the key lacks the scope'),
        429: err('the key is over its rate limit'),
      }
    : {};
  const versionBody = {
    type: 'object',
    required: ['version'],
    additionalProperties: false,
    properties: { version: { type: 'string', maxLength: 128 } },
  };
  const per = a.inputShape.reduce((x, y) => x * y, 1);
  return {
    openapi: '3.1.0',
    info: {
      title: a.title,
      version: a.version,
      description:
        `Serves a kiln model: one example is ${per} ${a.ids ? 'integer token ids' : 'numbers'} ` +
        `(shape [${a.inputShape.join(', ')}]), flat or nested; at most ${a.maxRows} examples per request.` +
        (a.records ? ` Raw records (fields ${(a.recordFields ?? []).join(', ')}) go through the fitted pipeline.` : ''),
    },
    components: {
      schemas: {
        PredictRequest: predictBodySchema(a),
        Prediction: answer,
        Predictions: {
          type: 'object',
          required: ['outputs'],
          properties: {
            id: { type: 'string' },
            shape: { type: 'array', items: { type: 'integer' } },
            outputs: { type: 'array', items: answer },
          },
        },
        Error: errorSchema,
      },
      ...(a.auth ? { securitySchemes: { bearer: { type: 'http', scheme: 'bearer', description: 'an API key' } } } : {}),
    },
    paths: {
      '/predict': {
        post: {
          summary: 'Run the model',
          description:
            "Send exactly one of 'input' (one example), 'inputs' (a list)" +
            (a.records ? ", 'record' or 'records' (raw fields)" : '') +
            ". 'key' (or a sticky header) pins A/B routing to one version.",
          ...sec('predict'),
          requestBody: {
            required: true,
            content: { 'application/json': { schema: { $ref: '#/components/schemas/PredictRequest' } } },
          },
          responses: {
            200: json(
              { oneOf: [{ $ref: '#/components/schemas/Prediction' }, { $ref: '#/components/schemas/Predictions' }] },
              'the answer (one example) or the answers (a list), with the version that made each',
            ),
            400: err('the request does not match the schema'),
            413: err('the body is over the size limit'),
            415: err('not JSON'),
            ...authErrors,
            500: err('the model failed'),
            503: err('warming up, or the queue is full'),
            504: err('timed out in the queue'),
          },
        },
      },
      '/health': { get: { summary: 'Liveness', security: [], responses: { 200: json({ type: 'object' }, 'alive') } } },
      '/ready': {
        get: {
          summary: 'Readiness (warm-up done)',
          security: [],
          responses: { 200: json({ type: 'object' }, 'ready'), 503: json({ type: 'object' }, 'warming up') },
        },
      },
      '/metrics': {
        get: {
          summary: 'Prometheus metrics',
          ...sec('admin'),
          responses: {
            200: { description: 'Prometheus text format', content: { 'text/plain': { schema: { type: 'string' } } } },
            ...authErrors,
          },
        },
      },
      '/alerts': {
        get: {
          summary: 'Monitoring window and alert states',
          ...sec('admin'),
          responses: {
            200: json({ type: 'object' }, 'drift numbers per feature and each rule with its state'),
            404: err('no monitor configured'),
            ...authErrors,
          },
        },
      },
      '/openapi.json': {
        get: { summary: 'This document', security: [], responses: { 200: json({ type: 'object' }, 'OpenAPI 3.1') } },
      },
      '/docs': {
        get: {
          summary: 'This document as a web page',
          security: [],
          responses: { 200: { description: 'HTML', content: { 'text/html': { schema: { type: 'string' } } } } },
        },
      },
      '/admin/versions': {
        get: {
          summary: 'Deployed versions with their roles, weights and numbers',
          ...sec('admin'),
          responses: { 200: json({ type: 'object' }, 'the versions'), ...authErrors },
        },
      },
      '/admin/deploy': {
        post: {
          summary: 'Deploy a model file beside the primary (canary, A/B or shadow)',
          ...sec('admin'),
          requestBody: {
            required: true,
            content: {
              'application/json': {
                schema: {
                  type: 'object',
                  required: ['path', 'version'],
                  additionalProperties: false,
                  properties: {
                    path: {
                      type: 'string',
                      maxLength: 4096,
                      description: 'a model file under the server model directory',
                    },
                    version: { type: 'string', maxLength: 128 },
                    weight: { type: 'number', exclusiveMinimum: 0, maximum: 1 },
                    shadow: { type: 'boolean' },
                    stickyKey: { type: 'string', maxLength: 64 },
                  },
                },
              },
            },
          },
          responses: {
            200: json({ type: 'object' }, 'deployed'),
            400: err('bad options'),
            409: err('refused: it failed to load or warm up'),
            ...authErrors,
          },
        },
      },
      '/admin/promote': {
        post: {
          summary: 'Make a deployed version the primary',
          ...sec('admin'),
          requestBody: { required: true, content: { 'application/json': { schema: versionBody } } },
          responses: {
            200: json({ type: 'object' }, 'promoted'),
            404: err('not deployed'),
            409: err('refused'),
            ...authErrors,
          },
        },
      },
      '/admin/rollback': {
        post: {
          summary: 'Take out every canary, A/B and shadow version; with none, go back to the previous primary',
          ...sec('admin'),
          responses: {
            200: json({ type: 'object' }, 'rolled back'),
            409: err('nothing to roll back to'),
            ...authErrors,
          },
        },
      },
    },
  };
}

const esc = (s: string): string =>
  s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

/** The OpenAPI document as a self-contained HTML page (no scripts, no outside assets). */
export function docsHtml(spec: object): string {
  const s = spec as {
    info: { title: string; version: string; description: string };
    paths: Record<
      string,
      Record<
        string,
        {
          summary: string;
          description?: string;
          'x-kiln-scope'?: string;
          requestBody?: unknown;
          responses: Record<string, { description: string }>;
        }
      >
    >;
    components: { schemas: Record<string, unknown> };
  };
  const parts: string[] = [];
  for (const [path, ops] of Object.entries(s.paths)) {
    for (const [method, op] of Object.entries(ops)) {
      const codes = Object.entries(op.responses)
        .map(([c, r]) => `<li><code>${esc(c)}</code> ${esc(r.description)}</li>`)
        .join('');
      const body = op.requestBody
        ? `<details><summary>request body schema</summary><pre>${esc(JSON.stringify(op.requestBody, null, 2))}</pre></details>`
        : '';
      parts.push(
        `<section><h2><span class="m">${esc(method.toUpperCase())}</span> <code>${esc(path)}</code></h2>` +
          `<p>${esc(op.summary)}${op['x-kiln-scope'] ? ` &mdash; needs scope <code>${esc(op['x-kiln-scope'])}</code>` : ''}</p>` +
          (op.description ? `<p>${esc(op.description)}</p>` : '') +
          `${body}<ul>${codes}</ul></section>`,
      );
    }
  }
  const schemas = Object.entries(s.components.schemas)
    .map(([n, sc]) => `<h3>${esc(n)}</h3><pre>${esc(JSON.stringify(sc, null, 2))}</pre>`)
    .join('');
  return (
    `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>${esc(s.info.title)}</title>` +
    '<style>body{font:15px system-ui,sans-serif;max-width:60em;margin:2em auto;padding:0 1em}' +
    'pre{background:#f4f4f4;padding:.6em;overflow:auto;font-size:13px}.m{background:#333;color:#fff;padding:0 .4em;border-radius:3px}' +
    'section{border-top:1px solid #ddd}</style></head><body>' +
    `<h1>${esc(s.info.title)} <small>${esc(s.info.version)}</small></h1><p>${esc(s.info.description)}</p>` +
    '<p>Machine-readable: <a href="/openapi.json">/openapi.json</a> (OpenAPI 3.1).</p>' +
    parts.join('') +
    `<h2>Schemas</h2>${schemas}</body></html>`
  );
}
