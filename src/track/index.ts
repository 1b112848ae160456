// Experiment tracking: runs written in MLflow's file-store layout (so `mlflow ui --backend-store-uri ./mlruns` opens
// them) and, optionally, TensorBoard event files (so `tensorboard --logdir` shows the curves):
//
//   mlruns/<experiment id>/meta.yaml                      name, artifact location, lifecycle
//   mlruns/<experiment id>/<run id>/meta.yaml             run name, status, start and end time
//   mlruns/<experiment id>/<run id>/params/<name>         the value
//   mlruns/<experiment id>/<run id>/metrics/<name>        one "timestamp value step" line per point
//   mlruns/<experiment id>/<run id>/tags/<name>           the value
//   mlruns/<experiment id>/<run id>/artifacts/...         copied files
//
// Names from users or data never become object keys (Maps only) and are checked before they become paths:
// letters, digits and _ - . space /, no empty or '..' segment. Metric points are appended with one write per line
// (O_APPEND), so two processes logging to one run, or a killed one, leave whole lines; meta.yaml, params and tags
// are written atomically. A run records how it was made: kiln version, Node, backend and ISA, command line, the
// git commit when the working directory is a repository, and the seed last given to kn.seed.
import { execFile, execFileSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import {
  accessSync,
  appendFileSync,
  constants,
  copyFileSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  statSync,
} from 'node:fs';
import { userInfo } from 'node:os';
import { basename, delimiter, join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parse, stringify } from 'yaml';
import { ArgumentError, FormatError, ValidationError, checkOptions, describe, optionKeys } from '../errors.js';
import { info } from '../info.js';
import { checkFilePath, writeFileAtomicSync } from '../io/atomic.js';
import { memory } from '../engine/memory.js';
import { lastSeed } from '../ops/random.js';
import { fingerprint, type Fingerprint } from './lineage.js';
import { io, ioError } from './io.js';
import { EventWriter } from './tensorboard.js';
import {
  MlflowMirror,
  REMOTE_OPTIONS,
  isHttpUri,
  readOutbox,
  readRemoteState,
  type FlushResult,
  type RemoteOptions,
} from './mlflow.js';

export { EventWriter, crc32c, maskedCrc32c, tfRecord } from './tensorboard.js';
export { fingerprint, type Fingerprint } from './lineage.js';
export { readOutbox, type FlushResult, type OutboxOp, type RemoteOptions } from './mlflow.js';
export {
  renderReport,
  reportDataFromRun,
  writeReport,
  type CheckResult,
  type FixedEpoch,
  type HistogramEpoch,
  type HistogramSeries,
  type ReportData,
  type ReportOptions,
} from './report.js';

/** MLflow's RunStatus values as they appear in meta.yaml. */
const STATUS = { RUNNING: 1, SCHEDULED: 2, FINISHED: 3, FAILED: 4, KILLED: 5 } as const;
export type RunStatus = 'FINISHED' | 'FAILED' | 'KILLED';

const NAME = /^[A-Za-z0-9_\-. /]+$/;

/** Checks a param, metric, tag or artifact name before it becomes a path. */
export function checkName(name: unknown, what: string): string {
  if (typeof name !== 'string' || name.length === 0 || name.length > 250)
    throw new ArgumentError(`${what} must be a non-empty string of at most 250 characters, got ${describe(name)}`);
  if (!NAME.test(name) || name.split('/').some((s) => s === '' || s === '.' || s === '..'))
    throw new ArgumentError(
      `${what} ${JSON.stringify(name)} is not allowed: use letters, digits, _ - . space and /, ` +
        `with no empty, '.' or '..' path segment`,
    );
  return name;
}

const enc = (s: string): Uint8Array => new TextEncoder().encode(s);

function gitCommit(cwd: string): string | null {
  try {
    return execFileSync('git', ['rev-parse', 'HEAD'], { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] })
      .trim()
      .slice(0, 40);
  } catch {
    return null;
  }
}

/** Options of startRun. */
export interface StartRunOptions {
  /** Experiment name (created when missing). Default $MLFLOW_EXPERIMENT_NAME, else 'Default' (experiment 0). */
  experiment?: string;
  runName?: string;
  tags?: Record<string, string>;
  /**
   * The local tracking directory (MLflow's file store), always written. Default: $MLFLOW_TRACKING_URI when that
   * is a path or file: URI, else `./mlruns`.
   */
  dir?: string;
  /**
   * An MLflow tracking server (http or https) to mirror the run to; default $MLFLOW_TRACKING_URI when it is an
   * http(s) URL. Everything is written locally first and sent from the run's outbox, in the background and on
   * `await run.flush()`; what the server does not take stays there for `kiln runs sync`.
   */
  trackingUri?: string;
  /** Retries, backoff, timeout, background interval and token for the tracking server. */
  remote?: Omit<RemoteOptions, 'uri'>;
  /** Also write TensorBoard event files: true for `<run dir>/tensorboard`, or a directory. */
  tensorboard?: boolean | string;
  /**
   * Sample system metrics (system/rss_mb, system/heap_mb, system/cpu_percent, system/kiln_mb, and with nvidia-smi
   * on PATH system/gpu<i>_util_percent, _memory_mb and _memory_percent per GPU) in the background
   * every this many ms (default 10000; false: never). A sample is always taken at the start and at end().
   */
  systemMetrics?: number | false;
}

interface ExperimentMeta {
  experiment_id: string;
  name: string;
}

function readMeta(file: string): Record<string, unknown> {
  try {
    const v = parse(readFileSync(file, 'utf8')) as unknown;
    if (v === null || typeof v !== 'object') throw new Error('not a mapping');
    return v as Record<string, unknown>;
  } catch (e) {
    throw new FormatError(`${file} is not a readable MLflow meta.yaml: ${(e as Error).message}`);
  }
}

function experiments(root: string): ExperimentMeta[] {
  if (!existsSync(root)) return [];
  if (!statSync(root).isDirectory())
    throw new ArgumentError(`${root} is a file, not a tracking directory (an mlruns folder)`);
  const out: ExperimentMeta[] = [];
  for (const d of readdirSync(root)) {
    const meta = join(root, d, 'meta.yaml');
    if (!/^\d+$/.test(d) || !existsSync(meta)) continue;
    const m = readMeta(meta);
    out.push({ experiment_id: String(m.experiment_id ?? d), name: String(m.name ?? '') });
  }
  return out;
}

/** The experiment's id, creating it (the next free integer id; 'Default' is 0) when it does not exist. */
function experimentId(root: string, name: string): string {
  const found = experiments(root).find((e) => e.name === name);
  if (found) return found.experiment_id;
  const ids = experiments(root).map((e) => Number(e.experiment_id));
  const id = name === 'Default' && !ids.includes(0) ? '0' : String(ids.length ? Math.max(...ids) + 1 : 1);
  const dir = join(root, id);
  mkdirSync(dir, { recursive: true });
  const now = Date.now();
  writeFileAtomicSync(join(dir, 'meta.yaml'), [
    enc(
      stringify({
        artifact_location: pathToFileURL(dir).href,
        creation_time: now,
        experiment_id: id,
        last_update_time: now,
        lifecycle_stage: 'active',
        name,
      }),
    ),
  ]);
  return id;
}

/** A run being tracked. */
export class Run {
  readonly id: string;
  readonly experimentId: string;
  readonly dir: string;
  readonly name: string;
  readonly startTime: number;
  private readonly params = new Map<string, string>();
  private readonly tb: EventWriter | null;
  private ended = false;
  private timer: NodeJS.Timeout | null = null;
  private sampleNo = 0;
  private readonly mirror: MlflowMirror | null;
  /** nvidia-smi when it is on PATH: GPU utilisation and memory are sampled with the rest */
  private smi: string | null = null;
  /** metric files whose last append failed part-way: the next line starts on a fresh line */
  private readonly torn = new Set<string>();
  private lastCpu = process.cpuUsage();
  private lastWall = performance.now();
  /** Fingerprints of the datasets this run used, by name. */
  readonly datasets = new Map<string, Fingerprint>();

  /** @internal use startRun */
  constructor(opts: StartRunOptions = {}) {
    const envUri = process.env.MLFLOW_TRACKING_URI || undefined;
    const uri = opts.trackingUri ?? envUri;
    if (uri !== undefined && typeof uri !== 'string')
      throw new ArgumentError(`trackingUri must be an http(s) URL or a directory, got ${describe(uri)}`);
    const localUri = uri !== undefined && !isHttpUri(uri) ? uri.replace(/^file:\/\//, '') : undefined;
    const root = resolve(opts.dir ?? localUri ?? 'mlruns');
    const experiment = opts.experiment ?? (process.env.MLFLOW_EXPERIMENT_NAME || 'Default');
    if (typeof experiment !== 'string' || experiment.length === 0 || experiment.length > 250)
      throw new ArgumentError(`experiment must be a non-empty name, got ${describe(opts.experiment)}`);
    this.experimentId = experimentId(root, experiment);
    this.id = randomUUID().replace(/-/g, '');
    this.name = opts.runName ?? `run-${new Date().toISOString().replace(/[:.]/g, '-')}`;
    if (typeof this.name !== 'string' || this.name.length === 0)
      throw new ArgumentError(`runName must be a non-empty string, got ${describe(opts.runName)}`);
    this.dir = join(root, this.experimentId, this.id);
    for (const sub of ['params', 'metrics', 'tags', 'artifacts']) mkdirSync(join(this.dir, sub), { recursive: true });
    this.startTime = Date.now();
    this.writeMeta(STATUS.RUNNING, null);
    this.mirror = isHttpUri(uri) ? new MlflowMirror(this.dir, { ...opts.remote, uri }) : null;
    this.mirror?.record({
      op: 'create',
      experiment,
      runName: this.name,
      startTime: this.startTime,
      localRunId: this.id,
    });
    const kiln = info();
    const tags = new Map<string, string>([
      ['mlflow.runName', this.name],
      ['mlflow.user', safeUser()],
      ['mlflow.source.name', process.argv[1] ?? 'node'],
      ['mlflow.source.type', 'LOCAL'],
      ['kiln.version', kiln.kiln],
      ['kiln.node', kiln.node],
      [
        'kiln.backend',
        kiln.backends
          .filter((b) => b.available)
          .map((b) => b.name)
          .join(','),
      ],
      ['kiln.cpu.isa', kiln.cpu?.isa ?? 'none'],
      ['kiln.command', process.argv.join(' ')],
      ['kiln.seed', String(lastSeed())],
    ]);
    const commit = gitCommit(process.cwd());
    if (commit) tags.set('mlflow.source.git.commit', commit);
    for (const [k, v] of Object.entries(opts.tags ?? {})) tags.set(k, String(v));
    for (const [k, v] of tags) this.setTag(k, v);
    const tb = opts.tensorboard;
    this.tb =
      tb === true
        ? new EventWriter(join(this.dir, 'tensorboard'))
        : typeof tb === 'string'
          ? new EventWriter(tb)
          : null;
    const every = opts.systemMetrics ?? 10000;
    if (every !== false && !(typeof every === 'number' && every >= 10))
      throw new ArgumentError(`systemMetrics must be an interval in ms (>= 10) or false, got ${describe(every)}`);
    if (every !== false) {
      this.smi = nvidiaSmi();
      this.sampleSystem();
      this.timer = setInterval(() => this.sampleSystem(), every);
      this.timer.unref(); // never keeps the process alive
    }
  }

  /** One sample of the process's memory and CPU use, and kiln's live tensor bytes. */
  private sampleSystem(): void {
    if (this.ended) return;
    const cpu = process.cpuUsage(this.lastCpu),
      wall = performance.now();
    const mu = process.memoryUsage();
    const elapsed = Math.max(wall - this.lastWall, 1e-3);
    this.logMetrics(
      {
        'system/rss_mb': mu.rss / 2 ** 20,
        'system/heap_mb': mu.heapUsed / 2 ** 20,
        'system/cpu_percent': (100 * (cpu.user + cpu.system)) / 1000 / elapsed,
        'system/kiln_mb': memory().numBytes / 2 ** 20,
      },
      this.sampleNo++,
    );
    this.lastCpu = process.cpuUsage();
    this.lastWall = wall;
    if (this.smi) this.sampleGpus(this.sampleNo - 1);
  }

  /** GPU utilisation and memory per device from nvidia-smi, asynchronously (a sample that arrives after end() is dropped). */
  private sampleGpus(step: number): void {
    execFile(
      this.smi!,
      ['--query-gpu=utilization.gpu,memory.used,memory.total', '--format=csv,noheader,nounits'],
      { timeout: 5000, encoding: 'utf8' },
      (err, out) => {
        if (err || this.ended) return;
        out
          .trim()
          .split('\n')
          .forEach((line, i) => {
            const [util, used, total] = line.split(',').map((v) => Number(v.trim()));
            if (![util, used, total].every((v) => Number.isFinite(v))) return;
            this.logMetrics(
              {
                [`system/gpu${i}_util_percent`]: util!,
                [`system/gpu${i}_memory_mb`]: used!,
                [`system/gpu${i}_memory_percent`]: (100 * used!) / Math.max(total!, 1),
              },
              step,
            );
          });
      },
    );
  }

  /**
   * Records the fingerprint of a dataset the run used (content hash, schema, rows): a `dataset.<name>` tag and an
   * artifact `datasets/<name>.json`. Returns the fingerprint.
   */
  logDataset(name: string, data: Parameters<typeof fingerprint>[0]): Fingerprint {
    this.live('logDataset');
    checkName(name, 'dataset name');
    if (name.includes('/')) throw new ArgumentError(`dataset name ${JSON.stringify(name)} must not contain '/'`);
    const fp = fingerprint(data);
    this.datasets.set(name, fp);
    this.setTag(`dataset.${name}`, `sha256:${fp.hash} rows=${fp.rows}`);
    const dir = join(this.dir, 'artifacts', 'datasets');
    mkdirSync(dir, { recursive: true });
    writeFileAtomicSync(join(dir, `${name}.json`), [enc(JSON.stringify({ name, ...fp }, null, 2))]);
    this.mirror?.record({ op: 'artifact', path: `datasets/${name}.json` });
    return fp;
  }

  private writeMeta(status: number, end: number | null): void {
    io('write the run meta.yaml', join(this.dir, 'meta.yaml'), (f) =>
      writeFileAtomicSync(f, [
        enc(
          stringify({
            artifact_uri: pathToFileURL(join(this.dir, 'artifacts')).href,
            end_time: end,
            entry_point_name: '',
            experiment_id: this.experimentId,
            lifecycle_stage: 'active',
            run_id: this.id,
            run_name: this.name,
            run_uuid: this.id,
            source_name: '',
            source_type: 4,
            source_version: '',
            start_time: this.startTime,
            status,
            tags: [],
            user_id: safeUser(),
          }),
        ),
      ]),
    );
  }

  private live(what: string): void {
    if (this.ended) throw new ValidationError(`${what}: run ${this.id} has ended`);
  }

  /** Logs parameters (values are stored as strings). A parameter cannot change once logged, as in MLflow. */
  logParams(params: Record<string, unknown>): void {
    this.live('logParams');
    if (params === null || typeof params !== 'object')
      throw new ArgumentError(`logParams takes an object of values, got ${describe(params)}`);
    for (const [k, v] of Object.entries(params)) this.logParam(k, v);
  }

  logParam(name: string, value: unknown): void {
    this.live('logParam');
    checkName(name, 'param name');
    const s = typeof value === 'string' ? value : JSON.stringify(value);
    if (s === undefined || s.length > 6000)
      throw new ArgumentError(`param ${name}: the value must be JSON-serialisable and at most 6000 characters`);
    const prev =
      this.params.get(name) ??
      (existsSync(join(this.dir, 'params', name)) ? readFileSync(join(this.dir, 'params', name), 'utf8') : undefined);
    if (prev !== undefined && prev !== s)
      throw new ValidationError(`param ${name} was already logged as ${JSON.stringify(prev)}; params cannot change`);
    mkdirSync(join(this.dir, 'params', ...name.split('/').slice(0, -1)), { recursive: true });
    io(`write param ${name}`, join(this.dir, 'params', name), (f) => writeFileAtomicSync(f, [enc(s)]));
    if (!this.params.has(name) && prev === undefined) this.mirror?.record({ op: 'param', key: name, value: s });
    this.params.set(name, s);
  }

  /** Appends one point ("timestamp value step") to a metric, and to TensorBoard when enabled. */
  logMetric(name: string, value: number, step = 0): void {
    this.live('logMetric');
    checkName(name, 'metric name');
    if (typeof value !== 'number')
      throw new ArgumentError(`metric ${name}: value must be a number, got ${describe(value)}`);
    if (!Number.isInteger(step) || step < 0)
      throw new ArgumentError(`metric ${name}: step must be an integer >= 0, got ${describe(step)}`);
    const now = Date.now();
    mkdirSync(join(this.dir, 'metrics', ...name.split('/').slice(0, -1)), { recursive: true });
    const file = join(this.dir, 'metrics', name);
    const line = `${this.torn.has(file) ? '\n' : ''}${now} ${value} ${step}\n`;
    try {
      appendFileSync(file, line);
      this.torn.delete(file);
    } catch (e) {
      this.torn.add(file);
      throw ioError(`append to metric ${name}`, file, e);
    }
    this.mirror?.record({
      op: 'metric',
      key: name,
      value: Number.isFinite(value) ? value : value > 0 ? 'Infinity' : value < 0 ? '-Infinity' : 'NaN',
      timestamp: now,
      step,
    });
    this.tb?.scalar(name, value, step, now / 1000);
  }

  logMetrics(values: Record<string, number>, step = 0): void {
    if (values === null || typeof values !== 'object')
      throw new ArgumentError(`logMetrics takes an object of numbers, got ${describe(values)}`);
    for (const [k, v] of Object.entries(values)) this.logMetric(k, v, step);
  }

  /** A histogram of values (weights, activations, gradients) at a step: TensorBoard only. */
  logHistogram(name: string, values: ArrayLike<number>, step = 0): void {
    this.live('logHistogram');
    checkName(name, 'histogram name');
    this.tb?.histogram(name, values, step);
  }

  setTag(name: string, value: string): void {
    this.live('setTag');
    checkName(name, 'tag name');
    mkdirSync(join(this.dir, 'tags', ...name.split('/').slice(0, -1)), { recursive: true });
    io(`write tag ${name}`, join(this.dir, 'tags', name), (f) => writeFileAtomicSync(f, [enc(String(value))]));
    this.mirror?.record({ op: 'tag', key: name, value: String(value) });
  }

  /** Copies a file into the run's artifacts (under `artifactPath`, default the top). Returns where it went. */
  logArtifact(file: string, artifactPath?: string): string {
    this.live('logArtifact');
    if (typeof file !== 'string' || !existsSync(file) || !statSync(file).isFile())
      throw new ArgumentError(`logArtifact: ${describe(file)} is not a file`);
    const sub = artifactPath === undefined ? [] : checkName(artifactPath, 'artifact path').split('/');
    const dir = join(this.dir, 'artifacts', ...sub);
    mkdirSync(dir, { recursive: true });
    const dest = join(dir, basename(file));
    io(`copy artifact ${basename(file)}`, dest, (f) => copyFileSync(file, f));
    this.mirror?.record({ op: 'artifact', path: [...sub, basename(file)].join('/') });
    return dest;
  }

  /** Writes text as an artifact file (atomically), e.g. `logText(json, 'report/report.json')`, as MLflow's log_text. */
  logText(text: string, artifactFile: string): string {
    this.live('logText');
    if (typeof text !== 'string') throw new ArgumentError(`logText: text must be a string, got ${describe(text)}`);
    const parts = checkName(artifactFile, 'artifact file').split('/');
    const dir = join(this.dir, 'artifacts', ...parts.slice(0, -1));
    mkdirSync(dir, { recursive: true });
    const dest = join(dir, parts.at(-1)!);
    io(`write artifact ${artifactFile}`, dest, (f) => writeFileAtomicSync(f, [enc(text)]));
    this.mirror?.record({ op: 'artifact', path: artifactFile });
    return dest;
  }

  /** Ends the run with a status (default FINISHED). */
  end(status: RunStatus = 'FINISHED'): void {
    if (this.ended) return;
    if (!(status in STATUS))
      throw new ArgumentError(`status must be FINISHED, FAILED or KILLED, got ${describe(status)}`);
    if (this.timer) {
      clearInterval(this.timer);
      this.smi = null; // the last sample is synchronous only
      this.sampleSystem();
    }
    const end = Date.now();
    this.writeMeta(STATUS[status], end);
    this.ended = true;
    this.mirror?.record({ op: 'end', status, endTime: end });
    this.mirror?.schedule(0);
  }

  /**
   * Sends what the tracking server does not have yet (nothing to do without one). Rejects with a TrackingError
   * when the server stays unreachable or refuses something; the outbox keeps it for a later flush or
   * `kiln runs sync`.
   */
  flush(): Promise<FlushResult> {
    return this.mirror ? this.mirror.flush() : Promise.resolve({ sent: 0, pending: 0, remoteRunId: null });
  }

  /** The TensorBoard event file, when enabled. */
  get tensorboardFile(): string | null {
    return this.tb?.file ?? null;
  }
}

/** nvidia-smi's path when it is on PATH and executable. */
function nvidiaSmi(): string | null {
  for (const d of (process.env.PATH ?? '').split(delimiter)) {
    if (!d) continue;
    const f = join(d, 'nvidia-smi');
    try {
      accessSync(f, constants.X_OK);
      return f;
    } catch {
      /* not here */
    }
  }
  return null;
}

function safeUser(): string {
  try {
    return userInfo().username;
  } catch {
    return 'unknown';
  }
}

/**
 * Starts a tracked run in MLflow's file-store layout (`dir`, default ./mlruns), optionally with TensorBoard events.
 * @example kn.track.startRun({ dir: '.kiln-tmp-mlruns' }).id.length // 32
 */
export function startRun(opts: StartRunOptions = {}): Run {
  checkOptions(
    opts,
    'startRun',
    optionKeys<StartRunOptions>({
      experiment: true,
      runName: true,
      tags: true,
      dir: true,
      trackingUri: true,
      remote: true,
      tensorboard: true,
      systemMetrics: true,
    }),
  );
  checkOptions(opts.remote, 'startRun remote', REMOTE_OPTIONS);
  return new Run(opts);
}

/** A logged metric series: (timestamp, value, step) points in order. */
export interface MetricPoint {
  timestamp: number;
  value: number;
  step: number;
}

/** What a finished or running run holds, read back from the file store. */
export interface RunRecord {
  id: string;
  experimentId: string;
  experiment: string;
  name: string;
  status: string;
  startTime: number;
  endTime: number | null;
  params: Map<string, string>;
  tags: Map<string, string>;
  metrics: Map<string, MetricPoint[]>;
  dir: string;
}

function readTree(dir: string, prefix = ''): [string, string][] {
  if (!existsSync(dir)) return [];
  const out: [string, string][] = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const name = prefix ? `${prefix}/${e.name}` : e.name;
    if (e.isDirectory()) out.push(...readTree(join(dir, e.name), name));
    else if (e.isFile()) out.push([name, readFileSync(join(dir, e.name), 'utf8')]);
  }
  return out;
}

/** Reads one run directory; torn trailing metric lines (a killed writer) are skipped. */
export function readRun(dir: string, experiment = ''): RunRecord {
  checkFilePath(dir, 'readRun');
  let isDir: boolean;
  try {
    isDir = statSync(dir).isDirectory();
  } catch {
    throw new ArgumentError(`readRun: there is no run directory at ${dir}`);
  }
  if (!isDir) throw new ArgumentError(`readRun: ${dir} is a file, expected a run directory (mlruns/EXPERIMENT/RUN)`);
  const m = readMeta(join(dir, 'meta.yaml'));
  const statusName = Object.entries(STATUS).find(([, v]) => v === m.status)?.[0] ?? String(m.status);
  const metrics = new Map<string, MetricPoint[]>();
  for (const [name, text] of readTree(join(dir, 'metrics'))) {
    const pts: MetricPoint[] = [];
    for (const line of text.split('\n')) {
      const f = line.trim().split(' ');
      if (f.length !== 3) continue;
      const [t, v, s] = f.map(Number) as [number, number, number];
      if (Number.isFinite(t) && !Number.isNaN(v) && Number.isInteger(s)) pts.push({ timestamp: t, value: v, step: s });
    }
    metrics.set(name, pts);
  }
  return {
    id: String(m.run_id ?? basename(dir)),
    experimentId: String(m.experiment_id ?? ''),
    experiment,
    name: String(m.run_name ?? ''),
    status: statusName,
    startTime: Number(m.start_time ?? 0),
    endTime: m.end_time === null || m.end_time === undefined ? null : Number(m.end_time),
    params: new Map(readTree(join(dir, 'params'))),
    tags: new Map(readTree(join(dir, 'tags'))),
    metrics,
    dir,
  };
}

/**
 * Every run in a file store (default ./mlruns), newest first.
 * @example kn.track.listRuns('.kiln-tmp-no-such-store').length // 0
 */
export function listRuns(dir = 'mlruns', opts: { experiment?: string } = {}): RunRecord[] {
  checkOptions(opts, 'listRuns', ['experiment']);
  const root = resolve(checkFilePath(dir, 'listRuns'));
  const out: RunRecord[] = [];
  for (const e of experiments(root)) {
    if (opts.experiment !== undefined && e.name !== opts.experiment) continue;
    const edir = join(root, e.experiment_id);
    for (const r of readdirSync(edir, { withFileTypes: true }))
      if (r.isDirectory() && existsSync(join(edir, r.name, 'meta.yaml'))) out.push(readRun(join(edir, r.name), e.name));
  }
  return out.sort((a, b) => b.startTime - a.startTime);
}

/** What syncRuns did for one run. */
export interface SyncResult extends FlushResult {
  runId: string;
  error: string | null;
}

/**
 * Sends the outboxes of every run in a local store (default ./mlruns) that a tracking server has not fully taken,
 * e.g. after the server was down or the process was killed. `uri` defaults to the server each run was logging
 * to, then $MLFLOW_TRACKING_URI. Runs with nothing pending are left alone.
 */
export async function syncRuns(
  dir = 'mlruns',
  opts: { uri?: string; remote?: Omit<RemoteOptions, 'uri'> } = {},
): Promise<SyncResult[]> {
  checkOptions(opts, 'syncRuns', ['uri', 'remote']);
  checkOptions(opts.remote, 'syncRuns remote', REMOTE_OPTIONS);
  const out: SyncResult[] = [];
  for (const r of listRuns(dir)) {
    const ops = readOutbox(r.dir);
    if (!ops.length) continue;
    const st = readRemoteState(r.dir);
    const stateUri = st?.uri,
      sent = st?.sent ?? 0;
    const uri = opts.uri ?? stateUri ?? process.env.MLFLOW_TRACKING_URI;
    if (!isHttpUri(uri))
      throw new ArgumentError(`run ${r.id} has unsent MLflow operations: give the server's http(s) URL (uri)`);
    if (uri.replace(/\/+$/, '') === stateUri && sent >= ops.length) continue;
    const m = new MlflowMirror(r.dir, { ...opts.remote, flushEvery: false, uri });
    try {
      out.push({ runId: r.id, ...(await m.flush()), error: null });
    } catch (e) {
      out.push({ runId: r.id, sent, pending: ops.length - sent, remoteRunId: null, error: (e as Error).message });
    }
  }
  return out;
}
