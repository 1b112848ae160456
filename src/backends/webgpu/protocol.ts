// Messages between the webgpu backend (main thread) and its GPU worker. The worker owns the Dawn device; the
// main thread sends it batches of commands and, for reads, blocks on a SharedArrayBuffer the worker fills.

/** Bytes of one dispatch's uniform block (a Params struct of 128 u32 words in every shader). */
export const PARAMS_WORDS = 128;
export const PARAMS_BYTES = PARAMS_WORDS * 4;

/** Buffer id 0 is the worker's error-flag buffer (atomic u32 words kernels set on bad input). */
export const FLAGS_ID = 0;
/** Flag words: which kernel found bad data on the GPU. */
export const FLAG_NAMES = [
  'gather: an index was out of range',
  'scatterAdd: an index was out of range',
  'crossEntropy: a label was out of range (expected a class in [0, C))',
  'qlinearInt8: x has NaN or infinite values (cannot be quantized)',
] as const;

export type Command =
  | { t: 'alloc'; id: number; bytes: number }
  | { t: 'free'; id: number }
  | { t: 'write'; id: number; byteOffset: number; data: Uint8Array }
  | { t: 'dispatch'; shader: string; entry: string; consts: Record<string, number>; params: Uint32Array; bufs: (number | null)[]; groups: [number, number, number] }
  | { t: 'copy'; src: number; srcOffset: number; dst: number; dstOffset: number; bytes: number }
  | { t: 'read'; id: number; byteOffset: number; bytes: number; sab: SharedArrayBuffer }
  | { t: 'sync'; sab: SharedArrayBuffer };

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
