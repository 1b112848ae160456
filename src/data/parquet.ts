// Parquet in and out through parquet-wasm (the Rust arrow-rs reader and writer compiled to WebAssembly): a
// file decodes straight to Arrow IPC in wasm memory and from there to an apache-arrow Table, so no value passes
// through a JavaScript loop on the way in. Chosen over hyparquet and DuckDB's node API by the bench in
// bench/data/parquet.bench.ts (bench/RESULTS.md). Writes are atomic.
import { createRequire } from 'node:module';
import * as A from 'apache-arrow';
import {
  ArgumentError,
  FormatError,
  ValidationError,
  checkOptions,
  describe,
  messageOf,
  optionKeys,
} from '../errors.js';
import { checkFilePath, readFileForSync, writeFileAtomic, writeFileAtomicSync } from '../io/atomic.js';
import type { Tensor } from '../tensor/tensor.js';
import { columnNameProblem, ownTable, schemaText, tableStream, toArrow } from './arrow.js';
import { readerThread, type FooterReply } from './parquet_reader.js';
import { fileBytes, type FileStamp } from './reader_thread.js';

type ParquetWasm = typeof import('parquet-wasm');

const require = createRequire(import.meta.url);
let wasm: ParquetWasm | null = null;

/**
 * parquet-wasm's node build, loaded on first use (its 5 MB module costs nothing until then). A Rust panic on a
 * malformed file leaves a wasm instance that must not be used again, so after a trap the next call loads a
 * fresh one.
 */
function pq(): ParquetWasm {
  if (!wasm) wasm = require('parquet-wasm') as ParquetWasm;
  return wasm;
}

function dropInstanceAfterTrap(e: unknown): void {
  if (e instanceof WebAssembly.RuntimeError) {
    for (const k of Object.keys(require.cache)) if (k.includes(`parquet-wasm`)) delete require.cache[k];
    wasm = null;
  }
}

/** The codecs writeParquet offers. */
export type ParquetCompression = 'none' | 'snappy' | 'gzip' | 'zstd' | 'brotli' | 'lz4';
/** The codecs writeParquet offers, by name. */
export const PARQUET_CODECS: readonly ParquetCompression[] = ['none', 'snappy', 'gzip', 'zstd', 'brotli', 'lz4'];

/** Options of readParquet. */
export interface ReadParquetOptions {
  /** only these columns (default all) */
  columns?: readonly string[];
  /** only these row groups, by index */
  rowGroups?: readonly number[];
  /** at most this many rows */
  limit?: number;
  /** skip this many rows first */
  offset?: number;
}

/** Options of writeParquet. */
export interface WriteParquetOptions {
  /** page compression (default 'snappy') */
  compression?: ParquetCompression;
  /** rows per row group (default 131072); a streaming reader reads one row group at a time */
  rowGroupSize?: number;
  /** dictionary-encode columns (default true: the writer falls back to plain pages when a dictionary grows) */
  dictionary?: boolean;
  /** string vocabularies of int32 code tensors, when writing tensors (as kn.data.toArrow) */
  vocab?: Record<string, readonly string[]>;
  /** key-value metadata stored in the file footer */
  metadata?: Record<string, string>;
}

/** The footer of a Parquet file: rows, row groups and columns, read without reading the data. */
export interface ParquetInfo {
  rows: number;
  rowGroups: { rows: number; bytes: number; compressedBytes: number }[];
  columns: { name: string; type: string; nullable: boolean }[];
  createdBy: string | null;
  metadata: Record<string, string>;
}

function checkMagic(bytes: Uint8Array, path: string): Uint8Array {
  const magic = (off: number): boolean =>
    bytes[off] === 0x50 && bytes[off + 1] === 0x41 && bytes[off + 2] === 0x52 && bytes[off + 3] === 0x31;
  if (bytes.byteLength < 12 || !magic(0) || !magic(bytes.byteLength - 4))
    throw new FormatError(
      `${path} is not a Parquet file: expected 'PAR1' at its start and end, got ${bytes.byteLength} bytes without them`,
    );
  return bytes;
}

function readerOptions(o: ReadParquetOptions, what: string): Record<string, unknown> {
  checkOptions(o, what, optionKeys<ReadParquetOptions>({ columns: true, rowGroups: true, limit: true, offset: true }));
  const out: Record<string, unknown> = {};
  if (o.columns !== undefined) {
    if (!Array.isArray(o.columns) || o.columns.some((c) => typeof c !== 'string'))
      throw new ArgumentError(`${what} columns must be an array of column names, got ${describe(o.columns)}`);
    out.columns = [...o.columns];
  }
  if (o.rowGroups !== undefined) {
    if (!Array.isArray(o.rowGroups) || o.rowGroups.some((g) => !Number.isInteger(g) || g < 0))
      throw new ArgumentError(`${what} rowGroups must be an array of row group indices, got ${describe(o.rowGroups)}`);
    out.rowGroups = [...o.rowGroups];
  }
  for (const k of ['limit', 'offset'] as const) {
    const v = o[k];
    if (v === undefined) continue;
    if (!Number.isInteger(v) || v < 0)
      throw new ArgumentError(`${what} ${k} must be an integer >= 0, got ${describe(v)}`);
    out[k] = v;
  }
  return out;
}

/** Checks asked-for columns and row groups against the file's footer, so a typo gets a clear message. */
function checkSelection(path: string, info: ParquetInfo, o: ReadParquetOptions): void {
  if (o.columns) {
    const have = new Set(info.columns.map((c) => c.name));
    for (const c of o.columns)
      if (!have.has(c))
        throw new ValidationError(`${path} has no column '${c}'; it has ${info.columns.map((x) => x.name).join(', ')}`);
  }
  if (o.rowGroups)
    for (const g of o.rowGroups)
      if (g >= info.rowGroups.length)
        throw new ValidationError(`${path} has ${info.rowGroups.length} row groups; row group ${g} does not exist`);
}

/** The Arrow table that parquet-wasm's wasm-side table holds (moved out as IPC, which it writes itself). */
function toJsTable(t: { intoIPCStream(): Uint8Array }, path: string): A.Table {
  const table = A.tableFromIPC(t.intoIPCStream());
  const bad = columnNameProblem(table.schema.fields);
  if (bad) throw new FormatError(`${path}: ${bad}`);
  return table;
}

function wasmError(path: string, e: unknown, what: string): never {
  dropInstanceAfterTrap(e);
  if (e instanceof ValidationError || e instanceof FormatError) throw e;
  const msg = messageOf(e);
  throw new FormatError(`${path}: cannot ${what}: ${msg}`);
}

/** ParquetInfo from the footer the reader thread sends. */
function footerOf(f: FooterReply): ParquetInfo {
  const schema = A.tableFromIPC(f.schema).schema;
  const metadata = Object.create(null) as Record<string, string>;
  for (const [k, v] of f.metadata) metadata[k] = v;
  return {
    rows: f.rows,
    rowGroups: f.rowGroups,
    columns: schema.fields.map((x) => ({ name: x.name, type: String(x.type), nullable: x.nullable })),
    createdBy: f.createdBy,
    metadata,
  };
}

let nextKey = 1;
/** Tells the reader thread to drop a source nobody closed. */
const unclosed = new FinalizationRegistry<number>((key) => readerThread().close(key));

/**
 * An open Parquet file that reads its footer once and row groups on demand (only their bytes are read). The
 * reading runs on a thread of its own, so a damaged file is a FormatError and never takes the process down.
 */
export class ParquetSource {
  private closed = false;
  private constructor(
    readonly path: string,
    readonly info: ParquetInfo,
    private readonly key: number,
    private readonly stamp: FileStamp,
  ) {
    unclosed.register(this, key, this);
  }

  /**
   * Opens `path` (reads the footer, not the data). The source keeps reading the file it opened: a file written
   * over the path since (an atomic rename) is not seen, and one changed in place makes `read` throw.
   */
  static async open(path: string): Promise<ParquetSource> {
    checkFilePath(path, 'ParquetSource.open');
    const key = nextKey++;
    const f = await readerThread().request<FooterReply>(
      { op: 'footer', key, path },
      path,
      fileBytes(path),
      'read its footer',
    );
    return new ParquetSource(path, footerOf(f), key, f.stamp);
  }

  /** One or more row groups (and optionally only some columns) as an Arrow table. */
  async read(opts: ReadParquetOptions = {}): Promise<A.Table> {
    if (this.closed) throw new ArgumentError(`ParquetSource.read: ${this.path} was closed`);
    const options = readerOptions(opts, 'ParquetSource.read');
    checkSelection(this.path, this.info, opts);
    // after a reader thread died, the next one opens the file again, provided it has not changed since
    const ipc = await readerThread().request<Uint8Array>(
      { op: 'read', key: this.key, path: this.path, stamp: this.stamp, options },
      this.path,
      this.stamp.size,
      'read it',
    );
    return toJsTable({ intoIPCStream: () => ipc }, this.path);
  }

  /** Closes the file. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    unclosed.unregister(this);
    readerThread().close(this.key);
  }
}

/**
 * Reads a Parquet file into an Arrow Table (then kn.data.fromArrow gives tensors). All primitive types,
 * strings (as dictionary columns when the file has dictionary pages), nulls, and every common codec.
 * @example kn.data.writeParquet('.kiln-tmp-a.parquet', { x: kn.ones([3]) }); kn.data.readParquet('.kiln-tmp-a.parquet', { columns: ['x'] }).numRows // 3
 */
export function readParquet(path: string, opts: ReadParquetOptions = {}): A.Table {
  const ro = readerOptions(opts, 'readParquet');
  const bytes = checkMagic(readFileForSync(path, 'readParquet'), path);
  if (opts.columns || opts.rowGroups) {
    let file;
    try {
      file = pq().readSchema(bytes);
    } catch (e) {
      return wasmError(path, e, 'read its footer');
    }
    const schema = A.tableFromIPC(file.intoIPCStream()).schema;
    const have = new Set(schema.fields.map((f) => f.name));
    for (const c of opts.columns ?? [])
      if (!have.has(c))
        throw new ValidationError(
          `${path} has no column '${c}'; it has ${schema.fields.map((f) => f.name).join(', ')}`,
        );
  }
  let t: A.Table;
  try {
    t = toJsTable(pq().readParquet(bytes, ro), path);
  } catch (e) {
    return wasmError(path, e, 'read it');
  }
  // parquet-wasm's synchronous reader decodes every column whatever `columns` says: project here
  return opts.columns ? t.select([...opts.columns]) : t;
}

/**
 * The footer of a Parquet file: row count, row groups (rows and bytes each), columns with their Arrow types,
 * the writer and key-value metadata. Reads only the footer.
 * @example kn.data.writeParquet('.kiln-tmp-b.parquet', { x: kn.ones([5]) }, { rowGroupSize: 2 }); (await kn.data.parquetInfo('.kiln-tmp-b.parquet')).rowGroups.length // 3
 */
export async function parquetInfo(path: string): Promise<ParquetInfo> {
  const src = await ParquetSource.open(path);
  src.close();
  return src.info;
}

/** writeParquet's options, checked, as the writer's properties (a fresh object each call: the writer consumes it). */
function writerProperties(
  opts: WriteParquetOptions,
  who: string,
): { rowGroupSize: number; build: () => import('parquet-wasm').WriterProperties } {
  checkOptions(
    opts,
    who,
    optionKeys<WriteParquetOptions>({
      compression: true,
      rowGroupSize: true,
      dictionary: true,
      vocab: true,
      metadata: true,
    }),
  );
  const codec = opts.compression ?? 'snappy';
  if (!PARQUET_CODECS.includes(codec))
    throw new ArgumentError(`${who} compression must be one of ${PARQUET_CODECS.join(', ')}, got ${describe(codec)}`);
  const rg = opts.rowGroupSize ?? 131072;
  if (!Number.isInteger(rg) || rg < 1)
    throw new ArgumentError(`${who} rowGroupSize must be a positive integer, got ${describe(rg)}`);
  const meta = new Map<string, string>();
  for (const [k, v] of Object.entries(opts.metadata ?? {})) {
    if (typeof v !== 'string') throw new ArgumentError(`${who} metadata '${k}' must be a string, got ${describe(v)}`);
    meta.set(k, v);
  }
  return {
    rowGroupSize: rg,
    build: () => {
      const P = pq();
      const C = P.Compression;
      const codecs: Record<ParquetCompression, number> = {
        none: C.UNCOMPRESSED,
        snappy: C.SNAPPY,
        gzip: C.GZIP,
        zstd: C.ZSTD,
        brotli: C.BROTLI,
        lz4: C.LZ4_RAW,
      };
      let b = new P.WriterPropertiesBuilder()
        .setCompression(codecs[codec])
        .setMaxRowGroupSize(rg)
        .setDictionaryEnabled(opts.dictionary ?? true)
        .setCreatedBy('kiln');
      if (meta.size) b = b.setKeyValueMetadata(meta);
      return b.build();
    },
  };
}

/** An Arrow table as parquet-wasm record batches (its wasm copy of the table freed once they are taken). */
function wasmBatches(table: A.Table): unknown[] {
  const wt = pq().Table.fromIPCStream(A.tableToIPC(table, 'stream'));
  try {
    return wt.recordBatches();
  } finally {
    wt.free();
  }
}

/**
 * Writes an Arrow Table (or named tensors, as kn.data.toArrow lays them out) as a Parquet file, atomically.
 * Returns the bytes written and the row groups.
 * @example kn.data.writeParquet('.kiln-tmp-c.parquet', { x: kn.randn([100, 4]) }, { compression: 'zstd' }).rows // 100
 */
export function writeParquet(
  path: string,
  data: A.Table | Record<string, Tensor>,
  opts: WriteParquetOptions = {},
): { bytes: number; rows: number; rowGroups: number } {
  checkFilePath(path, 'writeParquet');
  const props = writerProperties(opts, 'writeParquet');
  const table = data instanceof A.Table ? ownTable(data, 'writeParquet') : toArrow(data, { vocab: opts.vocab });
  const bad = columnNameProblem(table.schema.fields);
  if (bad) throw new ValidationError(`writeParquet: ${bad}`);
  let bytes: Uint8Array;
  try {
    const P = pq();
    const wt = P.Table.fromIPCStream(A.tableToIPC(table, 'stream'));
    bytes = P.writeParquet(wt, props.build());
  } catch (e) {
    dropInstanceAfterTrap(e);
    throw new ValidationError(`writeParquet ${path}: the table cannot be written: ${(e as Error).message}`);
  }
  writeFileAtomicSync(path, [bytes]);
  return { bytes: bytes.byteLength, rows: table.numRows, rowGroups: Math.ceil(table.numRows / props.rowGroupSize) };
}

/**
 * Writes tables that arrive one after another (the chunks of one schema that `openCsv`, `ParquetSource` or a
 * generator of your own gives) as one Parquet file, atomically, holding only about a row group at a time: the
 * way to write a file larger than memory. Row groups are `rowGroupSize` rows whatever the chunks' sizes; every
 * column is written nullable (a later chunk may hold nulls where the first had none). A chunk whose columns or
 * types differ from the first's is a ValidationError, and an error from `tables` is thrown as it is; either way
 * nothing is written.
 * @example const gen = function* () { for (let i = 0; i < 3; i++) yield kn.data.toArrow({ x: kn.full([4], i) }); }; (await kn.data.writeParquetStream('.kiln-tmp-s.parquet', gen(), { rowGroupSize: 5 })).rowGroups // 3
 */
export async function writeParquetStream(
  path: string,
  tables: AsyncIterable<A.Table> | Iterable<A.Table>,
  opts: WriteParquetOptions = {},
): Promise<{ bytes: number; rows: number; rowGroups: number }> {
  checkFilePath(path, 'writeParquetStream');
  const props = writerProperties(opts, 'writeParquetStream');
  if (opts.vocab !== undefined) throw new ArgumentError('writeParquetStream takes tables; vocab is for tensors');
  const source = tableStream(tables, 'writeParquetStream');
  let first: A.Schema | null = null;
  let rows = 0,
    chunk = 0;
  // parquet-wasm ends its output quietly when the input stream fails: the failure is kept here and thrown
  let failure: unknown = null;
  const batches = new ReadableStream({
    pull: async (controller) => {
      try {
        const next = await source.next();
        if (next.done) return controller.close();
        const table = next.value;
        if (first === null) {
          const bad = columnNameProblem(table.schema.fields);
          if (bad) throw new ValidationError(`writeParquetStream: ${bad}`);
          first = table.schema;
        } else if (schemaText(table.schema) !== schemaText(first))
          throw new ValidationError(
            `writeParquetStream: chunk ${chunk} has columns ${schemaText(table.schema)}; the first had ${schemaText(first)}`,
          );
        chunk++;
        rows += table.numRows;
        // every column is written nullable: apache-arrow calls a column non-nullable when a chunk has no nulls,
        // and parquet-wasm writes a later chunk's null in such a column as 0
        for (const b of wasmBatches(nullable(table))) controller.enqueue(b);
      } catch (e) {
        failure = e;
        controller.close();
        // the source stops here too (a file it streams from is closed)
        await source.return(undefined).catch(() => undefined);
      }
    },
  });
  const noTables = (): ArgumentError =>
    new ArgumentError('writeParquetStream: the iterable gave no tables (nothing to write, not even the columns)');
  let bytes = 0;
  let tail: Uint8Array = new Uint8Array(0);
  const written = async function* (): AsyncGenerator<Uint8Array> {
    let out: ReadableStream<Uint8Array>;
    try {
      out = (await pq().transformParquetStream(batches, props.build())) as ReadableStream<Uint8Array>;
    } catch (e) {
      dropInstanceAfterTrap(e);
      if (failure !== null) throw failure;
      if (first === null) throw noTables();
      throw new ValidationError(`writeParquetStream ${path}: the tables cannot be written: ${messageOf(e)}`);
    }
    for await (const part of out) {
      bytes += part.byteLength;
      tail = part.byteLength >= 4 ? part.subarray(part.byteLength - 4) : Uint8Array.from([...tail, ...part].slice(-4));
      yield part;
    }
    if (failure !== null) throw failure;
    if (first === null) throw noTables();
    if (String.fromCharCode(...tail) !== 'PAR1')
      throw new ValidationError(`writeParquetStream ${path}: the Parquet writer stopped before the file's end`);
  };
  await writeFileAtomic(path, written());
  return { bytes, rows, rowGroups: Math.ceil(rows / props.rowGroupSize) };
}

/** The table with every field nullable (the same data). */
function nullable(t: A.Table): A.Table {
  if (t.schema.fields.every((f) => f.nullable)) return t;
  const schema = new A.Schema(
    t.schema.fields.map((f) => f.clone({ nullable: true })),
    t.schema.metadata,
  );
  return new A.Table(
    schema,
    t.batches.map((b) => new A.RecordBatch(schema, b.data)),
  );
}
