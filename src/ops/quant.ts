// User-level quantized ops (inference only: they record no gradient).
import { runKernel } from '../engine/dispatch.js';
import { ArgumentError, DTypeError, ShapeError, describe } from '../errors.js';
import { shapeStr } from '../tensor/shape.js';
import { assertTensor, type Tensor } from '../tensor/tensor.js';

/** How the input of an int8 linear layer is quantized: a fixed scale and zero point, or per row (dynamic). */
export type ActivationQuant = { scale: number; zeroPoint: number } | 'dynamic';

/**
 * y = dequant(quant(x) wq^T) * ... + bias on the int8 kernels (AVX512-VNNI where the CPU has it): x [M, K]
 * float32 is quantized to uint8, wq [N, K] int8 is symmetric with one scale per output row.
 * @example kn.qlinearInt8(kn.tensor([[1, 2]]), kn.tensor(new Int8Array([127, -127]), [1, 2]), kn.tensor([0.01])).shape // [1, 1]
 */
export function qlinearInt8(x: Tensor, wq: Tensor, wscale: Tensor, bias: Tensor | null = null, act: ActivationQuant = 'dynamic'): Tensor {
  assertTensor(x, 'qlinearInt8: x');
  assertTensor(wq, 'qlinearInt8: wq');
  assertTensor(wscale, 'qlinearInt8: wscale');
  if (bias !== null) assertTensor(bias, 'qlinearInt8: bias');
  if (wq.dtype !== 'int8') throw new DTypeError(`qlinearInt8: wq must be int8, got ${wq.dtype}`);
  if (wq.ndim !== 2) throw new ShapeError(`qlinearInt8: wq must be [N, K], got ${shapeStr(wq.shape)}`);
  const [N, K] = wq.shape as [number, number];
  if (x.ndim < 1 || x.shape[x.ndim - 1] !== K) throw new ShapeError(`qlinearInt8: x must end in K = ${K}, got ${shapeStr(x.shape)}`);
  if (wscale.size !== N) throw new ShapeError(`qlinearInt8: wscale must have ${N} values, got ${shapeStr(wscale.shape)}`);
  if (bias && bias.size !== N) throw new ShapeError(`qlinearInt8: bias must have ${N} values, got ${shapeStr(bias.shape)}`);
  let xs = 0, xz = 0;
  if (act !== 'dynamic') {
    if (act === null || typeof act !== 'object' || !(act.scale > 0) || !Number.isFinite(act.scale) ||
      !Number.isInteger(act.zeroPoint) || act.zeroPoint < 0 || act.zeroPoint > 255) {
      throw new ArgumentError(`qlinearInt8: activation quantization must be 'dynamic' or {scale > 0, zeroPoint in 0..255}, got ${describe(act)}`);
    }
    xs = act.scale;
    xz = act.zeroPoint;
  }
  const lead = x.shape.slice(0, -1);
  const M = lead.reduce((a, b) => a * b, 1);
  const x2 = x.reshape([M, K]);
  const ws = wscale.reshape([N]);
  const b = bias ? bias.reshape([N]) : null;
  try {
    const y = runKernel('qlinearInt8', b ? [x2, wq, ws, b] : [x2, wq, ws], [xs, xz], [M, N], 'float32');
    if (lead.length === 1) return y;
    const r = y.reshape([...lead, N]);
    y.dispose();
    return r;
  } finally {
    x2.dispose();
    ws.dispose();
    b?.dispose();
  }
}
