// Conv kernels of the webgpu backend (kernels/wgsl/conv.wgsl). Inputs arrive contiguous float32; the op layer
// has already checked the geometry.
import type { KernelOut, KernelView } from '../backend.js';
import { copyView } from './elementwise.js';
import { Params, denseInputs, grid, id, numelOf, windows, type Gpu, type GpuKernel } from './gpu.js';
import { attrsOf, groupAttrs } from '../../ops/table.js';
import { PARAMS } from './params.js';

type Shape4 = [number, number, number, number];

function geo(
  p: Params,
  [N, C, H, W]: Shape4,
  O: number,
  kh: number,
  kw: number,
  OH: number,
  OW: number,
  a: readonly number[],
): Params {
  const P = PARAMS.conv;
  p.set(P.N, N).set(P.C, C).set(P.H, H).set(P.W, W).set(P.O, O).set(P.kh, kh).set(P.kw, kw).set(P.OH, OH).set(P.OW, OW);
  // the conv attribute group (stride, pad, dilation, groups); pooling passes stride and pad with no dilation
  a.forEach((v, k) => p.set(P.attrs + k, v));
  return p;
}

function run(
  g: Gpu,
  entry: string,
  p: Params,
  out: KernelOut,
  ins: readonly KernelView[],
  consts: Record<string, number> = {},
): void {
  const n = numelOf(out.shape);
  if (n === 0) return;
  g.dispatch('conv', entry, consts, p, [id(out), ...ins.map(id)], { threads: n });
}

const s4 = (v: KernelView | KernelOut): Shape4 => v.shape as Shape4;

/** The channels (or batch items) [lo, hi) a conv dispatch adds onto the ones before (conv.wgsl P_CONV_WIN_*). */
const window = (p: Params, lo: number, hi: number): Params => p.set(PARAMS.conv.winLo, lo).set(PARAMS.conv.winHi, hi);

/** Loop turns of one channel of a conv or its input gradient: 2 each of the channel's, the kernel rows' and their
 * cells' loop turns (measured on llvmpipe: 11000 channels of 1x1 and 4000 of 3x3 ran out, 10000 and 2500 did not). */
const cellTurns = (kh: number, kw: number): number => 2 * (1 + kh + kh * kw) + 4;

/** Loop turns of one window row of pooling: 2 each of the row's and its cells' turns (as cellTurns). */
const rowTurns = (kw: number): number => 2 * (1 + kw) + 4;

/** Pooling forward (pool2d) over the window's rows, in windows of rows under a loop cap. */
function poolForward(
  g: Gpu,
  p: Params,
  kh: number,
  kw: number,
  out: KernelOut,
  ins: readonly KernelView[],
  max: boolean,
) {
  windows(g, kh, rowTurns(kw), (lo, hi) => run(g, 'pool2d', window(p, lo, hi), out, ins, { MAXP: max ? 1 : 0 }));
}

/** Pooling attrs (kernel, stride, pad) as the window size and conv-style attrs (no dilation, one group). */
function pool(a: readonly number[]): { k: [number, number]; rest: number[] } {
  const p = groupAttrs('pool', a);
  return { k: [p.kernelH, p.kernelW], rest: [p.strideH, p.strideW, p.padH, p.padW, 1, 1, 1] };
}

const kernels: Record<string, GpuKernel> = {
  conv2d: (g, ins, out, a) => {
    const [O, Cg, kh, kw] = s4(ins[1]!);
    const [, , OH, OW] = s4(out);
    const p = geo(new Params(), s4(ins[0]!), O, kh, kw, OH, OW, a.slice(0, 7));
    windows(g, Cg, cellTurns(kh, kw), (lo, hi) => run(g, 'conv2d', window(p, lo, hi), out, ins));
  },
  conv2dBackwardInput: (g, ins, out, a) => {
    const [O, , kh, kw] = s4(ins[1]!);
    const [, , OH, OW] = s4(ins[0]!);
    const p = geo(new Params(), s4(out), O, kh, kw, OH, OW, a.slice(0, 7));
    const Og = O / groupAttrs('conv', a).groups;
    windows(g, Og, cellTurns(kh, kw), (lo, hi) => run(g, 'conv2d_backward_input', window(p, lo, hi), out, ins));
  },
  conv2dBackwardWeight: (g, ins, out, a) => {
    const [O, , kh, kw] = s4(out);
    const [, , OH, OW] = s4(ins[1]!);
    const weights = numelOf(out.shape);
    if (weights === 0) return;
    // a workgroup per weight (conv.wgsl), its 256 invocations taking every 256th position of a batch item
    const p = geo(new Params(), s4(ins[0]!), O, kh, kw, OH, OW, a.slice(0, 7));
    windows(g, s4(ins[0]!)[0], 2 * Math.ceil((OH * OW) / 256) + 2, (lo, hi) =>
      g.dispatch('conv', 'conv2d_backward_weight', {}, window(p, lo, hi), [id(out), ...ins.map(id)], {
        groups: grid(weights, g.limits.maxComputeWorkgroupsPerDimension ?? 65535),
      }),
    );
  },
  maxPool2d: (g, ins, out, a) => {
    const [N, C, H, W] = s4(ins[0]!);
    const { k, rest } = pool(a);
    const p = geo(new Params(), [N * C, 1, H, W], 1, k[0], k[1], out.shape[2]!, out.shape[3]!, rest);
    poolForward(g, p, k[0], k[1], out, ins, true);
  },
  // each window's argmax first (pool2d_argmax, in windows of rows like the forward), then each input sums the
  // gradients of the windows whose argmax it is
  maxPool2dBackward: (g, ins, out, a) => {
    const [N, C, H, W] = s4(ins[0]!);
    const { k, rest } = pool(a);
    const [OH, OW] = [ins[1]!.shape[2]!, ins[1]!.shape[3]!];
    const windowsOut = N * C * OH * OW;
    if (numelOf(out.shape) === 0) return;
    const p = geo(new Params(), [N * C, 1, H, W], 1, k[0], k[1], OH, OW, rest);
    const arg = g.scratch('int32', Math.max(1, windowsOut));
    try {
      if (windowsOut > 0)
        windows(g, k[0], rowTurns(k[1]), (lo, hi) =>
          g.dispatch('conv', 'pool2d_argmax', {}, window(p, lo, hi), [null, id(ins[0]!), null, arg], {
            threads: windowsOut,
          }),
        );
      g.dispatch('conv', 'max_pool2d_backward', {}, p, [id(out), id(ins[1]!), null, arg], {
        threads: numelOf(out.shape),
      });
    } finally {
      g.release(arg);
    }
  },
  avgPool2d: (g, ins, out, a) => {
    const [N, C, H, W] = s4(ins[0]!);
    const { k, rest } = pool(a);
    const p = geo(new Params(), [N * C, 1, H, W], 1, k[0], k[1], out.shape[2]!, out.shape[3]!, rest).set(
      PARAMS.conv.includePad,
      attrsOf('avgPool2d', a).countIncludePad ? 1 : 0,
    );
    poolForward(g, p, k[0], k[1], out, ins, false);
  },
  avgPool2dBackward: (g, ins, out, a) => {
    const [N, C, H, W] = s4(out);
    const { k, rest } = pool(a);
    const p = geo(new Params(), [N * C, 1, H, W], 1, k[0], k[1], ins[0]!.shape[2]!, ins[0]!.shape[3]!, rest).set(
      PARAMS.conv.includePad,
      attrsOf('avgPool2dBackward', a).countIncludePad ? 1 : 0,
    );
    run(g, 'avg_pool2d_backward', p, out, [ins[0]!]);
  },
};

/** Every conv kernel indexes contiguous inputs from element 0. */
export const convKernels: Record<string, GpuKernel> = Object.fromEntries(
  Object.entries(kernels).map(([k, f]) => [k, denseInputs(f, copyView)]),
);
