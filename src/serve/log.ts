// Request log: one JSON line per served example (input, output, model version, latency) for audit and for
// drift monitoring. Appends through a write stream; a failing log disk never stops serving (the error is
// counted and logging stops). readRequestLog reads it back as tensors, ready for kn.data.driftReport.
import { createWriteStream, type WriteStream } from 'node:fs';
import { checkFilePath, readFileFor } from '../io/atomic.js';
import type { BackendName } from '../backends/backend.js';
import { ArgumentError, FormatError, checkOptions, describe } from '../errors.js';
import { tensor } from '../ops/creation.js';
import type { Tensor } from '../tensor/tensor.js';

/** One line of the request log. */
export interface RequestLogRecord {
  ts: string;
  id: string;
  version: string;
  input: number[];
  output: number[] | null;
  error: string | null;
  latencyMs: number;
  cached: boolean;
  /** a shadow version's answer (never returned to the client) */
  shadow?: boolean;
}

/** Appends records to a JSONL file (the request log, the audit log). */
export class JsonLines<T> {
  private stream: WriteStream | null;
  /** Lines written. */
  written = 0;
  /** The write error that stopped logging, if any. */
  failure: Error | null = null;
  constructor(
    readonly path: string,
    private readonly onError?: (e: Error) => void,
    what = 'the request log',
  ) {
    if (typeof path !== 'string' || path === '')
      throw new ArgumentError(`${what} needs a file path, got ${describe(path)}`);
    this.stream = createWriteStream(path, { flags: 'a' });
    this.stream.on('error', (e) => {
      this.failure = e;
      this.stream = null;
      this.onError?.(e);
    });
  }
  write(r: T): void {
    if (!this.stream) return;
    this.stream.write(JSON.stringify(r) + '\n');
    this.written++;
  }
  /** Flushes and closes the file. */
  async close(): Promise<void> {
    const s = this.stream;
    this.stream = null;
    if (!s) return;
    await new Promise<void>((resolve) => s.end(() => resolve()));
  }
}

/** Appends RequestLogRecords to a JSONL file. */
export class RequestLog extends JsonLines<RequestLogRecord> {}

/** What readRequestLog returns. */
export interface RequestLogData {
  /** [N, F] inputs of the successful records (flattened examples) */
  inputs: Tensor;
  /** [N, K] outputs of the same records */
  outputs: Tensor;
  versions: string[];
  ids: string[];
  /** records that carried an error instead of an output (not in the tensors) */
  errors: number;
  /** true when the last line was cut short (the server stopped mid-write); it is skipped */
  truncatedTail: boolean;
}

/**
 * Reads a request log back. Optionally only records of one model version (shadow answers are read only this way,
 * by their version). Malformed lines throw FormatError with their line number, except a cut-off last line, which is skipped and reported.
 */
export async function readRequestLog(
  path: string,
  opts: { version?: string; backend?: BackendName } = {},
): Promise<RequestLogData> {
  checkOptions(opts, 'readRequestLog', ['version', 'backend']);
  checkFilePath(path, 'readRequestLog');
  if (opts.version !== undefined && typeof opts.version !== 'string')
    throw new ArgumentError(`readRequestLog: version must be a string, got ${describe(opts.version)}`);
  const text = (await readFileFor(path, 'readRequestLog')).toString('utf8');
  const lines = text.split('\n');
  const ins: number[][] = [],
    outs: number[][] = [],
    versions: string[] = [],
    ids: string[] = [];
  let errors = 0,
    truncatedTail = false,
    F = -1,
    K = -1;
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    if (line === '') continue;
    let r: Partial<RequestLogRecord>;
    try {
      r = JSON.parse(line) as Partial<RequestLogRecord>;
    } catch {
      if (i === lines.length - 1) {
        truncatedTail = true;
        continue;
      }
      throw new FormatError(`${path}:${i + 1}: not a JSON line`);
    }
    if (r === null || typeof r !== 'object' || !Array.isArray(r.input) || typeof r.version !== 'string') {
      throw new FormatError(`${path}:${i + 1}: not a request-log record (needs input[] and version)`);
    }
    if (opts.version !== undefined ? r.version !== opts.version : r.shadow === true) continue;
    if (!Array.isArray(r.output)) {
      errors++;
      continue;
    }
    if (F < 0) {
      F = r.input.length;
      K = r.output.length;
    }
    if (
      r.input.length !== F ||
      r.output.length !== K ||
      !r.input.every((v) => typeof v === 'number') ||
      !r.output.every((v) => typeof v === 'number')
    ) {
      throw new FormatError(
        `${path}:${i + 1}: record has ${r.input.length} inputs and ${r.output.length} outputs of numbers expected, earlier records had ${F} and ${K}`,
      );
    }
    ins.push(r.input);
    outs.push(r.output);
    versions.push(r.version);
    ids.push(String(r.id ?? ''));
  }
  const b = opts.backend ? { backend: opts.backend } : {};
  const N = ins.length;
  return {
    inputs: tensor(Float32Array.from(ins.flat()), [N, Math.max(F, 0)], b),
    outputs: tensor(Float32Array.from(outs.flat()), [N, Math.max(K, 0)], b),
    versions,
    ids,
    errors,
    truncatedTail,
  };
}
