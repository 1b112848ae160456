// Runs one kernel: checks backends and kernels, converts inputs to the dtypes the kernel computes in,
// makes inputs contiguous where the kernel needs it, allocates the output, and maps failures to errors.
import type { Backend, KernelView } from '../backends/backend.js';
import { currentBackend } from '../backends/registry.js';
import { ArgumentError, BackendError, DTypeError } from '../errors.js';
import { OP_BY_NAME, type OpName, type OpSpec } from '../ops/table.js';
import { activeRecorder, recordKernel, runBackend } from '../profile/recorder.js';
import type { DType } from '../tensor/dtype.js';
import { numel } from '../tensor/shape.js';
import { Tensor } from '../tensor/tensor.js';
import { allocStorage } from './memory.js';

function computeDType(kind: 'float' | 'numeric' | 'any', d: DType): DType {
  if (kind === 'any') return d;
  if (kind === 'float') return 'float32';
  if (d === 'float32' || d === 'int32') return d;
  if (d === 'float16' || d === 'bfloat16') return 'float32';
  return 'int32';
}

export function commonBackend(inputs: readonly Tensor[], op: string, fallback?: Backend): Backend {
  if (inputs.length === 0) return fallback ?? currentBackend();
  const b = inputs[0]!.backendInstance;
  for (const t of inputs) {
    if (t.backendInstance !== b) {
      throw new BackendError(
        `op '${op}' got tensors on different backends ('${b.name}' and '${t.backend}'); move one with t.to('${b.name}')`,
      );
    }
  }
  return b;
}

/** Converts input i to the dtype the kernel computes in and makes it contiguous if the kernel needs that;
 * converted copies go to `temps` for the caller to free. */
function prepareInput(spec: OpSpec, t: Tensor, i: number, temps: Tensor[]): Tensor {
  let x = t;
  const want = spec.fixedInputs[i] ?? computeDType(spec.dtypes, x.dtype);
  if (want !== x.dtype) {
    x = runKernel('cast', [x], [], x.shape, want);
    temps.push(x);
  }
  if (spec.contiguous && !x.isContiguous()) {
    x = runKernel('copy', [x], [], x.shape, x.dtype);
    temps.push(x);
  }
  return x;
}

/** Runs a kernel with no autograd. The result is a new, contiguous tensor. */
export function runKernel(
  op: OpName,
  inputs: readonly Tensor[],
  attrs: readonly number[],
  outShape: readonly number[],
  outDtype: DType,
  on?: Backend,
): Tensor {
  if (activeRecorder === null) return kernelCall(op, inputs, attrs, outShape, outDtype, on);
  // profiled: the same call between two clock reads, recorded with its shapes, bytes and FLOPs
  return recordKernel(
    () => kernelCall(op, inputs, attrs, outShape, outDtype, on),
    (out) => {
      const backend = out?.backendInstance ?? on ?? currentBackend();
      const bytes = out ? backend.bytes(out.dtype, numel(outShape)) : 0;
      return { op, backend, inputs, attrs, outShape, outDtype, bytes };
    },
  );
}

function kernelCall(
  op: OpName,
  inputs: readonly Tensor[],
  attrs: readonly number[],
  outShape: readonly number[],
  outDtype: DType,
  on?: Backend,
): Tensor {
  for (const t of inputs) t.assertAlive(op);
  const backend = commonBackend(inputs, op, on);
  if (!backend.has(op)) throw new BackendError(`op '${op}' has no kernel on backend '${backend.name}'`);
  const spec = OP_BY_NAME[op];
  const temps: Tensor[] = [];
  try {
    const prepared = inputs.map((t, i) => prepareInput(spec, t, i, temps));
    const kernelOut: DType =
      spec.out === 'requested'
        ? outDtype
        : spec.out === 'bool' || spec.out === 'int32'
          ? spec.out
          : prepared.length > 0
            ? prepared[0]!.dtype
            : computeDType(spec.dtypes, outDtype);
    const views: KernelView[] = prepared.map((t) => t.kernelView());
    const storage = allocStorage(backend, kernelOut, numel(outShape));
    try {
      runBackend(backend, op, views, { handle: storage.handle, dtype: kernelOut, shape: outShape }, attrs);
    } catch (e) {
      storage.release();
      throw e;
    }
    const out = Tensor.fromStorage(storage, outShape, kernelOut);
    if (kernelOut === outDtype) return out;
    try {
      return runKernel('cast', [out], [], outShape, outDtype);
    } finally {
      out.dispose();
    }
  } finally {
    for (const t of temps) t.dispose();
  }
}

/**
 * Runs an op that updates some of its inputs in place (the table's `inplace` list; optimizer steps). Those
 * inputs must be contiguous float32 tensors whose storage no other input shares; the others are converted
 * like any kernel input. Nothing is recorded for autograd.
 */
export function runInPlace(op: OpName, inputs: readonly Tensor[], attrs: readonly number[]): void {
  if (activeRecorder === null) return inPlaceCall(op, inputs, attrs);
  recordKernel(
    () => inPlaceCall(op, inputs, attrs),
    () => {
      const backend = inputs[0]?.backendInstance ?? currentBackend();
      return { op, backend, inputs, attrs, outShape: inputs[0]?.shape ?? [], outDtype: 'float32', bytes: 0 };
    },
  );
}

function inPlaceCall(op: OpName, inputs: readonly Tensor[], attrs: readonly number[]): void {
  for (const t of inputs) t.assertAlive(op);
  const backend = commonBackend(inputs, op);
  if (!backend.has(op)) throw new BackendError(`op '${op}' has no kernel on backend '${backend.name}'`);
  const spec = OP_BY_NAME[op];
  const temps: Tensor[] = [];
  try {
    const views = inputs.map((t, i) => {
      if (spec.inplace.includes(i)) {
        if (t.dtype !== 'float32')
          throw new DTypeError(`${op}: input ${i} is updated in place and must be float32, got ${t.dtype}`);
        if (!t.isContiguous()) throw new ArgumentError(`${op}: input ${i} is updated in place and must be contiguous`);
        return t.kernelView();
      }
      return prepareInput(spec, t, i, temps).kernelView();
    });
    for (const i of spec.inplace) {
      if (i >= views.length) continue;
      for (let j = 0; j < views.length; j++) {
        if (j !== i && views[j]!.handle === views[i]!.handle) {
          throw new ArgumentError(`${op}: input ${i} is updated in place but shares its storage with input ${j}`);
        }
      }
    }
    const storage = allocStorage(backend, 'float32', 0);
    try {
      runBackend(backend, op, views, { handle: storage.handle, dtype: 'float32', shape: [0] }, attrs);
    } finally {
      storage.release();
      for (const i of spec.inplace) inputs[i]?.bumpVersion();
    }
  } finally {
    for (const t of temps) t.dispose();
  }
}
