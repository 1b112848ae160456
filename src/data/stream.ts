// StreamingDataset: batches from a directory of Parquet (or Arrow IPC) files larger than memory. Row groups (record
// batches of an Arrow file) are the unit of work: worker threads read and decode them ahead (parquet-wasm), the main thread adds them, in a planned order,
// to a shuffle buffer and draws batches from it. Row-group order is shuffled per (seed, epoch) and the draws come
// from a seeded generator, so an epoch's batches are the same on every run whatever order the workers finish in.
// Under distributed training each rank reads its own row groups. The memory the stream holds (shuffle buffer plus
// row groups in flight) stays under `maxMemoryBytes`.
import { availableParallelism } from 'node:os';
import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';
import type { BackendName } from '../backends/backend.js';
import { isInitialized, rank as worldRank, size as worldSize } from '../distributed/comm.js';
import { ArgumentError, FormatError, ValidationError, checkOptions, describe, optionKeys } from '../errors.js';
import { tensor } from '../ops/creation.js';
import type { Tensor } from '../tensor/tensor.js';
import { nameRecord } from '../records.js';
import {
  applyTransform,
  epochPermutation,
  hostRng,
  transformOption,
  type Batch,
  type BatchTransform,
} from './loader.js';
import { isArrowPath } from './extensions.js';
import { datasetFiles, datasetManifest, fileInfo, type DatasetManifest } from './manifest.js';
import { TABLE_CHECK_JS } from './arrow.js';
import { ARROW_STREAM_JS } from './arrow_reader.js';
import { FILE_RANGE_JS } from './parquet_reader.js';
import { fileBytes, readDeadlineMs } from './reader_thread.js';

/** Options of StreamingDataset.open. */
export interface StreamingOptions {
  /**
   * The batch's tensors by name: a column name gives a 1-D tensor [B], a list of columns a 2-D tensor [B, k]
   * (e.g. `{ x: ['f0', 'f1', 'f2'], y: 'label' }`).
   */
  columns: Record<string, string | readonly string[]>;
  /** dtype per batch tensor: 'float32' (nulls -> NaN) or 'int32'; default int32 for one integer column, else float32 */
  dtypes?: Record<string, 'float32' | 'int32'>;
  batchSize?: number;
  /** shuffle row-group order and rows (default true) */
  shuffle?: boolean;
  seed?: number;
  /** rows in the shuffle buffer (default 65536, or what half of maxMemoryBytes holds if less) */
  shuffleBuffer?: number;
  /** bound on the bytes the stream holds: shuffle buffer plus decoded row groups in flight (default 256 MiB) */
  maxMemoryBytes?: number;
  /** worker threads that read row groups (default min(2, cores)) */
  workers?: number;
  /** this process's shard (default: the kn.distributed rank and size when initialised, else 0 of 1) */
  rank?: number;
  worldSize?: number;
  /** drop the last incomplete batch (always true when worldSize > 1: every rank runs the same number of steps) */
  dropLast?: boolean;
  backend?: BackendName;
  /** applied to each batch as it is yielded, seeded per (seed, epoch, batch): e.g. kn.data.augment.compose(...) */
  transform?: BatchTransform | null;
}

interface Field {
  name: string;
  columns: string[];
  dtype: 'float32' | 'int32';
  /** tensor shape after the batch dimension */
  width: number;
  matrix: boolean;
}

interface Unit {
  file: string;
  group: number;
  rows: number;
}

/** What the stream held at most, and what it read. */
export interface StreamStats {
  /** the most bytes held at once (shuffle buffer allocation plus row groups requested and not yet drawn from) */
  peakBytes: number;
  maxMemoryBytes: number;
  rowGroupsRead: number;
  rowsRead: number;
}

const require = createRequire(import.meta.url);
const WORKER = `
const { parentPort, workerData } = require('node:worker_threads');
const fs = require('node:fs');
const A = require(workerData.arrow);
const P = require(workerData.parquet);
const files = new Map();
${FILE_RANGE_JS}
${TABLE_CHECK_JS}
${ARROW_STREAM_JS}
// a file opened once however many reads ask for it at the same time (a failed open is tried again next time)
function open(path, arrow) {
  let p = files.get(path);
  if (!p) {
    p = openNew(path, arrow);
    files.set(path, p);
    p.catch(() => files.delete(path));
  }
  return p;
}
async function openNew(path, arrow) {
  let f;
  if (arrow) {
    // opened as ArrowSource opens it (the manifest counted its batches the same way)
    const handle = await fs.promises.open(path);
    try {
      f = { handle, ...(await openArrow(handle, (await handle.stat()).size)) };
    } catch (e) {
      await handle.close().catch(() => undefined);
      throw e;
    }
  } else {
    const handle = await fs.promises.open(path);
    const st = await handle.stat();
    const range = { handle, size: st.size, mtimeMs: st.mtimeMs, failure: null };
    f = { range, file: await P.ParquetFile.fromFile(new FileRange(range, 0, range.size)) };
    unchanged(path, range);
  }
  f.queue = Promise.resolve();
  return f;
}
// One read at a time per file (the thread's reads of different files overlap): apache-arrow's file reader seeks
// and then reads through one shared position, so two reads of one file at once read each other's bytes ("Expected
// RecordBatch Message in stream"), and a Parquet file's change check spans a whole read.
function serial(f, read) {
  const run = f.queue.then(read, read);
  f.queue = run.catch(() => undefined);
  return run;
}
function unchanged(path, range) {
  if (range.failure !== null)
    throw new Error('V:' + path + ' could not be read as it was when opened (' + range.failure + '); a file must not change while a StreamingDataset reads it');
}
async function readUnit(path, arrow, group, columns) {
  const f = await open(path, arrow);
  return serial(f, () => readOpened(f, path, arrow, group, columns));
}
async function readOpened(f, path, arrow, group, columns) {
  if (arrow) {
    let whole;
    if (f.messages) {
      if (group >= f.batchAt.length) throw new Error('record batch ' + group + ' is missing');
      whole = await readStreamBatch(f, group);
    } else {
      const b = await f.reader.readRecordBatch(group);
      if (!b) throw new Error('record batch ' + group + ' is missing');
      whole = new A.Table(b);
    }
    const t = whole.select(columns);
    // lengths the buffers cannot hold are refused before the values are copied out
    const p = tableProblem(A, t);
    if (p) throw new Error(p);
    return t;
  }
  const why = await changedSince(f.range);
  if (why !== null) throw new Error('V:' + path + ' changed while a StreamingDataset was reading it (' + why + ')');
  f.range.failure = null;
  let wt;
  try {
    wt = await f.file.read({ rowGroups: [group], columns });
  } finally {
    unchanged(path, f.range);
  }
  return A.tableFromIPC(wt.intoIPCStream());
}
function fill(out, v, j, w, dtype, name, path) {
  let pos = 0;
  const isBool = A.DataType.isBool(v.type);
  for (const d of v.data) {
    const vals = d.values, off = d.offset, bm = d.nullCount > 0 ? d.nullBitmap : null;
    const big = vals instanceof BigInt64Array || vals instanceof BigUint64Array;
    if (!bm && !isBool && !big && (dtype === 'float32' || vals instanceof Int32Array || vals instanceof Int16Array || vals instanceof Int8Array || vals instanceof Uint8Array || vals instanceof Uint16Array)) {
      // the common case: no nulls, values that fit as they are
      for (let i = 0, o = pos * w + j; i < d.length; i++, o += w) out[o] = vals[i];
      pos += d.length;
      continue;
    }
    for (let i = 0; i < d.length; i++) {
      const b = off + i;
      let x;
      if (bm && ((bm[b >> 3] >> (b & 7)) & 1) === 0) {
        if (dtype === 'int32') throw new Error('V:' + path + ': column \\'' + name + '\\' has a null in an int32 field; ask for float32 (nulls become NaN) or impute it');
        x = NaN;
      } else if (isBool) x = (vals[b >> 3] >> (b & 7)) & 1;
      else x = big ? Number(vals[i]) : vals[i]; // values start at the chunk; bits at bit off
      if (dtype === 'int32' && !(Number.isInteger(x) && x >= -2147483648 && x <= 2147483647))
        throw new Error('V:' + path + ': column \\'' + name + '\\' has ' + x + ', which is not an int32');
      out[(pos + i) * w + j] = x;
    }
    pos += d.length;
  }
}
parentPort.on('message', async (job) => {
  try {
    const t = await readUnit(job.path, job.arrow, job.group, job.read);
    const n = Math.min(t.numRows, job.limit);
    const arrays = [];
    for (const fld of job.fields) {
      const w = fld.columns.length;
      const out = fld.dtype === 'int32' ? new Int32Array(t.numRows * w) : new Float32Array(t.numRows * w);
      fld.columns.forEach((c, j) => fill(out, t.getChild(c), j, w, fld.dtype, c, job.path));
      arrays.push(n < t.numRows ? out.slice(0, n * w) : out);
    }
    parentPort.postMessage({ id: job.id, rows: n, arrays }, arrays.map((a) => a.buffer));
  } catch (e) {
    parentPort.postMessage({ id: job.id, error: String((e && e.message) || e) });
  }
});
`;

type Arrays = (Float32Array | Int32Array)[];

/** A pool of worker threads that read row groups. */
class Readers {
  private readonly workers: Worker[] = [];
  private readonly busy: number[] = [];
  private readonly pending = new Map<
    number,
    {
      resolve: (r: { rows: number; arrays: Arrays }) => void;
      reject: (e: Error) => void;
      w: number;
      what: string;
      timer: NodeJS.Timeout;
    }
  >();
  private nextId = 0;
  private failed: Error | null = null;
  /** each file's size when first read, for its read deadline */
  private readonly bytes = new Map<string, number>();

  constructor(n: number) {
    const wd = { arrow: require.resolve('apache-arrow'), parquet: require.resolve('parquet-wasm') };
    for (let i = 0; i < n; i++) {
      const w = new Worker(WORKER, { eval: true, workerData: wd, execArgv: [] });
      w.on('message', (m: { id: number; rows?: number; arrays?: Arrays; error?: string }) => {
        const p = this.pending.get(m.id);
        if (!p) return;
        this.pending.delete(m.id);
        clearTimeout(p.timer);
        if (--this.busy[p.w]! === 0) this.workers[p.w]!.unref();
        if (m.error !== undefined) {
          const v = m.error.startsWith('V:');
          p.reject(v ? new ValidationError(m.error.slice(2)) : new FormatError(`cannot read ${p.what}: ${m.error}`));
        } else p.resolve({ rows: m.rows!, arrays: m.arrays! });
      });
      w.on('error', (e) => {
        // what the thread had in hand: the file and row group that made the decoder fail are among them
        const reading = [...this.pending.values()].filter((p) => p.w === i).map((p) => p.what);
        const on = reading.length ? ` reading ${reading.join(', ')}` : '';
        this.fail(new FormatError(`a Parquet reader thread failed${on}: ${e.message}`));
      });
      // after the listeners (adding a 'message' listener refs the worker again): idle threads never keep the
      // process alive
      w.unref();
      this.workers.push(w);
      this.busy.push(0);
    }
  }

  private fail(e: Error): void {
    this.failed = e;
    for (const p of this.pending.values()) {
      clearTimeout(p.timer);
      p.reject(e);
    }
    this.pending.clear();
  }

  read(
    path: string,
    group: number,
    read: string[],
    fields: readonly Field[],
    limit: number,
  ): Promise<{ rows: number; arrays: Arrays }> {
    if (this.failed) return Promise.reject(this.failed);
    let w = 0;
    for (let i = 1; i < this.workers.length; i++) if (this.busy[i]! < this.busy[w]!) w = i;
    const id = this.nextId++;
    // a thread with work keeps the process alive (a script that only awaits batches must not exit); an idle one
    // does not
    if (this.busy[w]!++ === 0) this.workers[w]!.ref();
    const what = `${isArrowPath(path) ? 'record batch' : 'row group'} ${group} of ${path}`;
    let bytes = this.bytes.get(path);
    if (bytes === undefined) this.bytes.set(path, (bytes = fileBytes(path)));
    const ms = readDeadlineMs(bytes);
    return new Promise((resolve, reject) => {
      // a decoder that never returns (a malformed file) ends the stream instead of hanging it
      const timer = setTimeout(() => {
        this.fail(
          new FormatError(
            `reading ${what} did not finish within ${(ms / 1000).toFixed(1)} s (a malformed file; KILN_DATA_READ_TIMEOUT_MS sets the limit)`,
          ),
        );
        void this.workers[w]!.terminate();
      }, ms);
      this.pending.set(id, { resolve, reject, w, what, timer });
      this.workers[w]!.postMessage({
        id,
        path,
        // the main thread decides the format (by extension, as the manifest did) so the thread never decides again
        arrow: isArrowPath(path),
        group,
        read,
        limit,
        fields: fields.map((f) => ({ columns: f.columns, dtype: f.dtype })),
      });
    });
  }

  close(): Promise<unknown> {
    this.fail(new ArgumentError('the StreamingDataset was closed'));
    return Promise.all(this.workers.map((w) => w.terminate()));
  }
}

/** Rows held between row groups and batches: per field, a [capacity, width] typed array. */
class RowPool {
  readonly data: Arrays;
  start = 0;
  rows = 0;
  constructor(
    private readonly fields: readonly Field[],
    readonly capacity: number,
  ) {
    this.data = fields.map((f) =>
      f.dtype === 'int32' ? new Int32Array(capacity * f.width) : new Float32Array(capacity * f.width),
    );
  }
  add(arrays: Arrays, n: number): void {
    if (this.start + this.rows + n > this.capacity) {
      this.fields.forEach((f, k) =>
        this.data[k]!.copyWithin(0, this.start * f.width, (this.start + this.rows) * f.width),
      );
      this.start = 0;
    }
    const at = this.start + this.rows;
    this.fields.forEach((f, k) => this.data[k]!.set(arrays[k]!.subarray(0, n * f.width), at * f.width));
    this.rows += n;
  }
  /** n rows: the first ones (in order), or drawn at random (each removed, the last row moved into its place). */
  take(n: number, rnd: (() => number) | null): Arrays {
    const out = this.fields.map((f) =>
      f.dtype === 'int32' ? new Int32Array(n * f.width) : new Float32Array(n * f.width),
    );
    this.fields.forEach((f, k) => {
      if (!rnd) out[k]!.set(this.data[k]!.subarray(this.start * f.width, (this.start + n) * f.width));
    });
    if (!rnd) {
      this.start += n;
      this.rows -= n;
      return out;
    }
    // plain index loops: a subarray per row and field costs more than the copy itself
    const ws = this.fields.map((f) => f.width);
    for (let i = 0; i < n; i++) {
      const r = this.start + Math.floor(rnd() * this.rows);
      const last = this.start + this.rows - 1;
      for (let k = 0; k < ws.length; k++) {
        const w = ws[k]!,
          d = this.data[k]!,
          o = out[k]!;
        const src = r * w,
          dst = i * w,
          lw = last * w;
        for (let j = 0; j < w; j++) {
          o[dst + j] = d[src + j]!;
          d[src + j] = d[lw + j]!;
        }
      }
      this.rows--;
    }
    return out;
  }
}

/** Splits units over ranks: largest first, each to the rank with the fewest rows (deterministic). */
function assign(units: readonly Unit[], size: number): Unit[][] {
  const shards: Unit[][] = Array.from({ length: size }, () => []);
  const rows = new Array<number>(size).fill(0);
  const order = units.map((u, i) => i).sort((a, b) => units[b]!.rows - units[a]!.rows || a - b);
  for (const i of order) {
    let r = 0;
    for (let k = 1; k < size; k++) if (rows[k]! < rows[r]!) r = k;
    shards[r]!.push(units[i]!);
    rows[r]! += units[i]!.rows;
  }
  // each shard in file order, so an unshuffled epoch reads files front to back
  const pos = new Map(units.map((u, i) => [u, i]));
  for (const s of shards) s.sort((a, b) => pos.get(a)! - pos.get(b)!);
  return shards;
}

const MiB = 1024 * 1024;
/** Default shuffle buffer: enough rows to mix several row groups, small enough to start training at once. */
const DEFAULT_BUFFER_ROWS = 65536;

/**
 * Batches streamed from Parquet or Arrow IPC files larger than memory (a file, a directory searched recursively, or a
 * list).
 * `await StreamingDataset.open(dir, { columns: { x: [...], y: 'label' }, batchSize })`, then
 * `for await (const batch of ds.batches(epoch))`; kn.train.fit takes it as `train`.
 * @example kn.data.writeParquet('.kiln-tmp-s.parquet', { a: kn.arange(0, 10) }); const ds = await kn.data.StreamingDataset.open('.kiln-tmp-s.parquet', { columns: { a: 'a' }, batchSize: 4 }); ds.length // 3
 */
export class StreamingDataset {
  readonly batchSize: number;
  readonly shuffle: boolean;
  readonly seed: number;
  readonly rank: number;
  readonly worldSize: number;
  readonly dropLast: boolean;
  /** rows of this rank's shard per epoch */
  readonly rows: number;
  /** rows in all shards */
  readonly totalRows: number;
  readonly files: readonly string[];
  /** the path or paths the stream was opened on */
  readonly source: string | readonly string[];
  readonly bufferRows: number;
  readonly maxMemoryBytes: number;
  private readonly fields: Field[];
  private readonly units: Unit[];
  private readonly steps: number;
  private readonly nWorkers: number;
  private readonly backend: BackendName | undefined;
  private readonly transform: BatchTransform | null;
  private readers: Readers | null = null;
  private active = 0;
  private readonly st: StreamStats;

  private constructor(
    init: Omit<StreamingDataset, 'length' | 'batches' | 'peek' | 'close' | 'stats' | 'manifest' | 'fieldNames'> & {
      fields: Field[];
      units: Unit[];
      steps: number;
      nWorkers: number;
      backend: BackendName | undefined;
      transform: BatchTransform | null;
    },
  ) {
    this.batchSize = init.batchSize;
    this.shuffle = init.shuffle;
    this.seed = init.seed;
    this.rank = init.rank;
    this.worldSize = init.worldSize;
    this.dropLast = init.dropLast;
    this.rows = init.rows;
    this.totalRows = init.totalRows;
    this.files = init.files;
    this.source = init.source;
    this.bufferRows = init.bufferRows;
    this.maxMemoryBytes = init.maxMemoryBytes;
    this.fields = init.fields;
    this.units = init.units;
    this.steps = init.steps;
    this.nWorkers = init.nWorkers;
    this.backend = init.backend;
    this.transform = init.transform;
    this.st = { peakBytes: 0, maxMemoryBytes: init.maxMemoryBytes, rowGroupsRead: 0, rowsRead: 0 };
    // start the reader threads now: loading the Parquet decoder in each overlaps with building the model
    this.readers = new Readers(this.nWorkers);
  }

  /** Reads the files' footers, checks the columns and the memory bound, and plans this rank's shard. */
  static async open(source: string | readonly string[], opts: StreamingOptions): Promise<StreamingDataset> {
    if (opts === null || typeof opts !== 'object' || opts.columns === null || typeof opts.columns !== 'object')
      throw new ArgumentError(
        `StreamingDataset.open needs options { columns: { x: [...], y: 'label' } }, got ${describe(opts)}`,
      );
    checkOptions(
      opts,
      'StreamingDataset.open',
      optionKeys<StreamingOptions>({
        columns: true,
        dtypes: true,
        batchSize: true,
        shuffle: true,
        seed: true,
        shuffleBuffer: true,
        maxMemoryBytes: true,
        workers: true,
        rank: true,
        worldSize: true,
        dropLast: true,
        backend: true,
        transform: true,
      }),
    );
    const files = datasetFiles(source);
    const infos: Awaited<ReturnType<typeof fileInfo>>[] = [];
    for (const f of files) infos.push(await fileInfo(f));
    const types = new Map(infos[0]!.columns.map((c) => [c.name, c.type]));
    const fields: Field[] = [];
    for (const [name, spec] of Object.entries(opts.columns)) {
      const cols = typeof spec === 'string' ? [spec] : Array.isArray(spec) ? [...(spec as string[])] : null;
      if (!cols || cols.length === 0 || cols.some((c) => typeof c !== 'string'))
        throw new ArgumentError(
          `columns.${name} must be a column name or a non-empty list of them, got ${describe(spec)}`,
        );
      for (const c of cols) {
        const t = types.get(c);
        if (t === undefined)
          throw new ValidationError(`${files[0]} has no column '${c}'; it has ${[...types.keys()].join(', ')}`);
        if (!/^(Float|Int|Uint|Bool)/.test(t))
          throw new ValidationError(
            `column '${c}' is ${t}; a streamed column must be numeric or boolean (encode categories first, e.g. with kn.data.OrdinalEncoder, and write the codes)`,
          );
      }
      const want = opts.dtypes?.[name];
      if (want !== undefined && want !== 'float32' && want !== 'int32')
        throw new ArgumentError(`dtypes.${name} must be 'float32' or 'int32', got ${describe(want)}`);
      const intCol = cols.length === 1 && /^(Int|Uint)/.test(types.get(cols[0]!)!);
      fields.push({
        name,
        columns: cols,
        dtype: want ?? (intCol ? 'int32' : 'float32'),
        width: cols.length,
        matrix: typeof spec !== 'string',
      });
    }
    if (fields.length === 0) throw new ArgumentError('StreamingDataset needs at least one entry in columns');
    infos.forEach((info, i) => {
      for (const f of fields)
        for (const c of f.columns) {
          const t = info.columns.find((x) => x.name === c)?.type;
          if (t !== types.get(c))
            throw new ValidationError(
              `${files[i]}: column '${c}' is ${t ?? 'absent'} there but ${types.get(c)} in ${files[0]}`,
            );
        }
    });
    const units: Unit[] = [];
    infos.forEach((info, i) => info.units.forEach((rows, k) => units.push({ file: files[i]!, group: k, rows })));
    const batchSize = opts.batchSize ?? 32;
    if (!Number.isInteger(batchSize) || batchSize < 1)
      throw new ArgumentError(`batchSize must be a positive integer, got ${describe(opts.batchSize)}`);
    const seed = opts.seed ?? 0;
    if (!Number.isInteger(seed)) throw new ArgumentError(`seed must be an integer, got ${describe(opts.seed)}`);
    const dist = isInitialized();
    const size = opts.worldSize ?? (dist ? worldSize() : 1);
    const rank = opts.rank ?? (dist ? worldRank() : 0);
    if (!Number.isInteger(size) || size < 1)
      throw new ArgumentError(`worldSize must be a positive integer, got ${describe(size)}`);
    if (!Number.isInteger(rank) || rank < 0 || rank >= size)
      throw new ArgumentError(`rank must be an integer in [0, ${size}), got ${describe(rank)}`);
    // what a unit is called in messages: a Parquet file's row group, an Arrow file's record batch
    const arrow = files.filter(isArrowPath).length;
    const unitsWord =
      arrow === 0 ? 'row groups' : arrow === files.length ? 'record batches' : 'row groups and record batches';
    if (units.length < size)
      throw new ValidationError(
        `the dataset has ${units.length} ${unitsWord} for ${size} ranks; each rank reads whole ${unitsWord}, so write at least ${size} (kn.data.writeParquet's rowGroupSize)`,
      );
    const shards = assign(units, size);
    const shardRows = shards.map((s) => s.reduce((n, u) => n + u.rows, 0));
    const dropLast = size > 1 ? true : (opts.dropLast ?? false);
    const minRows = Math.min(...shardRows);
    const steps = dropLast ? Math.floor(minRows / batchSize) : Math.ceil(shardRows[rank]! / batchSize);
    const rowBytes = fields.reduce((s, f) => s + 4 * f.width, 0);
    const maxMemoryBytes = opts.maxMemoryBytes ?? 256 * MiB;
    if (!(Number.isFinite(maxMemoryBytes) && maxMemoryBytes > 0))
      throw new ArgumentError(`maxMemoryBytes must be a positive number, got ${describe(opts.maxMemoryBytes)}`);
    const maxUnit = Math.max(...units.map((u) => u.rows));
    const shuffle = opts.shuffle ?? true;
    const fixed = 2 * maxUnit * rowBytes; // pool headroom for one row group, plus one in flight
    let bufferRows: number;
    if (opts.shuffleBuffer !== undefined) {
      if (!Number.isInteger(opts.shuffleBuffer) || opts.shuffleBuffer < 1)
        throw new ArgumentError(`shuffleBuffer must be a positive integer, got ${describe(opts.shuffleBuffer)}`);
      bufferRows = opts.shuffleBuffer;
    } else
      bufferRows = shuffle
        ? Math.min(DEFAULT_BUFFER_ROWS, Math.floor((maxMemoryBytes / 2 - fixed) / rowBytes))
        : batchSize;
    // never more than this rank's rows: a larger buffer only delays the first batch
    bufferRows = Math.max(Math.min(bufferRows, shardRows[rank]!), Math.min(batchSize, shardRows[rank]!), 1);
    const need = (bufferRows + maxUnit) * rowBytes + maxUnit * rowBytes;
    if (need > maxMemoryBytes)
      throw new ValidationError(
        `maxMemoryBytes ${maxMemoryBytes} cannot hold a shuffle buffer of ${bufferRows} rows plus ${unitsWord} of up to ` +
          `${maxUnit} rows (${rowBytes} bytes a row): it needs ${need}; raise it, lower shuffleBuffer, or write smaller ${unitsWord}`,
      );
    const nWorkers = opts.workers ?? Math.min(2, availableParallelism());
    if (!Number.isInteger(nWorkers) || nWorkers < 1)
      throw new ArgumentError(`workers must be a positive integer, got ${describe(opts.workers)}`);
    return new StreamingDataset({
      batchSize,
      shuffle,
      seed,
      rank,
      worldSize: size,
      dropLast,
      rows: shardRows[rank]!,
      totalRows: units.reduce((n, u) => n + u.rows, 0),
      files,
      source: typeof source === 'string' ? source : [...source],
      bufferRows,
      maxMemoryBytes,
      fields,
      units: shards[rank]!,
      steps,
      nWorkers,
      backend: opts.backend,
      transform: transformOption(opts.transform),
    });
  }

  /** Batches per epoch (the same on every rank). */
  get length(): number {
    return this.steps;
  }

  /** The names of the batch's tensors. */
  fieldNames(): string[] {
    return this.fields.map((f) => f.name);
  }

  /** Peak memory held, and how much was read, since the stream was opened. */
  stats(): StreamStats {
    return { ...this.st };
  }

  /** The manifest (files, hashes, rows, schema, version) of the dataset, as datasetManifest(source) gives it. */
  manifest(): Promise<DatasetManifest> {
    return datasetManifest(this.source);
  }

  private readersFor(): Readers {
    if (!this.readers) throw new ArgumentError('the StreamingDataset is closed');
    return this.readers;
  }

  private toBatch(arrays: Arrays, n: number): Batch {
    const out = nameRecord<Tensor>();
    this.fields.forEach((f, k) => {
      out[f.name] = tensor(arrays[k]!, f.matrix ? [n, f.width] : [n], { dtype: f.dtype, backend: this.backend });
    });
    return out;
  }

  /** The first `n` rows of this rank's first row group, in file order (for a quick look or a sanity check). */
  async peek(n = this.batchSize): Promise<Batch> {
    if (!Number.isInteger(n) || n < 1) throw new ArgumentError(`peek takes a positive row count, got ${describe(n)}`);
    const u = this.units[0]!;
    const r = await this.readersFor().read(u.file, u.group, this.readColumns(), this.fields, n);
    return this.toBatch(r.arrays, r.rows);
  }

  private readColumns(): string[] {
    return [...new Set(this.fields.flatMap((f) => f.columns))];
  }

  /**
   * The batches of epoch `epoch`: this rank's row groups in a per-epoch shuffled order, read ahead on worker
   * threads within the memory bound, rows drawn from the shuffle buffer. Each batch is new tensors (dispose
   * them, or let kn.train.fit do it).
   */
  async *batches(epoch = 0): AsyncGenerator<Batch> {
    if (!Number.isInteger(epoch) || epoch < 0)
      throw new ArgumentError(`epoch must be a non-negative integer, got ${describe(epoch)}`);
    if (this.active > 0)
      throw new ArgumentError('a StreamingDataset runs one epoch at a time; finish or break out of the other first');
    this.active++;
    const readers = this.readersFor();
    const order = this.shuffle
      ? Array.from(epochPermutation(this.units.length, this.seed, epoch), (i) => this.units[i]!)
      : [...this.units];
    const rnd = this.shuffle ? hostRng((this.seed * 0x2545f491) ^ Math.imul(epoch + 7, 0x9e3779b1)) : null;
    const rowBytes = this.fields.reduce((s, f) => s + 4 * f.width, 0);
    const maxUnit = Math.max(...this.units.map((u) => u.rows));
    const pool = new RowPool(this.fields, this.bufferRows + maxUnit);
    const poolBytes = pool.capacity * rowBytes;
    const inflight: { unit: Unit; p: Promise<{ rows: number; arrays: Arrays }> }[] = [];
    let inflightBytes = 0,
      next = 0,
      emitted = 0;
    const cols = this.readColumns();
    const note = (): void => {
      this.st.peakBytes = Math.max(this.st.peakBytes, poolBytes + inflightBytes);
    };
    const request = (): void => {
      // read ahead while the bound allows (one row group is always allowed: open() checked it fits)
      while (next < order.length) {
        const u = order[next]!;
        const b = u.rows * rowBytes;
        if (inflight.length > 0 && poolBytes + inflightBytes + b > this.maxMemoryBytes) break;
        if (inflight.length >= 2 * this.nWorkers) break;
        const p = readers.read(u.file, u.group, cols, this.fields, u.rows);
        p.catch(() => undefined); // awaited in order below; a failure before then is not unhandled
        inflight.push({ unit: u, p });
        inflightBytes += b;
        next++;
        note();
      }
    };
    try {
      request();
      while (emitted < this.steps) {
        // fill the pool up to the shuffle buffer (or a batch, unshuffled) from row groups in planned order
        const want = rnd ? this.bufferRows : this.batchSize;
        while (pool.rows < want && inflight.length > 0) {
          const head = inflight.shift()!;
          const r = await head.p;
          pool.add(r.arrays, r.rows);
          inflightBytes -= head.unit.rows * rowBytes;
          this.st.rowGroupsRead++;
          this.st.rowsRead += r.rows;
          request();
        }
        if (pool.rows === 0) break;
        const n = Math.min(this.batchSize, pool.rows);
        if (n < this.batchSize && this.dropLast) break;
        const batch = this.toBatch(pool.take(n, rnd), n);
        yield this.transform ? applyTransform(this.transform, batch, this.seed, epoch, emitted) : batch;
        emitted++;
      }
    } finally {
      this.active--;
      // row groups still being read are dropped when they arrive
      for (const f of inflight) f.p.catch(() => undefined);
    }
  }

  /** Stops the reader threads. */
  async close(): Promise<void> {
    const r = this.readers;
    this.readers = null;
    if (r) await r.close();
  }
}
