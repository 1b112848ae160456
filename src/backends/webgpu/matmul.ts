// Matmul kernels of the webgpu backend (kernels/wgsl/matmul.wgsl): float32 and bfloat16 operands (float32
// accumulation), strided and batch-broadcast views as they come, so transposes cost no copy.
import { BackendError } from '../../errors.js';
import { Params, code, id, mergeDims, numelOf, type GpuKernel } from './gpu.js';
import { PARAMS } from './params.js';

const matmul: GpuKernel = (g, ins, out) => {
  const [a, b] = ins as [(typeof ins)[0] & object, (typeof ins)[0] & object];
  const nd = a.shape.length;
  const M = a.shape[nd - 2]!,
    K = a.shape[nd - 1]!,
    N = b.shape[nd - 1]!;
  const bshape = out.shape.slice(0, nd - 2);
  const batch = numelOf(bshape);
  if (batch * M * N === 0) return;
  const merged = mergeDims(bshape, [a.strides.slice(0, nd - 2), b.strides.slice(0, nd - 2)]);
  if (merged.shape.length > 4)
    throw new BackendError(`webgpu matmul: up to 4 batch dims after merging, got ${merged.shape.length}`);
  const max = g.limits.maxComputeWorkgroupsPerDimension ?? 65535;
  if (batch > max)
    throw new BackendError(
      `webgpu matmul: ${batch} batched products exceed the device's ${max} workgroups per dimension`,
    );
  const P = PARAMS.matmul;
  const p = new Params()
    .set(P.M, M)
    .set(P.N, N)
    .set(P.K, K)
    .set(P.batchDims, merged.shape.length)
    .set(P.offA, a.offset)
    .set(P.rowStrideA, a.strides[nd - 2]!)
    .set(P.colStrideA, a.strides[nd - 1]!)
    .set(P.offB, b.offset)
    .set(P.rowStrideB, b.strides[nd - 2]!)
    .set(P.colStrideB, b.strides[nd - 1]!);
  merged.shape.forEach((s, d) => {
    p.set(P.batchShape + d, s);
    p.set(P.batchStrideA + d, merged.strides[0]![d]!);
    p.set(P.batchStrideB + d, merged.strides[1]![d]!);
  });
  g.dispatch(
    'matmul',
    'matmul',
    { DTA: code(a.dtype), DTB: code(b.dtype) },
    p,
    [id(out), id(a), id(b), g.dummy, g.dummy],
    { groups: [Math.ceil(N / 64), Math.ceil(M / 64), batch] },
  );
};

export const matmulKernels: Record<string, GpuKernel> = { matmul, matmulBf16: matmul };
