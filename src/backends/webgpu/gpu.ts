// What the webgpu kernel files (one per op family, paired with kernels/wgsl/<family>.wgsl) use: the params
// block, dispatch, scratch buffers, and the view helpers they share.
import { BackendError } from '../../errors.js';
import { DTYPE_CODES, type DType } from '../../tensor/dtype.js';
import { contiguousStrides, isContiguous } from '../../tensor/shape.js';
import type { KernelOut, KernelView } from '../backend.js';
import { PARAMS_WORDS } from './protocol.js';

/** A dispatch's uniform block: 128 words, written as u32, i32 or f32 by index. */
export class Params {
  readonly u = new Uint32Array(PARAMS_WORDS);
  readonly i = new Int32Array(this.u.buffer);
  readonly f = new Float32Array(this.u.buffer);
  /** Writes a u32, refusing values the kernel could not index with. */
  set(k: number, v: number): this {
    if (!(Number.isInteger(v) && v >= 0 && v <= 0xffffffff))
      throw new BackendError(`webgpu: parameter ${k} = ${v} does not fit a u32 (tensor too large for this kernel)`);
    this.u[k] = v;
    return this;
  }
}

export interface Gpu {
  /** Queues one dispatch of `threads` invocations in workgroups of 256 (or an explicit workgroup grid). */
  /** `bufs` are bound at bindings 1, 2, ... in order; null leaves a binding the entry point does not use. */
  dispatch(
    shader: string,
    entry: string,
    consts: Record<string, number>,
    params: Params,
    bufs: readonly (number | null)[],
    size: { threads: number } | { groups: [number, number, number] },
  ): void;
  /** A scratch buffer for intermediate results; release it after the dispatches that use it are queued. */
  scratch(dtype: DType, numel: number): number;
  release(id: number): void;
  /** Buffer id of a 256-byte buffer bound where a kernel's optional input is absent. */
  readonly dummy: number;
  /** Buffer id of the error-flag words (atomic) kernels set on bad data; see withFlags. */
  readonly flags: number;
  readonly limits: Readonly<Record<string, number>>;
  /** The most loop turns one shader invocation may make: 65535 on Mesa's llvmpipe, which ends a loop there (its
   * loop limiter, over all the loops of an invocation), else Infinity. */
  readonly loopCap: number;
}

/** Throws a BackendError when one invocation of `what` would loop `turns` times, and a kernel's short loops 64 more,
 * past the adapter's loopCap. */
export function checkLoopTurns(g: Gpu, turns: number, what: string): void {
  if (turns + 64 > g.loopCap)
    throw new BackendError(
      `webgpu: ${what} needs ${turns} loop turns in one shader invocation; this adapter (Mesa's llvmpipe) ends a ` +
        `shader's loops after ${g.loopCap}, which would give a wrong result. Run it on the cpu backend ` +
        `(kn.setBackend('cpu')), or reduce the axis in parts`,
    );
}

/** Loop turns one invocation may take in a dispatch where the adapter caps loops (llvmpipe): half of its cap. */
export const WINDOW_TURNS = 32768;

/**
 * Calls `run(lo, hi)` over windows of [0, n) that each take at most WINDOW_TURNS loop turns, at `perItem` turns an
 * item, where the adapter caps loops (gpu.loopCap), else once over all of [0, n); at least once, for n = 0. Each
 * window's dispatch adds onto what the window before wrote (the kernel reads its window from its params).
 */
export function windows(g: Gpu, n: number, perItem: number, run: (lo: number, hi: number) => void): void {
  const w = Number.isFinite(g.loopCap) ? Math.max(1, Math.floor(WINDOW_TURNS / perItem)) : Math.max(1, n);
  for (let lo = 0; lo === 0 || lo < n; lo += w) run(lo, Math.min(n, lo + w));
}

/** Binding list with the error-flag buffer at binding 15 (where common.wgsl declares it). */
export function withFlags(g: Gpu, bufs: readonly (number | null)[]): (number | null)[] {
  const out = [...bufs];
  while (out.length < 14) out.push(null);
  out.push(g.flags);
  return out;
}

export type GpuKernel = (g: Gpu, inputs: readonly KernelView[], out: KernelOut, attrs: readonly number[]) => void;

export const code = (d: DType): number => DTYPE_CODES[d];
export const id = (v: KernelView | KernelOut): number => v.handle as number;

export function numelOf(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/** Workgroup grid for `groups` workgroups: one row up to the per-dimension limit, more rows after. */
export function grid(groups: number, maxPerDim: number): [number, number, number] {
  if (groups <= maxPerDim) return [Math.max(1, groups), 1, 1];
  const y = Math.ceil(groups / maxPerDim);
  if (y > maxPerDim) throw new BackendError(`webgpu: ${groups} workgroups exceed the device's ${maxPerDim}^2 grid`);
  return [Math.ceil(groups / y), y, 1];
}

/**
 * Merges the dims of a shape (and the matching strides of several views over it) wherever every view steps
 * through them as one, and drops size-1 dims: kernels then loop over as few dims as possible.
 */
export function mergeDims(
  shape: readonly number[],
  strides: readonly (readonly number[])[],
): { shape: number[]; strides: number[][] } {
  const sh: number[] = [];
  const st: number[][] = strides.map(() => []);
  for (let d = 0; d < shape.length; d++) {
    if (shape[d] === 1) continue;
    const last = sh.length - 1;
    if (last >= 0 && strides.every((s, k) => st[k]![last] === s[d]! * shape[d]!)) {
      sh[last]! *= shape[d]!;
      strides.forEach((s, k) => {
        st[k]![last] = s[d]!;
      });
    } else {
      sh.push(shape[d]!);
      strides.forEach((s, k) => st[k]!.push(s[d]!));
    }
  }
  return { shape: sh, strides: st };
}

/** A view of a whole contiguous buffer (scratch that one kernel wrote and the next reads). */
export function denseView(handle: number, dtype: DType, shape: readonly number[]): KernelView {
  return { handle, dtype, shape, strides: contiguousStrides(shape), offset: 0 };
}

/**
 * Wraps a kernel that indexes its inputs from element 0 of contiguous buffers: inputs that are offset or
 * strided views (a batch sliced from a dataset, say) are first copied to fresh buffers with `copy`.
 */
export function denseInputs(k: GpuKernel, copy: (g: Gpu, v: KernelView, dst: number) => void): GpuKernel {
  return (g, ins, out, attrs) => {
    const temps: number[] = [];
    try {
      const dense = ins.map((v) => {
        if (v.offset === 0 && isContiguous(v.shape, v.strides)) return v;
        const h = g.scratch(v.dtype, numelOf(v.shape));
        temps.push(h);
        copy(g, v, h);
        return denseView(h, v.dtype, v.shape);
      });
      k(g, dense, out, attrs);
    } finally {
      for (const t of temps) g.release(t);
    }
  };
}

/** Views up to this many (merged) dims go to the strided kernels; the params block has room for 8. */
export const MAX_DIMS = 8;
