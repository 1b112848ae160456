// Learning-rate schedules. Each computes the lr in closed form from the optimizer's base lr and its own step
// count, so saving that count is enough to resume exactly.
import { ArgumentError, ValidationError, checkOptions, describe } from '../errors.js';
import { checkNumber, type Optimizer } from './optimizer.js';

/** A schedule; call `step()` once per epoch (or per batch, as you choose) after `optimizer.step()`. */
export abstract class LRScheduler {
  /** Steps taken so far. */
  stepCount = 0;
  constructor(readonly optimizer: Optimizer) {
    if (optimizer === null || typeof optimizer !== 'object' || typeof (optimizer as Optimizer).step !== 'function') {
      throw new ArgumentError(`a scheduler takes an optimizer, got ${describe(optimizer)}`);
    }
    this.optimizer.lr = this.lrAt(0);
  }
  /** The learning rate after `t` scheduler steps. */
  abstract lrAt(t: number): number;
  /** Advances the schedule and sets the optimizer's lr. */
  step(): void {
    this.stepCount++;
    this.optimizer.lr = this.lrAt(this.stepCount);
  }
  get lr(): number {
    return this.optimizer.lr;
  }
  stateDict(): { stepCount: number } {
    return { stepCount: this.stepCount };
  }
  loadStateDict(s: { stepCount: number }): void {
    this.planLoad(s)();
  }
  /** @internal Checks `s` as loadStateDict does and returns the change it would make, without making it. */
  planLoad(s: { stepCount: number }): () => void {
    if (!s || !Number.isInteger(s.stepCount) || s.stepCount < 0)
      throw new ValidationError(`scheduler state must have a step count, got ${describe(s)}`);
    const { stepCount } = s;
    return () => {
      this.stepCount = stepCount;
      this.optimizer.lr = this.lrAt(stepCount);
    };
  }
}

/**
 * Multiplies the lr by gamma every stepSize steps.
 * @example const s = new kn.optim.StepLR(new kn.optim.SGD(new kn.nn.Linear(1, 1).parameters(), { lr: 1 }), { stepSize: 2, gamma: 0.5 }); s.lrAt(4) // 0.25
 */
export class StepLR extends LRScheduler {
  readonly stepSize: number;
  readonly gamma: number;
  constructor(opt: Optimizer, opts: { stepSize: number; gamma?: number }) {
    checkOptions(opts, 'StepLR', ['stepSize', 'gamma']);
    const stepSize = opts?.stepSize;
    if (!Number.isInteger(stepSize) || stepSize < 1)
      throw new ArgumentError(`StepLR stepSize must be a positive integer, got ${describe(stepSize)}`);
    const gamma = checkNumber(opts.gamma ?? 0.1, 'StepLR gamma', 0, Infinity);
    super(opt);
    this.stepSize = stepSize;
    this.gamma = gamma;
    this.optimizer.lr = this.lrAt(0);
  }
  lrAt(t: number): number {
    if (this.stepSize === undefined) return this.optimizer.baseLr;
    return this.optimizer.baseLr * this.gamma ** Math.floor(t / this.stepSize);
  }
}

/**
 * Cosine annealing from the base lr to etaMin over tMax steps (then held at etaMin).
 * @example const s = new kn.optim.CosineLR(new kn.optim.SGD(new kn.nn.Linear(1, 1).parameters(), { lr: 1 }), { tMax: 10 }); s.lrAt(5) // 0.5
 */
export class CosineLR extends LRScheduler {
  readonly tMax: number;
  readonly etaMin: number;
  constructor(opt: Optimizer, opts: { tMax: number; etaMin?: number }) {
    checkOptions(opts, 'CosineLR', ['tMax', 'etaMin']);
    const tMax = opts?.tMax;
    if (!Number.isInteger(tMax) || tMax < 1)
      throw new ArgumentError(`CosineLR tMax must be a positive integer, got ${describe(tMax)}`);
    const etaMin = checkNumber(opts.etaMin ?? 0, 'CosineLR etaMin', 0, Infinity);
    super(opt);
    this.tMax = tMax;
    this.etaMin = etaMin;
    this.optimizer.lr = this.lrAt(0);
  }
  lrAt(t: number): number {
    if (this.tMax === undefined) return this.optimizer.baseLr;
    const c = Math.min(t, this.tMax) / this.tMax;
    return this.etaMin + ((this.optimizer.baseLr - this.etaMin) * (1 + Math.cos(Math.PI * c))) / 2;
  }
}

/**
 * Linear warm-up from startFactor * lr to lr over warmupSteps, then hands over to `after` (if given), whose
 * step count starts at the end of the warm-up.
 * @example const s = new kn.optim.WarmupLR(new kn.optim.SGD(new kn.nn.Linear(1, 1).parameters(), { lr: 1 }), { warmupSteps: 4 }); s.lrAt(2) // 0.5
 */
export class WarmupLR extends LRScheduler {
  readonly warmupSteps: number;
  readonly startFactor: number;
  readonly after: LRScheduler | null;
  constructor(opt: Optimizer, opts: { warmupSteps: number; startFactor?: number; after?: LRScheduler | null }) {
    checkOptions(opts, 'WarmupLR', ['warmupSteps', 'startFactor', 'after']);
    const w = opts?.warmupSteps;
    if (!Number.isInteger(w) || w < 1)
      throw new ArgumentError(`WarmupLR warmupSteps must be a positive integer, got ${describe(w)}`);
    const f = checkNumber(opts.startFactor ?? 0, 'WarmupLR startFactor', 0, 1);
    if (opts.after && opts.after.optimizer !== opt)
      throw new ArgumentError('WarmupLR: `after` must schedule the same optimizer');
    super(opt);
    this.warmupSteps = w;
    this.startFactor = f;
    this.after = opts.after ?? null;
    this.optimizer.lr = this.lrAt(0);
  }
  lrAt(t: number): number {
    if (this.warmupSteps === undefined) return this.optimizer.baseLr;
    if (t < this.warmupSteps)
      return this.optimizer.baseLr * (this.startFactor + ((1 - this.startFactor) * t) / this.warmupSteps);
    return this.after ? this.after.lrAt(t - this.warmupSteps) : this.optimizer.baseLr;
  }
}
