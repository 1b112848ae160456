import type { GpuKernel } from './gpu.js';
export const quantKernels: Record<string, GpuKernel> = {};
