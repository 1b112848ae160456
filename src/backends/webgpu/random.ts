import type { GpuKernel } from './gpu.js';
export const randomKernels: Record<string, GpuKernel> = {};
