// A reader thread: a worker that reads files from outside for a source on the main thread (ParquetSource,
// ArrowSource), one request at a time, each with a deadline. A decoder that panics or exhausts its heap ends the
// thread, not the process: the request that was running gets a FormatError and the next starts a fresh thread.
// A request that runs past its deadline (a decoder that never returns) is ended the same way.
import { statSync } from 'node:fs';
import { Worker } from 'node:worker_threads';
import { FormatError } from '../errors.js';

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

/**
 * Reads parts 0..n-1 of a source in order with the next part's read started while the caller works on this one,
 * so at most two parts are in memory. A read the caller never awaits (it stopped early) is not an unhandled
 * rejection.
 */
export async function* readAhead<T>(n: number, read: (i: number) => Promise<T>): AsyncGenerator<T> {
  let next = n > 0 ? read(0) : null;
  for (let i = 0; i < n; i++) {
    const part = await next!;
    next = i + 1 < n ? read(i + 1) : null;
    next?.catch(() => undefined);
    yield part;
  }
}

/** What a file was when a source opened it: a read finds it changed when either differs. */
export interface FileStamp {
  size: number;
  mtimeMs: number;
}

/**
 * `u8` itself when it spans its whole buffer, else a copy that does: bytes that can be moved to another thread (a
 * transfer list moves the whole buffer, and a small Buffer is a view of Node's shared pool, which must not move).
 * The reader and writer threads' scripts carry the same function (its text).
 */
export function transferable(u8: Uint8Array): Uint8Array {
  return u8.byteOffset === 0 && u8.byteLength === u8.buffer.byteLength ? u8 : u8.slice();
}

/**
 * Script text both reader threads end with: `message(e)`, `transferable(u8)`, `Fail` (a refusal of a kind: 'argument', 'changed',
 * 'format', ...), `openHandle(path, expect)` (a file opened and checked) and the loop that answers requests one at
 * a time. The script before it defines `open` (a Map of the files it opened by key), `run(m)`, which resolves to
 * [value, transfer list], and `drop(o)`, which closes an entry of `open`.
 */
export const READER_LOOP_JS = `
const message = (e) => String((e && e.message) || e);
${transferable.toString()}
class Fail extends Error { constructor(kind, msg) { super(msg); this.kind = kind; } }
// the file at path opened: a regular file, unchanged since expect (a FileStamp) when that is given
async function openHandle(path, expect) {
  let handle;
  try {
    handle = await require('node:fs/promises').open(path);
  } catch (e) {
    throw new Fail('argument', 'cannot read ' + path + ': ' + message(e));
  }
  try {
    const st = await handle.stat();
    if (!st.isFile()) throw new Fail('argument', 'cannot read ' + path + ': it is ' + (st.isDirectory() ? 'a directory' : 'not a regular file'));
    if (expect && (st.size !== expect.size || st.mtimeMs !== expect.mtimeMs))
      throw new Fail('changed', 'it changed after it was opened (' + expect.size + ' bytes then, ' + st.size + ' now)');
    return { handle, st };
  } catch (e) {
    await handle.close().catch(() => undefined);
    throw e;
  }
}
// ReaderThread sends one request at a time (the next when this one answers), so a file is never opened twice at
// once nor read by two requests; a close is sent at once, though, and can come while a request on that file runs
// (a read ahead in flight). Such a file is dropped when its request ends, so none is cut off with its file freed
// under it, and one that opened the file anew does not leave it open.
const running = new Map(); // key -> requests on it not yet answered
const closing = new Set();
async function closeKey(key) {
  closing.delete(key);
  const o = open.get(key);
  open.delete(key);
  if (o) await drop(o);
}
parentPort.on('message', async (m) => {
  if (m.op === 'close') {
    if (running.has(m.key)) closing.add(m.key);
    else await closeKey(m.key);
    return;
  }
  running.set(m.key, (running.get(m.key) || 0) + 1);
  try {
    const [value, transfer] = await run(m);
    parentPort.postMessage({ id: m.id, value }, transfer);
  } catch (e) {
    parentPort.postMessage({ id: m.id, error: { kind: e instanceof Fail ? e.kind : 'format', message: message(e) } });
  } finally {
    const left = running.get(m.key) - 1;
    if (left > 0) running.set(m.key, left);
    else {
      running.delete(m.key);
      if (closing.has(m.key)) await closeKey(m.key);
    }
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

/** What a reader thread runs: its script, what it is given, and how its failures read. */
export interface ReaderScript {
  /** the worker's source (CommonJS, run with eval) */
  script: string;
  workerData: Record<string, unknown>;
  /** what decodes the files, for messages: 'the Parquet decoder' */
  decoder: string;
  /** the error for a request the thread refused: `kind` is the thread's ('argument', 'changed', 'format') */
  failure(path: string, kind: string, message: string): Error;
}

/**
 * A reader thread, started on first use and restarted after it dies. Requests run one at a time, so a thread
 * that dies is the fault of the one request it was running; only that request fails. The thread keeps the
 * process alive only while a request is waiting.
 */
export class ReaderThread {
  private worker: Worker | null = null;
  private readonly queue: Job[] = [];
  private current: Job | null = null;
  private nextId = 1;

  constructor(private readonly spec: ReaderScript) {}

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
    const w = new Worker(this.spec.script, { eval: true, workerData: this.spec.workerData, execArgv: [] });
    w.on('message', (m: { id: number; value?: unknown; error?: { kind: string; message: string } }) => {
      const job = this.current;
      // a reply that comes after the deadline fired is dropped: the thread is ending, and its exit fails the job
      if (job === null || job.id !== m.id || job.late) return;
      this.current = null;
      clearTimeout(job.timer);
      if (m.error) job.reject(this.spec.failure(job.path, m.error.kind, m.error.message));
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
            ? `${job.path}: cannot ${job.what}: ${this.spec.decoder} did not finish within ${(job.deadlineMs / 1000).toFixed(1)} s (a malformed file; KILN_DATA_READ_TIMEOUT_MS sets the limit)`
            : `${job.path}: cannot ${job.what}: ${this.spec.decoder} failed on it (${why})`,
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
