// The thread that reads Parquet files for ParquetSource and parquetInfo. parquet-wasm's asynchronous reader runs
// its Rust future from promise jobs: a panic there (a damaged page, a file that changed under a read) is a trap
// that no caller can catch, and on the main thread it ended the process. Here it ends this thread: the request
// that was running gets a FormatError and the next request starts a fresh thread. A request that runs past its
// deadline (a decoder that never returns) is ended the same way.
import { statSync } from 'node:fs';
import { Worker } from 'node:worker_threads';
import { createRequire } from 'node:module';
import { ArgumentError, FormatError, ValidationError } from '../errors.js';

const require = createRequire(import.meta.url);

/**
 * How long a reader thread may work on one request for a file of `bytes` bytes before the file is called
 * malformed: KILN_DATA_READ_TIMEOUT_MS when set, else 120 s plus 10 ms per MB of the file. Shared with
 * StreamingDataset's threads.
 */
export function readDeadlineMs(bytes: number): number {
  const env = Number(process.env.KILN_DATA_READ_TIMEOUT_MS);
  if (Number.isFinite(env) && env > 0) return env;
  return 120_000 + bytes / 1e5;
}

/** The size of the file at `path`, 0 when it cannot be read (its reader reports that, the deadline need not). */
export function fileBytes(path: string): number {
  try {
    return statSync(path).size;
  } catch {
    return 0;
  }
}

/** What a file was when a source opened it: a read finds it changed when either differs. */
export interface FileStamp {
  size: number;
  mtimeMs: number;
}

/** The footer as the thread sends it (the schema as Arrow IPC, turned into an A.Schema by the caller). */
export interface FooterReply {
  stamp: FileStamp;
  rows: number;
  rowGroups: { rows: number; bytes: number; compressedBytes: number }[];
  createdBy: string | null;
  metadata: [string, string][];
  schema: Uint8Array;
}

// A FileRange (script text, for this reader thread and StreamingDataset's) is a byte range of an open file with
// the three things parquet-wasm asks of a Blob (size, slice, arrayBuffer); `f` is { handle, size, mtimeMs,
// failure }, and changedSince(f) says how the file differs from when it was opened. A FileRange's reads never
// reject: parquet-wasm panics when a Blob read rejects (as Node's openAsBlob does once a file changed), so a
// failed or short read records why and hands back zeros, and the request throws once parquet-wasm returns.
// Reading through one handle keeps reading the file that was opened, so a new file renamed over the path (an
// atomic write) does not disturb an open source.
export const FILE_RANGE_JS = `
class FileRange {
  constructor(f, start, size) { this.f = f; this.start = start; this.size = size; }
  slice(start = 0, end = this.size) {
    const at = (v) => Math.min(this.size, Math.max(0, v < 0 ? this.size + v : Math.trunc(v) || 0));
    const s = at(start);
    return new FileRange(this.f, this.start + s, Math.max(0, at(end) - s));
  }
  async arrayBuffer() {
    const buf = new Uint8Array(this.size);
    try {
      for (let off = 0; off < this.size; ) {
        const { bytesRead } = await this.f.handle.read(buf, off, this.size - off, this.start + off);
        if (bytesRead === 0) throw new Error('it ends before byte ' + (this.start + this.size) + ' (it had ' + this.f.size + ' bytes)');
        off += bytesRead;
      }
    } catch (e) {
      if (this.f.failure === null) this.f.failure = String((e && e.message) || e);
    }
    return buf.buffer;
  }
}
// how a file differs in size or modification time from when it was opened ('N bytes then, M now'), or null
async function changedSince(f) {
  const st = await f.handle.stat();
  return st.size !== f.size || st.mtimeMs !== f.mtimeMs ? f.size + ' bytes then, ' + st.size + ' now' : null;
}
`;

/** The reader thread's script. */
const WORKER = `
const { parentPort, workerData } = require('node:worker_threads');
const fsp = require('node:fs/promises');
const P = require(workerData.parquet);
const open = new Map();
const message = (e) => String((e && e.message) || e);
class Fail extends Error { constructor(kind, msg) { super(msg); this.kind = kind; } }
${FILE_RANGE_JS}
const changed = (f) => new Fail('changed', 'it could not be read as it was when opened (' + f.failure + ')');
async function openFile(key, path, expect) {
  let handle;
  try {
    handle = await fsp.open(path);
  } catch (e) {
    throw new Fail('argument', 'cannot read ' + path + ': ' + message(e));
  }
  try {
    const st = await handle.stat();
    if (!st.isFile()) throw new Fail('argument', 'cannot read ' + path + ': it is ' + (st.isDirectory() ? 'a directory' : 'not a regular file'));
    if (expect && (st.size !== expect.size || st.mtimeMs !== expect.mtimeMs))
      throw new Fail('changed', 'it changed after it was opened (' + expect.size + ' bytes then, ' + st.size + ' now)');
    if (st.size < 12) throw new Fail('format', 'is not a Parquet file: it has ' + st.size + ' bytes');
    const f = { handle, size: st.size, mtimeMs: st.mtimeMs, failure: null };
    let file;
    try {
      file = await P.ParquetFile.fromFile(new FileRange(f, 0, st.size));
    } catch (e) {
      if (f.failure !== null) throw changed(f);
      throw new Fail('format', 'cannot read its footer: ' + message(e));
    }
    if (f.failure !== null) throw changed(f);
    const o = { f, file };
    open.set(key, o);
    return o;
  } catch (e) {
    await handle.close().catch(() => undefined);
    throw e;
  }
}
const whole = (u8) => (u8.byteOffset === 0 && u8.byteLength === u8.buffer.byteLength ? u8 : u8.slice());
async function run(m) {
  if (m.op === 'footer') {
    const { f, file } = await openFile(m.key, m.path, null);
    try {
      const meta = file.metadata(), fm = meta.fileMetadata();
      const schema = whole(file.schema().intoIPCStream());
      return [{
        stamp: { size: f.size, mtimeMs: f.mtimeMs },
        rows: fm.numRows(),
        rowGroups: meta.rowGroups().map((g) => ({ rows: g.numRows(), bytes: g.totalByteSize(), compressedBytes: g.compressedSize() })),
        createdBy: fm.createdBy() ?? null,
        metadata: Array.from(fm.keyValueMetadata(), ([k, v]) => [String(k), String(v)]),
        schema,
      }, [schema.buffer]];
    } catch (e) {
      if (e instanceof Fail) throw e;
      throw new Fail('format', 'cannot read its footer: ' + message(e));
    }
  }
  if (m.op === 'read') {
    const o = open.get(m.key) ?? (await openFile(m.key, m.path, m.stamp));
    let why;
    try {
      why = await changedSince(o.f);
    } catch (e) {
      throw new Fail('changed', 'it could not be read as it was when opened (' + message(e) + ')');
    }
    if (why !== null) throw new Fail('changed', 'it changed after it was opened (' + why + ')');
    o.f.failure = null;
    let ipc;
    try {
      ipc = whole((await o.file.read(m.options)).intoIPCStream());
    } catch (e) {
      if (o.f.failure !== null) throw changed(o.f);
      throw new Fail('format', 'cannot read it: ' + message(e));
    }
    if (o.f.failure !== null) throw changed(o.f);
    return [ipc, [ipc.buffer]];
  }
  throw new Error('unknown request ' + m.op);
}
parentPort.on('message', async (m) => {
  if (m.op === 'close') {
    const o = open.get(m.key);
    open.delete(m.key);
    if (o) {
      o.file.free();
      await o.f.handle.close().catch(() => undefined);
    }
    return;
  }
  try {
    const [value, transfer] = await run(m);
    parentPort.postMessage({ id: m.id, value }, transfer);
  } catch (e) {
    parentPort.postMessage({ id: m.id, error: { kind: e instanceof Fail ? e.kind : 'format', message: message(e) } });
  }
});
`;

interface Job {
  id: number;
  message: Record<string, unknown>;
  path: string;
  what: string;
  resolve: (v: unknown) => void;
  reject: (e: Error) => void;
  /** when the request fails for running too long, and the timer that says so */
  deadlineMs: number;
  timer?: NodeJS.Timeout;
  late?: boolean;
}

/**
 * One reader thread for the process, started on first use and restarted after it dies. Requests run one at a
 * time, so a thread that dies is the fault of the one request it was running; only that request fails. The
 * thread keeps the process alive only while a request is waiting.
 */
class ReaderThread {
  private worker: Worker | null = null;
  private readonly queue: Job[] = [];
  private current: Job | null = null;
  private nextId = 1;

  /** Runs one request about the file at `path` (`bytes` long, which sets the request's deadline). */
  request<T>(message: Record<string, unknown>, path: string, bytes: number, what: string): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const deadlineMs = readDeadlineMs(bytes);
      const job = {
        id: this.nextId++,
        message,
        path,
        what,
        resolve: resolve as (v: unknown) => void,
        reject,
        deadlineMs,
      };
      this.queue.push(job);
      this.pump();
    });
  }

  /** Lets the thread drop an open file; nothing to do when the thread that opened it has gone. */
  close(key: number): void {
    this.worker?.postMessage({ op: 'close', key });
  }

  private start(): Worker {
    const w = new Worker(WORKER, {
      eval: true,
      workerData: { parquet: require.resolve('parquet-wasm') },
      execArgv: [],
    });
    w.on('message', (m: { id: number; value?: unknown; error?: { kind: string; message: string } }) => {
      const job = this.current;
      if (job === null || job.id !== m.id) return;
      this.current = null;
      clearTimeout(job.timer);
      if (m.error) job.reject(failure(job.path, m.error.kind, m.error.message));
      else job.resolve(m.value);
      this.pump();
    });
    const died = (why: string): void => {
      if (this.worker !== w) return;
      this.worker = null;
      const job = this.current;
      this.current = null;
      if (job) clearTimeout(job.timer);
      job?.reject(
        new FormatError(
          job.late
            ? `${job.path}: cannot ${job.what}: the Parquet decoder did not finish within ${(job.deadlineMs / 1000).toFixed(1)} s (a malformed file; KILN_DATA_READ_TIMEOUT_MS sets the limit)`
            : `${job.path}: cannot ${job.what}: the Parquet decoder failed on it (${why})`,
        ),
      );
      this.pump();
    };
    w.on('error', (e) => died(e.message));
    w.on('exit', (code) => died(`its thread exited with code ${code}`));
    return w;
  }

  private pump(): void {
    if (this.current !== null) return;
    const job = this.queue.shift();
    if (!job) {
      this.worker?.unref();
      return;
    }
    const w = (this.worker ??= this.start());
    w.ref();
    this.current = job;
    job.timer = setTimeout(() => {
      // the thread's exit fails the request (as late) and starts the next one on a fresh thread
      job.late = true;
      void w.terminate();
    }, job.deadlineMs);
    w.postMessage({ ...job.message, id: job.id });
  }
}

function failure(path: string, kind: string, message: string): Error {
  if (kind === 'argument') return new ArgumentError(`ParquetSource.open: ${message}`);
  if (kind === 'changed') return new ValidationError(`${path}: ${message}: open it again`);
  return new FormatError(message.startsWith('is not') ? `${path} ${message}` : `${path}: ${message}`);
}

let thread: ReaderThread | null = null;

/** The process's Parquet reader thread. */
export function readerThread(): ReaderThread {
  thread ??= new ReaderThread();
  return thread;
}
