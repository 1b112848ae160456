// `kiln pipeline run|watch|status pipeline.json`: the declared retraining pipeline (src/serve/retrain.ts).
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve, dirname } from 'node:path';
import { parseArgs } from 'node:util';
import { ArgumentError } from '../errors.js';
import { loadPipelineSpec, runPipeline, watchPipeline, type PipelineState } from '../serve/retrain.js';

export const PIPELINE_HELP = `  pipeline run PIPELINE.json [--fresh]
                  validate new data -> train -> evaluate against the champion on the holdout -> refuse a worse
                  model -> register -> canary on the server -> promote (or roll back); resumes an unfinished run
                  unless --fresh; exit 0 promoted, 3 not promoted, 1 failed
  pipeline watch PIPELINE.json [--every 6h] [--port 9400] [--alerts FeatureDrift,PredictionDrift]
                  run on a schedule and when the model server's monitor webhook (http://host:port/trigger) fires
  pipeline status PIPELINE.json
                  the last run's steps
`;

/** '90s', '15m', '6h', '1d' or plain milliseconds. */
function duration(v: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)?$/.exec(v.trim());
  if (!m) throw new ArgumentError(`--every must be a duration such as 90s, 15m or 6h, got '${v}'`);
  const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[m[2] ?? 'ms'] ?? 1;
  return Math.round(Number(m[1]) * unit);
}

function summary(st: PipelineState): string {
  const steps = st.steps
    .map((s) => `  ${s.name.padEnd(9)} ${s.state.status}${s.state.error ? `: ${s.state.error}` : ''}`)
    .join('\n');
  return `run ${st.runId} (${st.trigger}): ${st.status}${st.version ? `, version ${st.version}` : ''}${st.reason ? `\n  ${st.reason}` : ''}\n${steps}\n`;
}

export async function pipelineCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    strict: true,
    options: {
      fresh: { type: 'boolean', default: false },
      every: { type: 'string' },
      port: { type: 'string' },
      alerts: { type: 'string' },
    },
  });
  const [action, file] = positionals;
  if (!file || positionals.length !== 2)
    throw new ArgumentError('pipeline takes an action (run, watch, status) and a pipeline file');
  if (action === 'run') {
    const st = await runPipeline(file, {
      resume: !values.fresh,
      onLog: (r) => process.stdout.write(`${String(r.step)}: ${String(r.event)}\n`),
    });
    process.stdout.write(summary(st));
    return st.status === 'done' ? 0 : st.status === 'rejected' ? 3 : 1;
  }
  if (action === 'status') {
    const p = loadPipelineSpec(file);
    const state = join(
      resolve(dirname(resolve(file)), p.spec.workdir ?? join('.kiln-pipeline', p.spec.name)),
      'state.json',
    );
    if (!existsSync(state)) {
      process.stdout.write('no run yet\n');
      return 0;
    }
    process.stdout.write(summary(JSON.parse(readFileSync(state, 'utf8')) as PipelineState));
    return 0;
  }
  if (action === 'watch') {
    const port = values.port === undefined ? undefined : Number(values.port);
    if (port !== undefined && !(Number.isInteger(port) && port >= 0 && port <= 65535))
      throw new ArgumentError(`--port must be a port number, got '${values.port}'`);
    if (values.every === undefined && port === undefined)
      throw new ArgumentError('pipeline watch needs --every (a schedule), --port (alert webhooks) or both');
    const w = await watchPipeline(file, {
      ...(values.every !== undefined ? { everyMs: duration(values.every) } : {}),
      ...(port !== undefined ? { port } : {}),
      ...(values.alerts ? { alerts: values.alerts.split(',') } : {}),
      onRun: (st) => process.stdout.write(summary(st)),
    });
    process.stdout.write(`kiln pipeline: watching ${file}${w.url ? `; alert webhook ${w.url}` : ''}\n`);
    return new Promise<number>((res) => {
      const stop = (): void => {
        process.off('SIGINT', stop).off('SIGTERM', stop);
        void w.close().then(() => res(0));
      };
      process.on('SIGINT', stop).on('SIGTERM', stop);
    });
  }
  throw new ArgumentError(`pipeline takes run, watch or status, got ${JSON.stringify(action)}`);
}
