// Messages between the webgpu backend (main thread) and its GPU worker. The worker owns the Dawn device; the
// main thread sends it batches of commands and, for reads, blocks on a SharedArrayBuffer the worker fills.
import { DEVICE_FLAGS, deviceFlagMessage } from '../../ops/table.js';

/** Bytes of one dispatch's uniform block (a Params struct of 128 u32 words in every shader). */
export const PARAMS_WORDS = 128;
export const PARAMS_BYTES = PARAMS_WORDS * 4;

/** Buffer id 0 is the worker's error-flag buffer (atomic u32 words kernels set on bad input). */
export const FLAGS_ID = 0;
/** Error-flag words: 8 per kind (kernels/wgsl/common.wgsl `report`), one kind per DEVICE_FLAGS entry. */
export const FLAG_KINDS = DEVICE_FLAGS.length;
/** The flag word after the kinds' where common.wgsl `check_loops` puts the code of a kernel whose loops were cut. */
export const LOOP_FLAG_WORD = FLAG_KINDS * 8;
export const FLAG_BYTES = (FLAG_KINDS + 1) * 8 * 4;

/** Mesa's llvmpipe ends a shader invocation's loops after this many turns, one budget for all of its loops. */
export const LLVMPIPE_LOOP_CAP = 65535;

/** The most loop turns one invocation may make on this adapter: LLVMPIPE_LOOP_CAP on llvmpipe, else Infinity. */
export function adapterLoopCap(a: { description: string; device: string; architecture: string }): number {
  return /llvmpipe/i.test(`${a.description} ${a.device} ${a.architecture}`) ? LLVMPIPE_LOOP_CAP : Infinity;
}

/** The error for a kernel (`shader.entry`) whose loops the adapter cut short. */
export function loopCutMessage(kernel: string): string {
  return (
    `kernel ${kernel} needed more loop turns in one shader invocation than this adapter allows (Mesa's ` +
    `llvmpipe ends an invocation's loops after ${LLVMPIPE_LOOP_CAP}), so what it wrote is wrong. Run this on ` +
    `the cpu backend (kn.setBackend('cpu')), or in smaller parts (a shorter axis, fewer channels)`
  );
}
/** Marks an error message as the user's bad data (an ArgumentError on the main thread). */
export const ARG_ERROR = 'ARG:';

/** The message for flag kind k from its words [set, position + 1, value, bound, extra] (DEVICE_FLAGS). */
export function flagMessage(k: number, w: Uint32Array): string {
  const words = w[1]! > 0 ? { pos: w[1]! - 1, value: w[2]! | 0, bound: w[3]!, extra: w[4]! } : null;
  return (
    deviceFlagMessage(k, words) +
    ' (found on the GPU: this backend checks data-dependent indices when it next reads, and the kernel wrote 0 there)'
  );
}

export type Command =
  | { t: 'alloc'; id: number; bytes: number }
  | { t: 'free'; id: number }
  | { t: 'write'; id: number; byteOffset: number; data: Uint8Array }
  | {
      t: 'dispatch';
      shader: string;
      entry: string;
      consts: Record<string, number>;
      params: Uint32Array;
      bufs: (number | null)[];
      groups: [number, number, number];
    }
  | { t: 'copy'; src: number; srcOffset: number; dst: number; dstOffset: number; bytes: number }
  | { t: 'read'; id: number; byteOffset: number; bytes: number; sab: SharedArrayBuffer }
  | { t: 'sync'; sab: SharedArrayBuffer }
  | { t: 'shutdown'; sab: SharedArrayBuffer };

export interface InitData {
  wgslDir: string;
  /** 'auto' tries Vulkan where a Vulkan driver is installed, then OpenGL ES (Mesa's llvmpipe without a GPU). */
  backend: string;
  sab: SharedArrayBuffer;
}

/** Reply header in a reply SharedArrayBuffer: int32 [state, payloadBytes], payload from byte 8. */
export const REPLY_HEADER = 8;
export const STATE_PENDING = 0;
export const STATE_OK = 1;
export const STATE_ERROR = 2;

export interface AdapterSummary {
  backend: string;
  vendor: string;
  architecture: string;
  device: string;
  description: string;
  featureLevel: string;
  limits: Record<string, number>;
  features: string[];
}
