import { ArgumentError, BackendError, describe } from '../errors.js';
import type { Backend, BackendName } from './backend.js';
import { BACKEND_NAMES } from './backend.js';
import { JsBackend } from './js/index.js';
import { loadAddon } from './native/binding.js';
import { CpuBackend, CudaBackend } from './native/cpu.js';
import { cudaStatus } from './native/cuda.js';
import { WebGpuBackend, webgpuStatus } from './webgpu/index.js';

const instances = new Map<BackendName, Backend>();
let current: BackendName | null = null;

/** Why a backend is unavailable, or null if it is available. */
export function unavailableReason(name: BackendName): string | null {
  switch (name) {
    case 'js':
      return null;
    case 'cpu': {
      const { addon, reason } = loadAddon();
      return addon ? null : reason;
    }
    case 'cuda': {
      const s = cudaStatus();
      return s.available ? null : s.reason;
    }
    case 'webgpu': {
      const s = webgpuStatus();
      return s.available ? null : s.reason;
    }
  }
}

export function getBackendInstance(name: BackendName): Backend {
  let b = instances.get(name);
  if (b) return b;
  const why = unavailableReason(name);
  if (why !== null) throw new BackendError(`backend '${name}' is not available: ${why}`);
  if (name === 'js') b = new JsBackend();
  else if (name === 'cpu') b = new CpuBackend(loadAddon().addon!);
  else if (name === 'webgpu') b = new WebGpuBackend();
  else if (name === 'cuda') b = new CudaBackend(loadAddon().addon!);
  else throw new BackendError(`backend '${name}' is not available`);
  instances.set(name, b);
  return b;
}

function assertName(name: unknown): BackendName {
  if (typeof name !== 'string' || !(BACKEND_NAMES as readonly string[]).includes(name)) {
    throw new ArgumentError(`backend must be one of ${BACKEND_NAMES.join(', ')}; got ${describe(name)}`);
  }
  return name as BackendName;
}

/**
 * Selects the backend new tensors are created on.
 * @example kn.setBackend('js'); const t = kn.ones([2]); // lives on the js reference backend
 */
export function setBackend(name: BackendName): void {
  const n = assertName(name);
  getBackendInstance(n);
  current = n;
}

/**
 * The current default backend: 'cpu' when the addon loads, else 'js'.
 * @example kn.backends().includes(kn.getBackend()) // true
 */
export function getBackend(): BackendName {
  if (current === null) current = unavailableReason('cpu') === null ? 'cpu' : 'js';
  return current;
}

export function currentBackend(): Backend {
  return getBackendInstance(getBackend());
}

/**
 * Names of the backends available in this process. With KILN_REQUIRE_CPU, KILN_REQUIRE_CUDA or
 * KILN_REQUIRE_WEBGPU set to 1 (a GPU test run that must not turn green by skipping), a required backend that is
 * unavailable throws a BackendError with the reason instead of being left out.
 * @example kn.backends().includes('js') // true
 */
export function backends(): BackendName[] {
  for (const n of requiredBackends()) {
    const why = unavailableReason(n);
    if (why !== null)
      throw new BackendError(`KILN_REQUIRE_${n.toUpperCase()}=1 but backend '${n}' is not available: ${why}`);
  }
  return BACKEND_NAMES.filter((n) => unavailableReason(n) === null);
}

/** The backends the environment requires (KILN_REQUIRE_<NAME>=1). */
export function requiredBackends(env: NodeJS.ProcessEnv = process.env): BackendName[] {
  return BACKEND_NAMES.filter((n) => n !== 'js' && env[`KILN_REQUIRE_${n.toUpperCase()}`] === '1');
}

/** Resolves when the current backend is ready (async initialisation for GPU backends). */
export async function ready(): Promise<void> {
  currentBackend();
}

/**
 * Returns memory the cpu backend keeps for reuse (freed buffers of >= 64 KiB, up to KILN_CPU_CACHE_MB,
 * default 1024) to the system. Live tensors are not affected.
 * @example kn.emptyCache()
 */
export function emptyCache(): void {
  loadAddon().addon?.emptyCache();
}
