// Sanity checks to run before training (Karpathy's "recipe for training neural networks"): the loss at
// initialisation, overfitting one batch, an input-independent baseline, gradient flow, batch independence and
// capacity (the loss falls as the model widens). Every check on a given model leaves its weights, buffers,
// gradients and kiln's RNG state exactly as it found them.
import { quiet } from '../autograd/tape.js';
import { tidy } from '../engine/memory.js';
import { ArgumentError, ShapeError, ValidationError, checkOptions, describe } from '../errors.js';
import type { Batch } from '../data/loader.js';
import { cloneStateDict, type Module } from '../nn/module.js';
import { Adam } from '../optim/adam.js';
import { getRngState, seed, setRngState } from '../ops/random.js';
import { tensor, zerosLike } from '../ops/creation.js';
import { isTensor, type Tensor } from '../tensor/tensor.js';
import { lossFn, type LossFn } from './losses.js';

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
  return quiet(() => lf(model.call(b.x), b.y).item());
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
  checkOptions(opts, 'initialLoss', ['loss', 'expected', 'tolerance']);
  const b = xy(batch, 'initialLoss');
  const lf = resolveLoss(opts.loss);
  const tol = opts.tolerance ?? 0.15;
  return trial(model, () => {
    model.eval();
    let expected = opts.expected;
    const measured = quiet(() => {
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
    });
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
  checkOptions(opts, 'overfitOneBatch', ['loss', 'steps', 'lr', 'target']);
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
  checkOptions(opts, 'zeroInputBaseline', ['loss', 'steps', 'lr', 'margin']);
  const bs = (Array.isArray(batches) ? batches : [batches]).map((b) => xy(b, 'zeroInputBaseline'));
  if (bs.length === 0) throw new ArgumentError('zeroInputBaseline needs at least one batch');
  const lf = resolveLoss(opts.loss);
  const steps = opts.steps ?? 50,
    lr = opts.lr ?? 1e-3,
    margin = opts.margin ?? 0.1;
  const evalAll = (map: (x: Tensor) => Tensor): number => {
    model.eval();
    return bs.reduce((s, b) => s + quiet(() => lf(model.call(map(b.x)), b.y).item()), 0) / bs.length;
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
  checkOptions(opts, 'gradientFlow', ['loss']);
  const b = xy(batch, 'gradientFlow');
  const lf = resolveLoss(opts.loss);
  return trial(model, () => {
    model.train();
    model.zeroGrad();
    tidy(() => lf(model.call(b.x), b.y).backward());
    const params = model.namedParameters().map(([name, p]) => {
      if (!p.grad) return { name, norm: 0, finite: true, zero: true };
      const norm = quiet(() => Math.sqrt(p.grad!.mul(p.grad!).sum().item()));
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

/** Result of batchIndependence. */
export interface BatchIndependenceResult {
  ok: boolean;
  /** The example whose output was backpropagated. */
  index: number;
  /** Other examples whose input received gradient (the batch is mixed). */
  leaking: number[];
  message: string;
}

/**
 * Backpropagates from one example's output only and checks that no other example's input receives gradient
 * (Karpathy's recipe). A reshape or transpose that mixes the batch dimension, or a normalisation over the batch,
 * shows up as leaking examples. Runs in eval mode by default (BatchNorm's training mode mixes the batch on
 * purpose); pass `mode: 'train'` to test that too.
 * @example kn.train.checks.batchIndependence(new kn.nn.Linear(3, 2), kn.randn([4, 3])).ok // true
 */
export function batchIndependence(
  model: Module,
  batch: XY | Batch | Tensor,
  opts: { index?: number; mode?: 'eval' | 'train' } = {},
): BatchIndependenceResult {
  checkOptions(opts, 'batchIndependence', ['index', 'mode']);
  const x = isTensor(batch) ? batch : xy(batch, 'batchIndependence').x;
  if (x.ndim < 1 || x.shape[0]! < 2)
    throw new ArgumentError(`batchIndependence needs a batch of at least 2 examples, got shape [${x.shape}]`);
  const n = x.shape[0]!;
  const index = opts.index ?? 0;
  if (!Number.isInteger(index) || index < 0 || index >= n)
    throw new ArgumentError(`index must be an example of the batch in [0, ${n}), got ${describe(opts.index)}`);
  const mode = opts.mode ?? 'eval';
  if (mode !== 'eval' && mode !== 'train')
    throw new ArgumentError(`mode must be 'eval' or 'train', got ${describe(mode)}`);
  return trial(model, () => {
    model.train(mode === 'train');
    const leaf = x.detach();
    leaf.requiresGrad = true;
    try {
      const per = tidy(() => {
        const out = model.call(leaf);
        if (out.ndim < 1 || out.shape[0] !== n)
          throw new ValidationError(
            `the model's output has shape [${out.shape}]: its first dimension is not the batch (${n})`,
          );
        const mask = new Float32Array(out.size);
        const rowSize = out.size / n;
        mask.fill(1, index * rowSize, (index + 1) * rowSize);
        out.mul(tensor(mask, out.shape)).sum().backward();
        const g = leaf.grad;
        if (!g) return new Float64Array(n);
        const v = g.toArray() as ArrayLike<number>;
        const size = v.length / n;
        const r = new Float64Array(n);
        for (let i = 0; i < n; i++) for (let j = 0; j < size; j++) r[i] = Math.max(r[i]!, Math.abs(v[i * size + j]!));
        return r;
      });
      const leaking: number[] = [];
      for (let i = 0; i < n; i++) if (i !== index && per[i]! !== 0) leaking.push(i);
      const ok = leaking.length === 0;
      return {
        ok,
        index,
        leaking,
        message: ok
          ? `batch independence: only example ${index} receives gradient from its own output`
          : `batch independence: the output of example ${index} sends gradient to ${leaking.length} other example(s) ` +
            `(${leaking.slice(0, 5).join(', ')}${leaking.length > 5 ? ', ...' : ''}): something mixes the batch ` +
            `dimension (a reshape/transpose/view across it, or a normalisation over the batch)`,
      };
    } finally {
      leaf.dispose();
    }
  });
}

/** Result of capacity. */
export interface CapacityResult {
  ok: boolean;
  /** Width and final training loss of each model, in the order given. */
  runs: { width: number; loss: number }[];
  message: string;
}

/**
 * Trains models of growing width for the same budget on the same batches: the final training loss must fall as
 * the model widens (by `margin`, default 5%, from the narrowest to the widest). A pipeline where it does not (a
 * bottleneck, labels that do not match inputs, a frozen layer) is flagged. `build(width)` makes a fresh model.
 * @example kn.train.checks.capacity((w) => new kn.nn.Sequential(new kn.nn.Linear(4, w), new kn.nn.ReLU(), new kn.nn.Linear(w, 3)), { x: kn.randn([16, 4]), y: kn.zeros([16], { dtype: 'int32' }) }, { widths: [1, 16], steps: 20 }).runs.length // 2
 */
export function capacity(
  build: (width: number) => Module,
  batches: XY | Batch | readonly (XY | Batch)[],
  opts: { widths?: readonly number[]; loss?: LossFn; steps?: number; lr?: number; margin?: number; seed?: number } = {},
): CapacityResult {
  checkOptions(opts, 'capacity', ['widths', 'loss', 'steps', 'lr', 'margin', 'seed']);
  if (typeof build !== 'function')
    throw new ArgumentError(`capacity needs build(width) => Module, got ${describe(build)}`);
  const bs = (Array.isArray(batches) ? batches : [batches]).map((b) => xy(b, 'capacity'));
  if (bs.length === 0) throw new ArgumentError('capacity needs at least one batch');
  const widths = opts.widths ?? [4, 16, 64];
  if (!Array.isArray(widths) || widths.length < 2 || widths.some((w) => !Number.isInteger(w) || w < 1))
    throw new ArgumentError(`widths must be at least two positive integers, got ${describe(widths)}`);
  const lf = resolveLoss(opts.loss);
  const steps = opts.steps ?? 100,
    lr = opts.lr ?? 1e-2,
    margin = opts.margin ?? 0.05;
  const rng = getRngState();
  const runs = widths.map((width) => {
    seed(opts.seed ?? 0);
    const model = build(width);
    trainSteps(model, bs, lf, steps, lr);
    model.eval();
    const loss = bs.reduce((s, b) => s + lossOn(model, b, lf), 0) / bs.length;
    for (const p of model.parameters()) p.dispose();
    return { width, loss };
  });
  setRngState(rng);
  const first = runs[0]!.loss,
    last = runs[runs.length - 1]!.loss;
  const ok = Number.isFinite(last) && last < first * (1 - margin);
  return {
    ok,
    runs,
    message:
      `after ${steps} steps: training loss ${runs.map((r) => `${r.loss.toFixed(4)} (width ${r.width})`).join(', ')}` +
      (ok
        ? ''
        : ': a wider model does not fit the training data better; look for a bottleneck, a frozen layer or targets ' +
          'that do not depend on the inputs'),
  };
}
