// Movement: views (reshape of contiguous data, transpose/permute, slice, expand, squeeze/unsqueeze),
// and copying ops (contiguous, concat, stack, gather).
import { record } from '../autograd/tape.js';
import { runKernel } from '../engine/dispatch.js';
import { ArgumentError, DTypeError, ShapeError, describe } from '../errors.js';
import { isFloat } from '../tensor/dtype.js';
import { broadcastShapes, normalizeAxes, normalizeAxis, numel, shapeStr, validateShape } from '../tensor/shape.js';
import { assertTensor, Tensor, type AxisArg } from '../tensor/tensor.js';
import { expandView } from './define.js';

/**
 * A contiguous tensor with the same values (a view when already contiguous).
 * @example kn.arange(6).reshape([2, 3]).transpose().contiguous().isContiguous() // true
 */
export function contiguous(x: Tensor): Tensor {
  assertTensor(x, 'contiguous');
  if (x.isContiguous()) return keepGraph(x, x.view(x.shape, x.strides, x.offset));
  const y = runKernel('copy', [x], [], x.shape, x.dtype);
  return record('contiguous', y, [x], [], (g) => [g]);
}

/**
 * A copy with its own storage.
 * @example kn.tensor([1, 2]).clone() // [1, 2]
 */
export function clone(x: Tensor): Tensor {
  assertTensor(x, 'clone');
  const y = runKernel('copy', [x], [], x.shape, x.dtype);
  return record('clone', y, [x], [], (g) => [g]);
}

function keepGraph(x: Tensor, v: Tensor): Tensor {
  return record('view', v, [x], [], (g) => [g]);
}

/**
 * Reshape (one dim may be -1). A view when the data is contiguous, else a copy.
 * @example kn.arange(6).reshape([2, -1]) // [[0, 1, 2], [3, 4, 5]]
 */
export function reshape(x: Tensor, shape: readonly number[]): Tensor {
  assertTensor(x, 'reshape');
  if (!Array.isArray(shape)) throw new ArgumentError(`reshape: shape must be an array, got ${describe(shape)}`);
  const s = shape.slice();
  const inferred = s.indexOf(-1);
  if (inferred >= 0) {
    if (s.indexOf(-1, inferred + 1) >= 0)
      throw new ShapeError(`reshape: only one dimension may be -1, got ${shapeStr(s)}`);
    const rest = numel(s.filter((_, i) => i !== inferred));
    if (rest === 0 || x.size % rest !== 0)
      throw new ShapeError(`reshape: cannot infer -1 in ${shapeStr(s)} for ${x.size} elements`);
    s[inferred] = x.size / rest;
  }
  validateShape(s, 'reshape shape');
  if (numel(s) !== x.size) {
    throw new ShapeError(
      `reshape: cannot reshape ${shapeStr(x.shape)} (${x.size} elements) to ${shapeStr(s)} (${numel(s)} elements)`,
    );
  }
  const src = x.isContiguous() ? x : runKernel('copy', [x], [], x.shape, x.dtype);
  const strides = s.map((_, i) => numel(s.slice(i + 1)));
  const v = src.view(s, strides, src.offset);
  if (src !== x) src.dispose();
  const xs = x.shape;
  return record('reshape', v, [x], [], (g) => [reshape(g, xs)]);
}

/**
 * Reorders axes (a view).
 * @example kn.ones([2, 3, 4]).permute([2, 0, 1]).shape // [4, 2, 3]
 */
export function permute(x: Tensor, axes: readonly number[]): Tensor {
  assertTensor(x, 'permute');
  if (!Array.isArray(axes) || axes.length !== x.ndim) {
    throw new ArgumentError(`permute: axes must list each of the ${x.ndim} axes once, got ${describe(axes)}`);
  }
  const p = axes.map((a) => normalizeAxis(a, x.ndim, 'permute axis'));
  if (new Set(p).size !== p.length) throw new ArgumentError(`permute: axes ${describe(axes)} repeat an axis`);
  const v = x.view(
    p.map((a) => x.shape[a]!),
    p.map((a) => x.strides[a]!),
    x.offset,
  );
  const inv = new Array<number>(p.length);
  p.forEach((a, i) => {
    inv[a] = i;
  });
  return record('permute', v, [x], [], (g) => [permute(g, inv)]);
}

/**
 * Swaps two axes (default: the last two; for 1-D, a no-op view).
 * @example kn.tensor([[1, 2], [3, 4]]).transpose() // [[1, 3], [2, 4]]
 */
export function transpose(x: Tensor, a0?: number, a1?: number): Tensor {
  assertTensor(x, 'transpose');
  if (x.ndim < 2)
    return permute(
      x,
      x.shape.map((_, i) => i),
    );
  const i = normalizeAxis(a0 ?? -2, x.ndim),
    j = normalizeAxis(a1 ?? -1, x.ndim);
  const p = x.shape.map((_, k) => k);
  p[i] = j;
  p[j] = i;
  return permute(x, p);
}

/**
 * Slices with Python semantics per axis: begin (negative counts from the end), end (exclusive, null = to the
 * end, clamped), step (> 0). Missing trailing axes are taken whole. A view.
 * @example kn.arange(10).slice([2], [8], [3]) // [2, 5]
 */
export function slice(
  x: Tensor,
  begin: readonly number[],
  end?: readonly (number | null)[],
  step?: readonly number[],
): Tensor {
  assertTensor(x, 'slice');
  if (!Array.isArray(begin) || begin.length > x.ndim)
    throw new ArgumentError(`slice: begin must be an array of at most ${x.ndim} integers, got ${describe(begin)}`);
  if (end !== undefined && (!Array.isArray(end) || end.length > x.ndim))
    throw new ArgumentError(`slice: end must be an array of at most ${x.ndim} entries, got ${describe(end)}`);
  if (step !== undefined && (!Array.isArray(step) || step.length > x.ndim))
    throw new ArgumentError(`slice: step must be an array of at most ${x.ndim} integers, got ${describe(step)}`);
  const shape: number[] = [],
    strides: number[] = [],
    starts: number[] = [],
    steps: number[] = [];
  let offset = x.offset;
  for (let d = 0; d < x.ndim; d++) {
    const n = x.shape[d]!;
    const st = step?.[d] ?? 1;
    if (!Number.isInteger(st) || st <= 0)
      throw new ArgumentError(`slice: step for axis ${d} must be a positive integer, got ${describe(st)}`);
    let b = begin[d] ?? 0;
    let e = end?.[d] ?? n;
    if (!Number.isInteger(b))
      throw new ArgumentError(`slice: begin for axis ${d} must be an integer, got ${describe(b)}`);
    if (!Number.isInteger(e))
      throw new ArgumentError(`slice: end for axis ${d} must be an integer or null, got ${describe(e)}`);
    if (b < 0) b += n;
    if (e < 0) e += n;
    b = Math.min(Math.max(b, 0), n);
    e = Math.min(Math.max(e, 0), n);
    const len = e > b ? Math.ceil((e - b) / st) : 0;
    shape.push(len);
    strides.push(x.strides[d]! * st);
    if (len > 0) offset += b * x.strides[d]!;
    starts.push(b);
    steps.push(st);
  }
  const v = x.view(shape, strides, numel(shape) > 0 ? offset : x.offset);
  const xs = x.shape;
  return record('slice', v, [x], [], (g) => {
    // adjoint: scatter-add the gradient back along every sliced axis
    let cur = g;
    for (let d = 0; d < xs.length; d++) {
      if (shape[d] === xs[d] && steps[d] === 1) continue;
      const idx = Tensor.fromHostNumbers(
        Array.from({ length: shape[d]! }, (_, i) => starts[d]! + i * steps[d]!),
        [shape[d]!],
        g.backend,
        'int32',
      );
      const outShape = cur.shape.slice();
      outShape[d] = xs[d]!;
      const next = scatterAdd(cur, idx, d, xs[d]!, outShape);
      idx.dispose();
      cur = next;
    }
    return [cur];
  });
}

/**
 * Broadcasts to `shape` (a stride-0 view).
 * @example kn.tensor([[1], [2]]).expand([2, 2]) // [[1, 1], [2, 2]]
 */
export function expand(x: Tensor, shape: readonly number[]): Tensor {
  assertTensor(x, 'expand');
  const s = validateShape(shape, 'expand shape');
  const b = broadcastShapes(x.shape, s, 'expand');
  if (b.length !== s.length || b.some((d, i) => d !== s[i])) {
    throw new ShapeError(`expand: ${shapeStr(x.shape)} cannot be broadcast to ${shapeStr(s)}`);
  }
  const v = expandView(x, s);
  const xs = x.shape;
  // sumTo through the Tensor method: reduce.ts imports this module, so this one must not import it
  return record('expand', v, [x], [], (g) => [g.sumTo(xs)]);
}

/**
 * Removes size-1 axes (all of them, or the given ones).
 * @example kn.ones([1, 3, 1]).squeeze().shape // [3]
 */
export function squeeze(x: Tensor, axis?: AxisArg): Tensor {
  assertTensor(x, 'squeeze');
  const axes =
    axis === undefined ? x.shape.map((d, i) => (d === 1 ? i : -1)).filter((i) => i >= 0) : normalizeAxes(axis, x.ndim);
  for (const a of axes)
    if (x.shape[a] !== 1)
      throw new ShapeError(`squeeze: axis ${a} of ${shapeStr(x.shape)} has size ${x.shape[a]}, not 1`);
  return reshape(
    x,
    x.shape.filter((_, i) => !axes.includes(i)),
  );
}

/**
 * Inserts a size-1 axis at `axis` (may be ndim, or negative).
 * @example kn.ones([3]).unsqueeze(0).shape // [1, 3]
 */
export function unsqueeze(x: Tensor, axis: number): Tensor {
  assertTensor(x, 'unsqueeze');
  const a = normalizeAxis(axis, x.ndim + 1);
  const s = x.shape.slice();
  s.splice(a, 0, 1);
  return reshape(x, s);
}

/**
 * Flattens axes startAxis..endAxis (inclusive) into one.
 * @example kn.ones([2, 3, 4]).flatten(1).shape // [2, 12]
 */
export function flatten(x: Tensor, startAxis = 0, endAxis = -1): Tensor {
  assertTensor(x, 'flatten');
  if (x.ndim === 0) return reshape(x, [1]);
  const a = normalizeAxis(startAxis, x.ndim),
    b = normalizeAxis(endAxis, x.ndim);
  if (a > b) throw new ArgumentError(`flatten: startAxis ${startAxis} is after endAxis ${endAxis}`);
  return reshape(x, [...x.shape.slice(0, a), numel(x.shape.slice(a, b + 1)), ...x.shape.slice(b + 1)]);
}

function checkList(ts: unknown, op: string): Tensor[] {
  if (!Array.isArray(ts) || ts.length === 0)
    throw new ArgumentError(`${op} needs a non-empty array of tensors, got ${describe(ts)}`);
  return ts.map((t, i) => assertTensor(t, `${op} input ${i}`));
}

/** The most inputs one kernel call takes (the native addon's descriptor limit). */
const MAX_KERNEL_INPUTS = 64;

/**
 * Joins tensors along an existing axis (any number of them).
 * @example kn.concat([kn.ones([1, 2]), kn.zeros([1, 2])]) // [[1, 1], [0, 0]]
 */
export function concat(tensors: readonly Tensor[], axis = 0): Tensor {
  const ts = checkList(tensors, 'concat');
  const first = ts[0]!;
  if (first.ndim === 0) throw new ShapeError('concat: cannot concatenate 0-d tensors; use stack');
  const a = normalizeAxis(axis, first.ndim);
  const dtype = ts.map((t) => t.dtype).reduce((p, d) => (p === d ? p : 'float32'));
  for (const [i, t] of ts.entries()) {
    if (t.ndim !== first.ndim || t.shape.some((d, k) => k !== a && d !== first.shape[k])) {
      throw new ShapeError(
        `concat: input ${i} has shape ${shapeStr(t.shape)}, which does not match ${shapeStr(first.shape)} outside axis ${a}`,
      );
    }
  }
  if (ts.length > MAX_KERNEL_INPUTS) {
    // a kernel takes at most 64 inputs (the native descriptor's limit): join chunks, then the chunks
    const parts: Tensor[] = [];
    for (let i = 0; i < ts.length; i += MAX_KERNEL_INPUTS) parts.push(concat(ts.slice(i, i + MAX_KERNEL_INPUTS), a));
    try {
      return concat(parts, a);
    } finally {
      parts.forEach((p) => p.dispose());
    }
  }
  const cast = ts.map((t) => (t.dtype === dtype ? t : runKernel('cast', [t], [], t.shape, dtype)));
  const shape = first.shape.slice();
  shape[a] = ts.reduce((s, t) => s + t.shape[a]!, 0);
  let y: Tensor;
  try {
    y = runKernel('concat', cast, [a], shape, dtype);
  } finally {
    cast.forEach((c, i) => {
      if (c !== ts[i]) c.dispose();
    });
  }
  const sizes = ts.map((t) => t.shape[a]!);
  return record('concat', y, ts, [], (g) => {
    let start = 0;
    return sizes.map((n) => {
      const b = g.shape.map(() => 0),
        e: (number | null)[] = g.shape.map(() => null);
      b[a] = start;
      e[a] = start + n;
      start += n;
      return contiguous(slice(g, b, e));
    });
  });
}

/**
 * Joins tensors along a new axis.
 * @example kn.stack([kn.tensor([1, 2]), kn.tensor([3, 4])]) // [[1, 2], [3, 4]]
 */
export function stack(tensors: readonly Tensor[], axis = 0): Tensor {
  const ts = checkList(tensors, 'stack');
  const a = normalizeAxis(axis, ts[0]!.ndim + 1);
  for (const [i, t] of ts.entries()) {
    if (t.ndim !== ts[0]!.ndim || t.shape.some((d, k) => d !== ts[0]!.shape[k])) {
      throw new ShapeError(`stack: input ${i} has shape ${shapeStr(t.shape)}, expected ${shapeStr(ts[0]!.shape)}`);
    }
  }
  const us = ts.map((t) => unsqueeze(t, a));
  try {
    return concat(us, a);
  } finally {
    us.forEach((u) => u.dispose());
  }
}

/**
 * Takes slices along `axis` at integer `indices` (any shape): out.shape = x.shape[:axis] + indices.shape + x.shape[axis+1:].
 * @example kn.tensor([[1, 2], [3, 4], [5, 6]]).gather(kn.tensor([2, 0], undefined, { dtype: 'int32' })) // [[5, 6], [1, 2]]
 */
export function gather(x: Tensor, indices: Tensor, axis = 0): Tensor {
  assertTensor(x, 'gather');
  assertTensor(indices, 'gather indices');
  if (x.ndim === 0) throw new ShapeError('gather: x must have at least one dimension');
  if (isFloat(indices.dtype) || indices.dtype === 'bool') {
    throw new DTypeError(`gather: indices must be an integer tensor (int32, int8, uint8), got ${indices.dtype}`);
  }
  const a = normalizeAxis(axis, x.ndim);
  const shape = [...x.shape.slice(0, a), ...indices.shape, ...x.shape.slice(a + 1)];
  const y = runKernel('gather', [x, indices], [a], shape, x.dtype); // indices are cast to int32 by the dispatcher
  const D = x.shape[a]!;
  return record('gather', y, [x], [indices], (g, [ii]) => [scatterAdd(g, ii!, a, D, x.shape)]);
}

/** gather's gradient: g summed into the gathered positions of a zero tensor of `shape`; recorded (its vjp is
 * gather again), for gradients of gradients. */
function scatterAdd(g: Tensor, idx: Tensor, a: number, D: number, shape: readonly number[]): Tensor {
  const y = runKernel('scatterAdd', [g, idx], [a, D], shape, g.dtype);
  return record('scatterAdd', y, [g], [idx], (u, [ii]) => [gather(u, ii!, a)]);
}
