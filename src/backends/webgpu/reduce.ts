// Reduce kernels of the webgpu backend (kernels/wgsl/reduce.wgsl). Inputs arrive contiguous.
import { ShapeError } from '../../errors.js';
import { checkColumns, checkCrossEntropy, checkLayerNorm, checkQuantile } from '../checks.js';
import type { KernelOut, KernelView } from '../backend.js';
import { copyView } from './elementwise.js';
import { Params, checkLoopTurns, denseInputs, grid, id, numelOf, withFlags, type Gpu, type GpuKernel } from './gpu.js';
import { attrsOf, groupAttrs } from '../../ops/table.js';
import { PARAMS } from './params.js';

function dims3(shape: readonly number[], a0: number, a1: number): [number, number, number] {
  return [numelOf(shape.slice(0, a0)), numelOf(shape.slice(a0, a1)), numelOf(shape.slice(a1))];
}

// Fewer (outer, inner) lines than this along a non-last axis take the tiled kernels (reduce_cols_tiled, and
// softmax_cols even when inner < 32): 32 lines a workgroup, 8 groups of 32 invocations down the axis.
const FEW_LINES = 65536;

const REDUCE_OP = { sum: 0, max: 1, min: 2, argmax: 3, argmin: 4 } as const;
type ReduceName = keyof typeof REDUCE_OP;

// Sums, maxima and minima of few rows longer than 2 ROW_CHUNK values, or down an axis longer than 2 COL_CHUNK with
// few outputs, run in two passes: chunks of the axis to [outer, chunks, inner] partials, then those reduced. One
// workgroup per row or per 32 outputs left the GPU idle, a float lane summing r / 8 values lost precision, and Mesa's
// llvmpipe ends an invocation's loops after 65535 turns (a column sum over 2^20 rows came out half its value).
const ROW_CHUNK = 65536; // 256 values a lane
const COL_CHUNK = 4096; // 512 values a lane
const FEW_ROWS = 1024;

/** Loop turns of one invocation taking every `step`-th of r values (a sum adds sum_strided's outer levels). */
function reduceTurns(r: number, step: number, sum: boolean): number {
  const n = Math.ceil(r / step);
  return sum ? n + Math.ceil(n / 32) + Math.ceil(n / 2048) : n;
}

/** Reduces buffer `src` ([outer, r, inner] of `dtype`) into `dst` ([outer, inner]). */
function reduceInto(
  g: Gpu,
  name: ReduceName,
  src: number,
  dtype: KernelView['dtype'],
  dst: number,
  [outer, r, inner]: [number, number, number],
  what: string,
): void {
  const p = new Params().set(PARAMS.reduce.outer, outer).set(PARAMS.reduce.R, r).set(PARAMS.reduce.inner, inner);
  const consts = { OP: REDUCE_OP[name], INT: dtype === 'int32' ? 1 : 0 };
  const sum = name === 'sum' && dtype !== 'int32';
  const chunkable = name === 'sum' || name === 'max' || name === 'min';
  const rows = inner === 1 && r >= 512;
  const tiled = !rows && inner > 1 && r >= 64 && outer * inner < FEW_LINES;
  const chunk = rows && r > 2 * ROW_CHUNK && outer < FEW_ROWS ? ROW_CHUNK : tiled && r > 2 * COL_CHUNK ? COL_CHUNK : 0;
  const tiles = Math.ceil(inner / 32);
  const maxGroups = g.limits.maxComputeWorkgroupsPerDimension ?? 65535;
  if (chunkable && chunk > 0) {
    const chunks = Math.ceil(r / chunk);
    const part = g.scratch(dtype, outer * chunks * inner);
    try {
      p.set(PARAMS.reduce.chunk, chunk);
      checkLoopTurns(g, reduceTurns(chunk, rows ? 256 : 8, sum), what);
      g.dispatch('reduce', rows ? 'reduce_rows' : 'reduce_cols_tiled', consts, p, [part, src], {
        groups: grid(outer * chunks * (rows ? 1 : tiles), maxGroups),
      });
      reduceInto(g, name, part, dtype, dst, [outer, chunks, inner], what);
    } finally {
      g.release(part);
    }
  } else if (rows) {
    checkLoopTurns(g, reduceTurns(r, 256, sum), what);
    g.dispatch('reduce', 'reduce_rows', consts, p, [dst, src], { groups: grid(outer, maxGroups) });
  } else if (tiled) {
    // few outputs over a long axis (a bias gradient's sum down the batch): 32 outputs a workgroup, 8 groups
    // of 32 down the axis
    checkLoopTurns(g, reduceTurns(r, 8, sum), what);
    g.dispatch('reduce', 'reduce_cols_tiled', consts, p, [dst, src], { groups: grid(outer * tiles, maxGroups) });
  } else {
    checkLoopTurns(g, r, what);
    g.dispatch('reduce', 'reduce_cols', consts, p, [dst, src], { threads: outer * inner });
  }
}

function reduce(name: ReduceName): GpuKernel {
  return (g, ins, out, attrs) => {
    const v = ins[0]!;
    // argmax/argmin reduce one axis; sum/max/min an axis range (the `axes` attribute group)
    const [a0, a1] =
      name === 'argmax' || name === 'argmin'
        ? [attrsOf(name, attrs).axis, attrsOf(name, attrs).axis + 1]
        : [groupAttrs('axes', attrs).axisStart, groupAttrs('axes', attrs).axisEnd];
    const [outer, r, inner] = dims3(v.shape, a0, a1);
    if (name !== 'sum' && r === 0 && outer * inner > 0) {
      throw new ShapeError(
        `${name} over an empty axis has no identity; the reduced axes of [${v.shape.join(', ')}] have size 0`,
      );
    }
    if (outer * inner === 0) return;
    reduceInto(
      g,
      name,
      id(v),
      v.dtype,
      id(out),
      [outer, r, inner],
      `${name} over ${r} values of [${v.shape.join(', ')}]`,
    );
  };
}

// Rows of at least ROW_LANES values take the row kernels (softmax, cross-entropy, layer norm; reduce.wgsl: SEG = 32
// invocations per row, 8 rows per workgroup); shorter rows one invocation each.
const ROW_LANES = 32;
const rowGroups = (g: Gpu, rows: number): [number, number, number] =>
  grid(Math.ceil(rows / (256 / ROW_LANES)), g.limits.maxComputeWorkgroupsPerDimension ?? 65535);

function softmax(log: boolean): GpuKernel {
  return (g, ins, out, attrs) => {
    const v = ins[0]!;
    const { axis } = attrsOf(log ? 'logSoftmax' : 'softmax', attrs);
    const [outer, n, inner] = dims3(v.shape, axis, axis + 1);
    if (outer * n * inner === 0) return;
    const p = new Params().set(PARAMS.reduce.outer, outer).set(PARAMS.reduce.R, n).set(PARAMS.reduce.inner, inner);
    const what = `${log ? 'logSoftmax' : 'softmax'} over ${n} values of [${v.shape.join(', ')}]`;
    if (inner === 1 && n >= ROW_LANES) {
      checkLoopTurns(g, 3 * Math.ceil(n / ROW_LANES), what); // max, sum, write
      g.dispatch('reduce', 'softmax_rows', { LOG: log ? 1 : 0 }, p, [id(out), id(v)], { groups: rowGroups(g, outer) });
    } else if (inner > 1 && (inner >= 32 || outer * inner < FEW_LINES)) {
      // 32 adjacent columns a workgroup, its 8 groups of 32 taking every 8th row
      checkLoopTurns(g, 3 * Math.ceil(n / 8), what);
      g.dispatch('reduce', 'softmax_cols', { LOG: log ? 1 : 0 }, p, [id(out), id(v)], {
        groups: grid(outer * Math.ceil(inner / 32), g.limits.maxComputeWorkgroupsPerDimension ?? 65535),
      });
    } else {
      // short rows, or many lines of fewer than 32 columns: an invocation a line
      checkLoopTurns(g, 3 * n, what);
      g.dispatch('reduce', 'softmax', { LOG: log ? 1 : 0 }, p, [id(out), id(v)], { threads: outer * inner });
    }
  };
}

/** Each row's mean and 1/std into work[2 r], work[2 r + 1] (rows of ROW_LANES+ values, 32 invocations a row). */
function layerNormStats(g: Gpu, p: Params, x: number, work: number, rows: number): void {
  g.dispatch('reduce', 'layer_norm_stats_rows', {}, p, [null, x, null, null, null, null, work], {
    groups: rowGroups(g, rows),
  });
}

function ce(
  g: Gpu,
  entry: string,
  ins: readonly KernelView[],
  out: KernelOut,
  s: number,
  n: number,
  c: number,
  w: KernelView | null,
): void {
  if (n === 0) return;
  const p = new Params().set(PARAMS.reduce.N, n).set(PARAMS.reduce.C, c);
  p.f[PARAMS.reduce.attr] = s;
  const rowGrad = entry === 'softmax_cross_entropy_backward' ? id(ins[2]!) : null;
  const rows = c >= ROW_LANES;
  // max, sum, the smoothing term and the gradient (and the weights' sum)
  checkLoopTurns(g, 5 * (rows ? Math.ceil(c / ROW_LANES) : c), `crossEntropy over ${c} classes`);
  g.dispatch(
    'reduce',
    rows ? `${entry}_rows` : entry,
    { HASW: w ? 1 : 0 },
    p,
    withFlags(g, [id(out), id(ins[0]!), id(ins[1]!), rowGrad, w ? id(w) : g.dummy]),
    rows ? { groups: rowGroups(g, n) } : { threads: n },
  );
}

const kernels: Record<string, GpuKernel> = {
  sum: reduce('sum'),
  max: reduce('max'),
  min: reduce('min'),
  argmax: reduce('argmax'),
  argmin: reduce('argmin'),
  softmax: softmax(false),
  logSoftmax: softmax(true),
  softmaxCrossEntropy: (g, ins, out, at) => {
    const { n, c, weight } = checkCrossEntropy(ins, 2, 'softmaxCrossEntropy');
    ce(g, 'softmax_cross_entropy', ins, out, attrsOf('softmaxCrossEntropy', at).labelSmoothing, n, c, weight);
  },
  softmaxCrossEntropyBackward: (g, ins, out, at) => {
    const { n, c, weight } = checkCrossEntropy(ins, 3, 'softmaxCrossEntropyBackward');
    ce(
      g,
      'softmax_cross_entropy_backward',
      ins,
      out,
      attrsOf('softmaxCrossEntropyBackward', at).labelSmoothing,
      n,
      c,
      weight,
    );
  },
  nanColumnStats: (g, ins, out) => {
    const [n, f] = checkColumns(ins[0]!, 'nanColumnStats');
    if (f === 0) return;
    checkLoopTurns(g, 3 * Math.ceil(n / 256), `nanColumnStats over ${n} rows`);
    g.dispatch(
      'reduce',
      'nan_column_stats',
      {},
      new Params().set(PARAMS.reduce.N, n).set(PARAMS.reduce.F, f),
      [id(out), id(ins[0]!)],
      { groups: grid(f, g.limits.maxComputeWorkgroupsPerDimension ?? 65535) },
    );
  },
  nanQuantile: (g, ins, out, at) => {
    const [n, f] = checkColumns(ins[0]!, 'nanQuantile');
    const { q } = attrsOf('nanQuantile', at);
    checkQuantile(q);
    if (f === 0) return;
    const p = new Params().set(PARAMS.reduce.N, n).set(PARAMS.reduce.F, f);
    p.f[PARAMS.reduce.attr] = q;
    checkLoopTurns(g, 8 * Math.ceil(n / 256), `nanQuantile over ${n} rows`); // a count, 4 radix passes, the next
    g.dispatch('reduce', 'nan_quantile', {}, p, [id(out), id(ins[0]!)], {
      groups: grid(f, g.limits.maxComputeWorkgroupsPerDimension ?? 65535),
    });
  },
  layerNorm: (g, ins, out, at) => {
    const { R, C, affine } = checkLayerNorm(ins, 'layerNorm', at);
    if (R * C === 0) return;
    const p = new Params().set(PARAMS.reduce.N, R).set(PARAMS.reduce.C, C);
    p.f[PARAMS.reduce.attr] = attrsOf('layerNorm', at).eps;
    const wb = affine ? [id(ins[1]!), id(ins[2]!)] : [g.dummy, g.dummy]; // the shader names them either way
    const consts = { HASW: affine ? 1 : 0 };
    if (C < ROW_LANES) {
      g.dispatch('reduce', 'layer_norm', consts, p, [id(out), id(ins[0]!), ...wb], { threads: R });
      return;
    }
    // rows of ROW_LANES+ values: their statistics a row per 32 invocations, then an invocation per element
    const work = g.scratch('float32', 2 * R);
    try {
      layerNormStats(g, p, id(ins[0]!), work, R);
      g.dispatch('reduce', 'layer_norm_apply', consts, p, [id(out), id(ins[0]!), ...wb, null, null, work], {
        threads: R * C,
      });
    } finally {
      g.release(work);
    }
  },
  layerNormBackward: (g, ins, out, at) => {
    const { R, C, affine } = checkLayerNorm(ins, 'layerNormBackward', at);
    if (C === 0) return;
    const p = new Params().set(PARAMS.reduce.N, R).set(PARAMS.reduce.C, C);
    p.f[PARAMS.reduce.attr] = attrsOf('layerNormBackward', at).eps;
    const work = g.scratch('float32', Math.max(2, 2 * R));
    try {
      const bufs = [id(out), id(ins[0]!), id(ins[1]!), affine ? id(ins[2]!) : g.dummy, null, null, work];
      const consts = { HASW: affine ? 1 : 0 };
      if (R > 0 && C >= ROW_LANES) {
        layerNormStats(g, p, id(ins[0]!), work, R);
        g.dispatch('reduce', 'layer_norm_backward_rows', consts, p, bufs, { groups: rowGroups(g, R) });
      } else if (R > 0) {
        g.dispatch('reduce', 'layer_norm_backward', consts, p, bufs, { threads: R });
      }
      // 32 columns a workgroup, 8 groups of 32 down the rows
      g.dispatch('reduce', 'layer_norm_backward_params', {}, p, [...bufs.slice(0, 3), null, null, null, work], {
        groups: grid(Math.ceil(C / 32), g.limits.maxComputeWorkgroupsPerDimension ?? 65535),
      });
    } finally {
      g.release(work);
    }
  },
  rowHash: (g, ins, out) => {
    const [n, f] = checkColumns(ins[0]!, 'rowHash');
    if (n === 0) return;
    g.dispatch(
      'reduce',
      'row_hash',
      {},
      new Params().set(PARAMS.reduce.N, n).set(PARAMS.reduce.F, f),
      [id(out), id(ins[0]!)],
      { threads: n },
    );
  },
};

/** Every reduce kernel indexes contiguous inputs from element 0. */
export const reduceKernels: Record<string, GpuKernel> = Object.fromEntries(
  Object.entries(kernels).map(([k, f]) => [k, denseInputs(f, copyView)]),
);
