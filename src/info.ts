import { readFileSync } from 'node:fs';
import { BACKEND_NAMES, type BackendName } from './backends/backend.js';
import { unavailableReason } from './backends/registry.js';
import { addonOrigin, loadAddon } from './backends/native/binding.js';
import { webgpuStatus } from './backends/webgpu/index.js';

export interface KilnInfo {
  kiln: string;
  node: string;
  backends: { name: BackendName; available: boolean; reason: string | null }[];
  cpu: {
    isa: string;
    supportedIsas: string[];
    threads: number;
    compiler?: string;
    /** The kiln.node in use and where it came from ('prebuild' shipped in the package, 'source build', 'env'). */
    addon: { path: string; from: 'env' | 'source build' | 'prebuild' };
  } | null;
  /**
   * `matmul`: the float32 GEMM mode, 'fp32' (exact, default) or 'tf32' (opt-in with KILN_CUDA_GEMM=tf32).
   * `cublasLt`: the cuBLASLt KILN_CUDA_CUBLASLT put in use for the GEMMs ('' for kiln's own kernels), and
   * `cublasLtReason` why it is not in use when it was asked for. `wgmma`: bfloat16 products (and float32 ones under
   * tf32) run on kiln's Hopper kernel (TMA + wgmma; opt-in with KILN_CUDA_WGMMA=1 on a compute capability 9.0 GPU),
   * `wgmmaReason` why not when it was asked for.
   */
  cuda: {
    compiled: boolean;
    available: boolean;
    device: string;
    reason: string;
    matmul: string;
    cublasLt: string;
    cublasLtReason: string;
    wgmma: boolean;
    wgmmaReason: string;
  } | null;
  /** The WebGPU adapter the webgpu backend runs on (null when it is unavailable). */
  webgpu: {
    backend: string;
    description: string;
    vendor: string;
    architecture: string;
    featureLevel: string;
    maxBufferBytes: number;
  } | null;
}

/**
 * Versions, CPU features in use, and every backend with the reason a missing one is missing.
 * @example kn.info().backends.length // 4
 */
export function info(): KilnInfo {
  const { addon } = loadAddon();
  const a = addon?.info();
  const origin = addonOrigin();
  return {
    kiln: packageVersion(),
    node: process.version,
    backends: BACKEND_NAMES.map((name) => {
      const reason = unavailableReason(name);
      return { name, available: reason === null, reason };
    }),
    cpu: a
      ? {
          isa: a.isa,
          supportedIsas: a.supportedIsas,
          threads: a.threads,
          compiler: a.compiler,
          addon: { path: origin.path ?? '', from: origin.from === 'none' ? 'env' : origin.from },
        }
      : null,
    cuda: a
      ? {
          compiled: a.cuda.compiled,
          available: a.cuda.available,
          device: a.cuda.device,
          reason: a.cuda.reason,
          matmul: a.cuda.matmul,
          cublasLt: a.cuda.cublasLt,
          cublasLtReason: a.cuda.cublasLtReason,
          wgmma: a.cuda.wgmma,
          wgmmaReason: a.cuda.wgmmaReason,
        }
      : null,
    webgpu: webgpuInfo(),
  };
}

function webgpuInfo(): KilnInfo['webgpu'] {
  const { adapter } = webgpuStatus();
  if (!adapter) return null;
  return {
    backend: adapter.backend,
    description: adapter.description,
    vendor: adapter.vendor,
    architecture: adapter.architecture,
    featureLevel: adapter.featureLevel,
    maxBufferBytes: adapter.limits.maxStorageBufferBindingSize ?? 0,
  };
}

function packageVersion(): string {
  try {
    // src/info.ts and dist/info.js both sit one level below package.json
    const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version?: string };
    return pkg.version ?? 'unknown';
  } catch {
    return 'unknown';
  }
}
