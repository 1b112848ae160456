import type { KernelOut, KernelView } from '../backend.js';

export type KernelFn = (inputs: readonly KernelView[], out: KernelOut, attrs: readonly number[]) => void;
