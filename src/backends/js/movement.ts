import { ArgumentError } from '../../errors.js';
import type { KernelFn } from './kernels.js';
import { gatherView, outBuf, prod, writeCanon } from './util.js';
import { attrsOf } from '../../ops/table.js';

export const movementKernels: Record<string, KernelFn> = {
  copy: (ins, out) => {
    outBuf(out).set(gatherView(ins[0]!));
  },
  concat: (ins, out, attrs) => {
    const { axis } = attrsOf('concat', attrs);
    const o = outBuf(out);
    const outer = prod(out.shape, 0, axis);
    const inner = prod(out.shape, axis + 1);
    const total = out.shape[axis]!;
    let start = 0;
    for (const v of ins) {
      const x = gatherView(v);
      const len = v.shape[axis]!;
      for (let i = 0; i < outer; i++)
        for (let k = 0; k < len * inner; k++) o[(i * total + start) * inner + k] = x[i * len * inner + k]!;
      start += len;
    }
  },
  gather: (ins, out, attrs) => {
    const xv = ins[0]!;
    const { axis } = attrsOf('gather', attrs);
    const x = gatherView(xv);
    const idx = gatherView(ins[1]!);
    const D = xv.shape[axis]!;
    for (let i = 0; i < idx.length; i++) {
      if (!(idx[i]! >= 0 && idx[i]! < D)) {
        throw new ArgumentError(
          `gather index ${idx[i]} at position ${i} is out of range for axis ${axis} of size ${D}`,
        );
      }
    }
    const pre = prod(xv.shape, 0, axis),
      post = prod(xv.shape, axis + 1),
      k = idx.length;
    const o = outBuf(out);
    for (let p = 0; p < pre; p++)
      for (let j = 0; j < k; j++)
        for (let q = 0; q < post; q++) o[(p * k + j) * post + q] = x[(p * D + idx[j]!) * post + q]!;
  },
  scatterAdd: (ins, out, attrs) => {
    const gv = ins[0]!;
    const { axis, size: D } = attrsOf('scatterAdd', attrs);
    const g = gatherView(gv);
    const idx = gatherView(ins[1]!);
    for (let i = 0; i < idx.length; i++) {
      if (!(idx[i]! >= 0 && idx[i]! < D))
        throw new ArgumentError(`scatterAdd index ${idx[i]} at position ${i} is out of range for size ${D}`);
    }
    const pre = prod(out.shape, 0, axis),
      post = prod(out.shape, axis + 1),
      k = idx.length;
    const o = new Float64Array(prod(out.shape));
    for (let p = 0; p < pre; p++)
      for (let j = 0; j < k; j++)
        for (let q = 0; q < post; q++) {
          const di = (p * D + idx[j]!) * post + q;
          o[di] =
            gv.dtype === 'int32' ? (o[di]! + g[(p * k + j) * post + q]!) | 0 : o[di]! + g[(p * k + j) * post + q]!;
        }
    writeCanon(out, o);
  },
};
