// The process group of kn.distributed: init from the launcher's environment, rank/size, and collectives over
// MPI through the second addon kiln_mpi.node (native/dist/mpi.cc). Without a launcher, the world is this one
// process and every collective is the identity, so the same script runs with `node` and with `kiln launch`.
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { availableParallelism } from 'node:os';
import { loadAddon } from '../backends/native/binding.js';
import { locate } from '../backends/native/locate.js';
import { ArgumentError, DistributedError, KilnError, checkOptions, describe, optionKeys } from '../errors.js';
import { isTensor, Tensor } from '../tensor/tensor.js';

/** Reductions of allreduce: 'mean' is the sum divided by the world size. */
export type ReduceOp = 'sum' | 'mean' | 'max' | 'min';
const REDUCE_OPS: Record<ReduceOp, number> = { sum: 0, mean: 1, max: 2, min: 3 };

/** Typed arrays the collectives take directly. */
export type CommArray = Float32Array | Float64Array | Int32Array | Uint8Array;

/** Where this process stands in the job. */
export interface DistInfo {
  rank: number;
  size: number;
  /** rank among the processes on this host */
  localRank: number;
  localSize: number;
  /** the MPI library's version line ('' in a one-process world without MPI) */
  library: string;
}

/** Options of init. */
export interface InitOptions {
  /**
   * How the communication thread waits inside a collective: 'spin' (default; lowest latency, one core busy while
   * a peer is late) or 'backoff' (sleeps between polls; a few percent of a core, higher small-message latency).
   */
  poll?: 'spin' | 'backoff';
  /** messages are reduced in pieces of this many MiB (default 16) */
  chunkMB?: number;
}

interface MpiAddon {
  init(chunkBytes: number, backoff: boolean, termMessage: boolean): DistInfo & { threadLevel: number };
  allreduce(a: CommArray, op: number, mode: 0): void;
  allreduce(a: CommArray, op: number, mode: 1): number;
  allreduce(a: CommArray, op: number, mode: 2): Promise<void>;
  broadcast(a: CommArray, root: number, mode: 0): void;
  broadcast(a: CommArray, root: number, mode: 2): Promise<void>;
  allgather(send: CommArray, recv: CommArray, mode: 0): void;
  barrier(mode: 0): void;
  barrier(mode: 2): Promise<void>;
  wait(handle: number): void;
  finalize(): void;
  abort(code: number): never;
  abandon(): void;
  state(): { initialized: boolean; finalized: boolean; pending: number };
}

let loaded: { addon: MpiAddon | null; reason: string } | undefined;

/** Path of kiln_mpi.node: KILN_MPI_ADDON_PATH, a source build, or the package's prebuilt binary (locate.ts). */
export function mpiAddonPath(): string {
  const l = locate('kiln_mpi');
  return l.path ?? l.tried[0] ?? '';
}

function loadMpi(): { addon: MpiAddon | null; reason: string } {
  if (loaded) return loaded;
  const path = mpiAddonPath();
  if (!existsSync(path)) {
    loaded = {
      addon: null,
      reason:
        `kiln has no MPI addon here (${path} is missing): install an MPI ` +
        `(Debian/Ubuntu: apt-get install -y libopenmpi-dev openmpi-bin), then run 'npx kiln build --mpi'`,
    };
    return loaded;
  }
  try {
    loaded = { addon: createRequire(import.meta.url)(path) as MpiAddon, reason: '' };
  } catch (e) {
    loaded = {
      addon: null,
      reason:
        `kiln_mpi.node failed to load: ${(e as Error).message} (the prebuilt one needs Open MPI's libmpi.so.40: ` +
        `apt-get install -y openmpi-bin; for another MPI, build it with 'npx kiln build --mpi')`,
    };
  }
  return loaded;
}

/**
 * Whether multi-process collectives can run here (kiln_mpi.node built and loadable), and why not.
 * @example typeof kn.distributed.available().ok // "boolean"
 */
export function available(): { ok: true; reason?: undefined } | { ok: false; reason: string } {
  const l = loadMpi();
  return l.addon ? { ok: true } : { ok: false, reason: l.reason };
}

/** The world size the launcher announced in the environment, and which variable said so (null: no launcher). */
export function launcherWorld(
  env: NodeJS.ProcessEnv = process.env,
): { size: number; rank: number; from: string } | null {
  const pick = (sizeVar: string, rankVar: string): { size: number; rank: number; from: string } | null => {
    const s = env[sizeVar];
    if (s === undefined) return null;
    const size = Number(s),
      rank = Number(env[rankVar] ?? 0);
    if (!Number.isInteger(size) || size < 1 || !Number.isInteger(rank) || rank < 0 || rank >= size)
      throw new DistributedError(
        `${sizeVar}=${describe(s)} / ${rankVar}=${describe(env[rankVar])} is not a valid world`,
      );
    return { size, rank, from: `${sizeVar}=${size}` };
  };
  return (
    pick('OMPI_COMM_WORLD_SIZE', 'OMPI_COMM_WORLD_RANK') ??
    pick('PMI_SIZE', 'PMI_RANK') ??
    // srun sets SLURM_PROCID per task; an salloc shell does not (its SLURM_NTASKS is the allocation's)
    (env.SLURM_PROCID !== undefined ? pick('SLURM_NTASKS', 'SLURM_PROCID') : null)
  );
}

let world: (DistInfo & { mpi: MpiAddon | null }) | null = null;
/** The world of a process started without a launcher (or by one that started just it): no MPI. */
const ONE_PROCESS = { rank: 0, size: 1, localRank: 0, localSize: 1, library: '', mpi: null } as const;
let exitHooked = false;

function mapError(e: unknown): KilnError {
  if (e instanceof KilnError) return e;
  const err = e as { code?: string; message?: string };
  if (err?.code === 'KILN_ARG') return new ArgumentError(err.message ?? String(e));
  return new DistributedError(err?.message ?? String(e));
}

/**
 * Joins the job the launcher (`kiln launch`, mpirun, srun) started, or makes a one-process world when there is
 * none. Idempotent. Under a launcher it
 * - throws when MPI's world size differs from the launcher's (an addon built against another MPI than the
 *   launcher's gives N one-process worlds instead of one N-process world),
 * - sizes kiln's thread pool to the cores per rank on this host (unless KILN_NUM_THREADS is set),
 * - finalizes MPI when the process exits with code 0, and on any other exit leaves MPI unfinalized so the
 *   launcher ends every rank (a failed rank never leaves its peers waiting).
 * @example kn.distributed.init().size // 1
 */
export function init(opts: InitOptions = {}): DistInfo {
  checkOptions(opts, 'init', optionKeys<InitOptions>({ poll: true, chunkMB: true }));
  const poll = opts.poll ?? 'spin';
  if (poll !== 'spin' && poll !== 'backoff')
    throw new ArgumentError(`init poll must be 'spin' or 'backoff', got ${describe(opts.poll)}`);
  const chunkMB = opts.chunkMB ?? 16;
  if (typeof chunkMB !== 'number' || !(chunkMB >= 0.004) || !(chunkMB <= 4096))
    throw new ArgumentError(`init chunkMB must be a number in [0.004, 4096], got ${describe(opts.chunkMB)}`);
  if (world) return info();
  const launched = launcherWorld();
  if (!launched) {
    world = { ...ONE_PROCESS };
    return info();
  }
  const { addon, reason } = loadMpi();
  if (!addon) {
    if (launched.size === 1) {
      world = { ...ONE_PROCESS };
      return info();
    }
    throw new DistributedError(`the launcher started ${launched.size} processes, but ${reason}`);
  }
  let r: DistInfo;
  try {
    r = addon.init(Math.round(chunkMB * 2 ** 20), poll === 'backoff', process.listenerCount('SIGTERM') === 0);
  } catch (e) {
    throw mapError(e);
  }
  if (r.size !== launched.size) {
    throw new DistributedError(
      `MPI reports a world of ${r.size} process(es) but the launcher started ${launched.size} (${launched.from}): ` +
        `kiln_mpi.node was built against a different MPI than the launcher's (e.g. Open MPI vs MPICH). ` +
        `Use the mpirun of the MPI kiln was built with, or rebuild kiln against this one ('npx kiln build --mpi').`,
    );
  }
  world = {
    rank: r.rank,
    size: r.size,
    localRank: r.localRank,
    localSize: r.localSize,
    library: r.library,
    mpi: addon,
  };
  if (!process.env.KILN_NUM_THREADS && r.localSize > 1) {
    loadAddon().addon?.setThreads(Math.max(1, Math.floor(availableParallelism() / r.localSize)));
  }
  if (!exitHooked) {
    exitHooked = true;
    process.on('exit', (code) => {
      if (!world?.mpi) return;
      const st = world.mpi.state();
      if (code === 0 && st.pending === 0) {
        try {
          world.mpi.finalize();
        } catch (e) {
          process.stderr.write(`kiln: rank ${world.rank}: ${(e as Error).message}\n`);
        }
      } else {
        // never finalize after a failure: MPI_Finalize waits for peers that may be waiting for this rank
        world.mpi.abandon();
        process.stderr.write(
          code !== 0
            ? `kiln: rank ${world.rank} of ${world.size} failed (exit code ${code}); the launcher stops the other ranks\n`
            : `kiln: rank ${world.rank} of ${world.size} exited with ${st.pending} collective(s) unfinished\n`,
        );
      }
    });
  }
  return info();
}

/** True once init() ran. */
export function isInitialized(): boolean {
  return world !== null;
}

function need(): DistInfo & { mpi: MpiAddon | null } {
  if (!world) throw new DistributedError('kn.distributed is not initialized: call kn.distributed.init() first');
  return world;
}

/** This process's place in the job. */
export function info(): DistInfo {
  const w = need();
  return { rank: w.rank, size: w.size, localRank: w.localRank, localSize: w.localSize, library: w.library };
}
/** This process's rank (0 without init). */
export function rank(): number {
  return world?.rank ?? 0;
}
/** Number of processes in the job (1 without init). */
export function size(): number {
  return world?.size ?? 1;
}
/** This process's rank on its host. */
export function localRank(): number {
  return world?.localRank ?? 0;
}
/** True on rank 0 (the rank that logs and writes checkpoints). */
export function isMain(): boolean {
  return rank() === 0;
}
/** True when more than one process takes part (collectives really communicate). */
export function isDistributed(): boolean {
  return world !== null && world.size > 1;
}

/** @internal the MPI addon of a multi-process world, or null in a one-process world. */
export function mpi(): MpiAddon | null {
  const w = need();
  return w.size > 1 ? w.mpi : null;
}

/** @internal runs a native collective, mapping its errors onto KilnErrors. */
export function call<T>(f: () => T): T {
  try {
    return f();
  } catch (e) {
    throw mapError(e);
  }
}

/** The asynchronous twin of call(): awaits a native collective's Promise, mapping its errors. */
async function callAsync(p: () => Promise<void>): Promise<void> {
  try {
    await p();
  } catch (e) {
    throw mapError(e);
  }
}

function checkOp(op: unknown): ReduceOp {
  if (op !== 'sum' && op !== 'mean' && op !== 'max' && op !== 'min')
    throw new ArgumentError(`allreduce op must be 'sum', 'mean', 'max' or 'min', got ${describe(op)}`);
  return op;
}

function checkArray(a: unknown, what: string): CommArray {
  if (!(a instanceof Float32Array || a instanceof Float64Array || a instanceof Int32Array || a instanceof Uint8Array))
    throw new ArgumentError(
      `${what} takes a Tensor or a Float32Array/Float64Array/Int32Array/Uint8Array, got ${describe(a)}`,
    );
  return a;
}

/** A host copy of a tensor in the array type the collectives move (float32 for every float dtype). */
function hostOf(t: Tensor): CommArray {
  t.assertAlive('kn.distributed');
  if (t.dtype === 'int32') return Int32Array.from(t.toArray() as Int32Array);
  if (t.dtype === 'uint8' || t.dtype === 'bool') return Uint8Array.from(t.toArray() as Uint8Array);
  if (t.dtype === 'int8') return Int32Array.from(t.toArray() as Int8Array);
  const a = new Float32Array(t.size);
  t.copyToFloat32(a);
  return a;
}

function writeBack(t: Tensor, a: CommArray): void {
  if (a instanceof Float32Array && t.isContiguous()) {
    t.copyFromFloat32(a);
    return;
  }
  const tmp = Tensor.fromHostNumbers(a, t.shape, t.backend, a instanceof Float32Array ? 'float32' : t.dtype);
  try {
    t.assign(tmp);
  } finally {
    tmp.dispose();
  }
}

type Target = Tensor | CommArray;

/** What a collective moves for `x`: the array itself, or a host copy of a tensor (written back afterwards). */
function hostArray(x: Target, what: string): CommArray {
  return isTensor(x) ? hostOf(x) : checkArray(x, what);
}

function reduceArgs(x: Target, opts: { op?: ReduceOp }, what: string): { op: number; a: CommArray } {
  checkOptions(opts, what, ['op']);
  const op = checkOp(opts.op ?? 'sum');
  const a = hostArray(x, what);
  if (op === 'mean' && !(a instanceof Float32Array || a instanceof Float64Array))
    throw new ArgumentError('allreduce op mean needs floating-point values');
  return { op: REDUCE_OPS[op], a };
}

/**
 * Reduces `x` over every rank, in place, and returns it: after the call every rank holds the same values.
 * Blocks until done. A one-process world leaves `x` as it is.
 * @example kn.distributed.init(); kn.distributed.allreduce(kn.tensor([1, 2]), { op: 'sum' }) // [1, 2]
 */
export function allreduce<T extends Target>(x: T, opts: { op?: ReduceOp } = {}): T {
  const { op, a } = reduceArgs(x, opts, 'allreduce');
  const m = mpi();
  if (!m) return x;
  call(() => m.allreduce(a, op, 0));
  if (isTensor(x)) writeBack(x, a);
  return x;
}

/**
 * allreduce without blocking the event loop: the reduction runs on the communication thread while JS goes on.
 * Resolves to `x` once every rank's values are in.
 */
export async function allreduceAsync<T extends Target>(x: T, opts: { op?: ReduceOp } = {}): Promise<T> {
  const { op, a } = reduceArgs(x, opts, 'allreduceAsync');
  const m = mpi();
  if (!m) return x;
  await callAsync(() => m.allreduce(a, op, 2));
  if (isTensor(x)) writeBack(x, a);
  return x;
}

function checkRoot(root: unknown): number {
  if (!Number.isInteger(root) || (root as number) < 0 || (root as number) >= size())
    throw new ArgumentError(`broadcast root must be a rank in [0, ${size()}), got ${describe(root)}`);
  return root as number;
}

/** Copies `x` from rank `root` (default 0) to every rank, in place. Blocks until done. */
export function broadcast<T extends Target>(x: T, root = 0): T {
  const r = checkRoot(root);
  const m = mpi();
  const a = hostArray(x, 'broadcast');
  if (!m) return x;
  call(() => m.broadcast(a, r, 0));
  if (isTensor(x)) writeBack(x, a);
  return x;
}

/** broadcast without blocking the event loop. */
export async function broadcastAsync<T extends Target>(x: T, root = 0): Promise<T> {
  const r = checkRoot(root);
  const m = mpi();
  const a = hostArray(x, 'broadcastAsync');
  if (!m) return x;
  await callAsync(() => m.broadcast(a, r, 2));
  if (isTensor(x)) writeBack(x, a);
  return x;
}

/**
 * Every rank's `x`, stacked: a tensor of shape [size, ...x.shape] (or, for a typed array, one of size times its
 * length). Every rank must pass the same shape.
 */
export function allgather(x: Tensor): Tensor;
export function allgather<A extends CommArray>(x: A): A;
export function allgather(x: Target): Target {
  const tensor = isTensor(x);
  const a = hostArray(x, 'allgather');
  const n = size();
  const Ctor = a.constructor as new (n: number) => CommArray;
  const out = new Ctor(a.length * n);
  const m = mpi();
  if (m) call(() => m.allgather(a, out, 0));
  else out.set(a);
  if (!tensor) return out;
  const dtype = x.dtype === 'float16' || x.dtype === 'bfloat16' ? 'float32' : x.dtype;
  return Tensor.fromHostNumbers(out, [n, ...x.shape], x.backend, dtype === 'bool' ? 'bool' : dtype);
}

/** Waits until every rank reaches this point. */
export function barrier(): void {
  const m = mpi();
  if (m) call(() => m.barrier(0));
}

/** barrier without blocking the event loop. */
export async function barrierAsync(): Promise<void> {
  const m = mpi();
  if (m) await callAsync(() => m.barrier(2));
}

/** A JSON value from `root` on every rank (small things: a decision, a config, RNG states). */
export function broadcastObject<T>(value: T, root = 0): T {
  const r = checkRoot(root);
  const m = mpi();
  if (!m) return value;
  const bytes = rank() === r ? new TextEncoder().encode(JSON.stringify(value ?? null)) : new Uint8Array(0);
  const len = new Int32Array([bytes.length]);
  call(() => m.broadcast(len, r, 0));
  const buf = rank() === r ? bytes : new Uint8Array(len[0]!);
  call(() => m.broadcast(buf, r, 0));
  return JSON.parse(new TextDecoder().decode(buf)) as T;
}

/**
 * Every rank's `a`, in rank order, where the ranks may hold different lengths: `all` concatenates them and
 * `lengths[r]` is rank r's count.
 */
export function allgatherVariable<A extends Float64Array | Uint8Array>(a: A): { all: A; lengths: Int32Array } {
  const lengths = allgather(new Int32Array([a.length]));
  const max = Math.max(0, ...lengths);
  const Ctor = a.constructor as new (n: number) => A;
  const padded = new Ctor(max);
  padded.set(a);
  const gathered = allgather(padded);
  const all = new Ctor(lengths.reduce((s, l) => s + l, 0));
  let o = 0;
  lengths.forEach((l, r) => {
    all.set(gathered.subarray(r * max, r * max + l), o);
    o += l;
  });
  return { all, lengths };
}

/** Every rank's JSON value, in rank order. */
export function allgatherObject<T>(value: T): T[] {
  if (!mpi()) return [value];
  const { all, lengths } = allgatherVariable(new TextEncoder().encode(JSON.stringify(value ?? null)));
  const dec = new TextDecoder();
  let o = 0;
  return Array.from(lengths, (l) => JSON.parse(dec.decode(all.subarray(o, (o += l)))) as T);
}

let ncclState: { ok: boolean; reason: string } | null = null;

/**
 * @internal Sets up NCCL for device (cuda backend) tensors the first time it is asked, on every rank together:
 * rank 0 makes the unique id, MPI carries it to the others. Returns whether NCCL is in use and, if not, why
 * (device gradients then go through host memory and MPI). Every rank must call it at the same point.
 */
export function ncclComm(): { ok: boolean; reason: string } {
  if (ncclState) return ncclState;
  const addon = loadAddon().addon;
  const m = mpi();
  if (!m || !addon) return (ncclState = { ok: false, reason: !m ? 'a one-process world' : 'no native addon' });
  // every rank must agree: one rank without NCCL means nobody uses it
  const local = addon.ncclStatus();
  const reasons = allgatherObject(local);
  const bad = reasons.findIndex((r) => r !== '');
  if (bad >= 0) return (ncclState = { ok: false, reason: `rank ${bad}: ${reasons[bad]}` });
  const id = rank() === 0 ? addon.ncclUniqueId() : new Uint8Array(128);
  call(() => m.broadcast(id, 0, 0));
  call(() => addon.ncclInit(rank(), size(), id));
  return (ncclState = { ok: true, reason: '' });
}

/** Ends every rank of the job at once with exit code `code` (MPI_Abort); in a one-process world, exits. */
export function abort(code = 1): never {
  if (!Number.isInteger(code) || code < 0 || code > 255)
    throw new ArgumentError(`abort code must be an integer in [0, 255], got ${describe(code)}`);
  const m = world?.mpi;
  if (m && world!.size > 1) m.abort(code);
  process.exit(code);
}

/** Finalizes MPI now (otherwise done when the process exits with code 0). No collective can run afterwards. */
export function finalize(): void {
  if (world?.mpi) call(() => world!.mpi!.finalize());
}
