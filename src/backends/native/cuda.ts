// Whether the `cuda` backend (kernels/cuda/ in the same addon; NativeBackend in cpu.ts) can run here: compiled
// with CUDA, a device found, and why not otherwise.
import { loadAddon } from './binding.js';

export function cudaStatus(): { available: boolean; reason: string; compiled: boolean; device: string } {
  const { addon, reason } = loadAddon();
  if (!addon) return { available: false, compiled: false, device: '', reason: `native addon unavailable: ${reason}` };
  const c = addon.info().cuda;
  return { available: c.available, compiled: c.compiled, device: c.device, reason: c.reason };
}
