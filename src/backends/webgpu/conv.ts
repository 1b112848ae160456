import type { GpuKernel } from './gpu.js';
export const convKernels: Record<string, GpuKernel> = {};
