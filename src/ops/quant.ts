// User-level quantized ops (inference only: they record no gradient).
import { runKernel } from '../engine/dispatch.js';
import { ArgumentError, DTypeError, ShapeError, describe } from '../errors.js';
import { shapeStr } from '../tensor/shape.js';
import { assertTensor, type Tensor } from '../tensor/tensor.js';

/** Runs a linear kernel on x [..., K] as rows [M, K] (and bias as [N]), giving back [..., N]. */
function linearRows(
  x: Tensor,
  K: number,
  N: number,
  bias: Tensor | null,
  run: (x2: Tensor, b: Tensor | null) => Tensor,
): Tensor {
  const lead = x.shape.slice(0, -1);
  const x2 = x.reshape([lead.reduce((a, b) => a * b, 1), K]);
  const b = bias ? bias.reshape([N]) : null;
  try {
    const y = run(x2, b);
    if (lead.length === 1) return y;
    const r = y.reshape([...lead, N]);
    y.dispose();
    return r;
  } finally {
    x2.dispose();
    b?.dispose();
  }
}

/** How the input of an int8 linear layer is quantized: a fixed scale and zero point, or per row (dynamic). */
export type ActivationQuant = { scale: number; zeroPoint: number } | 'dynamic';

/**
 * y = dequant(quant(x) wq^T) * ... + bias on the int8 kernels (AVX512-VNNI where the CPU has it): x [M, K]
 * float32 is quantized to uint8, wq [N, K] int8 is symmetric with one scale per output row.
 * @example kn.qlinearInt8(kn.tensor([[1, 2]]), kn.tensor(new Int8Array([127, -127]), [1, 2]), kn.tensor([0.01])).shape // [1, 1]
 */
export function qlinearInt8(
  x: Tensor,
  wq: Tensor,
  wscale: Tensor,
  bias: Tensor | null = null,
  act: ActivationQuant = 'dynamic',
): Tensor {
  assertTensor(x, 'qlinearInt8: x');
  assertTensor(wq, 'qlinearInt8: wq');
  assertTensor(wscale, 'qlinearInt8: wscale');
  if (bias !== null) assertTensor(bias, 'qlinearInt8: bias');
  if (wq.dtype !== 'int8') throw new DTypeError(`qlinearInt8: wq must be int8, got ${wq.dtype}`);
  if (wq.ndim !== 2) throw new ShapeError(`qlinearInt8: wq must be [N, K], got ${shapeStr(wq.shape)}`);
  const [N, K] = wq.shape as [number, number];
  if (x.ndim < 1 || x.shape[x.ndim - 1] !== K)
    throw new ShapeError(`qlinearInt8: x must end in K = ${K}, got ${shapeStr(x.shape)}`);
  if (wscale.size !== N)
    throw new ShapeError(`qlinearInt8: wscale must have ${N} values, got ${shapeStr(wscale.shape)}`);
  if (bias && bias.size !== N)
    throw new ShapeError(`qlinearInt8: bias must have ${N} values, got ${shapeStr(bias.shape)}`);
  let xs = 0,
    xz = 0;
  if (act !== 'dynamic') {
    if (
      act === null ||
      typeof act !== 'object' ||
      !(act.scale > 0) ||
      !Number.isFinite(act.scale) ||
      !Number.isInteger(act.zeroPoint) ||
      act.zeroPoint < 0 ||
      act.zeroPoint > 255
    ) {
      throw new ArgumentError(
        `qlinearInt8: activation quantization must be 'dynamic' or {scale > 0, zeroPoint in 0..255}, got ${describe(act)}`,
      );
    }
    xs = act.scale;
    xz = act.zeroPoint;
  }
  const ws = wscale.reshape([N]);
  try {
    return linearRows(x, K, N, bias, (x2, b) =>
      runKernel('qlinearInt8', b ? [x2, wq, ws, b] : [x2, wq, ws], [xs, xz], [x2.shape[0]!, N], 'float32'),
    );
  } finally {
    ws.dispose();
  }
}

/**
 * y = x . W^T (+ bias) for int4 weights W [N, K] stored in kiln's int4 layout (src/quant/layout.ts): packed uint8
 * [N, G*g/2], two values per byte, and float32 scales [N, G] for groups of g = groupSize inputs. The weights are
 * dequantized inside the kernel (on the GPU as matmul tiles load), never as a tensor. Records no gradient.
 * @example Array.from(kn.qlinearInt4(kn.ones([1, 32]), kn.full([2, 16], 0x99, { dtype: 'uint8' }), kn.ones([2, 1]), null, 32).toArray()) // [32, 32]
 */
export function qlinearInt4(x: Tensor, packed: Tensor, scales: Tensor, bias: Tensor | null, groupSize: number): Tensor {
  assertTensor(x, 'qlinearInt4: x');
  assertTensor(packed, 'qlinearInt4: packed');
  assertTensor(scales, 'qlinearInt4: scales');
  if (bias !== null) assertTensor(bias, 'qlinearInt4: bias');
  if (packed.dtype !== 'uint8') throw new DTypeError(`qlinearInt4: packed must be uint8, got ${packed.dtype}`);
  if (![32, 64, 128].includes(groupSize))
    throw new ArgumentError(`qlinearInt4: groupSize must be 32, 64 or 128, got ${describe(groupSize)}`);
  if (packed.ndim !== 2 || scales.ndim !== 2)
    throw new ShapeError(
      `qlinearInt4: packed and scales must be 2-D, got ${shapeStr(packed.shape)} and ${shapeStr(scales.shape)}`,
    );
  const N = packed.shape[0]!;
  const G = scales.shape[1]!;
  if (x.ndim < 1) throw new ShapeError('qlinearInt4: x must have at least one dimension');
  const K = x.shape[x.ndim - 1]!;
  if (Math.ceil(K / groupSize) !== G || packed.shape[1] !== (G * groupSize) / 2 || scales.shape[0] !== N) {
    throw new ShapeError(
      `qlinearInt4: x ends in K = ${K}, so packed must be [${N}, ${(Math.ceil(K / groupSize) * groupSize) / 2}] and scales [${N}, ${Math.ceil(K / groupSize)}]; got ${shapeStr(packed.shape)} and ${shapeStr(scales.shape)}`,
    );
  }
  if (bias && bias.size !== N)
    throw new ShapeError(`qlinearInt4: bias must have ${N} values, got ${shapeStr(bias.shape)}`);
  return linearRows(x, K, N, bias, (x2, b) =>
    runKernel(
      'qlinearInt4',
      b ? [x2, packed, scales, b] : [x2, packed, scales],
      [groupSize],
      [x2.shape[0]!, N],
      'float32',
    ),
  );
}
