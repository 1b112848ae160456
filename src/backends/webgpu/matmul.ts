import type { GpuKernel } from './gpu.js';
export const matmulKernels: Record<string, GpuKernel> = {};
