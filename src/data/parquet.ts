// Parquet in and out through parquet-wasm (the Rust arrow-rs reader and writer compiled to WebAssembly): a
// file decodes straight to Arrow IPC in wasm memory and from there to an apache-arrow Table, so no value passes
// through a JavaScript loop on the way in. Chosen over hyparquet and DuckDB's node API by the bench in
// bench/data/parquet.bench.ts (bench/RESULTS.md). Writes are atomic.
import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';
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
import { fileBytes, readAhead, transferable, type FileStamp } from './reader_thread.js';

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
    return this.readChecked(options);
  }

  /**
   * Every row group in file order (empty ones too), optionally only some columns; the next row group is read
   * ahead on the reader thread while the caller works on this one, so memory holds two row groups at most.
   * @example kn.data.writeParquet('.kiln-tmp-pc.parquet', { v: kn.arange(0, 5) }, { rowGroupSize: 2 }); const src = await kn.data.ParquetSource.open('.kiln-tmp-pc.parquet'); const sizes = []; for await (const t of src.chunks({ columns: ['v'] })) sizes.push(t.numRows); src.close(); sizes // [2, 2, 1]
   */
  async *chunks(opts: Pick<ReadParquetOptions, 'columns'> = {}): AsyncGenerator<A.Table> {
    checkOptions(opts, 'ParquetSource.chunks', ['columns']);
    const { columns } = readerOptions(opts, 'ParquetSource.chunks');
    checkSelection(this.path, this.info, opts);
    yield* readAhead(this.info.rowGroups.length, (g) => {
      if (this.closed) throw new ArgumentError(`ParquetSource.chunks: ${this.path} was closed`);
      return this.readChecked(columns ? { rowGroups: [g], columns } : { rowGroups: [g] });
    });
  }

  /** Reads what options (checked against the footer already) select, on the reader thread. */
  private async readChecked(options: Record<string, unknown>): Promise<A.Table> {
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
/** Checked writer settings, plain data (they cross to the writer thread). */
interface WriterSettings {
  codec: ParquetCompression;
  rowGroupSize: number;
  dictionary: boolean;
  metadata: [string, string][];
}

/**
 * parquet-wasm's WriterProperties for `s`, from the module `P`. Self-contained: its source runs on the writer
 * thread too.
 */
function buildWriterProperties(P: ParquetWasm, s: WriterSettings): import('parquet-wasm').WriterProperties {
  const C = P.Compression;
  const codecs = {
    none: C.UNCOMPRESSED,
    snappy: C.SNAPPY,
    gzip: C.GZIP,
    zstd: C.ZSTD,
    brotli: C.BROTLI,
    lz4: C.LZ4_RAW,
  };
  let b = new P.WriterPropertiesBuilder()
    .setCompression(codecs[s.codec])
    .setMaxRowGroupSize(s.rowGroupSize)
    .setDictionaryEnabled(s.dictionary)
    .setCreatedBy('kiln');
  if (s.metadata.length) b = b.setKeyValueMetadata(new Map(s.metadata));
  return b.build();
}

function writerProperties(opts: WriteParquetOptions, who: string): WriterSettings {
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
  const metadata: [string, string][] = [];
  for (const [k, v] of Object.entries(opts.metadata ?? {})) {
    if (typeof v !== 'string') throw new ArgumentError(`${who} metadata '${k}' must be a string, got ${describe(v)}`);
    metadata.push([k, v]);
  }
  const dictionary = opts.dictionary ?? true;
  if (typeof dictionary !== 'boolean')
    throw new ArgumentError(`${who} dictionary must be true or false, got ${describe(dictionary)}`);
  return { codec, rowGroupSize: rg, dictionary, metadata };
}

/**
 * Why a table with these columns cannot be written as Parquet, or null: a column name a record cannot key, or a
 * union anywhere in a column (Parquet has no union type, and parquet-wasm's writer traps on one rather than say so).
 */
function parquetSchemaProblem(fields: readonly A.Field[]): string | null {
  const union = (type: A.DataType, name: string): string | null => {
    if (A.DataType.isUnion(type))
      return `column '${name}' is a ${String(type)}; Parquet has no union type (write it as Arrow IPC, or as a column per member)`;
    if (A.DataType.isDictionary(type)) return union(type.dictionary, name);
    for (const c of (type.children as A.Field[] | null | undefined) ?? []) {
      const p = union(c.type, `${name}.${c.name}`);
      if (p) return p;
    }
    return null;
  };
  for (const f of fields) {
    const p = union(f.type, f.name);
    if (p) return p;
  }
  return columnNameProblem(fields);
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
  const bad = parquetSchemaProblem(table.schema.fields);
  if (bad) throw new ValidationError(`writeParquet: ${bad}`);
  let bytes: Uint8Array;
  try {
    const P = pq();
    const wt = P.Table.fromIPCStream(A.tableToIPC(table, 'stream'));
    bytes = P.writeParquet(wt, buildWriterProperties(P, props));
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
  const settings = writerProperties(opts, 'writeParquetStream');
  if (opts.vocab !== undefined) throw new ArgumentError('writeParquetStream takes tables; vocab is for tensors');
  const source = tableStream(tables, 'writeParquetStream');
  let first: A.Schema | null = null;
  let rows = 0,
    chunk = 0,
    bytes = 0;
  /** the next chunk as Arrow IPC for the writer thread, or null at the end */
  const next = async (): Promise<Uint8Array | null> => {
    const n = await source.next();
    if (n.done) {
      if (first === null)
        throw new ArgumentError(
          'writeParquetStream: the iterable gave no tables (nothing to write, not even the columns)',
        );
      return null;
    }
    const table = n.value;
    if (first === null) {
      const bad = parquetSchemaProblem(table.schema.fields);
      if (bad) throw new ValidationError(`writeParquetStream: ${bad}`);
      first = table.schema;
    } else if (schemaText(table.schema) !== schemaText(first))
      throw new ValidationError(
        `writeParquetStream: chunk ${chunk} has columns ${schemaText(table.schema)}; the first had ${schemaText(first)}`,
      );
    chunk++;
    rows += table.numRows;
    // every column is written nullable: apache-arrow calls a column non-nullable when a chunk has no nulls, and
    // parquet-wasm writes a later chunk's null in such a column as 0
    return A.tableToIPC(nullable(table), 'stream');
  };
  const written = async function* (): AsyncGenerator<Uint8Array> {
    const w = new Worker(PARQUET_WRITER, {
      eval: true,
      workerData: { parquet: require.resolve('parquet-wasm'), settings },
      execArgv: [],
    });
    // the thread's messages, and its end, in order
    type Note = { want: true } | { bytes: Uint8Array } | { done: true } | { error: string } | { died: string };
    const notes: Note[] = [];
    let wake: (() => void) | null = null;
    const note = (n: Note): void => {
      notes.push(n);
      wake?.();
    };
    w.on('message', (m: Note) => note(m));
    w.on('error', (e) => note({ died: e.message }));
    w.on('exit', (code) => note({ died: `its thread exited with code ${code}` }));
    let tail: Uint8Array = new Uint8Array(0);
    try {
      for (;;) {
        while (notes.length === 0) await new Promise<void>((r) => (wake = r));
        wake = null;
        const m = notes.shift()!;
        if ('want' in m) {
          const ipc = await next();
          if (ipc === null) w.postMessage({ end: true });
          else {
            const own = transferable(ipc);
            w.postMessage({ ipc: own }, [own.buffer as ArrayBuffer]);
          }
        } else if ('bytes' in m) {
          bytes += m.bytes.byteLength;
          const b = m.bytes;
          tail = b.byteLength >= 4 ? b.subarray(b.byteLength - 4) : Uint8Array.from([...tail, ...b].slice(-4));
          yield b;
        } else if ('done' in m) break;
        else if ('error' in m)
          throw new ValidationError(`writeParquetStream ${path}: the tables cannot be written: ${m.error}`);
        else throw new FormatError(`writeParquetStream ${path}: the Parquet writer failed (${m.died})`);
      }
    } finally {
      // the source stops too (a file it streams from is closed)
      await source.return(undefined).catch(() => undefined);
      await w.terminate();
    }
    if (String.fromCharCode(...tail) !== 'PAR1')
      throw new ValidationError(`writeParquetStream ${path}: the Parquet writer stopped before the file's end`);
  };
  await writeFileAtomic(path, written());
  return { bytes, rows, rowGroups: Math.ceil(rows / settings.rowGroupSize) };
}

// The thread writeParquetStream writes on: parquet-wasm's streaming writer runs its Rust future from promise
// jobs, where a panic is a trap no caller can catch; here it ends this thread, and the write fails with a
// FormatError. The thread asks for each chunk when the writer wants one ({want}), is given Arrow IPC ({ipc}) or
// the end ({end}), and sends the file's bytes as they come ({bytes}), then {done}; a writer error is {error}.
// It also takes the encoding off the caller's thread, which reads and scores the next chunk meanwhile.
const PARQUET_WRITER = `
const { parentPort, workerData } = require('node:worker_threads');
const P = require(workerData.parquet);
${buildWriterProperties.toString()}
${transferable.toString()}
const message = (e) => String((e && e.message) || e);
let give = null;
parentPort.on('message', (m) => give && give(m));
const ask = () => new Promise((r) => { give = r; parentPort.postMessage({ want: true }); });
// a chunk parquet-wasm refuses ends its input stream quietly: the refusal is kept and said, not what follows
let failure = null;
(async () => {
  const batches = new ReadableStream({
    pull: async (controller) => {
      try {
        const m = await ask();
        if (m.end) return controller.close();
        const wt = P.Table.fromIPCStream(m.ipc);
        try {
          for (const b of wt.recordBatches()) controller.enqueue(b);
        } finally {
          wt.free();
        }
      } catch (e) {
        failure = e;
        controller.close();
      }
    },
  });
  const out = await P.transformParquetStream(batches, buildWriterProperties(P, workerData.settings));
  for await (const part of out) {
    const u8 = transferable(part);
    parentPort.postMessage({ bytes: u8 }, [u8.buffer]);
  }
  if (failure) throw failure;
  parentPort.postMessage({ done: true });
})().catch((e) => parentPort.postMessage({ error: message(failure ?? e) }));
`;

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
