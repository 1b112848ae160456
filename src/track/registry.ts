// A model registry on the file system: versioned model files with their lineage (the run that made them, the
// fingerprints of its data, the parent model, kiln's version, the file's SHA-256), a stage (none, staging,
// production, archived) with its history, a generated model card, and rollback to the previous production model.
//
//   <root>/<name>/<version>/model.safetensors   a copy of the registered file
//   <root>/<name>/<version>/model.json          name, version, stage, lineage, metrics, stage history
//   <root>/<name>/<version>/MODEL_CARD.md       intended use, training data, metrics (overall and per segment), limitations
//
// Every file is written atomically; names and versions are checked before they become paths.
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { ArgumentError, FormatError, ValidationError, checkOptions, describe, optionKeys } from '../errors.js';
import { info } from '../info.js';
import { checkFilePath, readFileForSync, writeFileAtomicSync } from '../io/atomic.js';
import type { SliceRow } from '../evaluate/index.js';
import { readRun, type RunRecord } from './index.js';

export type Stage = 'none' | 'staging' | 'production' | 'archived';
const STAGES: readonly Stage[] = ['none', 'staging', 'production', 'archived'];
const SEMVER = /^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-[0-9A-Za-z.-]+)?$/;
const MODEL_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;

/** What the registry keeps about one model version. */
export interface ModelVersion {
  name: string;
  version: string;
  stage: Stage;
  created: number;
  /** The model file's SHA-256 (hex). */
  sha256: string;
  lineage: {
    run: { id: string; name: string; experiment: string; dir: string } | null;
    datasets: { name: string; hash: string; rows: number }[];
    parent: string | null;
    kiln: string;
  };
  /** The run's final metric values (a list: names come from files, so they never become object keys). */
  metrics: { name: string; value: number }[];
  history: { stage: Stage; at: number }[];
  /** The registered file's path inside the registry. */
  path: string;
}

/** What a model card says beyond what the run records. */
export interface ModelCardInput {
  intendedUse?: string;
  limitations?: string;
  /** Metrics per data segment, e.g. from kn.evaluate.bySlice. */
  segments?: readonly SliceRow[];
}

const enc = (s: string): Uint8Array => new TextEncoder().encode(s);
const rootOf = (dir?: string): string => resolve(dir ?? process.env.KILN_REGISTRY ?? 'kiln-registry');

function checkModelName(name: unknown): string {
  if (typeof name !== 'string' || !MODEL_NAME.test(name))
    throw new ArgumentError(
      `model name must be 1-128 letters, digits, _ . - starting with a letter or digit, got ${describe(name)}`,
    );
  return name;
}
function checkVersion(v: unknown): string {
  if (typeof v !== 'string' || !SEMVER.test(v))
    throw new ArgumentError(`version must be a semantic version such as 1.2.0, got ${describe(v)}`);
  return v;
}
function cmpSemver(a: string, b: string): number {
  const pa = a.split(/[.-]/).slice(0, 3).map(Number),
    pb = b.split(/[.-]/).slice(0, 3).map(Number);
  for (let i = 0; i < 3; i++) if (pa[i] !== pb[i]) return pa[i]! - pb[i]!;
  return a === b ? 0 : a.includes('-') ? -1 : b.includes('-') ? 1 : 0;
}

function readVersion(root: string, name: string, version: string): ModelVersion {
  const file = join(root, name, version, 'model.json');
  if (!existsSync(file)) throw new ValidationError(`the registry has no model ${name}@${version} (${file})`);
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as ModelVersion;
  } catch (e) {
    throw new FormatError(`${file} is not readable: ${(e as Error).message}`);
  }
}
function writeVersion(root: string, m: ModelVersion): void {
  writeFileAtomicSync(join(root, m.name, m.version, 'model.json'), [enc(JSON.stringify(m, null, 2) + '\n')]);
}

/**
 * Every version of `name` (or of every model), oldest version first within a model.
 * @example kn.registry.list(undefined, { dir: '.kiln-tmp-empty-registry' }).length // 0
 */
export function list(name?: string, opts: { dir?: string } = {}): ModelVersion[] {
  checkOptions(opts, 'registry.list', ['dir']);
  const root = rootOf(opts.dir);
  if (!existsSync(root)) return [];
  const names = name === undefined ? readdirSync(root).filter((n) => MODEL_NAME.test(n)) : [checkModelName(name)];
  const out: ModelVersion[] = [];
  for (const n of names) {
    if (!existsSync(join(root, n))) continue;
    const versions = readdirSync(join(root, n))
      .filter((v) => SEMVER.test(v) && existsSync(join(root, n, v, 'model.json')))
      .sort(cmpSemver);
    for (const v of versions) out.push(readVersion(root, n, v));
  }
  return out;
}

function finalMetrics(r: RunRecord | null): { name: string; value: number }[] {
  if (!r) return [];
  return [...r.metrics]
    .filter(([k, pts]) => !k.startsWith('system/') && !k.endsWith('_step') && pts.length > 0)
    .sort((a, b) => (a[0] < b[0] ? -1 : 1))
    .map(([name, pts]) => ({ name, value: pts.at(-1)!.value }));
}

/** A finite number (values read back from JSON may be null where NaN was written). */
const isNum = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);

const CARD_KEYS = optionKeys<ModelCardInput>({ intendedUse: true, limitations: true, segments: true });

/** Checks a model card's fields (`where` names the call), so that a misspelt one is an error, not a lost text. */
function checkCard(card: ModelCardInput | undefined, where: string): void {
  checkOptions(card, where, CARD_KEYS);
  if (card === undefined) return;
  for (const k of ['intendedUse', 'limitations'] as const)
    if (card[k] !== undefined && typeof card[k] !== 'string')
      throw new ArgumentError(`${where}: ${k} must be a string, got ${describe(card[k])}`);
  const rows: unknown = card.segments;
  if (rows === undefined) return;
  type Row = { slice?: unknown; count?: unknown; metrics?: unknown };
  const metricNames = (r: Row): unknown[] | null =>
    Array.isArray(r.metrics) ? r.metrics.map((x: { metric?: unknown } | null) => x?.metric) : null;
  const first = Array.isArray(rows) && rows.length ? metricNames((rows[0] ?? {}) as Row) : [];
  const ok =
    Array.isArray(rows) &&
    first !== null &&
    rows.every((r: Row | null) => {
      const names = r === null || typeof r !== 'object' ? null : metricNames(r);
      return (
        names !== null &&
        typeof r!.slice === 'string' &&
        Number.isInteger(r!.count) &&
        names.length === first.length &&
        names.every((n, i) => typeof n === 'string' && n === first[i])
      );
    });
  if (!ok)
    throw new ArgumentError(
      `${where}: segments must be kn.evaluate.bySlice rows ({ slice, count, metrics }, the same metrics in each), got ${describe(rows)}`,
    );
}

/**
 * The Markdown model card of a registered version.
 * @example kn.registry.modelCard({ name: 'm', version: '1.0.0', stage: 'none', created: 0, sha256: '0', lineage: { run: null, datasets: [], parent: null, kiln: '0' }, metrics: [], history: [], path: 'm' }, { intendedUse: 'demo' }).includes('demo') // true
 */
export function modelCard(m: ModelVersion, card: ModelCardInput = {}): string {
  checkCard(card, 'modelCard');
  const lines = [
    `# Model card: ${m.name} ${m.version}`,
    '',
    `Registered ${new Date(m.created).toISOString()} with kiln ${m.lineage.kiln}; stage **${m.stage}**.`,
    `File SHA-256: \`${m.sha256}\`.`,
    '',
    '## Intended use',
    '',
    card.intendedUse ?? '_Not stated when the model was registered._',
    '',
    '## Training data',
    '',
  ];
  if (m.lineage.datasets.length) {
    lines.push('| dataset | rows | SHA-256 |', '|---|---|---|');
    for (const d of m.lineage.datasets) lines.push(`| ${d.name} | ${d.rows} | \`${d.hash}\` |`);
  } else lines.push('_No dataset fingerprint was recorded with the run._');
  lines.push('', '## Metrics', '');
  if (m.metrics.length) {
    lines.push('| metric | value |', '|---|---|');
    for (const { name: k, value: v } of m.metrics)
      lines.push(`| ${k} | ${typeof v !== 'number' || Number.isInteger(v) ? v : v.toFixed(4)} |`);
  } else lines.push('_No metrics were recorded with the run._');
  if (card.segments?.length) {
    const names = card.segments[0]!.metrics.map((x) => x.metric);
    lines.push(
      '',
      '### Per segment',
      '',
      `| segment | n | ${names.join(' | ')} |`,
      `|---|---|${names.map(() => '---|').join('')}`,
    );
    for (const row of card.segments)
      lines.push(
        `| ${row.slice} | ${row.count} | ${row.metrics
          .map((x) =>
            !isNum(x.value)
              ? '-'
              : `${x.value.toFixed(4)}${isNum(x.lo) && isNum(x.hi) ? ` (${x.lo.toFixed(3)}-${x.hi.toFixed(3)})` : ''}`,
          )
          .join(' | ')} |`,
      );
  }
  lines.push('', '## Limitations', '', card.limitations ?? '_Not stated when the model was registered._', '');
  lines.push('## Lineage', '');
  const run = m.lineage.run;
  lines.push(`- Run: ${run ? `${run.id} (${run.name}, experiment ${run.experiment})` : 'none recorded'}`);
  lines.push(`- Parent model: ${m.lineage.parent ?? 'none'}`);
  lines.push(`- Stage history: ${m.history.map((h) => `${h.stage} (${new Date(h.at).toISOString()})`).join(', ')}`);
  return lines.join('\n') + '\n';
}

/**
 * Registers a model file: copies it into the registry under a semantic version (default: the next minor version)
 * with its lineage (the run's id, data fingerprints and final metrics, a parent model, kiln's version) and writes
 * its model card.
 * @example kn.registry.list('no-such-model', { dir: '.kiln-tmp-empty-registry' }).length // 0
 */
export function register(
  modelPath: string,
  opts: { name: string; version?: string; run?: string; parent?: string; card?: ModelCardInput; dir?: string },
): ModelVersion {
  if (opts === null || typeof opts !== 'object') throw new ArgumentError('register needs options { name }');
  checkOptions(opts, 'register', ['name', 'version', 'run', 'parent', 'card', 'dir']);
  checkCard(opts.card, 'register card');
  const name = checkModelName(opts.name);
  if (!existsSync(checkFilePath(modelPath, 'register')))
    throw new ArgumentError(`register: ${modelPath} is not a model file (no such file)`);
  const root = rootOf(opts.dir);
  const existing = list(name, { dir: root });
  let version = opts.version;
  if (version === undefined) {
    const latest = existing.at(-1)?.version;
    version = latest ? `${Number(latest.split('.')[0])}.${Number(latest.split('.')[1]) + 1}.0` : '1.0.0';
  }
  checkVersion(version);
  if (existing.some((v) => v.version === version))
    throw new ValidationError(`${name}@${version} is already registered; versions never change`);
  if (opts.parent !== undefined) {
    const [pn, pv] = String(opts.parent).split('@');
    readVersion(root, checkModelName(pn), checkVersion(pv));
  }
  const run = opts.run === undefined ? null : readRun(resolve(opts.run));
  const bytes = readFileForSync(modelPath, 'register');
  const dir = join(root, name, version);
  mkdirSync(dir, { recursive: true });
  const file = join(dir, basename(modelPath).endsWith('.safetensors') ? 'model.safetensors' : basename(modelPath));
  writeFileAtomicSync(file, [bytes]);
  const datasets: ModelVersion['lineage']['datasets'] = [];
  if (run)
    for (const [k, v] of run.tags)
      if (k.startsWith('dataset.')) {
        const m = /^sha256:([0-9a-f]{64}) rows=(\d+)$/.exec(v);
        if (m) datasets.push({ name: k.slice('dataset.'.length), hash: m[1]!, rows: Number(m[2]) });
      }
  const created = Date.now();
  const mv: ModelVersion = {
    name,
    version,
    stage: 'none',
    created,
    sha256: createHash('sha256').update(bytes).digest('hex'),
    lineage: {
      run: run ? { id: run.id, name: run.name, experiment: run.experiment, dir: run.dir } : null,
      datasets,
      parent: opts.parent ?? null,
      kiln: info().kiln,
    },
    metrics: finalMetrics(run),
    history: [{ stage: 'none', at: created }],
    path: file,
  };
  writeVersion(root, mv);
  writeFileAtomicSync(join(dir, 'MODEL_CARD.md'), [enc(modelCard(mv, opts.card))]);
  if (opts.card) writeFileAtomicSync(join(dir, 'card.json'), [enc(JSON.stringify(opts.card, null, 2))]);
  return mv;
}

/** Moves `m` to `stage`; `all` is every version of the model as just read (m among them, as the same object). */
function setStage(root: string, all: readonly ModelVersion[], m: ModelVersion, stage: Stage): void {
  m.stage = stage;
  // strictly increasing over the model's versions, so the order of stage changes is never a tie
  const last = Math.max(0, ...all.flatMap((v) => v.history.map((h) => h.at)), ...m.history.map((h) => h.at));
  m.history.push({ stage, at: Math.max(Date.now(), last + 1) });
  writeVersion(root, m);
  const cardFile = join(root, m.name, m.version, 'card.json');
  let card: ModelCardInput = {};
  if (existsSync(cardFile))
    try {
      card = JSON.parse(readFileSync(cardFile, 'utf8')) as ModelCardInput;
      checkCard(card, cardFile);
    } catch (e) {
      throw new FormatError(`${cardFile} is not a model card written by register: ${(e as Error).message}`);
    }
  writeFileAtomicSync(join(root, m.name, m.version, 'MODEL_CARD.md'), [enc(modelCard(m, card))]);
}

/**
 * Moves a version to a stage. Promoting to production archives the current production version (one production
 * version per model).
 */
export function promote(name: string, version: string, stage: Stage, opts: { dir?: string } = {}): ModelVersion {
  checkOptions(opts, 'registry.promote', ['dir']);
  const root = rootOf(opts.dir);
  checkModelName(name);
  checkVersion(version);
  if (!STAGES.includes(stage))
    throw new ArgumentError(`stage must be one of ${STAGES.join(', ')}, got ${describe(stage)}`);
  const all = list(name, { dir: root });
  const m = all.find((v) => v.version === version) ?? readVersion(root, name, version);
  if (stage === 'production')
    for (const other of all)
      if (other.version !== version && other.stage === 'production') setStage(root, all, other, 'archived');
  setStage(root, all, m, stage);
  return m;
}

/** The production version of a model, or null. */
export function production(name: string, opts: { dir?: string } = {}): ModelVersion | null {
  checkOptions(opts, 'registry.production', ['dir']);
  return list(name, opts).find((m) => m.stage === 'production') ?? null;
}

/**
 * Rolls production back to the version that was in production before the current one was first promoted; the
 * current one is archived.
 */
export function rollback(name: string, opts: { dir?: string } = {}): ModelVersion {
  checkOptions(opts, 'registry.rollback', ['dir']);
  const root = rootOf(opts.dir);
  const all = list(name, { dir: root });
  const current = all.find((m) => m.stage === 'production');
  if (!current) throw new ValidationError(`${name} has no production version to roll back`);
  const prodTimes = (m: ModelVersion): number[] => m.history.filter((h) => h.stage === 'production').map((h) => h.at);
  // the version that was in production last before the current one first went there (rolling back twice goes
  // further back, never forward again)
  const since = Math.min(...prodTimes(current));
  const previous = all
    .filter((m) => m !== current && prodTimes(m).some((t) => t < since))
    .sort(
      (a, b) => Math.max(...prodTimes(b).filter((t) => t < since)) - Math.max(...prodTimes(a).filter((t) => t < since)),
    )[0];
  if (!previous)
    throw new ValidationError(`${name}@${current.version} is the first production version; nothing to roll back to`);
  setStage(root, all, current, 'archived');
  setStage(root, all, previous, 'production');
  return previous;
}

/** Metrics of two versions side by side: [metric, a, b, b - a]. */
export function compare(
  name: string,
  a: string,
  b: string,
  opts: { dir?: string } = {},
): { metric: string; a: number | null; b: number | null; diff: number | null }[] {
  checkOptions(opts, 'registry.compare', ['dir']);
  const root = rootOf(opts.dir);
  const ma = readVersion(root, checkModelName(name), checkVersion(a));
  const mb = readVersion(root, name, checkVersion(b));
  const of = (m: ModelVersion): Map<string, number> => new Map(m.metrics.map((x) => [x.name, x.value]));
  const [fa, fb] = [of(ma), of(mb)];
  const keys = [...new Set([...fa.keys(), ...fb.keys()])].sort();
  return keys.map((metric) => {
    const va = fa.get(metric) ?? null,
      vb = fb.get(metric) ?? null;
    return { metric, a: va, b: vb, diff: va !== null && vb !== null ? vb - va : null };
  });
}
