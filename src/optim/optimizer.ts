// The optimizer base: the parameter list, a learning rate schedulers can change, per-parameter state tensors,
// and a state dict (numbers + tensors) that checkpoints save and restore exactly.
import { activeRecorder } from '../profile/recorder.js';
import { noGrad } from '../autograd/tape.js';
import { keep } from '../engine/memory.js';
import { ArgumentError, BackendError, DTypeError, ShapeError, ValidationError, describe } from '../errors.js';
import { zerosLike } from '../ops/creation.js';
import { shapeStr } from '../tensor/shape.js';
import { isTensor, type Tensor } from '../tensor/tensor.js';

/** What an optimizer saves: its kind, hyper-parameters and step counts, and its state tensors by name. */
export interface OptimizerState {
  kind: string;
  hyper: Record<string, number | boolean>;
  /** steps taken per parameter (bias correction) */
  steps: number[];
  /** `${paramIndex}.${slot}` -> tensor */
  tensors: Record<string, Tensor>;
}

export function checkNumber(v: unknown, what: string, lo: number, hi: number, loOpen = false, hiOpen = false): number {
  const ok = typeof v === 'number' && Number.isFinite(v) && (loOpen ? v > lo : v >= lo) && (hiOpen ? v < hi : v <= hi);
  if (!ok)
    throw new ArgumentError(
      `${what} must be a number in ${loOpen ? '(' : '['}${lo}, ${hi}${hiOpen ? ')' : ']'}, got ${describe(v)}`,
    );
  return v as number;
}

/** One parameter's share of a step: its index, tensor, gradient and step count after this step. */
export interface StepItem {
  i: number;
  p: Tensor;
  g: Tensor;
  t: number;
}

/** Parameters per multi-tensor optimizer call (the kernels take 8 groups of inputs at most). */
const MULTI = 8;

/**
 * Cuts a batch into calls of up to MULTI parameters where no buffer written in place (`written`: a parameter and
 * its state) is also another input of the same call: parameters that are views of one flat buffer go to different
 * calls, as the dispatcher refuses a call that writes memory it also reads through another input. Gradients may
 * share.
 */
function multiParts(batch: readonly StepItem[], writtenOf: (it: StepItem) => Tensor[]): StepItem[][] {
  // each item's buffers, looked up once: those written in place and the gradient it reads
  const handles = batch.map((it) => ({
    written: writtenOf(it).map((t) => t.storageHandle()),
    read: it.g.storageHandle(),
  }));
  // the common case, no buffer seen twice: plain runs of MULTI
  const seen = new Set<unknown>();
  let shared = false;
  for (const { written, read } of handles) {
    for (const h of [...written, read]) {
      if (seen.has(h)) shared = true;
      seen.add(h);
    }
    if (shared) break;
  }
  if (!shared) {
    const runs: StepItem[][] = [];
    for (let k = 0; k < batch.length; k += MULTI) runs.push(batch.slice(k, k + MULTI));
    return runs;
  }
  const parts: { items: StepItem[]; written: Set<unknown>; all: Set<unknown> }[] = [];
  batch.forEach((it, n) => {
    const { written, read } = handles[n]!;
    let part = parts.find((q) => q.items.length < MULTI && !written.some((h) => q.all.has(h)) && !q.written.has(read));
    if (!part) {
      part = { items: [], written: new Set(), all: new Set() };
      parts.push(part);
    }
    part.items.push(it);
    for (const h of written) {
      part.written.add(h);
      part.all.add(h);
    }
    part.all.add(read);
  });
  return parts.map((q) => q.items);
}

/** Base class of the optimizers: holds parameters and per-parameter state slots. */
export abstract class Optimizer {
  readonly params: readonly Tensor[];
  /** Learning rate; schedulers set it. */
  lr: number;
  /** Learning rate given at construction (schedulers scale from it). */
  readonly baseLr: number;
  protected steps: number[];
  protected state: Map<string, Tensor>[];

  constructor(params: Iterable<Tensor>, lr: number) {
    if (params === null || typeof params !== 'object' || !(Symbol.iterator in params)) {
      throw new ArgumentError(
        `an optimizer takes an array of parameters (model.parameters()), got ${describe(params)}`,
      );
    }
    const ps = [...params];
    if (ps.length === 0) throw new ArgumentError('the optimizer got an empty parameter list');
    ps.forEach((p, i) => {
      if (!isTensor(p)) throw new ArgumentError(`parameter ${i} is not a Tensor: ${describe(p)}`);
      p.assertAlive(`parameter ${i}`);
      if (p.dtype !== 'float32')
        throw new DTypeError(
          `parameter ${i} is ${p.dtype}; optimizers update float32 parameters (keep float32 master weights)`,
        );
      if (!p.isContiguous())
        throw new ArgumentError(
          `parameter ${i} ${shapeStr(p.shape)} is a non-contiguous view; optimize the tensor it views`,
        );
    });
    if (new Set(ps).size !== ps.length) throw new ArgumentError('the same parameter appears twice in the optimizer');
    this.params = ps;
    this.lr = checkNumber(lr, 'lr', 0, Infinity);
    this.baseLr = this.lr;
    this.steps = ps.map(() => 0);
    this.state = ps.map(() => new Map());
  }

  /** The state slot `name` of parameter i (zeros on first use). */
  protected slot(i: number, name: string): Tensor {
    let t = this.state[i]!.get(name);
    if (!t) {
      t = keep(noGrad(() => zerosLike(this.params[i]!))); // state outlives any kn.tidy the step runs in
      this.state[i]!.set(name, t);
    }
    return t;
  }

  /** Applies one update to every parameter that has a gradient. */
  step(): void {
    const rec = activeRecorder;
    if (rec === null) this.stepAll();
    else rec.phaseSpan('optimizer', `${this.kind}.step`, () => this.stepAll());
  }
  private stepAll(): void {
    checkNumber(this.lr, 'lr', 0, Infinity);
    // every parameter is checked before any is updated: a bad gradient leaves the model and state as they were
    const items: StepItem[] = [];
    this.params.forEach((p, i) => {
      p.assertAlive(`optimizer parameter ${i}`);
      const g = p.grad;
      if (!g) return;
      g.assertAlive(`the gradient of optimizer parameter ${i}`);
      if (g.shape.length !== p.shape.length || g.shape.some((d, k) => d !== p.shape[k])) {
        throw new ShapeError(`parameter ${i} ${shapeStr(p.shape)} has a gradient of shape ${shapeStr(g.shape)}`);
      }
      // (a gradient of another float dtype is cast on the way in; one on another backend cannot be)
      if (g.backend !== p.backend)
        throw new BackendError(
          `parameter ${i} is on ${p.backend} but its gradient is on ${g.backend}; move the gradient with .to('${p.backend}')`,
        );
      items.push({ i, p, g, t: this.steps[i]! + 1 });
    });
    this.updateAll(items);
  }
  /**
   * Applies one step to the parameters that have gradients, in parameter order, and raises each one's step
   * count once its update is done (an update that fails part way leaves the counts of the rest as they were).
   * The default updates them one by one; an optimizer with a multi-tensor kernel overrides it to update
   * several per call and calls `stepped` after each call.
   */
  protected updateAll(items: readonly StepItem[]): void {
    for (const it of items) {
      this.update(it.i, it.p, it.g, it.t);
      this.stepped([it]);
    }
  }
  /**
   * The multi-tensor step (Adam's adamStepMulti, SGD's sgdStepMulti): items that agree on `key` (what one call
   * shares: step count, first step, backend) are cut into calls of up to MULTI; `call` runs a call of two or
   * more, a call of one goes through `update`. `written` lists an item's tensors the kernel updates in place.
   */
  protected updateMulti(
    items: readonly StepItem[],
    key: (it: StepItem) => string,
    written: (it: StepItem) => Tensor[],
    call: (part: readonly StepItem[]) => void,
  ): void {
    // usually every parameter shares one key: one batch, no grouping work
    const k0 = items.length > 0 ? key(items[0]!) : '';
    const batches: StepItem[][] = [];
    if (items.every((it) => key(it) === k0)) batches.push([...items]);
    else {
      const byKey = new Map<string, StepItem[]>();
      for (const it of items) {
        const k = key(it);
        const b = byKey.get(k);
        if (b) b.push(it);
        else byKey.set(k, [it]);
      }
      batches.push(...byKey.values());
    }
    for (const batch of batches)
      for (const part of multiParts(batch, written)) {
        if (part.length === 1) this.update(part[0]!.i, part[0]!.p, part[0]!.g, part[0]!.t);
        else call(part);
        this.stepped(part);
      }
  }
  /** Records that these parameters took their step. */
  protected stepped(items: readonly StepItem[]): void {
    for (const it of items) this.steps[it.i] = it.t;
  }
  protected abstract update(i: number, p: Tensor, g: Tensor, t: number): void;
  protected abstract hyper(): Record<string, number | boolean>;
  protected abstract get kind(): string;

  /** Clears every parameter's gradient (sets it to null and frees it). */
  zeroGrad(): void {
    for (const p of this.params) {
      p.grad?.dispose();
      p.grad = null;
    }
  }

  /** Step counts, hyper-parameters (including the current lr) and copies of the state tensors. */
  stateDict(): OptimizerState {
    const tensors: Record<string, Tensor> = {};
    this.state.forEach((m, i) => {
      for (const [k, t] of m) tensors[`${i}.${k}`] = t.clone();
    });
    return { kind: this.kind, hyper: { ...this.hyper(), lr: this.lr }, steps: [...this.steps], tensors };
  }

  /** Restores a state dict saved from an optimizer of the same kind over parameters of the same shapes. */
  loadStateDict(sd: OptimizerState): void {
    this.planLoad(sd).apply();
  }

  /**
   * @internal Checks `sd` as loadStateDict does and copies its tensors, without changing this optimizer: `apply`
   * puts the copies in place, `discard` frees them. A caller restoring several parts (kn.io.loadCheckpoint) checks
   * every part before it changes any.
   */
  planLoad(sd: OptimizerState): { apply: () => void; discard: () => void } {
    if (sd === null || typeof sd !== 'object' || typeof sd.kind !== 'string')
      throw new ArgumentError(`loadStateDict takes an optimizer state dict, got ${describe(sd)}`);
    if (sd.kind !== this.kind)
      throw new ValidationError(`optimizer state is for ${sd.kind}, this optimizer is ${this.kind}`);
    if (
      !Array.isArray(sd.steps) ||
      sd.steps.length !== this.params.length ||
      !sd.steps.every((s) => Number.isInteger(s) && s >= 0)
    ) {
      throw new ValidationError(
        `optimizer state has ${Array.isArray(sd.steps) ? sd.steps.length : 'no'} step counts, this optimizer has ${this.params.length} parameters`,
      );
    }
    const lr = typeof sd.hyper?.lr === 'number' ? checkNumber(sd.hyper.lr, 'lr', 0, Infinity) : this.lr;
    const entries = Object.entries(sd.tensors ?? {});
    for (const [key, t] of entries) {
      const m = /^(\d+)\.(\w+)$/.exec(key);
      const i = m ? Number(m[1]) : -1;
      if (!m || i >= this.params.length) throw new ValidationError(`optimizer state has an unexpected entry '${key}'`);
      if (!isTensor(t)) throw new ArgumentError(`optimizer state entry '${key}' is not a Tensor`);
      t.assertAlive('loadStateDict');
      const p = this.params[i]!;
      if (t.shape.length !== p.shape.length || t.shape.some((d, k) => d !== p.shape[k])) {
        throw new ShapeError(
          `optimizer state '${key}' has shape ${shapeStr(t.shape)} but parameter ${i} is ${shapeStr(p.shape)}`,
        );
      }
    }
    // every entry checked: the copies (what is kept must not alias the caller's tensors)
    const next: Map<string, Tensor>[] = this.params.map(() => new Map());
    const free = (): void => {
      for (const m of next) for (const t of m.values()) t.dispose();
    };
    try {
      for (const [key, t] of entries) {
        const [, i, name] = /^(\d+)\.(\w+)$/.exec(key)!;
        const c = keep(noGrad(() => zerosLike(this.params[Number(i)]!)));
        next[Number(i)]!.set(name!, c);
        c.assign(t);
      }
    } catch (e) {
      free();
      throw e;
    }
    let done = false;
    return {
      apply: () => {
        if (done) return;
        done = true;
        for (const m of this.state) for (const t of m.values()) t.dispose();
        this.state = next;
        this.steps = [...sd.steps];
        this.lr = lr;
      },
      discard: () => {
        if (done) return;
        done = true;
        free();
      },
    };
  }

  /** Frees the state tensors. */
  dispose(): void {
    for (const m of this.state) for (const t of m.values()) t.dispose();
    this.state = this.params.map(() => new Map());
  }
}
