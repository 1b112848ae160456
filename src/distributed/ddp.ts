// DistributedDataParallel, as PyTorch's: every rank holds a full replica; parameters and buffers start from rank
// 0's; after backward() every rank holds the gradients averaged over all ranks, so the optimizers take the same
// step and the replicas stay bit-identical.
//
// Gradients travel in buckets (25 MiB, the first 1 MiB), parameters in reverse registration order (roughly the
// order backward produces them). A hook in the autograd engine (onGradReady) fills a bucket as each gradient
// becomes final and starts its allreduce on the communication thread at once, while backward goes on with the
// earlier layers; the end of backward waits for all buckets and writes the averages back. Buckets start in index
// order on every rank, so the collectives always line up.
import { noGrad, isGradEnabled } from '../autograd/tape.js';
import { onBackwardEnd, onGradReady } from '../autograd/backward.js';
import { ArgumentError, DistributedError, ShapeError, checkOptions, describe, optionKeys } from '../errors.js';
import { Module } from '../nn/module.js';
import { shapeStr } from '../tensor/shape.js';
import { Tensor } from '../tensor/tensor.js';
import { loadAddon } from '../backends/native/binding.js';
import { keep } from '../engine/memory.js';
import { zeros } from '../ops/creation.js';
import { concat } from '../ops/movement.js';
import {
  allgatherObject,
  broadcast,
  call,
  init,
  isInitialized,
  mpi,
  ncclComm,
  rank as worldRank,
  size as worldSize,
} from './comm.js';

/** Options of DistributedDataParallel. */
export interface DDPOptions {
  /** bucket size in MiB (default 25, as PyTorch) */
  bucketCapMB?: number;
  /** size of the first bucket in MiB (default 1): the last layers' gradients start travelling early */
  firstBucketMB?: number;
  /** copy buffers (BatchNorm running statistics) from rank 0 before each training forward (default true) */
  broadcastBuffers?: boolean;
  /**
   * start each bucket's allreduce during backward as soon as it is full (default true); false waits for the end
   * of backward and reduces every bucket then (for measuring what overlap gains)
   */
  overlap?: boolean;
}

interface Bucket {
  params: Tensor[];
  offsets: number[];
  /** host staging (MPI) */
  data: Float32Array;
  /** device bucket in flight (NCCL): the gradients concatenated on the GPU and reduced there */
  device: Tensor | null;
  /** parameters whose gradient is in `data` this pass */
  filled: Set<Tensor>;
  handle: number;
  launched: boolean;
}

function positive(v: unknown, what: string): number {
  if (typeof v !== 'number' || !(v > 0) || !Number.isFinite(v))
    throw new ArgumentError(`DistributedDataParallel ${what} must be a positive number, got ${describe(v)}`);
  return v;
}

/**
 * Wraps a model for data-parallel training on every rank of the job. Use it where the model was used: forward,
 * backward, optimizer step, fit(). Its parameters, buffers and state dict are the wrapped module's, under the
 * same names (no 'module.' prefix), so checkpoints load into an unwrapped model.
 * @example
 * kn.distributed.init();
 * const ddp = new kn.distributed.DistributedDataParallel(model);
 * const loss = kn.nn.loss.crossEntropy(ddp.forward(x), y);
 * loss.backward(); // gradients now averaged over the ranks
 */
export class DistributedDataParallel extends Module {
  readonly module: Module;
  readonly bucketCapMB: number;
  readonly firstBucketMB: number;
  readonly broadcastBuffers: boolean;
  readonly overlap: boolean;
  private readonly buckets: Bucket[] = [];
  /** each parameter's bucket and its index in it */
  private readonly slotOf = new Map<Tensor, [Bucket, number]>();
  private readonly unhook: (() => void)[] = [];
  private syncEnabled = true;
  /** a forward that will be followed by a backward whose gradients must be reduced */
  private armed = false;
  private next = 0; // next bucket to launch
  /** gradients on a CUDA device, reduced by NCCL on the device (false: through host memory and MPI) */
  private nccl = false;
  /** why NCCL is not used for this model ('' when it is, or when the model is not on a CUDA device) */
  ncclReason = '';

  constructor(module: Module, opts: DDPOptions = {}) {
    super();
    if (!(module instanceof Module))
      throw new ArgumentError(`DistributedDataParallel wraps a kn.nn.Module, got ${describe(module)}`);
    if (module instanceof DistributedDataParallel)
      throw new ArgumentError('this module is already wrapped in DistributedDataParallel');
    checkOptions(
      opts,
      'DistributedDataParallel',
      optionKeys<DDPOptions>({ bucketCapMB: true, firstBucketMB: true, broadcastBuffers: true, overlap: true }),
    );
    this.module = module;
    this.bucketCapMB = positive(opts.bucketCapMB ?? 25, 'bucketCapMB');
    this.firstBucketMB = positive(opts.firstBucketMB ?? 1, 'firstBucketMB');
    this.broadcastBuffers = opts.broadcastBuffers ?? true;
    this.overlap = opts.overlap ?? true;
    if (!isInitialized()) init();
    this.training = module.training;

    const named = module.namedParameters();
    const seen = new Set<Tensor>();
    const params: [string, Tensor][] = [];
    for (const [n, p] of named) {
      if (seen.has(p)) continue; // a tied parameter is reduced once
      seen.add(p);
      if (!p.isContiguous()) throw new ArgumentError(`parameter '${n}' must be contiguous`);
      params.push([n, p]);
    }
    if (worldSize() === 1) return; // one process: nothing to align or reduce
    this.checkSameModel(params);
    this.syncInitialState(params);
    if (params.length > 0 && params.every(([, p]) => p.backend === 'cuda')) {
      const c = ncclComm();
      this.nccl = c.ok;
      this.ncclReason = c.reason;
    }
    this.makeBuckets(params.map(([, p]) => p));
  }

  /** Every rank must wrap the same architecture: compares names, shapes and dtypes with rank 0's. */
  private checkSameModel(params: [string, Tensor][]): void {
    const mine = [
      ...params.map(([n, p]) => `${n} ${shapeStr(p.shape)} ${p.dtype}`),
      ...this.module.namedBuffers().map(([n, b]) => `buffer ${n} ${shapeStr(b.shape)} ${b.dtype}`),
    ];
    const all = allgatherObject(mine);
    const ref = all[0]!;
    for (let r = 1; r < all.length; r++) {
      const other = all[r]!;
      if (other.length === ref.length && other.every((s, i) => s === ref[i])) continue;
      const i = other.findIndex((s, k) => s !== ref[k]);
      const at = i < 0 ? ref.length : i;
      throw new ShapeError(
        `DistributedDataParallel: rank ${r}'s model differs from rank 0's ` +
          `(${other.length} vs ${ref.length} parameters and buffers); first difference: ` +
          `rank 0 has '${ref[at] ?? '(nothing)'}', rank ${r} has '${other[at] ?? '(nothing)'}'. ` +
          'Every rank must build the same model.',
      );
    }
  }

  /** Parameters and buffers from rank 0, as PyTorch's DDP does at construction. */
  private syncInitialState(params: [string, Tensor][]): void {
    const total = params.reduce((s, [, p]) => s + p.size, 0);
    const flat = new Float32Array(total);
    let off = 0;
    for (const [, p] of params) {
      p.copyToFloat32(flat.subarray(off, off + p.size));
      off += p.size;
    }
    broadcast(flat, 0);
    off = 0;
    noGrad(() => {
      for (const [, p] of params) {
        p.copyFromFloat32(flat.subarray(off, off + p.size));
        off += p.size;
      }
    });
    this.syncBuffers();
  }

  private syncBuffers(): void {
    for (const [, b] of this.module.namedBuffers()) broadcast(b, 0);
  }

  private makeBuckets(params: Tensor[]): void {
    const rev = [...params].reverse();
    let cur: Tensor[] = [];
    let bytes = 0;
    const flush = (): void => {
      if (!cur.length) return;
      const offsets: number[] = [];
      let n = 0;
      for (const p of cur) {
        offsets.push(n);
        n += p.size;
      }
      const b: Bucket = {
        params: cur,
        offsets,
        data: this.nccl ? new Float32Array(0) : new Float32Array(n),
        device: null,
        filled: new Set(),
        handle: 0,
        launched: false,
      };
      cur.forEach((p, i) => this.slotOf.set(p, [b, i]));
      this.buckets.push(b);
      cur = [];
      bytes = 0;
    };
    for (const p of rev) {
      const cap = (this.buckets.length === 0 ? this.firstBucketMB : this.bucketCapMB) * 2 ** 20;
      cur.push(p);
      bytes += p.size * 4;
      if (bytes >= cap) flush();
    }
    flush();
    for (const p of params) this.unhook.push(onGradReady(p, (leaf) => this.gradReady(leaf)));
    this.unhook.push(onBackwardEnd(() => this.finish()));
  }

  private gradReady(p: Tensor): void {
    if (!this.armed) return;
    const [b, i] = this.slotOf.get(p)!;
    if (p.grad) {
      // host path: into the bucket now; NCCL path: the bucket is concatenated on the device at launch
      if (!this.nccl) p.grad.copyToFloat32(b.data.subarray(b.offsets[i]!, b.offsets[i]! + p.size));
      b.filled.add(p);
    }
    if (!this.overlap) return;
    // launch every leading bucket that is complete: buckets start in index order on every rank
    while (this.next < this.buckets.length) {
      const nb = this.buckets[this.next]!;
      if (nb.filled.size !== nb.params.length) break;
      this.launch(nb);
    }
  }

  /** Starts a bucket's allreduce (mean). A parameter whose gradient never became ready counts as zero. */
  private launch(b: Bucket): void {
    if (this.nccl) {
      // concatenate on the device and reduce there, ordered on kiln's stream after the kernels that made the grads;
      // kept: this runs inside backward (and the caller's tidy), whose scopes would free it before finish() reads it
      b.device = keep(
        noGrad(() =>
          concat(
            b.params.map((p) => (p.grad ?? zeros(p.shape, { dtype: p.dtype, backend: 'cuda' })).reshape([p.size])),
            0,
          ),
        ),
      );
      const addon = loadAddon().addon!;
      call(() => addon.ncclAllreduce(b.device!.storageHandle() as number, 1));
    } else {
      b.params.forEach((p, i) => {
        if (b.filled.has(p)) return;
        const seg = b.data.subarray(b.offsets[i]!, b.offsets[i]! + p.size);
        if (p.grad) p.grad.copyToFloat32(seg);
        else seg.fill(0);
      });
      const m = mpi()!;
      b.handle = call(() => m.allreduce(b.data, 1, 1));
    }
    b.launched = true;
    this.next++;
  }

  /** End of backward: launch what is left (parameters this pass did not reach count as zero), wait, write back. */
  private finish(): void {
    if (!this.armed) return;
    this.armed = false;
    while (this.next < this.buckets.length) this.launch(this.buckets[this.next]!);
    if (this.nccl) {
      noGrad(() => {
        for (const b of this.buckets) {
          const flat = b.device!;
          b.params.forEach((p, i) => {
            const g = keep(
              flat
                .slice([b.offsets[i]!], [b.offsets[i]! + p.size])
                .reshape(p.shape)
                .clone(),
            );
            p.grad?.dispose();
            p.grad = g;
          });
          flat.dispose();
          b.device = null;
          b.launched = false;
        }
      });
      return;
    }
    const m = mpi()!;
    for (const b of this.buckets) {
      const h = b.handle;
      b.handle = 0;
      b.launched = false;
      call(() => m.wait(h));
    }
    noGrad(() => {
      for (const b of this.buckets) {
        b.params.forEach((p, i) => {
          const v = b.data.subarray(b.offsets[i]!, b.offsets[i]! + p.size);
          if (p.grad) p.grad.copyFromFloat32(v);
          else if (v.some((x) => x !== 0)) {
            // unused here, used on another rank: give it the averaged gradient too
            const g = Tensor.fromHost(Float32Array.from(v), p.shape, 'float32', p.backendInstance);
            if (p.dtype === 'float32') p.grad = g;
            else {
              p.grad = g.cast(p.dtype);
              g.dispose();
            }
          }
        });
      }
    });
  }

  /** Runs the wrapped module. In training mode with gradients on, the next backward() reduces gradients. */
  forward(x: Tensor): Tensor {
    if (this.buckets.some((b) => b.launched))
      throw new DistributedError(
        'DistributedDataParallel: a previous backward() stopped part-way with gradients in flight; ' +
          'the ranks are out of step and the job cannot go on',
      );
    if (worldSize() > 1 && this.training && isGradEnabled()) {
      if (this.broadcastBuffers) this.syncBuffers();
      if (this.syncEnabled) {
        // the bucket state of a pass is reset here, where the pass begins
        this.armed = true;
        this.next = 0;
        for (const b of this.buckets) b.filled.clear();
      }
    }
    return this.module.call(x);
  }

  /**
   * Runs `fn` (forward and backward of micro-batches) without reducing gradients: they accumulate locally, and
   * the first backward after it reduces the sum. Gradient accumulation without a collective per micro-batch.
   */
  noSync<T>(fn: () => T): T {
    if (typeof fn !== 'function') throw new ArgumentError(`noSync takes a function, got ${describe(fn)}`);
    const prev = this.syncEnabled;
    this.syncEnabled = false;
    try {
      return fn();
    } finally {
      this.syncEnabled = prev;
    }
  }

  /** Stops reducing gradients for this wrapper (the model itself is untouched). */
  detachHooks(): void {
    for (const u of this.unhook.splice(0)) u();
  }

  // the wrapped module's members, under their own names
  override namedParameters(prefix = ''): [string, Tensor][] {
    return this.module.namedParameters(prefix);
  }
  override namedBuffers(prefix = ''): [string, Tensor][] {
    return this.module.namedBuffers(prefix);
  }
  override stateEntries(prefix = ''): [string, Tensor][] {
    return this.module.stateEntries(prefix);
  }
  override namedModules(prefix = ''): [string, Module][] {
    return this.module.namedModules(prefix);
  }
  override children(): Module[] {
    return this.module.children();
  }
  override namedChildren(): [string, Module][] {
    return this.module.namedChildren();
  }
  override train(mode = true): this {
    if (typeof mode !== 'boolean') throw new ArgumentError(`train(mode) takes a boolean, got ${describe(mode)}`);
    this.training = mode;
    this.module.train(mode);
    return this;
  }
  override toString(): string {
    return `DistributedDataParallel(rank ${worldRank()} of ${worldSize()}, ${this.buckets.length} buckets)\n  (module): ${String(this.module).replace(/\n/g, '\n  ')}`;
  }
}
