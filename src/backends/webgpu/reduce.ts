import type { GpuKernel } from './gpu.js';
export const reduceKernels: Record<string, GpuKernel> = {};
