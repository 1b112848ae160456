// The `cuda` backend lives in the same addon. Until its kernels land (CUDA backend issue) this module only
// reports whether a device exists and why the backend is unavailable.
import { loadAddon } from './binding.js';

export function cudaStatus(): { available: boolean; reason: string; compiled: boolean; device: string } {
  const { addon, reason } = loadAddon();
  if (!addon) return { available: false, compiled: false, device: '', reason: `native addon unavailable: ${reason}` };
  const c = addon.info().cuda;
  return { available: c.available, compiled: c.compiled, device: c.device, reason: c.reason };
}
