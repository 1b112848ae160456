// The model versions a server holds: the one it serves, the one it served before the last reload (for
// rollback), and the probation window after a reload during which a failing batch rolls back and is retried
// on the previous version. Versions are reference-counted by the batches running on them, so a swap never
// frees weights a running batch uses: a retired version is disposed when its last batch ends.
// No HTTP here: the server (server.ts) wires it to the batcher, the cache and the metrics.
import { ModelError, ServeError } from './batcher.js';
import type { RowModel } from './model.js';

/** A reload that was refused (the server keeps serving the version it had). */
export class ReloadError extends ServeError {}

/** One output row and the version that made it. */
export interface Served {
  output: Float32Array;
  version: string;
}

/** A loaded model and its version label. */
export interface ModelVersion {
  readonly rm: RowModel;
  readonly version: string;
  /** the class names of its outputs (a model file's kiln.classes, as kiln train saves for string labels) */
  readonly classes: readonly string[] | null;
}

interface Held extends ModelVersion {
  active: number;
  retired: boolean;
}

export interface VersionsOptions {
  /** Batches after a reload during which a model failure rolls back (default 20). */
  probationBatches?: number;
  /** Batch sizes the warm-up runs (every size the batcher can form). */
  warmupSizes: readonly number[];
  /** Called after every change of the served version (cache invalidation, metrics). */
  onSwap?: (version: string) => void;
  /** Called when a batch failed in probation and the previous version took over. */
  onProbationRollback?: (failed: string, restored: string, error: unknown) => void;
}

function sameShape(a: readonly number[] | null, b: readonly number[] | null): boolean {
  return !a || !b || (a.length === b.length && a.every((d, i) => d === b[i]));
}

export class ModelVersions {
  private cur: Held;
  private prev: Held | null = null;
  private probation = 0;

  constructor(
    first: ModelVersion,
    private readonly opts: VersionsOptions,
  ) {
    this.cur = { ...first, active: 0, retired: false };
  }

  /** The version being served. */
  get current(): ModelVersion {
    return this.cur;
  }
  /** The version a rollback would return to, if any. */
  get previous(): ModelVersion | null {
    return this.prev;
  }
  /** Batches left in the probation window of the last reload. */
  get probationLeft(): number {
    return this.probation;
  }

  /** Runs a batch on the served version; in probation, a failure rolls back and the batch is retried there. */
  async run(rows: Float32Array[]): Promise<Served[]> {
    const l = this.cur;
    try {
      const out = await this.runOn(l, rows);
      if (l === this.cur && this.probation > 0) this.probation--;
      return out;
    } catch (e) {
      const prev = this.prev;
      if (l === this.cur && this.probation > 0 && prev) {
        this.probation = 0;
        this.swap(prev, false);
        this.opts.onProbationRollback?.(l.version, prev.version, e);
        return this.runOn(this.cur, rows);
      }
      throw e;
    }
  }

  /**
   * Runs every warm-up batch size on zeros; throws ModelError unless the outputs are finite and keep one
   * shape. Resolves to the seconds it took.
   */
  async warm(v: ModelVersion = this.cur): Promise<number> {
    const held = v === this.cur ? this.cur : { ...v, active: 0, retired: false };
    const t0 = performance.now();
    const per = v.rm.inputShape.reduce((a, b) => a * b, 1);
    let shape: readonly number[] | null = null;
    for (const n of new Set(this.opts.warmupSizes)) {
      const outs = await this.runOn(
        held,
        Array.from({ length: n }, () => new Float32Array(per)),
      );
      for (const o of outs) {
        if (!o.output.every(Number.isFinite))
          throw new ModelError(`model ${v.version} gives non-finite outputs on the warm-up input (zeros)`);
      }
      if (shape && !sameShape(shape, v.rm.outputShape))
        throw new ModelError(`model ${v.version} changes its output shape with the batch size`);
      shape = v.rm.outputShape;
    }
    return (performance.now() - t0) / 1000;
  }

  /**
   * Makes a loaded candidate the served version once it warms up with finite outputs of the served output
   * shape, and opens the probation window; otherwise disposes it and throws ReloadError (serving goes on).
   */
  async promote(cand: ModelVersion): Promise<string> {
    try {
      await this.warm(cand);
      if (!sameShape(cand.rm.outputShape, this.cur.rm.outputShape)) {
        throw new ModelError(
          `its output shape [${cand.rm.outputShape?.join(', ')}] differs from the served model's [${this.cur.rm.outputShape?.join(', ')}]`,
        );
      }
    } catch (e) {
      cand.rm.dispose();
      throw new ReloadError(
        `reload of ${cand.version} refused, still serving ${this.cur.version}: ${(e as Error).message}`,
      );
    }
    this.swap({ ...cand, active: 0, retired: false }, true);
    this.probation = this.opts.probationBatches ?? 20;
    return this.cur.version;
  }

  /** Goes back to the version served before the last reload. */
  rollback(): string {
    if (!this.prev) throw new ReloadError(`no previous version to roll back to (serving ${this.cur.version})`);
    this.probation = 0;
    this.swap(this.prev, false);
    return this.cur.version;
  }

  /** Disposes every version now (the server has drained its batches). */
  dispose(): void {
    this.prev?.rm.dispose();
    this.cur.rm.dispose();
    this.prev = null;
  }

  private async runOn(l: Held, rows: Float32Array[]): Promise<Served[]> {
    l.active++;
    try {
      const outs = await l.rm.run(rows);
      return outs.map((output) => ({ output, version: l.version }));
    } finally {
      l.active--;
      if (l.retired && l.active === 0) l.rm.dispose();
    }
  }

  private retire(l: Held): void {
    l.retired = true;
    if (l.active === 0) l.rm.dispose();
  }

  private swap(next: Held, keepPrevious: boolean): void {
    if (this.prev && this.prev !== next) this.retire(this.prev);
    const old = this.cur;
    this.cur = next;
    this.cur.retired = false;
    this.prev = keepPrevious ? old : null;
    if (!keepPrevious) this.retire(old);
    this.opts.onSwap?.(this.cur.version);
  }
}
