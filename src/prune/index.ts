// kn.prune: magnitude pruning (per layer or global) with masks that survive fine-tuning, a gradual sparsity
// schedule (Zhu & Gupta's cubic ramp), and structured pruning that removes whole neurons / channels and
// shrinks the layers that consume them, so the model really gets smaller and faster.
import { noGrad } from '../autograd/tape.js';
import { ArgumentError, ValidationError, checkOptions, describe, optionKeys } from '../errors.js';
import { BatchNorm1d, BatchNorm2d, Conv2d, Flatten, Linear, Sequential } from '../nn/layers.js';
import { Module } from '../nn/module.js';
import { layerOf } from '../nn/registry.js';
import { cloneModule } from '../nn/spec.js';
import { tensor } from '../ops/creation.js';
import { gather } from '../ops/movement.js';
import type { Optimizer } from '../optim/optimizer.js';
import { isTensor, type Tensor } from '../tensor/tensor.js';

/** The weights pruning acts on: Linear and Conv2d weights (not biases or normalisation parameters). */
function prunable(model: Module): [string, Tensor][] {
  const out: [string, Tensor][] = [];
  for (const [name, m] of model.namedModules()) {
    if (m instanceof Linear || m instanceof Conv2d) out.push([name ? `${name}.weight` : 'weight', m.weight]);
  }
  return out;
}

/**
 * Fraction of exact zeros: in a tensor, or over the prunable weights (Linear/Conv2d) of a model.
 * @example kn.prune.sparsity(kn.tensor([0, 1, 0, 2])) // 0.5
 */
export function sparsity(x: Module | Tensor): number {
  const ts = isTensor(x) ? [x] : x instanceof Module ? prunable(x).map(([, t]) => t) : null;
  if (!ts) throw new ArgumentError(`sparsity takes a Module or a Tensor, got ${describe(x)}`);
  let zeros = 0,
    total = 0;
  for (const t of ts) {
    const v = t.toArray();
    for (let i = 0; i < v.length; i++) if (v[i] === 0) zeros++;
    total += v.length;
  }
  return total ? zeros / total : 0;
}

function checkAmount(a: unknown): number {
  if (typeof a !== 'number' || !(a >= 0 && a < 1))
    throw new ArgumentError(`the pruning amount is a fraction in [0, 1), got ${describe(a)}`);
  return a;
}

/** The k-th smallest |value| (k >= 1) over the given arrays: everything at or below it is pruned. */
function threshold(arrays: Float32Array[], k: number): number {
  if (k <= 0) return -1;
  const n = arrays.reduce((s, a) => s + a.length, 0);
  const all = new Float32Array(n);
  let o = 0;
  for (const a of arrays) {
    for (let i = 0; i < a.length; i++) all[o + i] = Math.abs(a[i]!);
    o += a.length;
  }
  all.sort();
  return all[Math.min(n, k) - 1]!;
}

/** Options for magnitude pruning. */
export interface MagnitudeOptions {
  /** the fraction of the weights to prune (the layers' sparsity afterwards); give this or `amount` */
  sparsity?: number;
  /** the same fraction under PyTorch's name (torch.nn.utils.prune's `amount`) */
  amount?: number;
  /** 'layer': the same fraction in every layer; 'global': one threshold across all layers (default 'layer') */
  scope?: 'layer' | 'global';
}

/**
 * Holds the 0/1 masks of pruned weights. `apply()` re-zeroes them; `attach(optimizer)` does it after every
 * optimizer step (so fine-tuning keeps the sparsity) and, with a schedule, raises the sparsity on its steps.
 */
export class Pruner {
  readonly masks = new Map<string, Tensor>();
  private readonly weights: Map<string, Tensor>;
  private detachFn: (() => void) | null = null;
  private steps = 0;
  constructor(
    readonly model: Module,
    readonly scope: 'layer' | 'global' = 'layer',
    readonly schedule: GradualSchedule | null = null,
  ) {
    if (!(model instanceof Module)) throw new ArgumentError(`Pruner takes a kn.nn.Module, got ${describe(model)}`);
    if (scope !== 'layer' && scope !== 'global')
      throw new ArgumentError(`scope must be 'layer' or 'global', got ${describe(scope)}`);
    this.weights = new Map(prunable(model));
    if (this.weights.size === 0)
      throw new ValidationError(`${model.constructor.name} has no Linear or Conv2d weights to prune`);
  }

  /** Recomputes the masks by magnitude so that `amount` of the weights are zero, and applies them. */
  prune(amount: number): this {
    checkAmount(amount);
    noGrad(() => {
      const vals = new Map([...this.weights].map(([n, w]) => [n, w.toArray() as Float32Array]));
      const total = [...vals.values()].reduce((s, a) => s + a.length, 0);
      const globalThr = this.scope === 'global' ? threshold([...vals.values()], Math.round(amount * total)) : 0;
      for (const [name, w] of this.weights) {
        const v = vals.get(name)!;
        const thr = this.scope === 'global' ? globalThr : threshold([v], Math.round(amount * v.length));
        const m = new Float32Array(v.length);
        for (let i = 0; i < v.length; i++) m[i] = Math.abs(v[i]!) > thr ? 1 : 0;
        this.masks.get(name)?.dispose();
        this.masks.set(name, tensor(m, w.shape, { backend: w.backend }));
      }
      this.apply();
    });
    return this;
  }

  /** Zeroes the masked weights again (after an optimizer step moved them). */
  apply(): void {
    noGrad(() => {
      for (const [name, mask] of this.masks) {
        const w = this.weights.get(name)!;
        const z = w.mul(mask);
        w.assign(z);
        z.dispose();
      }
    });
  }

  /** Fraction of zeros over the pruned weights. */
  sparsity(): number {
    return sparsity(this.model);
  }

  /**
   * Hooks into `optimizer.step()`: after each step the masks are re-applied, and with a schedule the target
   * sparsity is raised every `frequency` steps. Returns a function that undoes the hook.
   */
  attach(optimizer: Optimizer): () => void {
    if (this.detachFn) throw new ValidationError('this pruner is already attached to an optimizer');
    const inst = optimizer as unknown as { step: () => void };
    const orig = inst.step;
    inst.step = () => {
      orig.call(optimizer);
      this.steps++;
      const s = this.schedule;
      if (s && this.steps >= s.startStep && this.steps <= s.endStep && (this.steps - s.startStep) % s.frequency === 0) {
        this.prune(s.sparsityAt(this.steps));
      } else {
        this.apply();
      }
    };
    this.detachFn = () => {
      inst.step = orig;
      this.detachFn = null;
    };
    return this.detachFn;
  }

  /** Frees the masks (the weights keep their zeros). */
  dispose(): void {
    this.detachFn?.();
    for (const m of this.masks.values()) m.dispose();
    this.masks.clear();
  }
}

/**
 * Prunes the smallest-magnitude weights of every Linear/Conv2d layer, in place, and returns the Pruner that
 * holds the masks (attach it to the fine-tuning optimizer).
 */
export function magnitude(model: Module, opts: MagnitudeOptions): Pruner {
  checkOptions(
    opts,
    'magnitude',
    optionKeys<MagnitudeOptions>({ sparsity: true, amount: true, scope: true }),
    'required',
  );
  if ((opts.sparsity === undefined) === (opts.amount === undefined))
    throw new ArgumentError(
      `magnitude needs the fraction to prune as sparsity or as amount (the same thing), got ${opts.sparsity === undefined ? 'neither' : 'both'}`,
    );
  return new Pruner(model, opts.scope ?? 'layer').prune(checkAmount(opts.sparsity ?? opts.amount));
}

/**
 * Gradual pruning: sparsity rises from `initial` to `final` between `startStep` and `endStep` along
 * s(t) = final + (initial - final) (1 - (t - start) / (end - start))^3, updated every `frequency` steps.
 */
export class GradualSchedule {
  readonly initial: number;
  readonly final: number;
  readonly startStep: number;
  readonly endStep: number;
  readonly frequency: number;
  constructor(opts: { final: number; initial?: number; startStep?: number; endStep: number; frequency?: number }) {
    checkOptions(opts, 'GradualSchedule', ['final', 'initial', 'startStep', 'endStep', 'frequency'], 'required');
    this.initial = checkAmount(opts.initial ?? 0);
    this.final = checkAmount(opts.final);
    this.startStep = opts.startStep ?? 0;
    this.endStep = opts.endStep;
    this.frequency = opts.frequency ?? 1;
    const int = (v: number, w: string, min: number): void => {
      if (!Number.isInteger(v) || v < min)
        throw new ArgumentError(`GradualSchedule ${w} must be an integer >= ${min}, got ${describe(v)}`);
    };
    int(this.startStep, 'startStep', 0);
    int(this.endStep, 'endStep', this.startStep + 1);
    int(this.frequency, 'frequency', 1);
  }
  /** The target sparsity at optimizer step t. */
  sparsityAt(t: number): number {
    if (t <= this.startStep) return this.initial;
    if (t >= this.endStep) return this.final;
    const r = 1 - (t - this.startStep) / (this.endStep - this.startStep);
    return this.final + (this.initial - this.final) * r ** 3;
  }
}

/** A Pruner driven by a GradualSchedule; attach it to the optimizer used for fine-tuning. */
export function gradual(model: Module, schedule: GradualSchedule, opts: { scope?: 'layer' | 'global' } = {}): Pruner {
  checkOptions(opts, 'gradual', ['scope']);
  if (!(schedule instanceof GradualSchedule))
    throw new ArgumentError(`gradual needs a kn.prune.GradualSchedule, got ${describe(schedule)}`);
  const p = new Pruner(model, opts.scope ?? 'layer', schedule);
  return schedule.initial > 0 ? p.prune(schedule.initial) : p;
}

// ---------------- structured pruning ----------------

/** Structured pruning options. */
export interface StructuredOptions {
  /** fraction of the neurons (Linear outputs) / channels (Conv2d outputs) to remove from each pruned layer */
  amount: number;
  /** how a unit's importance is measured: the L1 or L2 norm of its weights (default 'l2') */
  norm?: 'l1' | 'l2';
  /** names of the layers to prune (default: every Linear/Conv2d whose outputs feed another one) */
  layers?: readonly string[];
  /**
   * which weights measure a unit: 0 (default) its own, the pruned layer's output row or filter (PyTorch's
   * ln_structured on that layer with dim 0); 1 the weights that read it, the next layer's input columns or
   * channels (ln_structured on the consumer with dim 1). Either way the unit leaves both layers.
   */
  dim?: 0 | 1;
}

/** What structured returns. */
export interface StructuredResult {
  model: Module;
  /** per pruned layer: its name and the indices of the units kept */
  kept: { name: string; before: number; after: number; indices: number[] }[];
}

/**
 * The norm of each of `units` slices of a weight read as [outer, units, inner] (dim 1: a consumer's input
 * columns or channels; outer 1 reads it as [units, inner], a layer's own rows or filters).
 */
function unitScores(w: Tensor, outer: number, units: number, norm: 'l1' | 'l2'): number[] {
  const a = w.toArray() as Float32Array,
    inner = a.length / (outer * units);
  const s = new Array<number>(units).fill(0);
  for (let o = 0; o < outer; o++)
    for (let u = 0; u < units; u++)
      for (let k = 0, base = (o * units + u) * inner; k < inner; k++) {
        const v = a[base + k]!;
        s[u] = s[u]! + (norm === 'l1' ? Math.abs(v) : v * v);
      }
  return s;
}

function take(t: Tensor, idx: number[], axis: number): Tensor {
  const i = tensor(Int32Array.from(idx), [idx.length], { backend: t.backend });
  const r = gather(t, i, axis);
  i.dispose();
  return r;
}

/**
 * Removes whole units from a Sequential model: the lowest-norm output rows of a Linear (or filters of a
 * Conv2d), the matching entries of a following BatchNorm, and the matching input columns (channels) of the
 * next Linear/Conv2d (through Flatten, column blocks of H*W). Returns a smaller copy; the original stays.
 */
export function structured(model: Module, opts: StructuredOptions): StructuredResult {
  if (!(model instanceof Sequential))
    throw new ArgumentError(`structured pruning works on a kn.nn.Sequential, got ${describe(model)}`);
  checkOptions(
    opts,
    'structured',
    optionKeys<StructuredOptions>({ amount: true, norm: true, layers: true, dim: true }),
    'required',
  );
  const amount = checkAmount(opts.amount);
  const norm = opts.norm ?? 'l2';
  if (norm !== 'l1' && norm !== 'l2') throw new ArgumentError(`norm must be 'l1' or 'l2', got ${describe(norm)}`);
  const dim = opts.dim ?? 0;
  if (dim !== 0 && dim !== 1) throw new ArgumentError(`structured dim must be 0 or 1, got ${describe(opts.dim)}`);
  const copy = cloneModule(model);
  const layers = [...copy.layers];
  const kept: StructuredResult['kept'] = [];
  noGrad(() => {
    for (let i = 0; i < layers.length; i++) {
      const l = layers[i]!;
      if (!(l instanceof Linear || l instanceof Conv2d)) continue;
      if (l instanceof Conv2d && (l.opts.groups ?? 1) !== 1) continue;
      // find the consumer: skip pass-through layers, remember BatchNorms and a Flatten on the way
      let j = i + 1,
        flatten = false;
      const norms: number[] = [];
      while (j < layers.length) {
        const n = layers[j]!;
        if (layerOf(n)?.keepsFeatures) {
          j++;
          continue;
        }
        if ((n instanceof BatchNorm1d && l instanceof Linear) || (n instanceof BatchNorm2d && l instanceof Conv2d)) {
          norms.push(j++);
          continue;
        }
        if (n instanceof Flatten && l instanceof Conv2d && n.startAxis === 1 && (n.endAxis === -1 || n.endAxis === 3)) {
          flatten = true;
          j++;
          continue;
        }
        break;
      }
      const next = layers[j];
      const feeds = next instanceof Linear || (next instanceof Conv2d && !flatten && (next.opts.groups ?? 1) === 1);
      const name = String(i);
      if (!feeds || (opts.layers && !opts.layers.includes(name))) continue;
      const units = l instanceof Linear ? l.outFeatures : l.outChannels;
      if (next instanceof Linear && flatten && next.inFeatures % units !== 0) continue;
      const keepN = Math.max(1, units - Math.round(amount * units));
      if (keepN === units) continue;
      // unit importance: the norm of its own weights (dim 0) or of the consumer's weights that read it (dim 1)
      const score =
        dim === 0 ? unitScores(l.weight, 1, units, norm) : unitScores(next.weight, next.weight.shape[0]!, units, norm);
      const idx = Array.from({ length: units }, (_, u) => u)
        .sort((a, b) => score[b]! - score[a]! || a - b)
        .slice(0, keepN)
        .sort((a, b) => a - b);
      // the pruned layer
      let nl: Linear | Conv2d;
      if (l instanceof Linear) nl = new Linear(l.inFeatures, keepN, { bias: l.bias !== null });
      else nl = new Conv2d(l.inChannels, keepN, l.kernelSize, { ...l.opts, bias: l.bias !== null });
      const w2 = take(l.weight, idx, 0);
      nl.weight.assign(w2);
      w2.dispose();
      if (l.bias) {
        const b2 = take(l.bias, idx, 0);
        nl.bias!.assign(b2);
        b2.dispose();
      }
      copy.replaceChild(name, nl); // l is disposed once its consumer has been rebuilt
      layers[i] = nl;
      // the BatchNorms on the way
      for (const k of norms) {
        const bn = layers[k] as BatchNorm1d | BatchNorm2d;
        const nb =
          bn instanceof BatchNorm1d
            ? new BatchNorm1d(keepN, { eps: bn.eps, momentum: bn.momentum, affine: bn.weight !== null })
            : new BatchNorm2d(keepN, { eps: bn.eps, momentum: bn.momentum, affine: bn.weight !== null });
        for (const key of ['weight', 'bias', 'runningMean', 'runningVar'] as const) {
          const src = bn[key],
            dst = nb[key];
          if (src && dst) {
            const t = take(src, idx, 0);
            dst.assign(t);
            t.dispose();
          }
        }
        nb.numBatchesTracked.assign(bn.numBatchesTracked);
        copy.replaceChild(String(k), nb).dispose();
        layers[k] = nb;
      }
      // the consumer's inputs
      let nn: Linear | Conv2d;
      if (next instanceof Linear) {
        const block = flatten ? next.inFeatures / units : 1;
        const cols = idx.flatMap((u) => Array.from({ length: block }, (_, q) => u * block + q));
        nn = new Linear(cols.length, next.outFeatures, { bias: next.bias !== null });
        const t = take(next.weight, cols, 1);
        nn.weight.assign(t);
        t.dispose();
        if (next.bias) nn.bias!.assign(next.bias);
      } else {
        const c = next as Conv2d;
        nn = new Conv2d(keepN, c.outChannels, c.kernelSize, { ...c.opts, bias: c.bias !== null });
        const t = take(c.weight, idx, 1);
        nn.weight.assign(t);
        t.dispose();
        if (c.bias) nn.bias!.assign(c.bias);
      }
      copy.replaceChild(String(j), nn).dispose();
      layers[j] = nn;
      l.dispose();
      kept.push({ name, before: units, after: keepN, indices: idx });
    }
  });
  return { model: copy, kept };
}
