// The MLflow REST mirror: when the tracking URI is http(s), everything a run logs is also sent to an MLflow
// tracking server (REST API 2.0: experiments/get-by-name|create, runs/search|create|log-batch|update, and
// artifacts through the server's mlflow-artifacts proxy).
//
// Nothing is lost when the server is down: the run is always written to the local file store first, and every
// operation is appended to the run's outbox (`mlflow-outbox.jsonl`, one JSON line per operation, O_APPEND) before
// anything is sent. `mlflow-remote.json` (written atomically) records the server's run id and how many outbox
// lines the server has acknowledged, so sending resumes where it stopped, in this process (`run.flush()`, and a
// background flush every few seconds) or in another one after a crash (`kn.track.syncRuns`, `kiln runs sync`).
// Every request is safe to repeat: the run is found by its `kiln.local_run_id` tag before one is created,
// params and tags are idempotent in MLflow, an identical metric point is stored once, an artifact PUT replaces.
// Network errors, 429 and 5xx are retried with exponential backoff; other refusals are TrackingErrors that
// carry the server's error code and message.
import { appendFileSync, existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ArgumentError, TrackingError, describe, optionKeys } from '../errors.js';
import { writeFileAtomicSync } from '../io/atomic.js';
import { ioError } from './io.js';

/** A run's mlflow-remote.json (which server, which remote run, how many outbox lines it took), or null. */
export function readRemoteState(runDir: string): RemoteState | null {
  const f = join(runDir, STATE);
  if (!existsSync(f)) return null;
  try {
    return JSON.parse(readFileSync(f, 'utf8')) as RemoteState;
  } catch {
    return null;
  }
}

/** One logged operation, as a line of the outbox. */
export type OutboxOp =
  | { op: 'create'; experiment: string; runName: string; startTime: number; localRunId: string }
  | { op: 'param'; key: string; value: string }
  | { op: 'metric'; key: string; value: number | string; timestamp: number; step: number }
  | { op: 'tag'; key: string; value: string }
  | { op: 'artifact'; path: string }
  | { op: 'end'; status: string; endTime: number };

/** How a run talks to an MLflow server. */
export interface RemoteOptions {
  /** http(s) base URL of the tracking server (default: MLFLOW_TRACKING_URI) */
  uri: string;
  /** retries per request on network errors, 429 and 5xx (default 5) */
  retries?: number;
  /** first backoff in ms, doubled per retry up to 10 s (default 250) */
  backoffMs?: number;
  /** per-request timeout in ms (default 30000) */
  timeoutMs?: number;
  /** send in the background this often, in ms (default 5000; false: only on flush()) */
  flushEvery?: number | false;
  /** bearer token (default MLFLOW_TRACKING_TOKEN); or basic auth from MLFLOW_TRACKING_USERNAME/PASSWORD */
  token?: string;
}

/** The keys of a `remote` option (the URI comes from its own option). */
export const REMOTE_OPTIONS = optionKeys<Omit<RemoteOptions, 'uri'>>({
  retries: true,
  backoffMs: true,
  timeoutMs: true,
  flushEvery: true,
  token: true,
});

export interface RemoteState {
  uri: string;
  experimentId: string | null;
  runId: string | null;
  artifactUri: string | null;
  /** outbox lines the server has taken */
  sent: number;
}

/** What a flush did. */
export interface FlushResult {
  /** outbox operations the server holds */
  sent: number;
  /** operations still waiting */
  pending: number;
  /** the server's run id (null before the run is created there) */
  remoteRunId: string | null;
}

const OUTBOX = 'mlflow-outbox.jsonl';
const STATE = 'mlflow-remote.json';
// MLflow's log-batch limits
const MAX_METRICS = 1000,
  MAX_PARAMS = 100,
  MAX_TAGS = 100,
  MAX_ITEMS = 1000;

/** True for an http(s) tracking URI. */
export function isHttpUri(uri: unknown): uri is `http://${string}` | `https://${string}` {
  return typeof uri === 'string' && /^https?:\/\//i.test(uri);
}

/** Checks and completes remote options (env defaults). */
export function remoteOptions(o: Partial<RemoteOptions> & { uri: string }): Required<Omit<RemoteOptions, 'token'>> & {
  token: string | null;
} {
  if (!isHttpUri(o.uri))
    throw new ArgumentError(`an MLflow tracking URI must be http(s)://..., got ${describe(o.uri)}`);
  const int = (v: unknown, def: number, what: string, min: number): number => {
    const x = v ?? def;
    if (!Number.isInteger(x) || (x as number) < min)
      throw new ArgumentError(`${what} must be an integer >= ${min}, got ${describe(v)}`);
    return x as number;
  };
  const every = o.flushEvery ?? 5000;
  if (every !== false && !(Number.isInteger(every) && every >= 10))
    throw new ArgumentError(`flushEvery must be an interval in ms (>= 10) or false, got ${describe(o.flushEvery)}`);
  return {
    uri: o.uri.replace(/\/+$/, ''),
    retries: int(o.retries, 5, 'retries', 0),
    backoffMs: int(o.backoffMs, 250, 'backoffMs', 0),
    timeoutMs: int(o.timeoutMs, 30000, 'timeoutMs', 1),
    flushEvery: every,
    token: o.token ?? process.env.MLFLOW_TRACKING_TOKEN ?? null,
  };
}

/** Reads the outbox; a torn last line (a killed writer) is left for later. */
export function readOutbox(runDir: string): OutboxOp[] {
  const f = join(runDir, OUTBOX);
  if (!existsSync(f)) return [];
  const out: OutboxOp[] = [];
  for (const line of readFileSync(f, 'utf8').split('\n')) {
    if (!line) continue;
    try {
      out.push(JSON.parse(line) as OutboxOp);
    } catch {
      /* torn line */
    }
  }
  return out;
}

/** A pause; `weak` ones do not keep the process alive (background sends). */
const sleep = (ms: number, weak: boolean): Promise<void> =>
  new Promise((r) => {
    const t = setTimeout(r, ms);
    if (weak) t.unref();
  });

/** The mirror of one local run on an MLflow server. */
export class MlflowMirror {
  private readonly o: ReturnType<typeof remoteOptions>;
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<FlushResult> | null = null;
  private again = false;
  private warned = false;
  private torn = false;
  private weak = false;
  private readonly enc = new TextEncoder();

  constructor(
    readonly runDir: string,
    opts: Partial<RemoteOptions> & { uri: string },
  ) {
    this.o = remoteOptions(opts);
    // which server this run logs to, from the start: a later `kiln runs sync` finds it even if nothing was sent
    if (!existsSync(join(runDir, STATE))) this.save(this.state());
  }

  /** Appends an operation to the outbox (synchronously) and schedules a background send. */
  record(op: OutboxOp): void {
    const file = join(this.runDir, OUTBOX);
    try {
      appendFileSync(file, (this.torn ? '\n' : '') + JSON.stringify(op) + '\n');
      this.torn = false;
    } catch (e) {
      this.torn = true; // a part of the line may be there: the next one starts on a fresh line
      throw ioError('append to the MLflow outbox', file, e);
    }
    this.schedule();
  }

  /** A background flush after `flushEvery` ms (or `ms`), unless one is already due. */
  schedule(ms?: number): void {
    if (this.o.flushEvery === false && ms === undefined) return;
    if (this.timer) return;
    this.timer = setTimeout(
      () => {
        this.timer = null;
        this.flush(true).catch((e: Error) => {
          if (!this.warned)
            process.emitWarning(`kiln: MLflow server ${this.o.uri}: ${e.message}; kept locally, retrying later`);
          this.warned = true;
          this.schedule();
        });
      },
      ms ?? (this.o.flushEvery as number),
    );
    this.timer.unref();
  }

  /** Stops background sends (what is not sent stays in the outbox). */
  close(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }

  private state(): RemoteState {
    const s = readRemoteState(this.runDir);
    if (s && s.uri === this.o.uri) return s;
    // a different server (or none yet, or an unreadable state file, rewritten on the next save): start over
    return { uri: this.o.uri, experimentId: null, runId: null, artifactUri: null, sent: 0 };
  }

  private save(s: RemoteState): void {
    writeFileAtomicSync(join(this.runDir, STATE), [this.enc.encode(JSON.stringify(s, null, 2))]);
  }

  /**
   * Sends every pending operation. Resolves with what the server holds; rejects with a TrackingError (the
   * operations stay in the outbox) when the server stays unreachable or refuses one.
   */
  flush(background = false): Promise<FlushResult> {
    if (!background) this.weak = false; // someone waits: retries keep the process alive
    if (this.running) {
      this.again = true; // records arrived while sending: one more pass after this one
      return this.running;
    }
    this.weak = background;
    this.running = (async () => {
      try {
        let r: FlushResult;
        do {
          this.again = false;
          r = await this.send();
        } while (this.again);
        this.warned = false;
        return r;
      } finally {
        this.running = null;
      }
    })();
    return this.running;
  }

  private async send(): Promise<FlushResult> {
    const ops = readOutbox(this.runDir);
    const s = this.state();
    let i = s.sent;
    const done = (): FlushResult => ({ sent: s.sent, pending: ops.length - s.sent, remoteRunId: s.runId });
    while (i < ops.length) {
      const op = ops[i]!;
      if (op.op === 'create') {
        await this.create(op, s);
        i++;
      } else if (op.op === 'param' || op.op === 'metric' || op.op === 'tag') {
        const metrics: unknown[] = [],
          params: unknown[] = [],
          tags: unknown[] = [];
        while (i < ops.length && metrics.length + params.length + tags.length < MAX_ITEMS) {
          const b = ops[i]!;
          if (b.op === 'metric' && metrics.length < MAX_METRICS)
            metrics.push({ key: b.key, value: b.value, timestamp: b.timestamp, step: b.step });
          else if (b.op === 'param' && params.length < MAX_PARAMS) params.push({ key: b.key, value: b.value });
          else if (b.op === 'tag' && tags.length < MAX_TAGS) tags.push({ key: b.key, value: b.value });
          else break;
          i++;
        }
        await this.call('POST', 'runs/log-batch', { run_id: this.runId(s), metrics, params, tags });
      } else if (op.op === 'artifact') {
        await this.upload(op.path, s);
        i++;
      } else if (op.op === 'end') {
        await this.call('POST', 'runs/update', { run_id: this.runId(s), status: op.status, end_time: op.endTime });
        i++;
      } else i++; // an operation this version does not know: skip it
      s.sent = i;
      this.save(s);
    }
    return done();
  }

  private backoff(attempt: number): Promise<void> {
    return sleep(Math.min(10000, this.o.backoffMs * 2 ** (attempt - 1)) * (0.75 + Math.random() / 2), this.weak);
  }

  private runId(s: RemoteState): string {
    if (!s.runId) throw new TrackingError(`the outbox of ${this.runDir} has no 'create' first; cannot send`);
    return s.runId;
  }

  private async create(op: Extract<OutboxOp, { op: 'create' }>, s: RemoteState): Promise<void> {
    // the experiment, by name, created when missing (another client may create it first)
    let exp = await this.call(
      'GET',
      `experiments/get-by-name?experiment_name=${encodeURIComponent(op.experiment)}`,
      null,
      ['RESOURCE_DOES_NOT_EXIST'],
    );
    if (exp === null) {
      const made = await this.call('POST', 'experiments/create', { name: op.experiment }, ['RESOURCE_ALREADY_EXISTS']);
      exp =
        made === null
          ? await this.call('GET', `experiments/get-by-name?experiment_name=${encodeURIComponent(op.experiment)}`, null)
          : { experiment: { experiment_id: (made as { experiment_id: string }).experiment_id } };
    }
    const experimentId = String((exp as { experiment: { experiment_id: string } }).experiment.experiment_id);
    // a retried create whose first answer was lost must not make a second run: look for ours first
    let info = await this.findRun(experimentId, op.localRunId);
    for (let attempt = 0; !info; attempt++) {
      // one try per create: after a failure the search runs again, in case the server made the run anyway
      try {
        const r = (await this.request(
          'POST',
          `${this.o.uri}/api/2.0/mlflow/runs/create`,
          JSON.stringify({
            experiment_id: experimentId,
            run_name: op.runName,
            start_time: op.startTime,
            tags: [{ key: 'kiln.local_run_id', value: op.localRunId }],
          }),
          [],
          'application/json',
          0,
        )) as { run: { info: { run_id: string; artifact_uri?: string } } };
        info = r.run.info;
      } catch (e) {
        if (!(e instanceof TrackingError) || /refused/.test(e.message) || attempt >= this.o.retries) throw e;
        await this.backoff(attempt + 1);
        info = await this.findRun(experimentId, op.localRunId);
      }
    }
    s.experimentId = experimentId;
    s.runId = info.run_id;
    s.artifactUri = info.artifact_uri ?? null;
  }

  /** The server's run tagged with this local run id, if it has one. */
  private async findRun(
    experimentId: string,
    localRunId: string,
  ): Promise<{ run_id: string; artifact_uri?: string } | undefined> {
    const found = (await this.call('POST', 'runs/search', {
      experiment_ids: [experimentId],
      filter: `tags.\`kiln.local_run_id\` = '${localRunId}'`,
      max_results: 1,
    })) as { runs?: { info: { run_id: string; artifact_uri?: string } }[] };
    return found.runs?.[0]?.info;
  }

  private async upload(path: string, s: RemoteState): Promise<void> {
    const file = join(this.runDir, 'artifacts', ...path.split('/'));
    if (!existsSync(file)) return; // removed locally since: nothing to send
    const root = s.artifactUri ?? '';
    // the server's artifact proxy: mlflow-artifacts:/<exp>/<run>/artifacts or mlflow-artifacts://host/<...>
    const m = /^mlflow-artifacts:(?:\/\/[^/]*)?\/?(.*)$/.exec(root);
    if (!m)
      throw new TrackingError(
        `the server keeps this run's artifacts at ${describe(root)}, which kiln cannot upload to over HTTP ` +
          `(start the server with --serve-artifacts); ${path} stays in ${join(this.runDir, 'artifacts')}`,
      );
    const rel = [...m[1]!.split('/').filter(Boolean), ...path.split('/')].map(encodeURIComponent).join('/');
    await this.request(
      'PUT',
      `${this.o.uri}/api/2.0/mlflow-artifacts/artifacts/${rel}`,
      new Uint8Array(readFileSync(file)),
      [],
      'application/octet-stream',
    );
  }

  private call(method: 'GET' | 'POST', route: string, body: unknown, absent: string[] = []): Promise<unknown> {
    return this.request(
      method,
      `${this.o.uri}/api/2.0/mlflow/${route}`,
      body === null ? null : JSON.stringify(body),
      absent,
    );
  }

  /** One request with retries; resolves with the JSON answer, or null when the error code is in `absent`. */
  private async request(
    method: string,
    url: string,
    body: string | Uint8Array<ArrayBuffer> | null,
    absent: string[],
    type = 'application/json',
    retries = this.o.retries,
  ): Promise<unknown> {
    const headers: Record<string, string> = { 'content-type': type };
    if (this.o.token) headers.authorization = `Bearer ${this.o.token}`;
    else if (process.env.MLFLOW_TRACKING_USERNAME)
      headers.authorization = `Basic ${Buffer.from(`${process.env.MLFLOW_TRACKING_USERNAME}:${process.env.MLFLOW_TRACKING_PASSWORD ?? ''}`).toString('base64')}`;
    let last = '';
    for (let attempt = 0; attempt <= retries; attempt++) {
      if (attempt > 0) await this.backoff(attempt);
      let res: Response;
      try {
        res = await fetch(url, {
          method,
          headers,
          body: body === null ? undefined : typeof body === 'string' ? body : new Blob([body]),
          signal: AbortSignal.timeout(this.o.timeoutMs),
        });
      } catch (e) {
        const c = (e as { cause?: { code?: string } }).cause;
        last = `${method} ${url}: ${c?.code ?? (e as Error).message}`;
        continue; // unreachable, reset, timed out: retry
      }
      const text = await res.text();
      if (res.ok) {
        try {
          return text ? (JSON.parse(text) as unknown) : {};
        } catch {
          throw new TrackingError(`${method} ${url}: the server answered ${res.status} with a body that is not JSON`);
        }
      }
      let code = '',
        message = text.slice(0, 300);
      try {
        const j = JSON.parse(text) as { error_code?: string; message?: string };
        code = j.error_code ?? '';
        message = j.message ?? message;
      } catch {
        /* not JSON */
      }
      if (absent.includes(code)) return null;
      last = `${method} ${url}: ${res.status}${code ? ` ${code}` : ''}: ${message}`;
      if (res.status === 429 || res.status >= 500) continue;
      throw new TrackingError(`the MLflow server refused ${last}`);
    }
    throw new TrackingError(`the MLflow server did not answer after ${retries + 1} tries (${last})`);
  }
}
