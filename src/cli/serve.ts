// `kiln serve model.safetensors --port 8080`: serves a model saved by kn.io.save (its architecture spec is in
// the file). SIGHUP reloads the file (refused, with the old model kept, if the new one fails to load or warm
// up); SIGINT/SIGTERM drain the queue and stop.
import { parseArgs } from 'node:util';
import type { BackendName } from '../backends/backend.js';
import { setBackend } from '../backends/registry.js';
import { ArgumentError } from '../errors.js';
import { readFlagFile } from './files.js';
import { loadPipeline } from '../data/pipeline.js';
import { loadTransformer } from '../data/scalers.js';
import { parse as parseYaml } from 'yaml';
import { arrowToMatrix } from '../data/arrow.js';
import { readParquet } from '../data/parquet.js';
import { writeFileAtomicSync } from '../io/atomic.js';
import type { AuthOptions } from '../serve/auth.js';
import { DEFAULT_ALERT_RULES, prometheusRules, type AlertRule } from '../serve/monitor.js';
import { createServer, type ServerOptions } from '../serve/server.js';

export const SERVE_HELP = `  serve MODEL.safetensors [--port 8080] [--host 127.0.0.1] [--input-shape 784] [--max-batch 32|auto]
        [--max-delay-ms 2] [--timeout-ms 5000] [--max-queue 1024] [--cache N] [--log requests.jsonl]
        [--scaler scaler.json] [--pipeline pipeline.json] [--backend cpu|js|webgpu|cuda] [--no-warmup] [--no-batching]
        [--auth keys.json] [--tls-cert cert.pem --tls-key key.pem] [--audit-log audit.jsonl] [--model-dir DIR]
        [--reference train.parquet [--alert-rules rules.json] [--webhook URL] [--evaluate-every-ms 10000]
         [--write-alert-rules prometheus-rules.yml]]
                  serve a model over HTTP (POST /predict, GET /health /ready /metrics /alerts /openapi.json /docs,
                  /admin/*); SIGHUP reloads the file; with --pipeline, requests may send raw fields; keys.json maps
                  tokens (or the sha256:... lines \`kiln apikey\` prints) to scopes: {"sha256:...": ["predict"]}
  admin versions|deploy|promote|rollback --url URL [--token KEY (default $KILN_API_KEY)] [--ca cert.pem]
        deploy FILE --version V (--weight 0.1 | --sticky-key x-user | --shadow);  promote VERSION
                  canary, A/B and shadow rollout on a running server (FILE: relative to its model directory)
  apikey          print a new random API key and the sha256:... line for a keys file
`;

/** Reads a keys file: {"<token or sha256:hex>": ["predict", "admin"] | {scopes, rateLimit, burst, maxRows}}. */
function readKeys(path: string): AuthOptions {
  const text = readFlagFile(path, 'auth').toString('utf8');
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new ArgumentError(`--auth ${path}: not a readable JSON file (${(e as Error).message})`);
  }
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw))
    throw new ArgumentError(`--auth ${path}: expected an object mapping keys to scopes`);
  return { keys: raw as AuthOptions['keys'] };
}

/** Reads alert rules from a JSON or YAML file holding a list of rules. */
function readRules(path: string): AlertRule[] {
  const text = readFlagFile(path, 'alert-rules').toString('utf8');
  const yaml = /\.ya?ml$/i.test(path);
  let v: unknown;
  try {
    v = yaml ? parseYaml(text) : JSON.parse(text);
  } catch (e) {
    throw new ArgumentError(`--alert-rules ${path}: not valid ${yaml ? 'YAML' : 'JSON'} (${(e as Error).message})`);
  }
  if (!Array.isArray(v)) throw new ArgumentError(`--alert-rules ${path}: expected a list of rules`);
  return v as AlertRule[];
}

function int(v: string | undefined, what: string, min: number): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min) throw new ArgumentError(`--${what} must be an integer >= ${min}, got '${v}'`);
  return n;
}

export async function serveCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    strict: true,
    options: {
      port: { type: 'string', default: '8080' },
      host: { type: 'string', default: '127.0.0.1' },
      'input-shape': { type: 'string' },
      'max-batch': { type: 'string' },
      'max-delay-ms': { type: 'string' },
      'timeout-ms': { type: 'string' },
      'max-queue': { type: 'string' },
      cache: { type: 'string' },
      log: { type: 'string' },
      scaler: { type: 'string' },
      pipeline: { type: 'string' },
      backend: { type: 'string' },
      'no-warmup': { type: 'boolean', default: false },
      'no-batching': { type: 'boolean', default: false },
      auth: { type: 'string' },
      'tls-cert': { type: 'string' },
      'tls-key': { type: 'string' },
      'audit-log': { type: 'string' },
      'model-dir': { type: 'string' },
      reference: { type: 'string' },
      'alert-rules': { type: 'string' },
      webhook: { type: 'string' },
      'evaluate-every-ms': { type: 'string' },
      'write-alert-rules': { type: 'string' },
    },
  });
  if (positionals.length !== 1) throw new ArgumentError(`serve takes one model file, got ${positionals.length}`);
  const file = positionals[0]!;
  const opts: ServerOptions = {
    port: int(values.port, 'port', 0)!,
    host: values.host!,
    warmup: !values['no-warmup'],
    batching: !values['no-batching'],
  };
  if (values['input-shape'])
    opts.inputShape = values['input-shape'].split(/[,x]/).map((d) => int(d, 'input-shape', 1)!);
  const set = <K extends keyof ServerOptions>(k: K, v: ServerOptions[K] | undefined): void => {
    if (v !== undefined) opts[k] = v;
  };
  set('maxBatchSize', values['max-batch'] === 'auto' ? 'auto' : int(values['max-batch'], 'max-batch', 1));
  set('maxDelayMs', int(values['max-delay-ms'], 'max-delay-ms', 0));
  set('timeoutMs', int(values['timeout-ms'], 'timeout-ms', 1));
  set('maxQueue', int(values['max-queue'], 'max-queue', 1));
  set('cache', int(values.cache, 'cache', 0));
  set('requestLog', values.log);
  if (values.backend) {
    setBackend(values.backend as BackendName); // validates the name and that the backend loads
    opts.backend = values.backend as BackendName;
  }
  if (values.scaler) opts.transform = loadTransformer(values.scaler);
  if (values.pipeline) opts.pipeline = loadPipeline(values.pipeline);
  if (values.auth) opts.auth = readKeys(values.auth);
  if (!!values['tls-cert'] !== !!values['tls-key']) throw new ArgumentError('--tls-cert and --tls-key go together');
  if (values['tls-cert'] && values['tls-key'])
    opts.tls = { cert: readFlagFile(values['tls-cert'], 'tls-cert'), key: readFlagFile(values['tls-key'], 'tls-key') };
  set('auditLog', values['audit-log']);
  set('modelDir', values['model-dir']);
  const rules = values['alert-rules'] ? readRules(values['alert-rules']) : undefined;
  if (values.reference) {
    const table = readParquet(values.reference);
    const reference = opts.pipeline ? opts.pipeline.transform(table) : arrowToMatrix(table);
    opts.monitor = {
      reference,
      ...(opts.pipeline ? {} : { featureNames: table.schema.fields.map((f) => f.name) }),
      ...(rules ? { rules } : {}),
      ...(values.webhook ? { webhook: values.webhook } : {}),
    };
    const every = int(values['evaluate-every-ms'], 'evaluate-every-ms', 0);
    if (every !== undefined) opts.monitor.evaluateEveryMs = every;
  } else if (values.webhook || rules)
    throw new ArgumentError('--webhook and --alert-rules need --reference (the training data)');
  if (values['write-alert-rules']) {
    const every = (opts.monitor?.evaluateEveryMs ?? 10000) / 1000;
    writeFileAtomicSync(values['write-alert-rules'], [
      new TextEncoder().encode(prometheusRules(rules ?? DEFAULT_ALERT_RULES, every)),
    ]);
    process.stdout.write(`kiln serve: wrote Prometheus alerting rules to ${values['write-alert-rules']}\n`);
  }

  const srv = await createServer(file, opts);
  process.stdout.write(
    `kiln serve: ${file} (version ${srv.version}, input shape [${srv.inputShape.join(', ')}]) listening on ${srv.url}\n`,
  );
  return new Promise<number>((resolve) => {
    const stop = (sig: string): void => {
      process.stdout.write(`kiln serve: ${sig}, draining and stopping\n`);
      process.off('SIGINT', onInt).off('SIGTERM', onTerm).off('SIGHUP', onHup);
      srv.close().then(
        () => resolve(0),
        (e: unknown) => {
          process.stderr.write(`kiln serve: ${(e as Error).message}\n`);
          resolve(1);
        },
      );
    };
    const onInt = (): void => stop('SIGINT');
    const onTerm = (): void => stop('SIGTERM');
    const onHup = (): void => {
      srv.reload(file).then(
        (v) => process.stdout.write(`kiln serve: reloaded ${file}, now serving version ${v}\n`),
        (e: unknown) => process.stderr.write(`kiln serve: ${(e as Error).message}\n`),
      );
    };
    process.on('SIGINT', onInt).on('SIGTERM', onTerm).on('SIGHUP', onHup);
  });
}
