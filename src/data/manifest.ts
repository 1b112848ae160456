// Dataset versions: a manifest lists a dataset's files with their sizes, content hashes, row counts and schema;
// the hash of that list is the dataset's version. Equal files give an equal version, one changed byte, an added
// or a removed file gives another. kn.track logs it as the lineage of a run trained on streamed data.
import { createHash } from 'node:crypto';
import { createReadStream, readdirSync, statSync } from 'node:fs';
import { basename, join, relative, resolve } from 'node:path';
import { ArgumentError, FormatError, ValidationError, checkOptions, describe } from '../errors.js';
import { checkFilePath, readFileForSync, writeFileAtomicSync } from '../io/atomic.js';
import { arrowFileInfo } from './arrow_reader.js';
import { ARROW_EXTENSIONS, PARQUET_EXTENSIONS, hasExtension, isArrowPath } from './extensions.js';
import { parquetInfo } from './parquet.js';

/** One file of a dataset. */
export interface ManifestFile {
  /** path relative to the manifest's root, with '/' separators */
  path: string;
  bytes: number;
  sha256: string;
  rows: number;
  rowGroups: number;
}

/** A dataset's manifest. `version` is the sha256 of the files and schema (not of `root` or `createdAt`). */
export interface DatasetManifest {
  version: string;
  rows: number;
  schema: { name: string; type: string; nullable: boolean }[];
  files: ManifestFile[];
  root: string;
  createdAt: string;
}

/** Extensions of the files a dataset directory holds: Parquet, and Arrow IPC in either format. */
const DATA = [...PARQUET_EXTENSIONS, ...ARROW_EXTENSIONS];

/** The data files that `source` names: one file, a directory (searched recursively, sorted) or a list. */
export function datasetFiles(source: string | readonly string[], exts: readonly string[] = DATA): string[] {
  const one = (p: string): string[] => {
    if (typeof p !== 'string' || p === '')
      throw new ArgumentError(`a dataset path must be a non-empty string, got ${describe(p)}`);
    let st;
    try {
      st = statSync(p);
    } catch (e) {
      throw new ArgumentError(`cannot read ${p}: ${(e as Error).message}`);
    }
    if (!st.isDirectory()) return [p];
    return readdirSync(p, { recursive: true, encoding: 'utf8' })
      .filter((f) => hasExtension(f, exts) && !basename(f).startsWith('.'))
      .sort()
      .map((f) => join(p, f));
  };
  const files = typeof source === 'string' ? one(source) : Array.isArray(source) ? source.flatMap(one) : null;
  if (files === null) throw new ArgumentError(`expected a path or a list of paths, got ${describe(source)}`);
  if (files.length === 0) throw new ValidationError(`${String(source)} holds no ${exts.join(' or ')} files`);
  return files;
}

/** The Parquet files that `source` names. */
export function parquetFiles(source: string | readonly string[]): string[] {
  return datasetFiles(source, PARQUET_EXTENSIONS);
}

/** Rows, row groups (or record batches) and columns of a Parquet or Arrow IPC file. */
export async function fileInfo(
  p: string,
): Promise<{ rows: number; units: number[]; columns: { name: string; type: string; nullable: boolean }[] }> {
  if (isArrowPath(p)) {
    const a = await arrowFileInfo(p);
    return { rows: a.rows, units: a.batches, columns: a.columns };
  }
  const q = await parquetInfo(p);
  return { rows: q.rows, units: q.rowGroups.map((g) => g.rows), columns: q.columns };
}

async function sha256File(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(path)) h.update(chunk as Buffer);
  return h.digest('hex');
}

function versionOf(schema: DatasetManifest['schema'], files: readonly ManifestFile[]): string {
  const h = createHash('sha256');
  h.update(JSON.stringify(schema.map((c) => [c.name, c.type, c.nullable])));
  for (const f of files) h.update(`\0${f.path}\0${f.bytes}\0${f.sha256}\0${f.rows}`);
  return h.digest('hex');
}

/**
 * The manifest of a dataset of Parquet and Arrow IPC files (a file, a directory or a list): every file's size, sha256, rows and
 * row groups, the common schema (files whose schemas differ are an error: name the file and the column), and the
 * version hash. Paths are stored relative to `root` (default: the directory given, or the current directory).
 * @example kn.data.writeParquet('.kiln-tmp-m.parquet', { x: kn.ones([4]) }); (await kn.data.datasetManifest('.kiln-tmp-m.parquet')).rows // 4
 */
export async function datasetManifest(
  source: string | readonly string[],
  opts: { root?: string } = {},
): Promise<DatasetManifest> {
  checkOptions(opts, 'datasetManifest', ['root']);
  const paths = datasetFiles(source);
  const root = resolve(
    opts.root ?? (typeof source === 'string' && statSync(source).isDirectory() ? source : process.cwd()),
  );
  const files: ManifestFile[] = [];
  let schema: DatasetManifest['schema'] | null = null;
  let first = '';
  for (const p of paths) {
    const info = await fileInfo(p);
    if (schema === null) {
      schema = info.columns;
      first = p;
    } else {
      // names and types must agree; nullability may differ (a file without nulls may declare none)
      const sig = (cols: readonly { name: string; type: string }[], n: string): string =>
        cols.find((c) => c.name === n)?.type ?? 'absent';
      const names = [...new Set([...schema.map((c) => c.name), ...info.columns.map((c) => c.name)])];
      const diff = names.find((n) => sig(schema!, n) !== sig(info.columns, n));
      if (diff !== undefined || schema.map((c) => c.name).join('\0') !== info.columns.map((c) => c.name).join('\0')) {
        const desc = (c: { type: string } | undefined): string => (c ? c.type : 'absent');
        if (diff === undefined)
          throw new ValidationError(
            `${p} does not have the schema of ${first}: its columns are ${info.columns.map((c) => c.name).join(', ')}, ` +
              `in ${first} ${schema.map((c) => c.name).join(', ')}`,
          );
        throw new ValidationError(
          `${p} does not have the schema of ${first}: column '${diff}' is ${desc(info.columns.find((c) => c.name === diff))} ` +
            `there and ${desc(schema.find((c) => c.name === diff))} in ${first}`,
        );
      }
    }
    files.push({
      path: relative(root, resolve(p)).split('\\').join('/'),
      bytes: statSync(p).size,
      sha256: await sha256File(p),
      rows: info.rows,
      rowGroups: info.units.length,
    });
  }
  const sch = schema!;
  return {
    version: versionOf(sch, files),
    rows: files.reduce((s, f) => s + f.rows, 0),
    schema: sch,
    files,
    root,
    createdAt: new Date().toISOString(),
  };
}

/** Writes a manifest as JSON, atomically. */
export function writeManifest(path: string, m: DatasetManifest): void {
  checkFilePath(path, 'writeManifest');
  writeFileAtomicSync(path, [new TextEncoder().encode(JSON.stringify(m, null, 2) + '\n')]);
}

/** Reads a manifest written by writeManifest, checking its fields and that its version matches its contents. */
export function readManifest(path: string): DatasetManifest {
  const text = readFileForSync(path, 'readManifest').toString('utf8');
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new FormatError(`${path} is not a dataset manifest: ${(e as Error).message}`);
  }
  const m = raw as DatasetManifest;
  const isStr = (v: unknown): v is string => typeof v === 'string';
  const ok =
    m !== null &&
    typeof m === 'object' &&
    isStr(m.version) &&
    isStr(m.root) &&
    Array.isArray(m.schema) &&
    m.schema.every((c) => c && isStr(c.name) && isStr(c.type) && typeof c.nullable === 'boolean') &&
    Array.isArray(m.files) &&
    m.files.every(
      (f) =>
        f &&
        isStr(f.path) &&
        isStr(f.sha256) &&
        Number.isInteger(f.bytes) &&
        Number.isInteger(f.rows) &&
        Number.isInteger(f.rowGroups),
    );
  if (!ok) throw new FormatError(`${path} is not a dataset manifest: expected { version, root, schema[], files[] }`);
  const v = versionOf(m.schema, m.files);
  if (v !== m.version)
    throw new FormatError(`${path}: the manifest says version ${m.version} but its files and schema hash to ${v}`);
  return m;
}

/** What changed between a manifest and the files on disk now. */
export interface ManifestCheck {
  ok: boolean;
  changed: string[];
  missing: string[];
  added: string[];
}

/**
 * Compares a manifest with the files under its root now (or `root`): files whose bytes changed, files gone, and
 * new data files.
 */
export async function verifyManifest(m: DatasetManifest, opts: { root?: string } = {}): Promise<ManifestCheck> {
  checkOptions(opts, 'verifyManifest', ['root']);
  const root = opts.root ?? m.root;
  const changed: string[] = [],
    missing: string[] = [];
  const listed = new Set(m.files.map((f) => f.path));
  for (const f of m.files) {
    const p = join(root, f.path);
    let size: number;
    try {
      size = statSync(p).size;
    } catch {
      missing.push(f.path);
      continue;
    }
    if (size !== f.bytes || (await sha256File(p)) !== f.sha256) changed.push(f.path);
  }
  let added: string[];
  try {
    added = datasetFiles(root)
      .map((p) => relative(root, p).split('\\').join('/'))
      .filter((p) => !listed.has(p));
  } catch {
    added = []; // the root itself is gone: every file shows as missing
  }
  return { ok: !changed.length && !missing.length && !added.length, changed, missing, added };
}
