// Reference optimizer updates in float64, in place on the parameter and state buffers (the same rules as
// native/cpu/optim.cc; the dispatcher has checked shapes, contiguity and that no buffer is shared).
import { attrsOf } from '../../ops/table.js';
import { checkAdam, checkAdamMulti, checkOptim, checkSgd, checkSgdMulti } from '../checks.js';
import type { KernelView } from '../backend.js';
import type { KernelFn } from './kernels.js';
import { buf } from './util.js';

type Slot = { a: Float64Array; o: number };

function slots(ins: readonly KernelView[], op: string, counts: readonly number[]): Slot[] {
  checkOptim(ins, op, counts);
  return ins.map((v) => ({ a: buf(v.handle), o: v.offset }));
}

/** One parameter's Adam update over n elements (attributes as adamStep's). */
function adam(p: Slot, g: Slot, m: Slot, v: Slot, vmax: Slot | undefined, n: number, at: readonly number[]): void {
  const { lr, beta1: b1, beta2: b2, eps, weightDecay: wd, decoupled, bias1, bias2 } = attrsOf('adamStep', at);
  const shrink = decoupled ? 1 - lr * wd : 1;
  for (let i = 0; i < n; i++) {
    const pi = p.a[p.o + i]!;
    const gi = g.a[g.o + i]! + (decoupled ? 0 : wd * pi);
    const mi = b1 * m.a[m.o + i]! + (1 - b1) * gi;
    const vi = b2 * v.a[v.o + i]! + (1 - b2) * gi * gi;
    m.a[m.o + i] = mi;
    v.a[v.o + i] = vi;
    let vd = vi;
    if (vmax) {
      vd = Math.max(vmax.a[vmax.o + i]!, vi);
      vmax.a[vmax.o + i] = vd;
    }
    p.a[p.o + i] = pi * shrink - ((lr / bias1) * mi) / (Math.sqrt(vd) / Math.sqrt(bias2) + eps);
  }
}

/** One parameter's SGD update over n elements, b its momentum buffer if any (attributes as sgdStep's). */
function sgd(p: Slot, g: Slot, b: Slot | undefined, n: number, at: readonly number[]): void {
  const { lr, momentum: mom, dampening: damp, weightDecay: wd, nesterov, firstStep: first } = attrsOf('sgdStep', at);
  for (let i = 0; i < n; i++) {
    const pi = p.a[p.o + i]!;
    const gi = g.a[g.o + i]! + wd * pi;
    if (!b) {
      p.a[p.o + i] = pi - lr * gi;
      continue;
    }
    const bi = first ? gi : mom * b.a[b.o + i]! + (1 - damp) * gi;
    b.a[b.o + i] = bi;
    p.a[p.o + i] = pi - lr * (nesterov ? gi + mom * bi : bi);
  }
}

export const optimKernels: Record<string, KernelFn> = {
  adamStep: (ins, _out, at) => {
    const [p, g, m, v, vmax] = slots(ins, 'adamStep', [4, 5]);
    checkAdam(at);
    adam(
      p!,
      g!,
      m!,
      v!,
      vmax,
      ins[0]!.shape.reduce((x, y) => x * y, 1),
      at,
    );
  },
  adamStepMulti: (ins, _out, at) => {
    const groups = checkAdamMulti(ins);
    checkAdam(at, 'adamStepMulti');
    for (const { group, n } of groups) {
      const [p, g, m, v] = group.map((x): Slot => ({ a: buf(x.handle), o: x.offset }));
      adam(p!, g!, m!, v!, undefined, n, at);
    }
  },
  sgdStep: (ins, _out, at) => {
    const [p, g, b] = slots(ins, 'sgdStep', [2, 3]);
    checkSgd(ins, at);
    sgd(
      p!,
      g!,
      b,
      ins[0]!.shape.reduce((x, y) => x * y, 1),
      at,
    );
  },
  sgdStepMulti: (ins, _out, at) => {
    for (const { group, n } of checkSgdMulti(ins)) {
      const [p, g, b] = group.map((x): Slot => ({ a: buf(x.handle), o: x.offset }));
      sgd(p!, g!, b!, n, at);
    }
  },
};
