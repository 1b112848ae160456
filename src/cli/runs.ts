// `kiln runs ls|show|compare`: the runs of an MLflow file store (kn.track) in the terminal.
import { parseArgs } from 'node:util';
import { listRuns, syncRuns, type RunRecord } from '../track/index.js';
import { reportDataFromRun, writeReport } from '../track/report.js';

export const RUNS_HELP = `  runs ls [--dir mlruns] [--experiment NAME] [--sort METRIC] [--max]
                  the runs of a kn.track store: status, params and final metrics, best first (lowest METRIC,
                  default val/loss; --max for highest)
  runs show RUN [--dir mlruns]     one run: params, tags, every metric's last value and step
  runs compare RUN RUN... [--dir mlruns]
                  params and final metrics side by side (RUN: a run id or its first characters, or a run name)
  runs sync [--dir mlruns] [--uri URL]
                  send what an MLflow server has not taken yet (it was down, or the process was killed) from each
                  run's outbox; URL defaults to the server the run was logging to, then $MLFLOW_TRACKING_URI
  report RUN [-o report.html] [--dir mlruns]
                  one self-contained HTML page for a run: curves from its metrics; histograms, confusion matrix,
                  fixed-example predictions and sanity checks when fit logged them (fit({ tracker, report }))
`;

const last = (r: RunRecord, m: string): number | undefined => r.metrics.get(m)?.at(-1)?.value;
const fmt = (v: number | undefined): string =>
  v === undefined ? '-' : Math.abs(v) >= 1e4 || (v !== 0 && Math.abs(v) < 1e-3) ? v.toExponential(3) : v.toFixed(4);

function table(rows: string[][]): string {
  const w = rows[0]!.map((_, c) => Math.max(...rows.map((r) => (r[c] ?? '').length)));
  return (
    rows
      .map((r) =>
        r
          .map((cell, c) => cell.padEnd(w[c]!))
          .join('  ')
          .trimEnd(),
      )
      .join('\n') + '\n'
  );
}

function find(runs: RunRecord[], key: string): RunRecord {
  const hits = runs.filter((r) => r.id.startsWith(key) || r.name === key);
  if (hits.length === 1) return hits[0]!;
  throw new Error(hits.length ? `'${key}' matches ${hits.length} runs; give more of the id` : `no run '${key}'`);
}

export function runsCommand(argv: string[]): number | Promise<number> {
  const [sub, ...rest] = argv;
  if (sub === 'sync') return syncCommand(rest);
  const { values, positionals } = parseArgs({
    args: rest,
    options: {
      dir: { type: 'string', default: 'mlruns' },
      experiment: { type: 'string' },
      sort: { type: 'string', default: 'val/loss' },
      max: { type: 'boolean', default: false },
    },
    allowPositionals: true,
    strict: true,
  });
  const runs = listRuns(values.dir!, values.experiment === undefined ? {} : { experiment: values.experiment });
  if (sub === 'ls') {
    const sort = values.sort!;
    const key = (r: RunRecord): number => {
      const v = last(r, sort);
      return v === undefined ? Infinity : values.max ? -v : v;
    };
    const sorted = [...runs].sort((a, b) => key(a) - key(b) || b.startTime - a.startTime);
    const metrics = [
      ...new Set(
        sorted.flatMap((r) => [...r.metrics.keys()].filter((m) => !m.endsWith('_step') && !m.startsWith('system/'))),
      ),
    ].sort();
    const params = [...new Set(sorted.flatMap((r) => [...r.params.keys()]))].sort();
    const rows = [['run', 'name', 'experiment', 'status', ...params, ...metrics]];
    for (const r of sorted)
      rows.push([
        r.id.slice(0, 8),
        r.name,
        r.experiment,
        r.status,
        ...params.map((p) => r.params.get(p) ?? '-'),
        ...metrics.map((m) => fmt(last(r, m))),
      ]);
    process.stdout.write(runs.length ? table(rows) : `no runs in ${values.dir}\n`);
    return 0;
  }
  if (sub === 'show') {
    if (positionals.length !== 1) throw new Error('runs show takes one RUN');
    const r = find(runs, positionals[0]!);
    const out = [
      `run ${r.id} (${r.name}) in experiment ${r.experiment} [${r.experimentId}]: ${r.status}`,
      `dir ${r.dir}`,
    ];
    out.push('params:', ...[...r.params].map(([k, v]) => `  ${k} = ${v}`));
    out.push('metrics (last value @ step, points):');
    for (const [k, pts] of r.metrics)
      out.push(`  ${k} = ${fmt(pts.at(-1)?.value)} @ ${pts.at(-1)?.step ?? '-'} (${pts.length})`);
    out.push('tags:', ...[...r.tags].map(([k, v]) => `  ${k} = ${v}`));
    process.stdout.write(out.join('\n') + '\n');
    return 0;
  }
  if (sub === 'compare') {
    if (positionals.length < 2) throw new Error('runs compare takes two or more RUNs');
    const rs = positionals.map((k) => find(runs, k));
    const params = [...new Set(rs.flatMap((r) => [...r.params.keys()]))].sort();
    const metrics = [...new Set(rs.flatMap((r) => [...r.metrics.keys()]))].sort();
    const rows = [['', ...rs.map((r) => `${r.id.slice(0, 8)} ${r.name}`)]];
    for (const p of params) rows.push([p, ...rs.map((r) => r.params.get(p) ?? '-')]);
    for (const m of metrics) rows.push([m, ...rs.map((r) => fmt(last(r, m)))]);
    process.stdout.write(table(rows));
    return 0;
  }
  throw new Error(`runs takes ls, show, compare or sync, got ${sub === undefined ? 'nothing' : `'${sub}'`}`);
}

export function reportCommand(argv: string[]): number {
  const { values, positionals } = parseArgs({
    args: argv,
    options: { dir: { type: 'string', default: 'mlruns' }, out: { type: 'string', short: 'o' } },
    allowPositionals: true,
    strict: true,
  });
  if (positionals.length !== 1) throw new Error('report takes one RUN');
  const r = find(listRuns(values.dir!), positionals[0]!);
  const out = values.out ?? 'report.html';
  writeReport(out, reportDataFromRun(r));
  process.stdout.write(`wrote ${out} for run ${r.id} (${r.name})\n`);
  return 0;
}

async function syncCommand(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: { dir: { type: 'string', default: 'mlruns' }, uri: { type: 'string' } },
    strict: true,
  });
  const res = await syncRuns(values.dir!, values.uri === undefined ? {} : { uri: values.uri });
  for (const r of res)
    process.stdout.write(
      `${r.runId.slice(0, 8)}  ${r.error ? `FAILED (${r.error})` : `sent, server run ${r.remoteRunId}`}  ` +
        `${r.sent} operations on the server, ${r.pending} pending\n`,
    );
  if (!res.length) process.stdout.write(`nothing to send in ${values.dir}\n`);
  return res.some((r) => r.error) ? 1 : 0;
}
