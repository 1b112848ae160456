// ArrowSource: an Arrow IPC file (file or stream format) read a record batch at a time, so a file larger than
// memory can be scored, converted or indexed. The reading runs on a reader thread of its own (reader_thread.ts):
// apache-arrow loops forever or exhausts its heap on some damaged files, and there that is a FormatError after a
// deadline, never a hang or a dead process. The thread checks every batch it reads (TABLE_CHECK_JS) before the batch
// crosses to the caller as Arrow IPC.
import * as A from 'apache-arrow';
import { ArgumentError, FormatError, ValidationError, checkOptions, describe, messageOf } from '../errors.js';
import { checkReadableFile } from '../io/atomic.js';
import { ARROW_PATH, COMPACT_JS, TABLE_CHECK_JS, columnNameProblem, type ArrowFormat } from './arrow.js';
import { READER_LOOP_JS, ReaderThread, fileBytes, readAhead, type FileStamp } from './reader_thread.js';

/**
 * Rows of each record batch and the columns of an Arrow IPC file, from its footer (a stream's message headers)
 * and the batches' headers.
 */
export interface ArrowFileInfo {
  rows: number;
  batches: number[];
  /** 'file' (the IPC file format, with a footer) or 'stream' (the IPC stream format, indexed at open) */
  format: ArrowFormat;
  columns: { name: string; type: string; nullable: boolean }[];
}

/** Options of ArrowSource.read and ArrowSource.chunks. */
export interface ArrowReadOptions {
  /** only these columns, in this order (default all) */
  columns?: readonly string[];
}

/** What the thread sends back when it opens a file. */
interface OpenReply {
  stamp: FileStamp;
  batches: number[];
  format: ArrowFormat;
  /** the schema, as the Arrow IPC stream of an empty table */
  schema: Uint8Array;
}

/**
 * Script text that reads an Arrow IPC stream a record batch at a time, shared by ArrowSource's thread and
 * StreamingDataset's: `openStream(handle, size)` indexes it (every message's place, kind and size from its header
 * alone; bodies are skipped) and `readStreamBatch(o, i)` reads batch i. Batches read in order come from one
 * apache-arrow stream reader, which keeps the dictionaries decoded; any other batch starts a reader there, fed the
 * schema and the dictionary messages it depends on (for each dictionary, its last replacement and the deltas
 * since). Refusals are Errors that say what is wrong and where. Needs `A` (apache-arrow) in scope.
 */
export const ARROW_STREAM_JS = `
const END_OF_STREAM = Buffer.from([255, 255, 255, 255, 0, 0, 0, 0]);
const MAX_META = 1 << 26;
async function readAt(handle, pos, n) {
  const buf = Buffer.alloc(n);
  const { bytesRead } = await handle.read(buf, 0, n, pos);
  if (bytesRead < n) throw new Error('it ends inside the message at byte ' + pos);
  return buf;
}
// every message of an IPC stream: { pos, end, kind ('schema', 'dictionary', 'batch'), id, delta, rows }
async function indexStream(handle, size) {
  const messages = [];
  let pos = 0;
  while (pos < size) {
    const head = await readAt(handle, pos, Math.min(8, size - pos));
    if (head.length < 4) throw new Error('it ends inside the message at byte ' + pos);
    let skip = 4, len = head.readInt32LE(0);
    if (len === -1) {
      if (head.length < 8) throw new Error('it ends inside the message at byte ' + pos);
      skip = 8;
      len = head.readInt32LE(4);
    }
    if (len === 0) break; // the end-of-stream marker
    if (len < 0 || len > MAX_META || pos + skip + len > size)
      throw new Error('the message at byte ' + pos + ' claims ' + len + ' bytes of metadata (the file has ' + (size - pos - skip) + ' left)');
    let m;
    try {
      m = A.Message.decode(await readAt(handle, pos + skip, len));
    } catch (e) {
      throw new Error('the message at byte ' + pos + ' cannot be read: ' + String((e && e.message) || e));
    }
    const body = Number(m.bodyLength);
    const end = pos + skip + len + body;
    if (!(Number.isSafeInteger(body) && body >= 0 && end <= size))
      throw new Error('the message at byte ' + pos + ' claims a body of ' + m.bodyLength + ' bytes (the file has ' + (size - pos - skip - len) + ' left)');
    const first = messages.length === 0;
    if (m.headerType === A.MessageHeader.Schema) {
      if (!first) throw new Error('it has a second schema at byte ' + pos);
      messages.push({ pos, end, kind: 'schema' });
    } else if (first) throw new Error('it does not start with a schema');
    else if (m.headerType === A.MessageHeader.DictionaryBatch) {
      const h = m.header();
      messages.push({ pos, end, kind: 'dictionary', id: Number(h.id), delta: !!h.isDelta });
    } else if (m.headerType === A.MessageHeader.RecordBatch) {
      const rows = Number(m.header().length);
      if (!(Number.isSafeInteger(rows) && rows >= 0))
        throw new Error('the record batch at byte ' + pos + ' has ' + m.header().length + ' rows');
      messages.push({ pos, end, kind: 'batch', rows });
    } else throw new Error('the message at byte ' + pos + ' is a ' + A.MessageHeader[m.headerType] + ', not a schema, dictionary or record batch');
    pos = end;
  }
  if (messages.length === 0) throw new Error('it holds no schema');
  return messages;
}
// the dictionary messages record batch message j depends on, in order: for each dictionary, its last replacement
// and the deltas after it. Only a restart needs them; the walk goes on from the last restart when that was earlier
// in the file, so restarts in file order (a shuffle's sorted units) walk the index once.
function dictionariesFor(o, j) {
  if (o.walk.upTo > j) o.walk = { upTo: 0, byId: new Map() };
  for (let k = o.walk.upTo; k < j; k++) {
    const d = o.messages[k];
    if (d.kind !== 'dictionary') continue;
    if (d.delta && o.walk.byId.has(d.id)) o.walk.byId.get(d.id).push(k);
    else o.walk.byId.set(d.id, [k]);
  }
  o.walk.upTo = j;
  return [...o.walk.byId.values()].flat().sort((a, b) => a - b);
}
// an IPC stream indexed: its messages, where its record batches are, their row counts, and the dictionary walk
async function openStream(handle, size) {
  const messages = await indexStream(handle, size);
  const batchAt = [], dictAt = [], seen = new Set();
  // whether the dictionaries only grow: each id's first message, then deltas (no replacement). Then the entries a
  // batch's indices name are where any later state of the dictionaries has them, as the file format's reader reads
  // every batch with the final dictionaries.
  let grows = true;
  messages.forEach((m, k) => {
    if (m.kind === 'batch') batchAt.push(k);
    if (m.kind !== 'dictionary') return;
    dictAt.push(k);
    if (seen.has(m.id) && !m.delta) grows = false;
    seen.add(m.id);
  });
  const schemaBytes = await readAt(handle, messages[0].pos, messages[0].end - messages[0].pos);
  return { messages, batchAt, dictAt, grows, batches: batchAt.map((k) => messages[k].rows), walk: { upTo: 0, byId: new Map() }, schemaBytes, size, seq: null };
}
// an Arrow IPC file or stream opened through handle, told apart by the file format's ARROW1 magic: a file gives
// { reader } (apache-arrow's reader, its footer and dictionaries read), a stream what openStream gives
async function openArrow(handle, size) {
  const head = Buffer.alloc(6);
  const { bytesRead } = await handle.read(head, 0, 6, 0);
  if (bytesRead === 6 && head.toString('latin1') === 'ARROW1') {
    const reader = await A.RecordBatchReader.from(handle);
    await reader.open();
    if (!reader.isFile() || !reader.footer) throw new Error('it has no footer');
    return { reader };
  }
  try {
    return await openStream(handle, size);
  } catch (e) {
    // a stream starts with the continuation marker (or, written by old writers, its schema's length)
    if (bytesRead >= 4 && head.readInt32LE(0) !== -1)
      throw new Error('it is neither an Arrow IPC file (it does not start with ARROW1) nor an IPC stream (' + String((e && e.message) || e) + ')');
    throw e;
  }
}
// the file's bytes from pos to its end, a MiB at a time, through the handle
async function* fileFrom(handle, pos, size) {
  while (pos < size) {
    const n = Math.min(1 << 20, size - pos);
    const buf = await readAt(handle, pos, n);
    pos += n;
    yield buf;
  }
}
async function* joined(first, rest) {
  yield first;
  yield* rest;
}
// record batch number batch of an opened stream (o holds what openStream returned, and its handle) as a table.
// Batches read in order come from one apache-arrow stream reader, which keeps the dictionaries decoded (each delta
// appended once). A batch a little ahead of that reader is read on to (the batches between decoded and dropped:
// StreamingDataset's threads take every other batch or so), when that skips at most 8 batches or no more than a
// restart would feed dictionary messages; any other batch starts a new reader there, fed the schema and the
// dictionary messages that batch depends on, then the file from the batch on. Where the dictionaries only grow
// (o.grows, found at open), a restart instead starts from the furthest dictionaries any reader decoded (o.dicts:
// apache-arrow's reader keeps them in the Map its dictionaries getter gives, whose vectors are never changed in
// place), fed only the deltas after those; such a reader serves batches up to where those dictionaries were taken
// (seq.goodTo), and no further.
async function readStreamBatch(o, batch) {
  let seq = o.seq;
  o.seq = null; // until this read succeeds
  // how far ahead reading on beats a restart: a few batches, or as many as the dictionary messages a restart would
  // decode when it cannot start from decoded dictionaries
  const ahead = () => (o.grows && o.dicts ? 8 : Math.max(8, dictionariesFor(o, o.batchAt[batch]).length));
  if (seq && !(batch >= seq.next && batch - seq.next <= ahead() && o.batchAt[batch] <= seq.goodTo)) seq = null;
  if (!seq) {
    const j = o.batchAt[batch];
    const parts = [o.schemaBytes];
    const grown = o.grows && o.dicts ? o.dicts : null;
    const deps = grown ? o.dictAt.filter((k) => k > grown.upTo && k < j) : dictionariesFor(o, j);
    for (const k of deps) parts.push(await readAt(o.handle, o.messages[k].pos, o.messages[k].end - o.messages[k].pos));
    const reader = await A.RecordBatchReader.from(joined(Buffer.concat(parts), fileFrom(o.handle, o.messages[j].pos, o.size)));
    await reader.open();
    if (grown) for (const [id, v] of grown.map) reader.dictionaries.set(id, v);
    // Given dictionaries from further on than the batch, the reader appends the deltas after the batch again, after
    // entries it already has: the batches up to where those dictionaries were taken read right (their indices name
    // entries before the repeats), later ones would not, and its dictionaries are no state of the stream's.
    const beyond = grown !== null && grown.upTo > j;
    seq = { reader, next: batch, goodTo: beyond ? grown.upTo : Infinity, exact: !beyond };
  }
  for (;;) {
    const r = await seq.reader.next();
    if (r.done) throw new Error('the stream ends before record batch ' + seq.next);
    if (r.value.numRows !== o.batches[seq.next])
      throw new Error('record batch ' + seq.next + ' has ' + r.value.numRows + ' rows; its header said ' + o.batches[seq.next]);
    if (seq.next++ === batch) {
      // the dictionaries as of this batch: every dictionary message before it applied
      const at = o.batchAt[batch];
      if (seq.exact && o.grows && (!o.dicts || o.dicts.upTo < at)) o.dicts = { upTo: at, map: new Map(seq.reader.dictionaries) };
      o.seq = seq;
      return new A.Table(r.value);
    }
  }
}
`;

// The thread keeps each open file's handle and what it learned at open. A file-format file keeps apache-arrow's
// reader (which read the footer and the dictionaries once), and row counts come from each batch's header, read
// without its body. A stream-format file has no footer, so the thread indexes it at open (ARROW_STREAM_JS). A
// batch is read through the handle opened, so a new file renamed over the path (an atomic write) is not seen; one
// changed in place is refused. A batch goes back with each dictionary column holding only the entries it uses
// (compactDictionaries): a file's dictionary grown by deltas would otherwise ride along, whole and in as many
// chunks, on every batch.
const WORKER = `
const { parentPort, workerData } = require('node:worker_threads');
const A = require(workerData.arrow);
const open = new Map();
${TABLE_CHECK_JS}
${COMPACT_JS}
${ARROW_STREAM_JS}
async function batchRows(handle, size, footer, i) {
  const b = footer.getRecordBatch(i);
  if (!b || !(b.metaDataLength > 8 && b.metaDataLength <= MAX_META && b.offset >= 0 && b.offset + b.metaDataLength <= size))
    throw new Fail('format', 'record batch ' + i + ' points outside the file');
  const buf = await readAt(handle, b.offset, b.metaDataLength);
  const start = buf.readInt32LE(0) === -1 ? 8 : 4;
  const m = A.Message.decode(buf.subarray(start));
  if (m.headerType !== A.MessageHeader.RecordBatch) throw new Fail('format', 'block ' + i + ' is not a record batch');
  const n = Number(m.header().length);
  if (!(Number.isSafeInteger(n) && n >= 0)) throw new Fail('format', 'record batch ' + i + ' has ' + n + ' rows');
  return n;
}
async function openFile(key, path, expect) {
  const { handle, st } = await openHandle(path, expect);
  try {
    const o = { handle, size: st.size, mtimeMs: st.mtimeMs };
    try {
      Object.assign(o, await openArrow(handle, st.size));
    } catch (e) {
      throw new Fail('format', message(e));
    }
    if (o.reader) {
      o.batches = [];
      for (let i = 0; i < o.reader.footer.numRecordBatches; i++) o.batches.push(await batchRows(handle, st.size, o.reader.footer, i));
      o.schema = narrowSchema(o.reader.schema);
    } else {
      try {
        o.schema = narrowSchema(A.tableFromIPC(Buffer.concat([o.schemaBytes, END_OF_STREAM])).schema);
      } catch (e) {
        throw new Fail('format', 'its schema cannot be read: ' + message(e));
      }
    }
    open.set(key, o);
    return o;
  } catch (e) {
    await handle.close().catch(() => undefined);
    throw e;
  }
}
async function run(m) {
  if (m.op === 'open') {
    const o = await openFile(m.key, m.path, null);
    let schema;
    try {
      schema = transferable(A.tableToIPC(new A.Table(o.schema), 'stream'));
      A.tableFromIPC(schema); // what the caller will decode decodes here first (a bad type throws here)
    } catch (e) {
      open.delete(m.key);
      await o.handle.close().catch(() => undefined);
      throw new Fail('format', 'its schema cannot be read: ' + message(e));
    }
    const format = o.reader ? 'file' : 'stream';
    return [{ stamp: { size: o.size, mtimeMs: o.mtimeMs }, batches: o.batches, format, schema }, [schema.buffer]];
  }
  if (m.op === 'read') {
    const o = open.get(m.key) ?? (await openFile(m.key, m.path, m.stamp));
    const st = await o.handle.stat().catch((e) => {
      throw new Fail('changed', 'it could not be read as it was when opened (' + message(e) + ')');
    });
    if (st.size !== o.size || st.mtimeMs !== o.mtimeMs)
      throw new Fail('changed', 'it changed after it was opened (' + o.size + ' bytes then, ' + st.size + ' now)');
    let ipc;
    try {
      let t;
      if (o.reader) {
        const b = await o.reader.readRecordBatch(m.batch);
        if (!b) throw new Error('it cannot be found');
        t = new A.Table(b);
      } else t = await readStreamBatch(o, m.batch);
      if (m.columns) t = t.select(m.columns);
      const p = tableProblem(A, t);
      if (p) throw new Error(p);
      // each dictionary column with the entries this batch uses, not the file's whole dictionary
      t = compactDictionaries(t);
      ipc = transferable(A.tableToIPC(t, 'stream'));
      // the batch as the caller will decode it: buffers shorter than the lengths they were written with throw here
      if (A.tableFromIPC(ipc).numRows !== t.numRows) throw new Error('its rows do not survive a copy');
    } catch (e) {
      throw new Fail('format', 'cannot read record batch ' + m.batch + ': ' + message(e));
    }
    return [ipc, [ipc.buffer]];
  }
  throw new Error('unknown request ' + m.op);
}
async function drop(o) {
  await o.handle.close().catch(() => undefined);
}
${READER_LOOP_JS}
`;

function failure(path: string, kind: string, message: string): Error {
  if (kind === 'argument') return new ArgumentError(`ArrowSource.open: ${message}`);
  if (kind === 'changed') return new ValidationError(`${path}: ${message}: open it again`);
  return new FormatError(`${path} is not a readable Arrow IPC file: ${message}`);
}

/**
 * What the reader thread sent, decoded (it decoded the same bytes first, so this throws only if the two differ:
 * a FormatError all the same).
 */
function decoded(ipc: Uint8Array, path: string, what: string): A.Table {
  try {
    return A.tableFromIPC(ipc);
  } catch (e) {
    throw new FormatError(`${path} is not a readable Arrow IPC file: cannot read ${what}: ${messageOf(e)}`);
  }
}

let thread: ReaderThread | null = null;
/** The process's Arrow reader thread. */
function arrowThread(): ReaderThread {
  thread ??= new ReaderThread({
    script: WORKER,
    workerData: { arrow: ARROW_PATH },
    decoder: 'the Arrow reader',
    failure,
  });
  return thread;
}

let nextKey = 1;
/** Tells the reader thread to drop a source nobody closed. */
const unclosed = new FinalizationRegistry<number>((key) => arrowThread().close(key));

/**
 * An open Arrow IPC file whose layout is read once and whose record batches are read on demand (only their bytes
 * and the dictionaries they use). A file-format file (as kn.data.writeArrow and writeArrowStream write it) is laid
 * out by its footer; a stream-format file, which has none, by a pass over its message headers at open (the bodies
 * are skipped), so it too is read a batch at a time, in any order.
 * @example kn.data.writeArrow('.kiln-tmp-as.arrow', { v: kn.arange(0, 5) }); const src = await kn.data.ArrowSource.open('.kiln-tmp-as.arrow'); const n = (await src.read(0)).numRows; src.close(); n // 5
 */
export class ArrowSource {
  private closed = false;
  private constructor(
    readonly path: string,
    readonly info: ArrowFileInfo,
    /** the columns and their types (and the file's schema metadata) */
    readonly schema: A.Schema,
    private readonly key: number,
    private readonly stamp: FileStamp,
  ) {
    unclosed.register(this, key, this);
  }

  /**
   * Opens `path`: reads the footer (a stream's message headers), the dictionaries and each record batch's
   * header (its row count), not the data. The source keeps reading the file it opened: a file written over the path since (an atomic rename) is
   * not seen, and one changed in place makes `read` throw a ValidationError.
   */
  static async open(path: string): Promise<ArrowSource> {
    checkReadableFile(path, 'ArrowSource.open');
    const key = nextKey++;
    const r = await arrowThread().request<OpenReply>(
      { op: 'open', key, path },
      path,
      fileBytes(path),
      'read its layout',
    );
    const schema = decoded(r.schema, path, 'its schema').schema;
    const bad = columnNameProblem(schema.fields);
    if (bad) {
      arrowThread().close(key);
      throw new FormatError(`${path}: ${bad}`);
    }
    const info = {
      rows: r.batches.reduce((a, b) => a + b, 0),
      batches: r.batches,
      format: r.format,
      columns: schema.fields.map((f) => ({ name: f.name, type: String(f.type), nullable: f.nullable })),
    };
    return new ArrowSource(path, info, schema, key, r.stamp);
  }

  /**
   * Record batch `batch` (optionally only some columns) as a table; a dictionary column's dictionary holds the
   * entries this batch uses, in the file's dictionary order.
   */
  async read(batch: number, opts: ArrowReadOptions = {}): Promise<A.Table> {
    if (this.closed) throw new ArgumentError(`ArrowSource.read: ${this.path} was closed`);
    if (!Number.isInteger(batch) || batch < 0)
      throw new ArgumentError(`ArrowSource.read: batch must be a record batch index, got ${describe(batch)}`);
    if (batch >= this.info.batches.length)
      throw new ValidationError(
        `${this.path} has ${this.info.batches.length} record batches; record batch ${batch} does not exist`,
      );
    return this.readChecked(batch, this.columnsOf(opts, 'ArrowSource.read'));
  }

  /**
   * Every record batch in file order (empty ones too), optionally only some columns; the next batch is read
   * ahead on the reader thread while the caller works on this one, so memory holds two batches at most.
   * @example kn.data.writeArrow('.kiln-tmp-ac.arrow', { v: kn.arange(0, 5) }); const src = await kn.data.ArrowSource.open('.kiln-tmp-ac.arrow'); let n = 0; for await (const t of src.chunks({ columns: ['v'] })) n += t.numRows; src.close(); n // 5
   */
  async *chunks(opts: ArrowReadOptions = {}): AsyncGenerator<A.Table> {
    const columns = this.columnsOf(opts, 'ArrowSource.chunks');
    yield* readAhead(this.info.batches.length, (b) => {
      if (this.closed) throw new ArgumentError(`ArrowSource.chunks: ${this.path} was closed`);
      return this.readChecked(b, columns);
    });
  }

  /** Record batch `batch` (an index in range) with the checked columns, read on the reader thread. */
  private async readChecked(batch: number, columns: string[] | undefined): Promise<A.Table> {
    // after the reader thread died, the next one opens the file again, provided it has not changed since
    const ipc = await arrowThread().request<Uint8Array>(
      { op: 'read', key: this.key, path: this.path, stamp: this.stamp, batch, columns },
      this.path,
      this.stamp.size,
      `read record batch ${batch}`,
    );
    return decoded(ipc, this.path, `record batch ${batch}`);
  }

  /** Closes the file. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    unclosed.unregister(this);
    arrowThread().close(this.key);
  }

  /** The checked `columns` option: names of this file's columns, each once. */
  private columnsOf(opts: ArrowReadOptions, who: string): string[] | undefined {
    checkOptions(opts, who, ['columns']);
    const cols: unknown = opts.columns;
    if (cols === undefined) return undefined;
    if (!Array.isArray(cols) || cols.some((c) => typeof c !== 'string'))
      throw new ArgumentError(`${who}: columns must be an array of column names, got ${describe(cols)}`);
    const names = this.info.columns.map((c) => c.name);
    const seen = new Set<string>();
    for (const c of cols as string[]) {
      if (!names.includes(c))
        throw new ValidationError(`${this.path} has no column '${c}'; it has ${names.join(', ')}`);
      if (seen.has(c)) throw new ArgumentError(`${who}: column '${c}' is asked for twice`);
      seen.add(c);
    }
    return [...seen];
  }
}

/**
 * The layout of an Arrow IPC file (file or stream format): its columns and the row count of every record batch,
 * read from the footer (a stream's message headers) and each batch's header without reading the data (on the
 * reader thread, with a deadline: a damaged file is a FormatError, never a hang).
 * @example kn.data.writeArrow('.kiln-tmp-ai.arrow', { v: kn.arange(0, 5) }); (await kn.data.arrowFileInfo('.kiln-tmp-ai.arrow')).batches // [5]
 */
export async function arrowFileInfo(path: string): Promise<ArrowFileInfo> {
  const src = await ArrowSource.open(path);
  src.close();
  return src.info;
}
