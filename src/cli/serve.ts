// `kiln serve model.safetensors --port 8080`: serves a model saved by kn.io.save (its architecture spec is in
// the file). SIGHUP reloads the file (refused, with the old model kept, if the new one fails to load or warm
// up); SIGINT/SIGTERM drain the queue and stop.
import { parseArgs } from 'node:util';
import type { BackendName } from '../backends/backend.js';
import { setBackend } from '../backends/registry.js';
import { ArgumentError } from '../errors.js';
import { loadPipeline } from '../data/pipeline.js';
import { loadTransformer } from '../data/scalers.js';
import { createServer, type ServerOptions } from '../serve/server.js';

export const SERVE_HELP = `  serve MODEL.safetensors [--port 8080] [--host 127.0.0.1] [--input-shape 784] [--max-batch 32]
        [--max-delay-ms 2] [--timeout-ms 5000] [--max-queue 1024] [--cache N] [--log requests.jsonl]
        [--scaler scaler.json] [--pipeline pipeline.json] [--backend cpu|js] [--no-warmup] [--no-batching]
                  serve a model over HTTP (POST /predict, GET /health /ready /metrics); SIGHUP reloads the file;
                  with --pipeline, requests may send raw fields ('record' / 'records')
`;

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
  set('maxBatchSize', int(values['max-batch'], 'max-batch', 1));
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
