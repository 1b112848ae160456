import type { GpuKernel } from './gpu.js';
export const optimKernels: Record<string, GpuKernel> = {};
