// Dynamic batching: concurrent single requests are coalesced into one model call, the way serving systems
// (TF Serving's batcher, Triton's dynamic batcher) do it. A batch is dispatched when it is full or when its
// oldest request has waited maxDelayMs, whichever comes first. Every submitted request settles exactly once:
// with its own output row, or with a KilnError that says why (queue full, timed out, aborted, model failed,
// batcher closed).
import { ArgumentError, KilnError, checkOptions, describe, messageOf, optionKeys } from '../errors.js';

/** Base class of the errors a Batcher or model server rejects a request with. */
export class ServeError extends KilnError {}
/** The queue holds maxQueue requests already (backpressure: retry later). */
export class QueueFullError extends ServeError {}
/** The request did not finish within its timeout. */
export class RequestTimeoutError extends ServeError {}
/** The request's AbortSignal fired before it finished. */
export class RequestAbortedError extends ServeError {}
/** The batcher is closed (or closing) and takes no new requests. */
export class BatcherClosedError extends ServeError {}
/** The model threw, or returned the wrong number of outputs, for the batch this request was in. */
export class ModelError extends ServeError {
  constructor(message: string, cause?: unknown) {
    super(message);
    if (cause !== undefined) this.cause = cause;
  }
}

/** Batcher options. */
export interface BatcherOptions {
  /** Largest batch handed to the model (default 32). */
  maxBatchSize?: number;
  /** Longest a request waits for others to join its batch, in ms (default 2). */
  maxDelayMs?: number;
  /** Default per-request timeout in ms, queueing included (default: none). */
  timeoutMs?: number;
  /** Most requests waiting (not yet in a batch); more are rejected with QueueFullError (default 1024). */
  maxQueue?: number;
  /** Batches run at once (default 1: the next batch forms while one runs). */
  concurrency?: number;
  /** Called after every batch (for metrics). */
  onBatch?: (info: BatchInfo) => void;
}

/** What onBatch receives. */
export interface BatchInfo {
  size: number;
  /** time in the model, ms */
  ms: number;
  /** ms the oldest request of the batch waited before the batch started */
  waitMs: number;
  error?: unknown;
}

/** Per-request options. */
export interface SubmitOptions {
  signal?: AbortSignal;
  timeoutMs?: number;
}

/** Counters since the batcher was made. */
export interface BatcherStats {
  submitted: number;
  completed: number;
  failed: number;
  timedOut: number;
  aborted: number;
  rejected: number;
  batches: number;
}

interface Pending<I, O> {
  input: I;
  resolve: (o: O) => void;
  reject: (e: unknown) => void;
  settled: boolean;
  enqueuedAt: number;
  timer: ReturnType<typeof setTimeout> | undefined;
  signal: AbortSignal | undefined;
  onAbort: (() => void) | undefined;
}

function checkCount(v: unknown, what: string, min: number, allowInf = false): number {
  if (typeof v !== 'number' || Number.isNaN(v) || v < min || (!Number.isInteger(v) && !(allowInf && v === Infinity))) {
    throw new ArgumentError(
      `${what} must be an integer >= ${min}${allowInf ? ' or Infinity' : ''}, got ${describe(v)}`,
    );
  }
  return v;
}
function checkMs(v: unknown, what: string): number {
  if (typeof v !== 'number' || !(v >= 0))
    throw new ArgumentError(`${what} must be a number of milliseconds >= 0, got ${describe(v)}`);
  return v;
}

/**
 * Coalesces concurrent `submit(input)` calls into batched calls of `fn(inputs) -> outputs` (one output per
 * input, in order).
 * @example const b = new kn.serve.Batcher(async (xs: number[]) => xs.map((x) => 2 * x), { maxBatchSize: 4 }); const r = await Promise.all([1, 2, 3].map((x) => b.submit(x))); await b.close(); r // [2, 4, 6]
 */
export class Batcher<I, O> {
  private maxBatch: number;
  readonly maxDelayMs: number;
  readonly timeoutMs: number | undefined;
  readonly maxQueue: number;
  readonly concurrency: number;
  private readonly queue: Pending<I, O>[] = [];
  private running = 0;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private closing = false;
  private readonly idleWaiters: (() => void)[] = [];
  private readonly onBatch: ((info: BatchInfo) => void) | undefined;
  readonly stats: BatcherStats = {
    submitted: 0,
    completed: 0,
    failed: 0,
    timedOut: 0,
    aborted: 0,
    rejected: 0,
    batches: 0,
  };

  constructor(
    private readonly fn: (inputs: I[]) => Promise<O[]> | O[],
    opts: BatcherOptions = {},
  ) {
    if (typeof fn !== 'function')
      throw new ArgumentError(`Batcher needs a function (inputs[]) => outputs[], got ${describe(fn)}`);
    checkOptions(
      opts,
      'Batcher',
      optionKeys<BatcherOptions>({
        maxBatchSize: true,
        maxDelayMs: true,
        timeoutMs: true,
        maxQueue: true,
        concurrency: true,
        onBatch: true,
      }),
    );
    this.maxBatch = checkCount(opts.maxBatchSize ?? 32, 'maxBatchSize', 1);
    this.maxDelayMs = checkMs(opts.maxDelayMs ?? 2, 'maxDelayMs');
    this.timeoutMs = opts.timeoutMs === undefined ? undefined : checkMs(opts.timeoutMs, 'timeoutMs');
    this.maxQueue = checkCount(opts.maxQueue ?? 1024, 'maxQueue', 1, true);
    this.concurrency = checkCount(opts.concurrency ?? 1, 'concurrency', 1);
    if (opts.onBatch !== undefined && typeof opts.onBatch !== 'function')
      throw new ArgumentError(`onBatch must be a function, got ${describe(opts.onBatch)}`);
    this.onBatch = opts.onBatch;
  }

  /** Requests waiting for a batch. */
  get queueDepth(): number {
    return this.queue.length;
  }
  /** Batches in the model now. */
  get inFlight(): number {
    return this.running;
  }
  /** Largest batch handed to the model. */
  get maxBatchSize(): number {
    return this.maxBatch;
  }
  /** Changes the largest batch (the server sizes it for the device after warm-up); applies to the next batch. */
  setMaxBatchSize(n: number): void {
    this.maxBatch = checkCount(n, 'maxBatchSize', 1);
  }

  /** True once close() was called. */
  get closed(): boolean {
    return this.closing;
  }

  /** Queues one input; resolves with its output row, or rejects with a ServeError. */
  submit(input: I, opts: SubmitOptions = {}): Promise<O> {
    try {
      checkOptions(opts, 'submit', ['signal', 'timeoutMs']);
    } catch (e) {
      return Promise.reject(e as Error);
    }
    if (this.closing) {
      this.stats.rejected++;
      return Promise.reject(new BatcherClosedError('the batcher is closed and takes no new requests'));
    }
    const { signal } = opts;
    let timeoutMs: number | undefined;
    try {
      timeoutMs = opts.timeoutMs === undefined ? this.timeoutMs : checkMs(opts.timeoutMs, 'timeoutMs');
      if (signal !== undefined && !(signal instanceof AbortSignal))
        throw new ArgumentError(`signal must be an AbortSignal, got ${describe(signal)}`);
    } catch (e) {
      return Promise.reject(e);
    }
    if (signal?.aborted) {
      this.stats.aborted++;
      return Promise.reject(new RequestAbortedError('the request was aborted before it was queued'));
    }
    if (this.queue.length >= this.maxQueue) {
      this.stats.rejected++;
      return Promise.reject(
        new QueueFullError(
          `the queue is full (${this.queue.length} requests waiting, maxQueue ${this.maxQueue}); retry later`,
        ),
      );
    }
    this.stats.submitted++;
    return new Promise<O>((resolve, reject) => {
      const p: Pending<I, O> = {
        input,
        resolve,
        reject,
        settled: false,
        enqueuedAt: performance.now(),
        timer: undefined,
        signal,
        onAbort: undefined,
      };
      if (timeoutMs !== undefined && timeoutMs !== Infinity) {
        p.timer = setTimeout(() => {
          this.stats.timedOut++;
          this.fail(p, new RequestTimeoutError(`the request did not finish within ${timeoutMs} ms`));
        }, timeoutMs);
      }
      if (signal) {
        p.onAbort = () => {
          this.stats.aborted++;
          this.fail(p, new RequestAbortedError('the request was aborted'));
        };
        signal.addEventListener('abort', p.onAbort, { once: true });
      }
      this.queue.push(p);
      this.schedule();
    });
  }

  /**
   * Stops taking requests. With `drain` (default) the queued requests still run; otherwise they are rejected
   * with BatcherClosedError. Resolves when no batch is running.
   */
  async close(opts: { drain?: boolean } = {}): Promise<void> {
    checkOptions(opts, 'Batcher.close', ['drain']);
    if (opts.drain !== undefined && typeof opts.drain !== 'boolean')
      throw new ArgumentError(`Batcher.close: drain must be true or false, got ${describe(opts.drain)}`);
    this.closing = true;
    if (opts.drain === false) {
      for (const p of [...this.queue])
        this.fail(p, new BatcherClosedError('the batcher was closed before this request ran'));
    }
    this.schedule();
    if (this.running === 0 && this.queue.length === 0) return;
    await new Promise<void>((r) => this.idleWaiters.push(r));
  }

  private detach(p: Pending<I, O>): boolean {
    if (p.settled) return false;
    p.settled = true;
    if (p.timer) clearTimeout(p.timer);
    if (p.signal && p.onAbort) p.signal.removeEventListener('abort', p.onAbort);
    return true;
  }
  private fail(p: Pending<I, O>, e: unknown): void {
    if (!this.detach(p)) return;
    const i = this.queue.indexOf(p);
    if (i >= 0) this.queue.splice(i, 1);
    p.reject(e);
    this.checkIdle();
  }

  /** Starts batches while there is capacity and a batch is due; otherwise arms the delay timer. */
  private schedule(): void {
    while (this.running < this.concurrency && this.queue.length > 0) {
      const oldest = this.queue[0]!;
      const due =
        this.closing ||
        this.queue.length >= this.maxBatchSize ||
        performance.now() - oldest.enqueuedAt >= this.maxDelayMs;
      if (!due) {
        if (!this.timer) {
          const wait = Math.max(0, this.maxDelayMs - (performance.now() - oldest.enqueuedAt));
          this.timer = setTimeout(() => {
            this.timer = undefined;
            this.schedule();
          }, wait);
        }
        return;
      }
      if (this.timer) {
        clearTimeout(this.timer);
        this.timer = undefined;
      }
      void this.runBatch(this.queue.splice(0, this.maxBatchSize));
    }
    this.checkIdle();
  }

  private async runBatch(batch: Pending<I, O>[]): Promise<void> {
    this.running++;
    this.stats.batches++;
    const t0 = performance.now();
    const waitMs = t0 - batch[0]!.enqueuedAt;
    let error: unknown;
    try {
      let outs: O[];
      try {
        outs = await this.fn(batch.map((p) => p.input));
      } catch (e) {
        throw new ModelError(`the model failed on a batch of ${batch.length}: ${messageOf(e)}`, e);
      }
      if (!Array.isArray(outs) || outs.length !== batch.length) {
        throw new ModelError(
          `the model returned ${Array.isArray(outs) ? `${outs.length} outputs` : describe(outs)} for a batch of ${batch.length} inputs (expected one output per input)`,
        );
      }
      batch.forEach((p, i) => {
        if (this.detach(p)) {
          this.stats.completed++;
          p.resolve(outs[i]!);
        }
      });
    } catch (e) {
      error = e;
      for (const p of batch) {
        if (this.detach(p)) {
          this.stats.failed++;
          p.reject(e);
        }
      }
    } finally {
      this.running--;
      try {
        this.onBatch?.({
          size: batch.length,
          ms: performance.now() - t0,
          waitMs,
          ...(error !== undefined ? { error } : {}),
        });
      } catch {
        /* a metrics hook must not break serving */
      }
      this.schedule();
    }
  }

  private checkIdle(): void {
    if (this.running === 0 && this.queue.length === 0 && this.idleWaiters.length) {
      for (const w of this.idleWaiters.splice(0)) w();
    }
  }
}
