// The `webgpu` backend: WGSL compute shaders through Dawn (npm `webgpu`).
//
// Dawn's promises only settle on an event loop, but kiln's API is synchronous (t.toArray(), loss.item()). So the
// device lives in a worker thread: the main thread queues commands (alloc, write, dispatch, free) and posts them
// in batches; a read posts a SharedArrayBuffer and blocks on it with Atomics.wait until the worker has copied the
// data back (`await t.data()` waits without blocking). Kernels are validated here, before anything is queued, so
// shape and argument errors throw at the call like on every backend; errors only the GPU can see (an index out of
// range in gather, device loss, out of memory) are thrown by the next read or sync.
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import { ArgumentError, BackendError } from '../../errors.js';
import type { OpFamily, OpName } from '../../ops/table.js';
import { DTYPE_SIZE, storageArray, type DType, type StorageArray } from '../../tensor/dtype.js';
import type { Backend, Handle, KernelOut, KernelView } from '../backend.js';
import { convKernels } from './conv.js';
import { elementwiseKernels } from './elementwise.js';
import { grid, type Gpu, type GpuKernel, type Params } from './gpu.js';
import { matmulKernels } from './matmul.js';
import { movementKernels } from './movement.js';
import { optimKernels } from './optim.js';
import {
  ARG_ERROR,
  adapterLoopCap,
  FLAGS_ID,
  REPLY_HEADER,
  STATE_ERROR,
  STATE_OK,
  STATE_PENDING,
  type AdapterSummary,
  type Command,
  type InitData,
} from './protocol.js';
import { quantKernels } from './quant.js';
import { randomKernels } from './random.js';
import { reduceKernels } from './reduce.js';

/** Each family's kernels, from the file of the same stem (every family of the op table must be here). */
export const FAMILY_KERNELS: { readonly [F in OpFamily]: Readonly<Record<string, GpuKernel>> } = {
  elementwise: elementwiseKernels,
  reduce: reduceKernels,
  matmul: matmulKernels,
  conv: convKernels,
  movement: movementKernels,
  random: randomKernels,
  optim: optimKernels,
  quant: quantKernels,
};
const KERNELS = new Map<string, GpuKernel>(Object.values(FAMILY_KERNELS).flatMap((k) => Object.entries(k)));

const here = dirname(fileURLToPath(import.meta.url));
const WGSL_DIR = join(here, '..', '..', '..', 'kernels', 'wgsl');
const TIMEOUT_MS = Number(process.env.KILN_WEBGPU_TIMEOUT_MS ?? 600_000);
const decoder = new TextDecoder();
/** Atomics.waitAsync (Node >= 16), missing from the ES2022 lib typings. */
interface AtomicsWaitAsync {
  waitAsync(
    a: Int32Array,
    index: number,
    value: number,
    timeout?: number,
  ): { async: boolean; value: Promise<'ok' | 'timed-out'> | 'not-equal' | 'timed-out' };
}

/** A started GPU worker, or why there is none. */
interface Session {
  worker: Worker;
  adapter: AdapterSummary;
}
let session: Session | null = null;
let failure: string | null = null;

function waitReply(sab: SharedArrayBuffer, what: string, timeoutMs = TIMEOUT_MS): Uint8Array {
  const head = new Int32Array(sab, 0, 2);
  const r = Atomics.wait(head, 0, STATE_PENDING, timeoutMs);
  if (r === 'timed-out')
    throw new BackendError(
      `webgpu: ${what} got no answer from the GPU worker in ${timeoutMs} ms (KILN_WEBGPU_TIMEOUT_MS)`,
    );
  return payload(sab, what);
}

function payload(sab: SharedArrayBuffer, what: string): Uint8Array {
  const head = new Int32Array(sab, 0, 2);
  const state = Atomics.load(head, 0);
  const bytes = new Uint8Array(sab, REPLY_HEADER, head[1]!);
  if (state === STATE_ERROR) throw gpuError(decoder.decode(bytes.slice()), what);
  if (state !== STATE_OK) throw new BackendError(`webgpu: ${what}: bad reply state ${state}`);
  return bytes;
}

function gpuError(msg: string, what: string): Error {
  // a kernel's error flag is the user's bad data (like the cpu backend's checks), anything else is the backend's
  if (msg.startsWith(ARG_ERROR))
    return new ArgumentError(msg.slice(ARG_ERROR.length).split(`; ${ARG_ERROR}`).join('; '));
  return new BackendError(`webgpu: ${what} failed: ${msg}`);
}

/** Running from TypeScript sources (tests, tsx): the URL of tsx's ESM loader API, which the worker registers. */
function tsxLoaderUrl(): string {
  const pkg = createRequire(import.meta.url).resolve('tsx/package.json');
  const api = (JSON.parse(readFileSync(pkg, 'utf8')) as { exports: Record<string, { import: { default: string } }> })
    .exports['./esm/api']!;
  return pathToFileURL(join(dirname(pkg), api.import.default)).href;
}

function start(): Session {
  if (session) return session;
  if (failure !== null) throw new BackendError(failure);
  try {
    if (process.env.KILN_WEBGPU === '0') throw new Error('disabled by KILN_WEBGPU=0');
    try {
      createRequire(import.meta.url).resolve('webgpu');
    } catch {
      throw new Error("the optional npm package 'webgpu' (Dawn) is not installed");
    }
    // Mesa's EGL needs a platform without a display server; the worker's Dawn reads the process environment
    process.env.EGL_PLATFORM ??= 'surfaceless';
    const ts = import.meta.url.endsWith('.ts');
    const sab = new SharedArrayBuffer(REPLY_HEADER + 64 * 1024);
    const data: InitData = { wgslDir: WGSL_DIR, backend: process.env.KILN_WEBGPU_BACKEND ?? 'auto', sab };
    if (!existsSync(join(WGSL_DIR, 'common.wgsl'))) throw new Error(`the WGSL kernels are missing (${WGSL_DIR})`);
    const workerUrl = new URL(ts ? './worker.ts' : './worker.js', import.meta.url).href;
    // a bootstrap that reports a worker that cannot even load through the same reply buffer (running from
    // sources, it first registers tsx's loader in the worker)
    const tsx = ts ? tsxLoaderUrl() : '';
    const boot = `const { workerData } = require('node:worker_threads');
(${ts ? `import(${JSON.stringify(tsx)}).then((m) => { m.register(); return import(${JSON.stringify(workerUrl)}); })` : `import(${JSON.stringify(workerUrl)})`})
  .catch((e) => {
    const sab = workerData.sab, msg = new TextEncoder().encode(String(e && e.stack || e));
    const n = Math.min(msg.length, sab.byteLength - ${REPLY_HEADER});
    new Uint8Array(sab, ${REPLY_HEADER}, n).set(msg.subarray(0, n));
    const head = new Int32Array(sab, 0, 2);
    head[1] = n;
    Atomics.store(head, 0, ${STATE_ERROR});
    Atomics.notify(head, 0);
  });`;
    const worker = new Worker(boot, { eval: true, workerData: data, stderr: false });
    worker.unref();
    const adapter = JSON.parse(decoder.decode(waitReply(sab, 'start', 120_000).slice())) as AdapterSummary;
    worker.on('error', (e) => {
      failure = `the webgpu worker stopped: ${e.message}`;
    });
    process.once('exit', () => {
      // a synchronous goodbye: the worker drains the GPU and destroys the device before Node tears it down
      if (failure !== null) return;
      const bye = new SharedArrayBuffer(REPLY_HEADER + 4096);
      try {
        worker.postMessage([{ t: 'shutdown', sab: bye } satisfies Command]);
        Atomics.wait(new Int32Array(bye, 0, 2), 0, STATE_PENDING, 10_000);
      } catch {
        /* exiting anyway */
      }
    });
    session = { worker, adapter };
    return session;
  } catch (e) {
    failure = (e as Error).message.replace(/^webgpu: start failed: /, '');
    throw new BackendError(failure);
  }
}

/** Whether the webgpu backend can run here, and on which adapter (starts the GPU worker on first call). */
export function webgpuStatus(): { available: boolean; reason: string; adapter: AdapterSummary | null } {
  try {
    const s = start();
    return { available: true, reason: '', adapter: s.adapter };
  } catch (e) {
    return { available: false, reason: (e as Error).message, adapter: null };
  }
}

export class WebGpuBackend implements Backend, Gpu {
  readonly name = 'webgpu' as const;
  readonly dummy = -1;
  readonly flags = FLAGS_ID;
  readonly limits: Readonly<Record<string, number>>;
  readonly loopCap: number;
  readonly adapter: AdapterSummary;
  private readonly worker: Worker;
  private nextId = 1;
  private pending: Command[] = [];
  private scheduled = false;
  private readonly maxBuffer: number;

  constructor() {
    const s = start();
    this.worker = s.worker;
    this.adapter = s.adapter;
    this.limits = s.adapter.limits;
    this.loopCap = adapterLoopCap(s.adapter);
    this.maxBuffer = Math.min(this.limits.maxStorageBufferBindingSize ?? 2 ** 27, this.limits.maxBufferSize ?? 2 ** 28);
    this.send({ t: 'alloc', id: this.dummy, bytes: 256 });
  }

  private send(c: Command): void {
    this.pending.push(c);
    if (this.pending.length >= 256) this.post();
    else if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(() => {
        try {
          this.post();
        } catch {
          /* reported by the next read or sync */
        }
      });
    }
  }

  private post(): void {
    this.scheduled = false;
    if (!this.pending.length) return;
    if (failure !== null) throw new BackendError(failure);
    const batch = this.pending;
    this.pending = [];
    this.worker.postMessage(batch);
  }

  private wordBytes(dtype: DType, numel: number): number {
    return Math.max(4, Math.ceil((numel * DTYPE_SIZE[dtype]) / 4) * 4);
  }

  alloc(dtype: DType, numel: number): Handle {
    const bytes = this.wordBytes(dtype, numel);
    if (bytes > this.maxBuffer) {
      throw new BackendError(
        `webgpu: cannot allocate a ${dtype} tensor of ${numel} elements (${bytes} bytes): over this adapter's ${this.maxBuffer}-byte buffer limit`,
      );
    }
    const h = this.nextId++;
    this.send({ t: 'alloc', id: h, bytes });
    return h;
  }
  free(h: Handle): void {
    this.send({ t: 'free', id: h as number });
  }
  bytes(dtype: DType, numel: number): number {
    return this.wordBytes(dtype, numel);
  }
  write(h: Handle, dtype: DType, data: StorageArray, offset: number): void {
    const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength).slice();
    this.send({ t: 'write', id: h as number, byteOffset: offset * DTYPE_SIZE[dtype], data: bytes });
  }

  private readCommand(
    h: Handle,
    dtype: DType,
    offset: number,
    count: number,
  ): { sab: SharedArrayBuffer; bytes: number } {
    const bytes = count * DTYPE_SIZE[dtype];
    const sab = new SharedArrayBuffer(REPLY_HEADER + Math.max(bytes, 4096));
    this.send({ t: 'read', id: h as number, byteOffset: offset * DTYPE_SIZE[dtype], bytes, sab });
    this.post();
    return { sab, bytes };
  }

  private decode(dtype: DType, count: number, bytes: Uint8Array): StorageArray {
    const out = storageArray(dtype, count);
    new Uint8Array(out.buffer, out.byteOffset, out.byteLength).set(bytes);
    return out;
  }

  read(h: Handle, dtype: DType, offset: number, count: number): StorageArray {
    const { sab } = this.readCommand(h, dtype, offset, count);
    return this.decode(dtype, count, waitReply(sab, 'read'));
  }

  async readAsync(h: Handle, dtype: DType, offset: number, count: number): Promise<StorageArray> {
    const { sab } = this.readCommand(h, dtype, offset, count);
    await this.settle(sab);
    return this.decode(dtype, count, payload(sab, 'read'));
  }

  private waiting = 0;
  /** Waits for a reply without blocking; the worker is referenced meanwhile so the process stays up for it. */
  private async settle(sab: SharedArrayBuffer): Promise<void> {
    const head = new Int32Array(sab, 0, 2);
    if (this.waiting++ === 0) this.worker.ref();
    try {
      const w = (Atomics as unknown as AtomicsWaitAsync).waitAsync(head, 0, STATE_PENDING, TIMEOUT_MS);
      if ((w.async ? await w.value : w.value) === 'timed-out')
        throw new BackendError(`webgpu: no answer from the GPU worker in ${TIMEOUT_MS} ms`);
    } finally {
      if (--this.waiting === 0) this.worker.unref();
    }
  }

  run(op: OpName, inputs: readonly KernelView[], out: KernelOut, attrs: readonly number[]): void {
    const k = KERNELS.get(op);
    if (!k) throw new BackendError(`op '${op}' has no kernel on backend 'webgpu'`);
    k(this, inputs, out, attrs);
  }
  has(op: OpName): boolean {
    return KERNELS.has(op);
  }

  async sync(): Promise<void> {
    const sab = new SharedArrayBuffer(REPLY_HEADER + 4096);
    this.send({ t: 'sync', sab });
    this.post();
    await this.settle(sab);
    payload(sab, 'sync');
  }
  syncNow(): void {
    const sab = new SharedArrayBuffer(REPLY_HEADER + 4096);
    this.send({ t: 'sync', sab });
    this.post();
    waitReply(sab, 'sync');
  }

  // ---- Gpu (what kernels use) ----
  dispatch(
    shader: string,
    entry: string,
    consts: Record<string, number>,
    params: Params,
    bufs: readonly (number | null)[],
    size: { threads: number } | { groups: [number, number, number] },
  ): void {
    const max = this.limits.maxComputeWorkgroupsPerDimension ?? 65535;
    const groups = 'threads' in size ? grid(Math.ceil(size.threads / 256), max) : size.groups;
    if (groups[0] === 0 || groups[1] === 0 || groups[2] === 0) return;
    this.send({ t: 'dispatch', shader, entry, consts, params: params.u.slice(), bufs: [...bufs], groups });
  }
  scratch(dtype: DType, numel: number): number {
    return this.alloc(dtype, numel) as number;
  }
  release(h: number): void {
    this.free(h);
  }
}
