import type { KernelFn } from './kernels.js';
import { buf, outBuf, prod } from './util.js';

function matmul(...args: Parameters<KernelFn>): void {
  const [ins, out] = args;
  {
    const a = ins[0]!,
      b = ins[1]!;
    const nd = a.shape.length;
    const M = a.shape[nd - 2]!,
      K = a.shape[nd - 1]!,
      N = b.shape[nd - 1]!;
    const batch = prod(out.shape, 0, nd - 2);
    const pa = buf(a.handle),
      pb = buf(b.handle),
      o = outBuf(out);
    const ars = a.strides[nd - 2]!,
      acs = a.strides[nd - 1]!,
      brs = b.strides[nd - 2]!,
      bcs = b.strides[nd - 1]!;
    for (let bi = 0; bi < batch; bi++) {
      let oa = a.offset,
        ob = b.offset,
        rem = bi;
      for (let d = nd - 3; d >= 0; d--) {
        const idx = rem % out.shape[d]!;
        rem = Math.floor(rem / out.shape[d]!);
        oa += idx * a.strides[d]!;
        ob += idx * b.strides[d]!;
      }
      for (let i = 0; i < M; i++) {
        for (let j = 0; j < N; j++) {
          let s = 0;
          for (let k = 0; k < K; k++) s += pa[oa + i * ars + k * acs]! * pb[ob + k * brs + j * bcs]!;
          o[(bi * M + i) * N + j] = s;
        }
      }
    }
  }
}

export const matmulKernels: Record<string, KernelFn> = {
  matmul,
  // the inputs hold exact bfloat16 values; the product is computed in float64 like matmul's
  matmulBf16: matmul,
};
