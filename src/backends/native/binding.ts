// Loads kiln.node (a source build or the package's prebuilt binary, see locate.ts) and maps its errors onto
// KilnError subclasses. Refuses an addon whose op list differs from src/ops/table.ts.
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { ArgumentError, BackendError, DTypeError, KilnError, ShapeError } from '../../errors.js';
import { OP_TABLE } from '../../ops/table.js';
import { libc, locate, prebuildName, type Located } from './locate.js';
import type { StorageArray } from '../../tensor/dtype.js';

export interface CudaInfo {
  compiled: boolean;
  available: boolean;
  deviceCount: number;
  reason: string;
  device: string;
  /** float32 GEMM mode of the CUDA library: 'fp32' (exact, default) or 'tf32' (KILN_CUDA_GEMM=tf32); '' without it. */
  matmul: string;
  /** 'cuBLASLt 12.4.5 (libcublasLt.so.12)' when KILN_CUDA_CUBLASLT put cuBLASLt in use for the GEMMs, else ''. */
  cublasLt: string;
  /** Why cuBLASLt is not in use when KILN_CUDA_CUBLASLT asked for it ('' otherwise). */
  cublasLtReason: string;
  /** Whether bfloat16 (and, under tf32, float32) products run on the sm_90a wgmma kernel (KILN_CUDA_WGMMA=1). */
  wgmma: boolean;
  /** Why not, when KILN_CUDA_WGMMA=1 asked for it ('' otherwise). */
  wgmmaReason: string;
}

export interface AddonInfo {
  opNames: string[];
  opCount: number;
  isa: string;
  isaError: string;
  supportedIsas: string[];
  threads: number;
  cuda: CudaInfo;
  compiler?: string;
}

export interface Addon {
  alloc(dtype: number, numel: number): number;
  free(id: number): void;
  write(id: number, data: StorageArray, offset: number): void;
  read(id: number, into: StorageArray, offset: number): void;
  run(op: number, inputs: Float64Array, output: Float64Array, attrs: Float64Array): void;
  supports(op: number): boolean;
  sync(): void;
  info(): AddonInfo;
  setIsa(name: string): void;
  setThreads(n: number): void;
  /** Measured float32 FMA peak of the active ISA on every pool thread (runs about `ms` milliseconds). */
  peakFlops(ms: number): { gflops: number; threads: number; isa: string; seconds: number };
  stats(): {
    buffers: number;
    bytes: number;
    cachedBytes: number;
    cacheHits: number;
    cacheMisses: number;
    /** weights packed once and kept (native/include/kiln/pack_cache.h) */
    packedEntries: number;
    packedBytes: number;
    packedHits: number;
    packedMisses: number;
  };
  /** Sets how many MiB of packed weights the cpu backend keeps (0: pack on every call); returns the previous. */
  setPackCacheLimit(mb: number): number;
  /** Returns cached (freed, kept for reuse) buffers to the system (host and CUDA). */
  emptyCache(): void;
  /** CUDA device memory in the same id table (the addon runs ops on the device its buffers are on). */
  /** Opens the CUDA library kiln_cuda.so ('' when none was built): '' when loaded, else why not. */
  cudaLoad(path: string): string;
  cudaAlloc(dtype: number, numel: number): number;
  cudaSupports(op: number): boolean;
  /** NCCL (dlopen'd at run time): '' when usable, else why not. */
  ncclStatus(): string;
  ncclUniqueId(): Uint8Array;
  ncclInit(rank: number, size: number, id: Uint8Array): void;
  /** In place over a whole CUDA buffer, on kiln's stream; op 0 sum, 1 mean, 2 max, 3 min. */
  ncclAllreduce(id: number, op: number): void;
  ncclBroadcast(id: number, root: number): void;
}

/** Converts an error thrown by the addon into the matching KilnError subclass. */
export function mapNativeError(e: unknown): KilnError {
  if (e instanceof KilnError) return e;
  const err = e as { code?: string; message?: string };
  const msg = err?.message ?? String(e);
  switch (err?.code) {
    case 'KILN_SHAPE':
      return new ShapeError(msg);
    case 'KILN_DTYPE':
      return new DTypeError(msg);
    case 'KILN_ARG':
      return new ArgumentError(msg);
    default:
      return new BackendError(msg);
  }
}

let cached: { addon: Addon | null; reason: string } | undefined;

/** The kiln.node this process loads (see locate.ts), or where a source build would put it. */
export function addonPath(): string {
  const l = locate('kiln');
  return l.path ?? l.tried[0] ?? '';
}

/** Where the loaded kiln.node came from: an explicit path, a source build, or the package's prebuilt binary. */
export function addonOrigin(): Located {
  return locate('kiln');
}

/** The addon, or null with the reason it could not be loaded. */
export function loadAddon(): { addon: Addon | null; reason: string } {
  if (cached) return cached;
  const where = locate('kiln');
  const path = where.path;
  if (path === null || !existsSync(path)) {
    const p = prebuildName('kiln');
    cached = {
      addon: null,
      reason:
        where.from === 'env'
          ? `native addon not found: KILN_ADDON_PATH names ${where.tried[0]}, which does not exist`
          : `native addon not found (looked at ${where.tried.join(', ')}): kiln ships prebuilt binaries for ` +
            `linux-x64 and linux-arm64 (glibc) only, and this is ${p.dir}${libc() ? ` (${libc()})` : ''}; ` +
            `build it from source with 'npx kiln build' (needs cmake or node-gyp, and a C++17 compiler)`,
    };
    return cached;
  }
  try {
    const require = createRequire(import.meta.url);
    const addon = require(path) as Addon;
    if (typeof addon.cudaLoad !== 'function') {
      cached = { addon: null, reason: `native addon ${path} is from an older kiln; rebuild it with 'npx kiln build'` };
      return cached;
    }
    // the optional CUDA library (kiln_cuda.so, from 'kiln build --cuda'): opened before anything asks about CUDA
    addon.cudaLoad(locate('kiln_cuda').path ?? '');
    const info = addon.info();
    const names = OP_TABLE.map((o) => o.name);
    if (info.opCount !== names.length || info.opNames.some((n, i) => n !== names[i])) {
      cached = {
        addon: null,
        reason: 'native addon is stale: its op table differs from src/ops/table.ts; run npm run build:native',
      };
    } else if (info.isaError) {
      cached = { addon: null, reason: info.isaError };
    } else {
      cached = { addon, reason: '' };
    }
  } catch (e) {
    cached = { addon: null, reason: `native addon failed to load: ${(e as Error).message}` };
  }
  return cached;
}
