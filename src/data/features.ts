// A feature store on DuckDB. Feature views are defined in code over Parquet sources (an entity key, an event
// time and feature columns or SQL expressions); `materialize` writes a view's rows to a versioned Parquet file and
// its latest row per entity to an online table; `trainingSet` joins event rows to each view as of each event's
// time (DuckDB's ASOF join: the newest feature row at or before the event, never a later one) so no future value
// leaks into training; `online` looks up the latest features of entity keys for serving. DuckDB
// (@duckdb/node-api) is an optional peer dependency, loaded when a store opens.
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import * as A from 'apache-arrow';
import { ArgumentError, FormatError, ValidationError, checkOptions, describe, optionKeys } from '../errors.js';
import { writeFileAtomicSync } from '../io/atomic.js';
import { nameRecord } from '../records.js';
import { datasetManifest, parquetFiles } from './manifest.js';
import { readParquet, writeParquet } from './parquet.js';

type Duck = typeof import('@duckdb/node-api');
type Connection = import('@duckdb/node-api').DuckDBConnection;
type Instance = import('@duckdb/node-api').DuckDBInstance;

/** A feature view: where its rows come from and which columns are its entity key, event time and features. */
export interface FeatureViewSpec {
  /** an identifier: letters, digits and _ */
  name: string;
  /** Parquet files or directories of them */
  source: string | readonly string[];
  /** the entity key column (e.g. user_id) */
  entity: string;
  /** the event-time column: a timestamp, a date, or integer epoch milliseconds */
  timestamp: string;
  /** source columns, or feature name -> SQL expression over a source row (trusted code, like the rest of the spec) */
  features: readonly string[] | Readonly<Record<string, string>>;
  /** a feature row older than this (ms) at an event's time counts as missing in training sets */
  ttlMs?: number;
}

/** One materialization of a view. */
export interface Materialization {
  view: string;
  /** sha256 of the view's definition and its sources' manifest version */
  version: string;
  sourceVersion: string;
  path: string;
  rows: number;
  entities: number;
  createdAt: string;
}

interface Catalog {
  kind: 'kiln-feature-store';
  views: FeatureViewSpec[];
  materializations: Materialization[];
}

const IDENT = /^[A-Za-z_][A-Za-z0-9_]{0,62}$/;
const q = (id: string): string => `"${id}"`;
const lit = (s: string): string => `'${s.replace(/'/g, "''")}'`;

function ident(v: unknown, what: string): string {
  if (typeof v !== 'string' || !IDENT.test(v))
    throw new ArgumentError(
      `${what} must be an identifier (letters, digits, _; not starting with a digit), got ${describe(v)}`,
    );
  return v;
}

function featureList(spec: FeatureViewSpec): [string, string][] {
  const f = spec.features;
  const pairs: [string, string][] = Array.isArray(f)
    ? (f as readonly string[]).map((c) => [ident(c, `view '${spec.name}' feature`), q(c)])
    : f !== null && typeof f === 'object'
      ? Object.entries(f).map(([k, expr]) => {
          if (typeof expr !== 'string' || expr.trim() === '')
            throw new ArgumentError(`view '${spec.name}' feature '${k}' needs a SQL expression, got ${describe(expr)}`);
          return [ident(k, `view '${spec.name}' feature name`), `(${expr})`];
        })
      : [];
  if (pairs.length === 0) throw new ArgumentError(`view '${spec.name}' needs at least one feature`);
  return pairs;
}

let duckModule: Duck | null = null;
async function duck(): Promise<Duck> {
  if (duckModule) return duckModule;
  try {
    duckModule = (await import('@duckdb/node-api')) as Duck;
  } catch (e) {
    throw new ValidationError(
      `kn.data.FeatureStore runs on DuckDB: install it with 'npm install @duckdb/node-api' (${(e as Error).message})`,
    );
  }
  return duckModule;
}

/**
 * A feature store in a directory: DuckDB database `store.duckdb`, catalog `catalog.json`, materialized views
 * under `views/`. Open with `await kn.data.FeatureStore.open(dir)`.
 */
export class FeatureStore {
  private readonly specs = new Map<string, FeatureViewSpec>();
  private mats: Materialization[] = [];
  private closed = false;

  private constructor(
    readonly dir: string,
    private readonly db: Instance,
    private readonly con: Connection,
  ) {}

  /** Opens (or creates) the store in `dir`. */
  static async open(dir: string): Promise<FeatureStore> {
    if (typeof dir !== 'string' || dir === '')
      throw new ArgumentError(`FeatureStore.open takes a directory, got ${describe(dir)}`);
    const root = resolve(dir);
    mkdirSync(join(root, 'views'), { recursive: true });
    const D = await duck();
    const db = await D.DuckDBInstance.create(join(root, 'store.duckdb'));
    const con = await db.connect();
    const st = new FeatureStore(root, db, con);
    const cat = join(root, 'catalog.json');
    if (existsSync(cat)) {
      let c: Catalog;
      try {
        c = JSON.parse(readFileSync(cat, 'utf8')) as Catalog;
      } catch (e) {
        throw new FormatError(`${cat} is not a feature store catalog: ${(e as Error).message}`);
      }
      if (c?.kind !== 'kiln-feature-store' || !Array.isArray(c.views) || !Array.isArray(c.materializations))
        throw new FormatError(`${cat} is not a feature store catalog`);
      for (const v of c.views) st.check(v);
      for (const v of c.views) st.specs.set(v.name, v);
      st.mats = c.materializations;
    }
    return st;
  }

  private live(): void {
    if (this.closed) throw new ArgumentError('the FeatureStore is closed');
  }

  private check(spec: FeatureViewSpec): void {
    if (spec === null || typeof spec !== 'object')
      throw new ArgumentError(`a feature view spec must be an object, got ${describe(spec)}`);
    checkOptions(
      spec,
      'feature view',
      optionKeys<FeatureViewSpec>({
        name: true,
        source: true,
        entity: true,
        timestamp: true,
        features: true,
        ttlMs: true,
      }),
    );
    ident(spec.name, 'view name');
    ident(spec.entity, `view '${spec.name}' entity`);
    ident(spec.timestamp, `view '${spec.name}' timestamp`);
    featureList(spec);
    const src = spec.source;
    if (!(typeof src === 'string' || (Array.isArray(src) && src.every((s) => typeof s === 'string'))))
      throw new ArgumentError(`view '${spec.name}' source must be a path or a list of paths, got ${describe(src)}`);
    if (spec.ttlMs !== undefined && !(Number.isFinite(spec.ttlMs) && spec.ttlMs > 0))
      throw new ArgumentError(`view '${spec.name}' ttlMs must be a positive number, got ${describe(spec.ttlMs)}`);
  }

  private saveCatalog(): void {
    const c: Catalog = { kind: 'kiln-feature-store', views: [...this.specs.values()], materializations: this.mats };
    writeFileAtomicSync(join(this.dir, 'catalog.json'), [new TextEncoder().encode(JSON.stringify(c, null, 2))]);
  }

  /** Defines (or redefines) a feature view; the definition is saved in the catalog. */
  register(spec: FeatureViewSpec): this {
    this.live();
    this.check(spec);
    const copy: FeatureViewSpec = {
      ...spec,
      source: typeof spec.source === 'string' ? spec.source : [...spec.source],
      features: Array.isArray(spec.features) ? [...(spec.features as string[])] : { ...spec.features },
    };
    this.specs.set(spec.name, copy);
    this.saveCatalog();
    return this;
  }

  /** The defined views' names. */
  views(): string[] {
    return [...this.specs.keys()];
  }

  /** The latest materialization of a view, or null. */
  latest(view: string): Materialization | null {
    return [...this.mats].reverse().find((m) => m.view === view) ?? null;
  }

  private spec(view: string): FeatureViewSpec {
    const s = this.specs.get(view);
    if (!s)
      throw new ValidationError(
        `no feature view named ${describe(view)}; the store has ${this.views().join(', ') || 'none'}`,
      );
    return s;
  }

  private async rows(sql: string): Promise<Record<string, unknown>[]> {
    return (await this.con.runAndReadAll(sql)).getRowObjectsJS() as Record<string, unknown>[];
  }

  /** SQL for a column as TIMESTAMP (integers are epoch ms). */
  private async timeExpr(from: string, col: string, what: string): Promise<string> {
    const cols = await this.rows(`DESCRIBE SELECT * FROM ${from}`);
    const c = cols.find((r) => r.column_name === col);
    if (!c)
      throw new ValidationError(
        `${what} has no column '${col}'; it has ${cols.map((r) => String(r.column_name)).join(', ')}`,
      );
    const t = String(c.column_type);
    if (/INT/.test(t)) return `epoch_ms(${q(col)}::BIGINT)`;
    if (/TIMESTAMP|DATE/.test(t)) return `${q(col)}::TIMESTAMP`;
    throw new ValidationError(`${what} column '${col}' is ${t}; an event time must be a timestamp, a date or epoch ms`);
  }

  private sourceSql(spec: FeatureViewSpec): { sql: string; files: string[] } {
    const files = parquetFiles(spec.source);
    return { sql: `read_parquet([${files.map((f) => lit(resolve(f))).join(', ')}])`, files };
  }

  /**
   * Computes a view from its sources and writes it (entity, event time, features; sorted) to a new versioned
   * Parquet file, atomically, and the latest row of each entity to its online table.
   */
  async materialize(view: string): Promise<Materialization> {
    this.live();
    const spec = this.spec(view);
    const { sql: from } = this.sourceSql(spec);
    const ts = await this.timeExpr(from, spec.timestamp, `view '${view}' source`);
    const feats = featureList(spec);
    const select =
      `SELECT ${q(spec.entity)} AS ${q(spec.entity)}, ${ts} AS __ts, ` +
      feats.map(([n, e]) => `${e} AS ${q(n)}`).join(', ') +
      ` FROM ${from} WHERE ${q(spec.entity)} IS NOT NULL AND ${q(spec.timestamp)} IS NOT NULL`;
    const sourceVersion = (await datasetManifest(spec.source)).version;
    const version = createHash('sha256')
      .update(JSON.stringify([spec.entity, spec.timestamp, feats, sourceVersion]))
      .digest('hex');
    const dir = join(this.dir, 'views', view);
    mkdirSync(dir, { recursive: true });
    const path = join(dir, `${version.slice(0, 16)}.parquet`);
    const tmp = `${path}.tmp-${randomBytes(4).toString('hex')}`;
    try {
      await this.con.run(`COPY (${select} ORDER BY 1, 2) TO ${lit(tmp)} (FORMAT parquet, COMPRESSION zstd)`);
      renameSync(tmp, path);
    } catch (e) {
      rmSync(tmp, { force: true });
      if (e instanceof ValidationError) throw e;
      throw new ValidationError(`materializing view '${view}' failed: ${(e as Error).message}`);
    }
    await this.con.run(
      `CREATE OR REPLACE TABLE ${q(`online__${view}`)} AS
       SELECT * FROM read_parquet(${lit(path)}) QUALIFY row_number() OVER (PARTITION BY ${q(spec.entity)} ORDER BY __ts DESC) = 1`,
    );
    const [count] = await this.rows(
      `SELECT count(*)::BIGINT AS n, (SELECT count(*) FROM ${q(`online__${view}`)})::BIGINT AS e FROM read_parquet(${lit(path)})`,
    );
    const m: Materialization = {
      view,
      version,
      sourceVersion,
      path,
      rows: Number(count!.n),
      entities: Number(count!.e),
      createdAt: new Date().toISOString(),
    };
    this.mats.push(m);
    this.saveCatalog();
    return m;
  }

  /**
   * A training set: every event row (entity key and event time, plus whatever else it holds, e.g. the label)
   * with each view's features as of the event's time: the newest materialized row of that entity whose time is
   * at or before the event's (missing when there is none, or it is older than the view's ttlMs). Feature columns
   * are named `view.feature`; rows keep the events' order. Events are an Arrow table or a Parquet file.
   */
  async trainingSet(
    events: A.Table | string,
    opts: { entity: string; timestamp: string; views: readonly string[] },
  ): Promise<A.Table> {
    this.live();
    if (opts === null || typeof opts !== 'object')
      throw new ArgumentError('trainingSet needs { entity, timestamp, views }');
    checkOptions(opts, 'trainingSet', ['entity', 'timestamp', 'views']);
    const ent = ident(opts.entity, 'trainingSet entity');
    const tcol = ident(opts.timestamp, 'trainingSet timestamp');
    if (!Array.isArray(opts.views) || opts.views.length === 0)
      throw new ArgumentError(`trainingSet views must be a non-empty list of view names, got ${describe(opts.views)}`);
    const tmpDir = join(this.dir, 'tmp');
    mkdirSync(tmpDir, { recursive: true });
    const tag = randomBytes(6).toString('hex');
    const evPath = typeof events === 'string' ? resolve(events) : join(tmpDir, `events-${tag}.parquet`);
    const outPath = join(tmpDir, `training-${tag}.parquet`);
    try {
      if (typeof events !== 'string') {
        if (!(events instanceof A.Table))
          throw new ArgumentError(
            `trainingSet events must be an Arrow table or a Parquet path, got ${describe(events)}`,
          );
        writeParquet(evPath, events);
      }
      const evFrom = `read_parquet(${lit(evPath)})`;
      const evTs = await this.timeExpr(evFrom, tcol, 'the events');
      const evCols = (await this.rows(`DESCRIBE SELECT * FROM ${evFrom}`)).map((r) => String(r.column_name));
      if (!evCols.includes(ent))
        throw new ValidationError(`the events have no column '${ent}'; they have ${evCols.join(', ')}`);
      let sql = `WITH e AS (SELECT *, ${evTs} AS __event_ts, row_number() OVER () AS __row FROM ${evFrom})`;
      const joins: string[] = [];
      const outCols: string[] = [];
      opts.views.forEach((name, k) => {
        const spec = this.spec(name);
        const m = this.latest(name);
        if (!m) throw new ValidationError(`view '${name}' is not materialized: call materialize('${name}') first`);
        const alias = `v${k}`;
        sql += `, ${alias} AS (SELECT * FROM read_parquet(${lit(m.path)}))`;
        joins.push(
          `ASOF LEFT JOIN ${alias} ON e.${q(ent)} = ${alias}.${q(spec.entity)} AND e.__event_ts >= ${alias}.__ts`,
        );
        for (const [f] of featureList(spec)) {
          const fresh =
            spec.ttlMs !== undefined
              ? ` AND ${alias}.__ts >= e.__event_ts - to_milliseconds(${Math.round(spec.ttlMs)})`
              : '';
          outCols.push(`CASE WHEN ${alias}.__ts IS NOT NULL${fresh} THEN ${alias}.${q(f)} END AS ${q(`${name}.${f}`)}`);
        }
      });
      sql += ` SELECT ${evCols.map((c) => `e.${q(c)}`).join(', ')}, ${outCols.join(', ')} FROM e ${joins.join(' ')} ORDER BY e.__row`;
      await this.con.run(`COPY (${sql}) TO ${lit(outPath)} (FORMAT parquet)`);
      return readParquet(outPath);
    } finally {
      if (typeof events !== 'string') rmSync(evPath, { force: true });
      rmSync(outPath, { force: true });
    }
  }

  /**
   * The latest features of each key (from the view's last materialization) with their event time (epoch ms), in
   * key order; null for an unknown key. Keys are bound as query parameters.
   */
  async online(
    view: string,
    keys: readonly (string | number)[],
  ): Promise<({ timestamp: number; features: Record<string, unknown> } | null)[]> {
    this.live();
    const spec = this.spec(view);
    if (!this.latest(view))
      throw new ValidationError(`view '${view}' is not materialized: call materialize('${view}') first`);
    if (!Array.isArray(keys) || keys.some((k) => typeof k !== 'string' && typeof k !== 'number'))
      throw new ArgumentError(`online keys must be a list of strings or numbers, got ${describe(keys)}`);
    if (keys.length === 0) return [];
    const D = await duck();
    const feats = featureList(spec).map(([f]) => f);
    const numeric = keys.every((k) => typeof k === 'number');
    const stmt = await this.con.prepare(
      `SELECT ${q(spec.entity)}::VARCHAR AS __key, epoch_ms(__ts) AS __ts, ${feats.map(q).join(', ')} FROM ${q(`online__${view}`)}
       WHERE ${q(spec.entity)}::VARCHAR = ANY($1::VARCHAR[])`,
    );
    stmt.bind([D.listValue(keys.map((k) => (numeric ? String(k) : (k as string))))]);
    const found = new Map<string, { timestamp: number; features: Record<string, unknown> }>();
    for (const row of (await stmt.runAndReadAll()).getRowObjectsJS() as Record<string, unknown>[]) {
      const features = nameRecord<unknown>();
      for (const f of feats) features[f] = typeof row[f] === 'bigint' ? Number(row[f]) : row[f];
      found.set(String(row.__key), { timestamp: Number(row.__ts), features });
    }
    return keys.map((k) => found.get(String(k)) ?? null);
  }

  /** Closes the database. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.con.closeSync();
    this.db.closeSync();
  }
}
