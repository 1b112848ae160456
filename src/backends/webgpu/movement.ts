import type { GpuKernel } from './gpu.js';
export const movementKernels: Record<string, GpuKernel> = {};
