// Sanity checks to run before training (Karpathy's "recipe for training neural networks"): the loss at
// initialisation, overfitting one batch, an input-independent baseline, and gradient flow. Every check leaves
// the model's weights, buffers, gradients and kiln's RNG state exactly as it found them.
import { noGrad } from '../autograd/tape.js';
import { tidy } from '../engine/memory.js';
import { ArgumentError, ShapeError, describe } from '../errors.js';
import type { Batch } from '../data/loader.js';
import { cloneStateDict, type Module } from '../nn/module.js';
import { Adam } from '../optim/adam.js';
import { getRngState, setRngState } from '../ops/random.js';
import { zerosLike } from '../ops/creation.js';
import { isTensor, type Tensor } from '../tensor/tensor.js';
import { lossFn, type LossFn } from './fit.js';

/** A batch of input and target, or a Batch with `x` and `y`. */
export interface XY {
  x: Tensor;
  y: Tensor;
}

function xy(b: unknown, what: string): XY {
  const o = b as Partial<XY>;
  if (!o || !isTensor(o.x) || !isTensor(o.y))
    throw new ArgumentError(`${what} needs a batch { x: Tensor, y: Tensor }, got ${describe(b)}`);
  return { x: o.x, y: o.y };
}

const resolveLoss = (l: LossFn | undefined): ((o: Tensor, t: Tensor) => Tensor) => lossFn(l ?? 'crossEntropy');

/** Runs fn, then puts back the model's weights/buffers/mode, clears gradients and restores the RNG. */
function trial<T>(model: Module, fn: () => T): T {
  const snap = cloneStateDict(model);
  const rng = getRngState();
  const training = model.training;
  try {
    return fn();
  } finally {
    model.loadStateDict(snap);
    for (const t of Object.values(snap)) t.dispose();
    model.zeroGrad();
    model.train(training);
    setRngState(rng);
  }
}

function lossOn(model: Module, b: XY, lf: (o: Tensor, t: Tensor) => Tensor): number {
  return tidy(() => noGrad(() => lf(model.call(b.x), b.y).item()));
}

function trainSteps(
  model: Module,
  batches: readonly XY[],
  lf: (o: Tensor, t: Tensor) => Tensor,
  steps: number,
  lr: number,
  map: (x: Tensor) => Tensor = (x) => x,
): void {
  const opt = new Adam(model.parameters(), { lr });
  try {
    model.train();
    for (let s = 0; s < steps; s++) {
      const b = batches[s % batches.length]!;
      tidy(() => {
        opt.zeroGrad();
        lf(model.call(map(b.x)), b.y).backward();
        opt.step();
      });
    }
  } finally {
    opt.dispose();
  }
}

/** Result of initialLoss. */
export interface InitialLossResult {
  ok: boolean;
  expected: number;
  measured: number;
  message: string;
}

/**
 * The loss of the untrained model should be what chance predicts: ln(C) for C-class cross-entropy, ln(2) for
 * binary cross-entropy. Pass `expected` for other losses. `tolerance` is relative (default 0.15).
 */
export function initialLoss(
  model: Module,
  batch: XY | Batch,
  opts: { loss?: LossFn; expected?: number; tolerance?: number } = {},
): InitialLossResult {
  const b = xy(batch, 'initialLoss');
  const lf = resolveLoss(opts.loss);
  const tol = opts.tolerance ?? 0.15;
  return trial(model, () => {
    model.eval();
    let expected = opts.expected;
    const measured = tidy(() =>
      noGrad(() => {
        const out = model.call(b.x);
        if (expected === undefined) {
          const name = typeof opts.loss === 'string' ? opts.loss : opts.loss === undefined ? 'crossEntropy' : null;
          if (name === 'crossEntropy') {
            if (out.ndim !== 2)
              throw new ShapeError(`initialLoss: a classifier's output must be [N, C], got [${out.shape}]`);
            expected = Math.log(out.shape[1]!);
          } else if (name === 'bce' || name === 'bceWithLogits') expected = Math.LN2;
          else throw new ArgumentError('initialLoss: pass { expected } for this loss');
        }
        return lf(out, b.y).item();
      }),
    );
    const e = expected!;
    const ok = Number.isFinite(measured) && Math.abs(measured - e) <= tol * Math.abs(e);
    return {
      ok,
      expected: e,
      measured,
      message:
        `initial loss ${measured.toFixed(4)}, expected ${e.toFixed(4)} (±${(tol * 100).toFixed(0)}%)` +
        (ok ? '' : ': check the output layer init (logits should start small), the loss, and the labels'),
    };
  });
}

/** Result of overfitOneBatch. */
export interface OverfitResult {
  ok: boolean;
  initial: number;
  final: number;
  steps: number;
  message: string;
}

/**
 * Trains a copy of the model's state on one batch: a model and loss that are wired correctly drive it close to
 * zero (below `target`, default 0.05). The model is restored afterwards.
 */
export function overfitOneBatch(
  model: Module,
  batch: XY | Batch,
  opts: { loss?: LossFn; steps?: number; lr?: number; target?: number } = {},
): OverfitResult {
  const b = xy(batch, 'overfitOneBatch');
  const lf = resolveLoss(opts.loss);
  const steps = opts.steps ?? 200,
    lr = opts.lr ?? 1e-2,
    target = opts.target ?? 0.05;
  if (!Number.isInteger(steps) || steps < 1)
    throw new ArgumentError(`steps must be a positive integer, got ${describe(opts.steps)}`);
  return trial(model, () => {
    const initial = lossOn(model, b, lf);
    trainSteps(model, [b], lf, steps, lr);
    model.eval();
    const final = lossOn(model, b, lf);
    const ok = Number.isFinite(final) && final < target;
    return {
      ok,
      initial,
      final,
      steps,
      message:
        `one batch: loss ${initial.toFixed(4)} -> ${final.toFixed(4)} in ${steps} steps (target < ${target})` +
        (ok ? '' : ': the model cannot fit even one batch; look for a bug in the model, loss or labels'),
    };
  });
}

/** Result of zeroInputBaseline. */
export interface BaselineResult {
  ok: boolean;
  realLoss: number;
  zeroLoss: number;
  message: string;
}

/**
 * Trains twice for the same number of steps (restoring the model in between and after): once on the real
 * inputs and once on zeroed inputs. A model that learns from its inputs must end with a clearly lower loss
 * on real data (`margin`, default 10% lower).
 */
export function zeroInputBaseline(
  model: Module,
  batches: XY | Batch | readonly (XY | Batch)[],
  opts: { loss?: LossFn; steps?: number; lr?: number; margin?: number } = {},
): BaselineResult {
  const bs = (Array.isArray(batches) ? batches : [batches]).map((b) => xy(b, 'zeroInputBaseline'));
  if (bs.length === 0) throw new ArgumentError('zeroInputBaseline needs at least one batch');
  const lf = resolveLoss(opts.loss);
  const steps = opts.steps ?? 50,
    lr = opts.lr ?? 1e-3,
    margin = opts.margin ?? 0.1;
  const evalAll = (map: (x: Tensor) => Tensor): number => {
    model.eval();
    return bs.reduce((s, b) => s + tidy(() => noGrad(() => lf(model.call(map(b.x)), b.y).item())), 0) / bs.length;
  };
  const zero = (x: Tensor): Tensor => zerosLike(x);
  const realLoss = trial(model, () => {
    trainSteps(model, bs, lf, steps, lr);
    return evalAll((x) => x);
  });
  const zeroLoss = trial(model, () => {
    trainSteps(model, bs, lf, steps, lr, zero);
    return evalAll(zero);
  });
  const ok = Number.isFinite(realLoss) && realLoss < zeroLoss * (1 - margin);
  return {
    ok,
    realLoss,
    zeroLoss,
    message:
      `after ${steps} steps: loss ${realLoss.toFixed(4)} on real inputs vs ${zeroLoss.toFixed(4)} on zeroed inputs` +
      (ok ? '' : ': the model does not use its inputs; check that inputs reach the model and are not all constant'),
  };
}

/** One parameter's gradient after a backward pass. */
export interface ParamGrad {
  name: string;
  norm: number;
  finite: boolean;
  zero: boolean;
}
/** Result of gradientFlow. */
export interface GradientFlowResult {
  ok: boolean;
  params: ParamGrad[];
  dead: string[];
  nonFinite: string[];
  message: string;
}

/**
 * One forward and backward pass on a batch: every parameter must get a finite, non-zero gradient. Reports
 * parameters with no or an all-zero gradient (dead layers, detached branches) and non-finite ones.
 */
export function gradientFlow(model: Module, batch: XY | Batch, opts: { loss?: LossFn } = {}): GradientFlowResult {
  const b = xy(batch, 'gradientFlow');
  const lf = resolveLoss(opts.loss);
  return trial(model, () => {
    model.train();
    model.zeroGrad();
    tidy(() => lf(model.call(b.x), b.y).backward());
    const params = model.namedParameters().map(([name, p]) => {
      if (!p.grad) return { name, norm: 0, finite: true, zero: true };
      const norm = tidy(() => noGrad(() => Math.sqrt(p.grad!.mul(p.grad!).sum().item())));
      return { name, norm, finite: Number.isFinite(norm), zero: norm === 0 };
    });
    const dead = params.filter((p) => p.zero).map((p) => p.name);
    const nonFinite = params.filter((p) => !p.finite).map((p) => p.name);
    const ok = dead.length === 0 && nonFinite.length === 0;
    return {
      ok,
      params,
      dead,
      nonFinite,
      message: ok
        ? `all ${params.length} parameters get finite, non-zero gradients`
        : [
            dead.length ? `no gradient reaches ${dead.join(', ')}` : '',
            nonFinite.length ? `non-finite gradients in ${nonFinite.join(', ')}` : '',
          ]
            .filter(Boolean)
            .join('; '),
    };
  });
}
