/// <reference types="@webgpu/types" />
// The GPU worker of the webgpu backend. It owns the Dawn device and runs the main thread's commands in order:
// buffer alloc/free (pooled), writes, dispatches (encoded into one compute pass per batch, with every dispatch's
// uniform block in one ring buffer written just before submit) and reads (copied to a staging buffer, mapped,
// and handed back through a SharedArrayBuffer the main thread waits on). Errors that the GPU finds later (an
// uncaptured validation or out-of-memory error, or a kernel's error flag) are reported with the next read/sync.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parentPort, workerData } from 'node:worker_threads';
import { entryPoints, missingLimits } from './limits.js';
import { PARAMS } from './params.js';
import {
  ARG_ERROR,
  FLAG_BYTES,
  FLAG_KINDS,
  FLAGS_ID,
  LOOP_FLAG_WORD,
  adapterLoopCap,
  loopCutMessage,
  PARAMS_BYTES,
  flagMessage,
  REPLY_HEADER,
  STATE_ERROR,
  STATE_OK,
  type AdapterSummary,
  type Command,
  type InitData,
} from './protocol.js';

const init = workerData as InitData;
const encoder = new TextEncoder();

function reply(sab: SharedArrayBuffer, state: number, payload?: Uint8Array): void {
  const head = new Int32Array(sab, 0, 2);
  if (payload) {
    const room = sab.byteLength - REPLY_HEADER;
    const n = Math.min(room, payload.length);
    new Uint8Array(sab, REPLY_HEADER, n).set(payload.subarray(0, n));
    head[1] = n;
  }
  Atomics.store(head, 0, state);
  Atomics.notify(head, 0);
}
const replyError = (sab: SharedArrayBuffer, msg: string): void => reply(sab, STATE_ERROR, encoder.encode(msg));

let device: GPUDevice;
let usage: { STORAGE: number; COPY_SRC: number; COPY_DST: number; MAP_READ: number; UNIFORM: number };
let mapRead: number;
const buffers = new Map<number, { buf: GPUBuffer; bytes: number }>();
const pool = new Map<number, GPUBuffer[]>();
let pooledBytes = 0;
const POOL_LIMIT = 512 * 1024 * 1024;
const modules = new Map<string, GPUShaderModule>();
const pipelines = new Map<string, GPUComputePipeline>();
const errors: string[] = [];
let common = '';
// On an adapter that cuts long loops (llvmpipe), each dispatch tells its kernel its code (common.wgsl check_loops)
let loopCheck = false;
// each kernel `shader.entry` of a loaded shader: its 1-based code for check_loops' flag (kernelNames[code - 1])
// and whether its entry point calls check_loops, so binds the flag buffer (common.wgsl: only entry points call it)
const kernels = new Map<string, { code: number; checksLoops: boolean }>();
const kernelNames: string[] = [];

// the open batch: one command encoder with one compute pass, and the ring of uniform blocks it uses
let enc: GPUCommandEncoder | null = null;
let pass: GPUComputePassEncoder | null = null;
let uniform: GPUBuffer;
const UNIFORM_SLOTS = 512;
const uniformStage = new Uint8Array(UNIFORM_SLOTS * PARAMS_BYTES);
const uniformWords = new Uint32Array(uniformStage.buffer);
let slot = 0;

/** Pool size class: powers of two up to 1 MiB, then whole MiB. */
function sizeClass(bytes: number): number {
  const b = Math.max(256, bytes);
  if (b <= 1 << 20) return 2 ** Math.ceil(Math.log2(b));
  return Math.ceil(b / (1 << 20)) * (1 << 20);
}

function getBuffer(bytes: number): GPUBuffer {
  const cls = sizeClass(bytes);
  const list = pool.get(cls);
  if (list && list.length) {
    pooledBytes -= cls;
    return list.pop()!;
  }
  return device.createBuffer({ size: cls, usage: usage.STORAGE | usage.COPY_SRC | usage.COPY_DST });
}

function releaseBuffer(buf: GPUBuffer): void {
  const cls = buf.size;
  if (pooledBytes + cls > POOL_LIMIT) {
    flush();
    buf.destroy();
    return;
  }
  pooledBytes += cls;
  let list = pool.get(cls);
  if (!list) pool.set(cls, (list = []));
  list.push(buf);
}

function module(shader: string): GPUShaderModule {
  let m = modules.get(shader);
  if (!m) {
    const text = readFileSync(join(init.wgslDir, `${shader}.wgsl`), 'utf8');
    for (const e of entryPoints(text)) {
      kernelNames.push(`${shader}.${e.name}`);
      kernels.set(`${shader}.${e.name}`, { code: kernelNames.length, checksLoops: e.body.includes('check_loops()') });
    }
    m = device.createShaderModule({ code: `${common}\n${text}`, label: shader });
    modules.set(shader, m);
  }
  return m;
}

function pipeline(shader: string, entry: string, consts: Record<string, number>): GPUComputePipeline {
  const key = `${shader}:${entry}:${JSON.stringify(consts)}`;
  let p = pipelines.get(key);
  if (!p) {
    p = device.createComputePipeline({
      layout: 'auto',
      label: key,
      compute: { module: module(shader), entryPoint: entry, constants: consts },
    });
    pipelines.set(key, p);
  }
  return p;
}

/** The record of kernel `shader.entry` (its module loaded: the pipeline was made). */
function kernel(shader: string, entry: string): { code: number; checksLoops: boolean } {
  const k = kernels.get(`${shader}.${entry}`);
  if (!k) throw new Error(`webgpu worker: ${shader}.wgsl has no entry point ${entry}`);
  return k;
}

function buffer(id: number): GPUBuffer {
  const b = buffers.get(id);
  if (!b) throw new Error(`webgpu worker: unknown buffer ${id}`);
  return b.buf;
}

function endPass(): void {
  if (pass) {
    pass.end();
    pass = null;
  }
}

function encoderOpen(): GPUCommandEncoder {
  if (!enc) enc = device.createCommandEncoder();
  return enc;
}

/** Submits everything encoded so far (uniform blocks first, in queue order). */
function flush(): void {
  if (!enc) return;
  endPass();
  if (slot > 0) device.queue.writeBuffer(uniform, 0, uniformStage, 0, slot * PARAMS_BYTES);
  device.queue.submit([enc.finish()]);
  enc = null;
  slot = 0;
}

function dispatch(c: Extract<Command, { t: 'dispatch' }>): void {
  if (slot === UNIFORM_SLOTS) flush();
  const p = pipeline(c.shader, c.entry, c.consts);
  const k = kernel(c.shader, c.entry);
  const s = slot++;
  uniformStage.set(
    new Uint8Array(c.params.buffer, c.params.byteOffset, Math.min(c.params.byteLength, PARAMS_BYTES)),
    s * PARAMS_BYTES,
  );
  uniformWords[s * (PARAMS_BYTES / 4) + PARAMS.common.loopCheck] = loopCheck ? k.code : 0;
  const entries: GPUBindGroupEntry[] = [
    { binding: 0, resource: { buffer: uniform, offset: s * PARAMS_BYTES, size: PARAMS_BYTES } },
  ];
  c.bufs.forEach((id, i) => {
    if (id !== null) entries.push({ binding: i + 1, resource: { buffer: buffer(id) } });
  });
  if ((c.bufs[14] ?? null) === null && k.checksLoops)
    entries.push({ binding: 15, resource: { buffer: buffer(FLAGS_ID) } });
  const group = device.createBindGroup({ layout: p.getBindGroupLayout(0), entries });
  if (!pass) pass = encoderOpen().beginComputePass();
  pass.setPipeline(p);
  pass.setBindGroup(0, group);
  pass.dispatchWorkgroups(c.groups[0], c.groups[1], c.groups[2]);
}

async function readRange(buf: GPUBuffer, offset: number, bytes: number): Promise<Uint8Array> {
  const a0 = Math.floor(offset / 4) * 4,
    a1 = Math.ceil((offset + bytes) / 4) * 4;
  const size = Math.max(4, a1 - a0);
  const flagsBuf = buffer(FLAGS_ID);
  const stage = device.createBuffer({ size: size + FLAG_BYTES, usage: mapRead | usage.COPY_DST });
  const e = encoderOpen();
  endPass();
  if (a1 > a0) e.copyBufferToBuffer(buf, a0, stage, 0, a1 - a0);
  e.copyBufferToBuffer(flagsBuf, 0, stage, size, FLAG_BYTES);
  e.clearBuffer(flagsBuf, 0, FLAG_BYTES);
  flush();
  await stage.mapAsync(mapRead);
  const all = new Uint8Array(stage.getMappedRange().slice(0));
  stage.unmap();
  stage.destroy();
  for (let k = 0; k < FLAG_KINDS; k++) {
    const w = new Uint32Array(all.buffer, size + k * 32, 8);
    if (w[0]) errors.push(ARG_ERROR + flagMessage(k, w));
  }
  const cut = new Uint32Array(all.buffer, size + LOOP_FLAG_WORD * 4, 1)[0]!;
  if (cut) errors.unshift(loopCutMessage(kernelNames[cut - 1] ?? `#${cut}`)); // first: a BackendError, not the user's
  return all.subarray(offset - a0, offset - a0 + bytes);
}

async function write(c: Extract<Command, { t: 'write' }>): Promise<void> {
  const buf = buffer(c.id);
  flush(); // queued kernels may still read this buffer's old contents (pool reuse): they run first
  const a0 = Math.floor(c.byteOffset / 4) * 4,
    a1 = Math.ceil((c.byteOffset + c.data.length) / 4) * 4;
  let data = c.data;
  if (a0 !== c.byteOffset || a1 !== c.byteOffset + c.data.length) {
    // sub-word edges: merge with the bytes already there
    data = await readRange(buf, a0, a1 - a0);
    data = new Uint8Array(data);
    data.set(c.data, c.byteOffset - a0);
  }
  if (data.length) device.queue.writeBuffer(buf, a0, data as Uint8Array<ArrayBuffer>);
}

async function run(c: Command): Promise<void> {
  switch (c.t) {
    case 'alloc':
      buffers.set(c.id, { buf: getBuffer(c.bytes), bytes: c.bytes });
      return;
    case 'free': {
      const b = buffers.get(c.id);
      if (b) {
        buffers.delete(c.id);
        releaseBuffer(b.buf);
      }
      return;
    }
    case 'write':
      await write(c);
      return;
    case 'dispatch':
      dispatch(c);
      return;
    case 'copy':
      endPass();
      encoderOpen().copyBufferToBuffer(buffer(c.src), c.srcOffset, buffer(c.dst), c.dstOffset, c.bytes);
      return;
    case 'read': {
      try {
        const data = await readRange(buffer(c.id), c.byteOffset, c.bytes);
        if (errors.length) replyError(c.sab, errors.splice(0).join('; '));
        else reply(c.sab, STATE_OK, data);
      } catch (e) {
        replyError(c.sab, String((e as Error)?.message ?? e));
      }
      return;
    }
    case 'shutdown': {
      // the process is exiting: finish the GPU's work and destroy the device while this thread can still take
      // Dawn's callbacks (a callback into a torn-down worker aborts the whole process)
      try {
        flush();
        await device.queue.onSubmittedWorkDone();
        device.destroy();
      } finally {
        reply(c.sab, STATE_OK);
      }
      return;
    }
    case 'sync': {
      try {
        await readRange(buffer(FLAGS_ID), 0, 0);
        await device.queue.onSubmittedWorkDone();
        if (errors.length) replyError(c.sab, errors.splice(0).join('; '));
        else reply(c.sab, STATE_OK);
      } catch (e) {
        replyError(c.sab, String((e as Error)?.message ?? e));
      }
    }
  }
}

// commands run strictly in order; a failing command is recorded and reported with the next read or sync
const queue: Command[] = [];
let running = false;
async function pump(): Promise<void> {
  if (running) return;
  running = true;
  while (queue.length) {
    const c = queue.shift()!;
    try {
      await run(c);
    } catch (e) {
      errors.push(`webgpu: ${c.t} failed: ${String((e as Error)?.message ?? e)}`);
      if (c.t === 'read' || c.t === 'sync' || c.t === 'shutdown') replyError(c.sab, errors.splice(0).join('; '));
    }
  }
  running = false;
}

// Dawn instances stay referenced for the worker's life: dawn.node keeps processing an instance's events after
// JS dropped it, and a collected instance is a use-after-free (a segfault a few hundred reads later)
const instances: GPU[] = [];

async function start(): Promise<AdapterSummary> {
  const { create, globals } = await import('webgpu');
  const g = globals as Record<string, { [k: string]: number }>;
  usage = g.GPUBufferUsage as typeof usage;
  mapRead = g.GPUMapMode!.READ!;
  const hasVulkan =
    ['/usr/share/vulkan/icd.d', '/etc/vulkan/icd.d'].some((d) => existsSync(d)) ||
    !!process.env.VK_ICD_FILENAMES ||
    !!process.env.VK_DRIVER_FILES;
  const order = init.backend === 'auto' ? (hasVulkan ? ['vulkan', 'opengles'] : ['opengles']) : [init.backend];
  let adapter: GPUAdapter | null = null;
  let chosen = '';
  for (const b of order) {
    const gpu = create([`backend=${b}`]);
    instances.push(gpu);
    adapter =
      b === 'vulkan'
        ? await gpu.requestAdapter({ powerPreference: 'high-performance' })
        : await gpu.requestAdapter({ featureLevel: 'compatibility' } as GPURequestAdapterOptions);
    if (adapter) {
      chosen = b;
      break;
    }
  }
  if (!adapter) throw new Error(`no WebGPU adapter (tried ${order.join(', ')})`);
  loopCheck = adapterLoopCap(adapter.info) < Infinity;
  const lacking = missingLimits(init.wgslDir, adapter.limits);
  if (lacking) throw new Error(`the WebGPU adapter (${chosen}) is too small for kiln's shaders: ${lacking}`);
  const limits: Record<string, number> = {};
  for (const k in adapter.limits) {
    const v = (adapter.limits as unknown as Record<string, unknown>)[k];
    if (typeof v === 'number') limits[k] = v;
  }
  device = await adapter.requestDevice({ requiredLimits: limits });
  device.addEventListener('uncapturederror', (ev) => {
    // later errors are mostly echoes of the first ("invalid due to a previous error"): keep the first whole
    if (!errors.some((e) => !e.startsWith(ARG_ERROR)))
      errors.push(`webgpu device error: ${(ev as GPUUncapturedErrorEvent).error.message}`);
  });
  // (device.lost is not awaited: dawn.node resolves it while the worker is torn down, which aborts the process)
  uniform = device.createBuffer({ size: UNIFORM_SLOTS * PARAMS_BYTES, usage: usage.UNIFORM | usage.COPY_DST });
  const flagsBuf = device.createBuffer({ size: 256, usage: usage.STORAGE | usage.COPY_SRC | usage.COPY_DST });
  buffers.set(FLAGS_ID, { buf: flagsBuf, bytes: 256 });
  // tables.wgsl (generated codes) first, then the shared helpers
  common = ['tables.wgsl', 'common.wgsl'].map((f) => readFileSync(join(init.wgslDir, f), 'utf8')).join('\n');
  const info = adapter.info;
  return {
    backend: chosen,
    vendor: info.vendor,
    architecture: info.architecture,
    device: info.device,
    description: info.description,
    featureLevel: chosen === 'vulkan' ? 'core' : 'compatibility',
    limits,
    features: [...adapter.features].sort(),
  };
}

start().then(
  (summary) => {
    parentPort!.on('message', (batch: Command[]) => {
      queue.push(...batch);
      void pump();
    });
    reply(init.sab, STATE_OK, encoder.encode(JSON.stringify(summary)));
  },
  (e: unknown) => replyError(init.sab, String((e as Error)?.message ?? e)),
);
