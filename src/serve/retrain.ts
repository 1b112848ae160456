// `kiln pipeline run pipeline.json`: a declared retraining pipeline. Steps, in order:
//   validate  new training data (label present, enough rows, features numeric and finite, classes known)
//   train     a candidate from the champion's architecture (fine-tuned from its weights, or from scratch)
//   evaluate  candidate and champion on the same fixed holdout
//   gate      refuse a candidate that is worse than the champion (by the task's metric and a margin)
//   register  the candidate in the model registry (stage staging)
//   canary    deploy it beside the champion on a running server, wait for live requests, read its numbers;
//             roll it back when it fails the server's rule or ours
//   promote   make it the primary on the server and production in the registry
// Each step is logged (a JSONL file) and its result is kept in state.json, written atomically after every step,
// so a run that crashed resumes at the first step not done. `watchPipeline` starts runs on a schedule and on
// drift alerts (the model server's webhook posts to it), one at a time.
import { createHash, randomUUID } from 'node:crypto';
import { appendFileSync, existsSync, mkdirSync, readFileSync } from 'node:fs';
import { createServer as createHttpServer, type Server } from 'node:http';
import { dirname, join, resolve } from 'node:path';
import type * as A from 'apache-arrow';
import {
  ArgumentError,
  KilnError,
  ValidationError,
  checkOptions,
  describe,
  optionKeys,
  unknownKey,
} from '../errors.js';
import { DataLoader, Dataset } from '../data/loader.js';
import { readTable, tableXY } from '../data/table.js';
import { loadModel, save } from '../io/index.js';
import { writeFileAtomicSync } from '../io/atomic.js';
import type { Module } from '../nn/module.js';
import { fromSpec, toSpec } from '../nn/spec.js';
import { tensor } from '../ops/creation.js';
import { Adam } from '../optim/adam.js';
import * as registry from '../track/registry.js';
import { fit } from '../train/fit.js';
import { seed as setSeed } from '../ops/random.js';
import { own } from '../records.js';
import { adminRequest } from './client.js';
import { INPUT_SHAPE_METADATA_KEY } from './model.js';

/** What pipeline.json declares. Relative paths are relative to the file. */
export interface PipelineSpec {
  /** Registry name of the model. */
  name: string;
  /** Directory for state.json, log.jsonl and candidate files (default: .kiln-pipeline/<name>). */
  workdir?: string;
  /** Model registry directory (default: $KILN_REGISTRY or kiln-registry). */
  registry?: string;
  /** The champion's model file when the registry has no production version yet. */
  champion?: string;
  task?: 'classification' | 'regression';
  data: {
    /** New training data: a Parquet, Arrow or CSV file (by extension). */
    train: string;
    /** The fixed holdout both models are compared on. */
    holdout: string;
    /** Label column. */
    label: string;
    /** Feature columns (default: every column but the label). */
    features?: string[];
    /** Fewest training rows accepted (default 100). */
    minRows?: number;
  };
  train?: {
    epochs?: number;
    batchSize?: number;
    /** Adam learning rate (default 3e-4). */
    lr?: number;
    seed?: number;
    /** 'champion': start from its weights (default); 'scratch': its architecture, new weights. */
    init?: 'champion' | 'scratch';
  };
  /** The candidate must beat the champion by this much (accuracy up, or RMSE down; default 0). */
  minImprovement?: number;
  canary?: {
    /** The model server (its model directory must hold the registry). */
    url: string;
    /** Environment variable holding an admin API key (default KILN_API_KEY). */
    tokenEnv?: string;
    /** CA certificate file for an HTTPS server with a private certificate. */
    ca?: string;
    /** Share of live requests (default 0.1). */
    weight?: number;
    /** Requests the candidate must answer before it is judged (default 50). */
    minRequests?: number;
    /** Largest error rate accepted (default 0.01). */
    maxErrorRate?: number;
    /** How long to wait for minRequests (default 600000 ms); then the canary is rolled back. */
    timeoutMs?: number;
  };
}

export type StepName = 'validate' | 'train' | 'evaluate' | 'gate' | 'register' | 'canary' | 'promote';
const STEPS: readonly StepName[] = ['validate', 'train', 'evaluate', 'gate', 'register', 'canary', 'promote'];

/** One step's record in state.json. */
export interface StepState {
  status: 'pending' | 'running' | 'done' | 'failed' | 'skipped';
  startedAt: string | null;
  endedAt: string | null;
  output: Record<string, unknown> | null;
  error: string | null;
}

/** state.json: one run of the pipeline. */
export interface PipelineState {
  runId: string;
  specHash: string;
  trigger: string;
  startedAt: string;
  /** running; done (promoted); rejected (worse, or rolled back in the canary); failed (an error). */
  status: 'running' | 'done' | 'rejected' | 'failed';
  version: string | null;
  reason: string | null;
  /** Steps in order (a list: step names never become object keys of a file we read back). */
  steps: { name: StepName; state: StepState }[];
}

/** A pipeline spec read from its file, with its paths resolved. */
export interface LoadedPipeline {
  spec: PipelineSpec;
  /** The spec's directory (relative paths start there). */
  base: string;
  hash: string;
}

function fail(msg: string): never {
  throw new ValidationError(`pipeline: ${msg}`);
}

/** Fails on a key the spec does not have, so that a misspelt setting is not quietly left at its default. */
function knownKeys(o: object, where: string, known: readonly string[]): void {
  const k = unknownKey(o, known);
  if (k !== undefined) fail(`${where}unknown key ${describe(k)} (the keys are ${known.join(', ')})`);
}
const SPEC_KEYS = optionKeys<PipelineSpec>({
  name: true,
  workdir: true,
  registry: true,
  champion: true,
  task: true,
  data: true,
  train: true,
  minImprovement: true,
  canary: true,
});
const DATA_KEYS = optionKeys<PipelineSpec['data']>({
  train: true,
  holdout: true,
  label: true,
  features: true,
  minRows: true,
});
const TRAIN_KEYS = optionKeys<NonNullable<PipelineSpec['train']>>({
  epochs: true,
  batchSize: true,
  lr: true,
  seed: true,
  init: true,
});
const CANARY_KEYS = optionKeys<NonNullable<PipelineSpec['canary']>>({
  url: true,
  tokenEnv: true,
  ca: true,
  weight: true,
  minRequests: true,
  maxErrorRate: true,
  timeoutMs: true,
});

/** Reads and checks a pipeline file (or takes a spec object with a base directory). */
export function loadPipelineSpec(source: string | PipelineSpec, base = process.cwd()): LoadedPipeline {
  let raw: unknown = source;
  if (typeof source === 'string') {
    base = dirname(resolve(source));
    try {
      raw = JSON.parse(readFileSync(source, 'utf8'));
    } catch (e) {
      throw new ValidationError(`pipeline ${source}: not a readable JSON file (${(e as Error).message})`);
    }
  }
  const s = raw as PipelineSpec;
  if (s === null || typeof s !== 'object' || Array.isArray(s)) fail(`the spec must be an object, got ${describe(s)}`);
  knownKeys(s, '', SPEC_KEYS);
  if (typeof s.name !== 'string' || !/^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/.test(s.name))
    fail(`name must be a model name (letters, digits, _ . -), got ${describe(s.name)}`);
  const d = s.data;
  if (d === null || typeof d !== 'object') fail('data must be {train, holdout, label}');
  knownKeys(d, 'data: ', DATA_KEYS);
  for (const k of ['train', 'holdout', 'label'] as const)
    if (typeof d[k] !== 'string' || d[k] === '') fail(`data.${k} must be a non-empty string, got ${describe(d[k])}`);
  if (d.features !== undefined && (!Array.isArray(d.features) || !d.features.every((f) => typeof f === 'string')))
    fail(`data.features must be a list of column names, got ${describe(d.features)}`);
  if (s.task !== undefined && s.task !== 'classification' && s.task !== 'regression')
    fail(`task must be 'classification' or 'regression', got ${describe(s.task)}`);
  const t = s.train ?? {};
  if (t === null || typeof t !== 'object' || Array.isArray(t)) fail(`train must be an object, got ${describe(t)}`);
  knownKeys(t, 'train: ', TRAIN_KEYS);
  const pos = (v: unknown, what: string, int: boolean): void => {
    if (v !== undefined && (typeof v !== 'number' || !(v > 0) || (int && !Number.isInteger(v))))
      fail(`${what} must be a positive ${int ? 'integer' : 'number'}, got ${describe(v)}`);
  };
  pos(t.epochs, 'train.epochs', true);
  pos(t.batchSize, 'train.batchSize', true);
  pos(t.lr, 'train.lr', false);
  pos(d.minRows, 'data.minRows', true);
  if (t.init !== undefined && t.init !== 'champion' && t.init !== 'scratch')
    fail(`train.init must be 'champion' or 'scratch', got ${describe(t.init)}`);
  if (s.minImprovement !== undefined && !(typeof s.minImprovement === 'number' && s.minImprovement >= 0))
    fail(`minImprovement must be a number >= 0, got ${describe(s.minImprovement)}`);
  if (s.canary !== undefined) {
    const c = s.canary;
    if (c === null || typeof c !== 'object' || typeof c.url !== 'string') fail('canary must be {url, ...}');
    knownKeys(c, 'canary: ', CANARY_KEYS);
    try {
      new URL(c.url);
    } catch {
      fail(`canary.url is not a URL: ${describe(c.url)}`);
    }
    if (c.weight !== undefined && !(typeof c.weight === 'number' && c.weight > 0 && c.weight <= 1))
      fail(`canary.weight must be in (0, 1], got ${describe(c.weight)}`);
    pos(c.minRequests, 'canary.minRequests', true);
    pos(c.timeoutMs, 'canary.timeoutMs', true);
    if (c.maxErrorRate !== undefined && !(typeof c.maxErrorRate === 'number' && c.maxErrorRate >= 0))
      fail(`canary.maxErrorRate must be a number >= 0, got ${describe(c.maxErrorRate)}`);
  }
  return {
    spec: s,
    base,
    hash: createHash('sha256').update(JSON.stringify(s)).digest('hex').slice(0, 16),
  };
}

/** The champion: the registry's production version, else the spec's file; null for a first model. */
function championOf(p: LoadedPipeline, root: string): { path: string; version: string } | null {
  const prod = registry.production(p.spec.name, { dir: root });
  if (prod) return { path: prod.path, version: prod.version };
  if (p.spec.champion) return { path: resolve(p.base, p.spec.champion), version: 'champion-file' };
  return null;
}

/** The task's metric of a model on a holdout: accuracy (higher is better) or RMSE (lower is better). */
function score(model: Module, x: Float32Array, y: Float32Array | Int32Array, n: number, task: string): number {
  const F = x.length / n;
  const out = model.call(tensor(x, [n, F]));
  const o = out.toArray() as Float32Array;
  out.dispose();
  const K = o.length / n;
  let s = 0;
  for (let i = 0; i < n; i++) {
    if (task === 'classification') {
      let k = 0;
      for (let j = 1; j < K; j++) if (o[i * K + j]! > o[i * K + k]!) k = j;
      if (k === y[i]) s++;
    } else s += (o[i * K]! - y[i]!) ** 2;
  }
  return task === 'classification' ? s / n : Math.sqrt(s / n);
}

/** runPipeline options. */
export interface RunOptions {
  /** What started the run (logged): 'manual', 'schedule', 'alert:<name>'. */
  trigger?: string;
  /** false: start a new run even when the last one did not finish (default true: resume it). */
  resume?: boolean;
  /** Gets each log record as it is written. */
  onLog?: (rec: Record<string, unknown>) => void;
}

/**
 * Runs (or resumes) a retraining pipeline. Resolves to the final state: 'done' (promoted), 'rejected' (worse than
 * the champion, or rolled back in the canary) or 'failed' (an error; the run resumes from that step next time).
 */
export async function runPipeline(source: string | PipelineSpec, opts: RunOptions = {}): Promise<PipelineState> {
  checkOptions(opts, 'runPipeline', optionKeys<RunOptions>({ trigger: true, resume: true, onLog: true }));
  if (opts.trigger !== undefined && (typeof opts.trigger !== 'string' || opts.trigger === ''))
    throw new ArgumentError(`runPipeline: trigger must be a non-empty string, got ${describe(opts.trigger)}`);
  if (opts.resume !== undefined && typeof opts.resume !== 'boolean')
    throw new ArgumentError(`runPipeline: resume must be true or false, got ${describe(opts.resume)}`);
  if (opts.onLog !== undefined && typeof opts.onLog !== 'function')
    throw new ArgumentError(`runPipeline: onLog must be a function, got ${describe(opts.onLog)}`);
  const p = loadPipelineSpec(source);
  const s = p.spec;
  const task = s.task ?? 'classification';
  const work = resolve(p.base, s.workdir ?? join('.kiln-pipeline', s.name));
  mkdirSync(work, { recursive: true });
  const root = resolve(p.base, s.registry ?? process.env.KILN_REGISTRY ?? 'kiln-registry');
  const statePath = join(work, 'state.json');
  const logPath = join(work, 'log.jsonl');
  let st: PipelineState | null = null;
  if (opts.resume !== false && existsSync(statePath)) {
    const prev = JSON.parse(readFileSync(statePath, 'utf8')) as PipelineState;
    if ((prev.status === 'running' || prev.status === 'failed') && prev.specHash === p.hash) st = prev;
  }
  const resumed = st !== null;
  st ??= {
    runId: randomUUID(),
    specHash: p.hash,
    trigger: opts.trigger ?? 'manual',
    startedAt: new Date().toISOString(),
    status: 'running',
    version: null,
    reason: null,
    steps: STEPS.map((name) => ({
      name,
      state: { status: 'pending', startedAt: null, endedAt: null, output: null, error: null },
    })),
  };
  const state = st;
  state.status = 'running';
  const save_ = (): void =>
    writeFileAtomicSync(statePath, [new TextEncoder().encode(JSON.stringify(state, null, 2) + '\n')]);
  const log = (step: string, event: string, detail: Record<string, unknown> = {}): void => {
    const rec = { ts: new Date().toISOString(), runId: state.runId, step, event, ...detail };
    appendFileSync(logPath, JSON.stringify(rec) + '\n');
    opts.onLog?.(rec);
  };
  log('run', resumed ? 'resumed' : 'started', { trigger: opts.trigger ?? 'manual' });
  save_();
  const out = (name: StepName): Record<string, unknown> => state.steps.find((x) => x.name === name)!.state.output ?? {};

  const d = s.data;
  const trainPath = resolve(p.base, d.train),
    holdPath = resolve(p.base, d.holdout);
  const champion = championOf(p, root);
  const featuresOf = (t: A.Table): string[] =>
    d.features ?? t.schema.fields.map((f) => f.name).filter((n) => n !== d.label);
  const candidatePath = (): string => join(work, `candidate-${state.runId.slice(0, 8)}.safetensors`);

  const steps: Record<StepName, () => Promise<Record<string, unknown> | 'stop'>> = Object.assign(
    Object.create(null) as Record<StepName, () => Promise<Record<string, unknown> | 'stop'>>,
    {
      validate: async () => {
        const t = readTable(trainPath, 'pipeline');
        const h = readTable(holdPath, 'pipeline');
        const features = featuresOf(t);
        if (features.length === 0) fail(`${d.train} has no feature columns besides the label '${d.label}'`);
        const a = tableXY(t, features, d.label, task, d.train, 'pipeline');
        const b = tableXY(h, features, d.label, task, d.holdout, 'pipeline');
        if (a.n < (d.minRows ?? 100)) fail(`${d.train} has ${a.n} rows; at least ${d.minRows ?? 100} are needed`);
        const res: Record<string, unknown> = { rows: a.n, holdoutRows: b.n, features };
        if (task === 'classification') {
          const seen = new Set(a.y);
          const missing = [...new Set(b.y)].filter((c) => !seen.has(c));
          if (missing.length) fail(`${d.train} has no row of class ${missing.join(', ')}, which the holdout has`);
          res.classes = seen.size;
        }
        return res;
      },
      train: async () => {
        if (!champion) fail('there is no champion to take the architecture from: set "champion" to a model file');
        const t = readTable(trainPath, 'pipeline');
        const features = out('validate').features as string[];
        const { x, y, n } = tableXY(t, features, d.label, task, d.train, 'pipeline');
        const tr = s.train ?? {};
        setSeed(tr.seed ?? 0);
        const { model: base, metadata } = await loadModel(champion.path);
        let model = base;
        if (tr.init === 'scratch') {
          model = fromSpec(toSpec(base));
          base.dispose();
        }
        try {
          const ds = new Dataset({
            x: tensor(x, [n, features.length]),
            y: task === 'classification' ? tensor(y as Int32Array, [n], { dtype: 'int32' }) : tensor(y, [n, 1]),
          });
          const loader = new DataLoader(ds, { batchSize: tr.batchSize ?? 64, shuffle: true, seed: tr.seed ?? 0 });
          const opt = new Adam(model.parameters(), { lr: tr.lr ?? 3e-4 });
          const r = await fit(model, {
            train: loader,
            loss: task === 'classification' ? 'crossEntropy' : 'mse',
            optimizer: opt,
            epochs: tr.epochs ?? 3,
            verbose: 'silent',
          });
          const existing = registry.list(s.name, { dir: root });
          const latest = existing.at(-1)?.version;
          const version = latest ? `${Number(latest.split('.')[0])}.${Number(latest.split('.')[1]) + 1}.0` : '1.0.0';
          const file = candidatePath();
          await save(file, model, {
            metadata: {
              'kiln.version': `${s.name}@${version}`,
              [INPUT_SHAPE_METADATA_KEY]: own(metadata, INPUT_SHAPE_METADATA_KEY) ?? JSON.stringify([features.length]),
            },
          });
          state.version = version;
          return { file, version, epochs: r.history.length, finalLoss: r.history.at(-1)?.trainLoss ?? null };
        } finally {
          model.dispose();
        }
      },
      evaluate: async () => {
        const h = readTable(holdPath, 'pipeline');
        const features = out('validate').features as string[];
        const { x, y, n } = tableXY(h, features, d.label, task, d.holdout, 'pipeline');
        const metric = task === 'classification' ? 'accuracy' : 'rmse';
        const cand = (await loadModel(out('train').file as string)).model;
        const champ = (await loadModel(champion!.path)).model;
        try {
          return {
            metric,
            candidate: score(cand, x, y, n, task),
            champion: score(champ, x, y, n, task),
            championVersion: champion!.version,
          };
        } finally {
          cand.dispose();
          champ.dispose();
        }
      },
      gate: async () => {
        const e = out('evaluate');
        const c = e.candidate as number,
          ch = e.champion as number,
          m = s.minImprovement ?? 0;
        const better = e.metric === 'rmse' ? c <= ch - m : c >= ch + m;
        if (!better) {
          state.reason =
            `the candidate's ${String(e.metric)} on the holdout is ${c.toFixed(4)}, the champion's ${ch.toFixed(4)}` +
            (m ? ` (a margin of ${m} is required)` : '') +
            '; it is not promoted';
          return 'stop';
        }
        return { passed: true, candidate: c, champion: ch };
      },
      register: async () => {
        const version = out('train').version as string;
        const had = registry.list(s.name, { dir: root }).find((v) => v.version === version);
        const e = out('evaluate');
        const mv =
          had ??
          registry.register(out('train').file as string, {
            name: s.name,
            version,
            dir: root,
            ...(champion && champion.version !== 'champion-file' ? { parent: `${s.name}@${champion.version}` } : {}),
            card: {
              intendedUse:
                `retrained by pipeline run ${state.runId} (trigger: ${state.trigger}); holdout ` +
                `${String(e.metric)} ${(e.candidate as number).toFixed(4)} vs champion ${(e.champion as number).toFixed(4)}`,
            },
          });
        registry.promote(s.name, version, 'staging', { dir: root });
        return { version: mv.version, path: mv.path, sha256: mv.sha256 };
      },
      canary: async () => {
        const c = s.canary;
        if (!c) return { skipped: 'no canary server in the spec' };
        const token = process.env[c.tokenEnv ?? 'KILN_API_KEY'];
        const ca = c.ca ? readFileSync(resolve(p.base, c.ca)) : undefined;
        const base = new URL(c.url);
        const at = (path: string): URL => new URL(path, base);
        const version = `${s.name}@${state.version}`;
        const path = out('register').path as string;
        const listed = async (): Promise<{ version: string; requests: number; errorRate: number; role: string }[]> => {
          const r = await adminRequest(at('/admin/versions'), 'GET', token, undefined, ca);
          if (r.status !== 200)
            throw new KilnError(`canary: GET /admin/versions answered ${r.status}: ${JSON.stringify(r.body)}`);
          return r.body.versions as { version: string; requests: number; errorRate: number; role: string }[];
        };
        const present = (await listed()).find((v) => v.version === version);
        if (!present) {
          const r = await adminRequest(
            at('/admin/deploy'),
            'POST',
            token,
            { path, version, weight: c.weight ?? 0.1 },
            ca,
          );
          if (r.status !== 200)
            throw new KilnError(`canary: deploy answered ${r.status}: ${String(r.body.message ?? '')}`);
          log('canary', 'deployed', { version, weight: c.weight ?? 0.1 });
        } else log('canary', 'found deployed', { version, requests: present.requests });
        const deadline = Date.now() + (c.timeoutMs ?? 600_000);
        const need = c.minRequests ?? 50;
        for (;;) {
          const v = (await listed()).find((x) => x.version === version);
          if (!v) {
            state.reason = `the server took canary ${version} out (its automatic rollback rule broke)`;
            return 'stop';
          }
          if (v.role === 'primary') return { requests: v.requests, errorRate: v.errorRate, alreadyPrimary: true };
          if (v.requests >= need) {
            if (v.errorRate > (c.maxErrorRate ?? 0.01)) {
              await adminRequest(at('/admin/rollback'), 'POST', token, {}, ca);
              state.reason = `canary ${version} failed ${(v.errorRate * 100).toFixed(1)}% of ${v.requests} requests; rolled back`;
              return 'stop';
            }
            return { requests: v.requests, errorRate: v.errorRate };
          }
          if (Date.now() > deadline) {
            await adminRequest(at('/admin/rollback'), 'POST', token, {}, ca);
            state.reason = `canary ${version} got ${v.requests} requests in ${c.timeoutMs ?? 600_000} ms, fewer than ${need}; rolled back`;
            return 'stop';
          }
          await new Promise((r) => setTimeout(r, 200));
        }
      },
      promote: async () => {
        const version = state.version!;
        const c = s.canary;
        if (c && !out('canary').skipped && !out('canary').alreadyPrimary) {
          const token = process.env[c.tokenEnv ?? 'KILN_API_KEY'];
          const ca = c.ca ? readFileSync(resolve(p.base, c.ca)) : undefined;
          const r = await adminRequest(
            new URL('/admin/promote', c.url),
            'POST',
            token,
            { version: `${s.name}@${version}` },
            ca,
          );
          if (r.status !== 200) throw new KilnError(`promote answered ${r.status}: ${String(r.body.message ?? '')}`);
        }
        registry.promote(s.name, version, 'production', { dir: root });
        return { production: version };
      },
    },
  );

  for (const { name, state: ss } of state.steps) {
    if (ss.status === 'done' || ss.status === 'skipped') {
      if (resumed) log(name, 'already done');
      continue;
    }
    ss.status = 'running';
    ss.startedAt = new Date().toISOString();
    ss.error = null;
    save_();
    log(name, 'start');
    try {
      const r = await steps[name]();
      ss.endedAt = new Date().toISOString();
      if (r === 'stop') {
        ss.status = 'done';
        ss.output = { stopped: state.reason };
        state.status = 'rejected';
        for (const later of state.steps) if (later.state.status === 'pending') later.state.status = 'skipped';
        log(name, 'rejected', { reason: state.reason });
        save_();
        return state;
      }
      ss.status = 'done';
      ss.output = r;
      log(name, 'done', r);
      save_();
    } catch (e) {
      ss.status = 'failed';
      ss.endedAt = new Date().toISOString();
      ss.error = (e as Error).message;
      state.status = 'failed';
      state.reason = `${name}: ${(e as Error).message}`;
      log(name, 'failed', { error: (e as Error).message });
      save_();
      return state;
    }
  }
  state.status = 'done';
  log('run', 'done', { version: state.version });
  save_();
  return state;
}

/** watchPipeline options. */
export interface WatchOptions {
  /** Run every this many ms (default: no schedule). */
  everyMs?: number;
  /** Listen for alert webhooks on this port (0: any free one; default: no listener). */
  port?: number;
  host?: string;
  /** Only these alert names start a run (default: any firing alert). */
  alerts?: readonly string[];
  /** Gets each finished run. */
  onRun?: (state: PipelineState) => void;
}

/** A running watcher. */
export interface PipelineWatcher {
  /** The webhook URL (POST Alertmanager-shaped alerts to it), or null without a listener. */
  readonly url: string | null;
  /** Finished runs, oldest first. */
  readonly runs: PipelineState[];
  /** Stops the schedule and the listener; waits for a run in progress. */
  close(): Promise<void>;
}

/**
 * Starts pipeline runs on a schedule and when a drift alert arrives (point the model server's monitor webhook at
 * `url`). Runs never overlap: a trigger during a run queues one more run.
 */
export async function watchPipeline(source: string, opts: WatchOptions = {}): Promise<PipelineWatcher> {
  checkOptions(
    opts,
    'watchPipeline',
    optionKeys<WatchOptions>({ everyMs: true, port: true, host: true, alerts: true, onRun: true }),
  );
  if (opts.port !== undefined && !(Number.isInteger(opts.port) && opts.port >= 0 && opts.port <= 65535))
    throw new ArgumentError(`watchPipeline: port must be an integer in [0, 65535], got ${describe(opts.port)}`);
  if (opts.host !== undefined && (typeof opts.host !== 'string' || opts.host === ''))
    throw new ArgumentError(`watchPipeline: host must be a host name, got ${describe(opts.host)}`);
  if (opts.alerts !== undefined && (!Array.isArray(opts.alerts) || opts.alerts.some((a) => typeof a !== 'string')))
    throw new ArgumentError(`watchPipeline: alerts must be a list of alert names, got ${describe(opts.alerts)}`);
  if (opts.onRun !== undefined && typeof opts.onRun !== 'function')
    throw new ArgumentError(`watchPipeline: onRun must be a function, got ${describe(opts.onRun)}`);
  loadPipelineSpec(source); // fail now on a bad spec
  if (opts.everyMs !== undefined && !(Number.isInteger(opts.everyMs) && opts.everyMs >= 100))
    throw new ArgumentError(`everyMs must be an integer >= 100, got ${describe(opts.everyMs)}`);
  const runs: PipelineState[] = [];
  let running: Promise<void> | null = null;
  let queued: string | null = null;
  let closed = false;
  const start = (trigger: string): void => {
    if (closed) return;
    if (running) {
      queued ??= trigger;
      return;
    }
    running = runPipeline(source, { trigger })
      .then(
        (st) => {
          runs.push(st);
          opts.onRun?.(st);
        },
        () => undefined,
      )
      .finally(() => {
        running = null;
        if (queued !== null) {
          const t = queued;
          queued = null;
          start(t);
        }
      });
  };
  const timer = opts.everyMs ? setInterval(() => start('schedule'), opts.everyMs) : null;
  let server: Server | null = null;
  let url: string | null = null;
  if (opts.port !== undefined) {
    const srv = createHttpServer((req, res) => {
      if (req.method !== 'POST') {
        res.writeHead(405).end();
        return;
      }
      let body = '';
      req.setEncoding('utf8');
      req.on('data', (c: string) => {
        body += c;
        if (body.length > 1 << 20) req.destroy();
      });
      req.on('end', () => {
        let names: string[];
        try {
          const p = JSON.parse(body) as {
            status?: string;
            alerts?: { status?: string; labels?: { alertname?: unknown } }[];
          };
          names = (p.alerts ?? [])
            .filter((a) => (a.status ?? p.status) === 'firing')
            .map((a) => String(a.labels?.alertname ?? ''))
            .filter((n) => !opts.alerts || opts.alerts.includes(n));
        } catch {
          res.writeHead(400, { 'content-type': 'application/json' }).end('{"error":"not JSON"}');
          return;
        }
        if (names.length) start(`alert:${names[0]}`);
        res.writeHead(202, { 'content-type': 'application/json' }).end(JSON.stringify({ triggered: names.length > 0 }));
      });
    });
    server = srv;
    await new Promise<void>((r) => srv.listen(opts.port, opts.host ?? '127.0.0.1', r));
    const a = srv.address() as { port: number };
    url = `http://${opts.host ?? '127.0.0.1'}:${a.port}/trigger`;
  }
  return {
    url,
    runs,
    async close() {
      closed = true;
      if (timer) clearInterval(timer);
      if (server) await new Promise<void>((r) => server!.close(() => r()));
      while (running) await running;
    },
  };
}
