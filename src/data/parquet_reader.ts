// The thread that reads Parquet files for ParquetSource and parquetInfo. parquet-wasm's asynchronous reader runs
// its Rust future from promise jobs: a panic there (a damaged page, a file that changed under a read) is a trap
// that no caller can catch, and on the main thread it ended the process. Here it ends this thread: the request
// that was running gets a FormatError and the next request starts a fresh thread. A request that runs past its
// deadline (a decoder that never returns) is ended the same way (reader_thread.ts).
import { createRequire } from 'node:module';
import { ArgumentError, FormatError, ValidationError } from '../errors.js';
import { READER_LOOP_JS, ReaderThread, type FileStamp } from './reader_thread.js';

const require = createRequire(import.meta.url);

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
const P = require(workerData.parquet);
const open = new Map();
${FILE_RANGE_JS}
const changed = (f) => new Fail('changed', 'it could not be read as it was when opened (' + f.failure + ')');
async function openFile(key, path, expect) {
  const { handle, st } = await openHandle(path, expect);
  try {
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
async function run(m) {
  if (m.op === 'footer') {
    const { f, file } = await openFile(m.key, m.path, null);
    try {
      const meta = file.metadata(), fm = meta.fileMetadata();
      const schema = transferable(file.schema().intoIPCStream());
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
      ipc = transferable((await o.file.read(m.options)).intoIPCStream());
    } catch (e) {
      if (o.f.failure !== null) throw changed(o.f);
      throw new Fail('format', 'cannot read it: ' + message(e));
    }
    if (o.f.failure !== null) throw changed(o.f);
    return [ipc, [ipc.buffer]];
  }
  throw new Error('unknown request ' + m.op);
}
async function drop(o) {
  o.file.free();
  await o.f.handle.close().catch(() => undefined);
}
${READER_LOOP_JS}
`;

function failure(path: string, kind: string, message: string): Error {
  if (kind === 'argument') return new ArgumentError(`ParquetSource.open: ${message}`);
  if (kind === 'changed') return new ValidationError(`${path}: ${message}: open it again`);
  return new FormatError(message.startsWith('is not') ? `${path} ${message}` : `${path}: ${message}`);
}

let thread: ReaderThread | null = null;

/** The process's Parquet reader thread. */
export function readerThread(): ReaderThread {
  thread ??= new ReaderThread({
    script: WORKER,
    workerData: { parquet: require.resolve('parquet-wasm') },
    decoder: 'the Parquet decoder',
    failure,
  });
  return thread;
}
