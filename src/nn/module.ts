// Module: a tree of named parameters, buffers (state that is saved but not trained, like BatchNorm's running
// statistics) and child modules, with a train/eval flag. Names are dotted paths, as in PyTorch, so state dicts
// of the same architecture line up across libraries.
import { activeRecorder } from '../profile/recorder.js';
import { noGrad } from '../autograd/tape.js';
import { ArgumentError, DTypeError, ShapeError, ValidationError, checkOptions, describe } from '../errors.js';
import { shapeStr } from '../tensor/shape.js';
import { isTensor, Tensor } from '../tensor/tensor.js';
import { nameRecord, own } from '../records.js';

/** A Record of tensors keyed by dotted parameter/buffer names. */
export type StateDict = Record<string, Tensor>;

/**
 * @internal Another name a state entry may be found under when its own is absent from a state dict: its name
 * in files kiln wrote before a rename, or another library's (PyTorch's). With `rows`, the entry is rows
 * [start, end) along the first axis of the other tensor, which holds `fusedRows` rows in all (PyTorch's
 * in_proj_weight stacks q, k and v).
 */
export interface StateAlias {
  readonly name: string;
  readonly from: string;
  readonly rows?: readonly [number, number];
  readonly fusedRows?: number;
}
/**
 * @internal A layer's aliases (local names), and the entries that state dicts using an alias may lack, which
 * then keep their values (ones added since a rename: BatchNorm's num_batches_tracked).
 */
export interface StateAliases {
  readonly aliases: readonly StateAlias[];
  readonly optionalWithAlias: readonly string[];
}

/**
 * Base class of every layer. Subclasses register parameters, buffers and children in their constructor and
 * implement `forward`.
 * @example
 * class Affine extends kn.nn.Module {
 *   w = this.registerParameter('w', kn.ones([3]));
 *   forward(x: kn.Tensor) { return x.mul(this.w); }
 * }
 * new Affine().call(kn.tensor([1, 2, 3])).toArray() // [1, 2, 3]
 */
export abstract class Module {
  /** True in training mode (Dropout drops, BatchNorm uses batch statistics). */
  training = true;
  private readonly _params = new Map<string, Tensor>();
  private readonly _buffers = new Map<string, Tensor>();
  private readonly _children = new Map<string, Module>();

  abstract forward(x: Tensor): Tensor;

  /** Runs `forward` after checking the input is a live tensor. */
  call(x: Tensor): Tensor {
    if (!isTensor(x))
      throw new ArgumentError(`${this.constructor.name}: input must be a kiln Tensor, got ${describe(x)}`);
    x.assertAlive(this.constructor.name);
    const rec = activeRecorder;
    if (rec === null) return this.forward(x);
    rec.enterModule(this);
    try {
      return this.forward(x);
    } finally {
      rec.exitModule();
    }
  }

  /** Registers a trainable tensor (made a leaf that requires gradients). */
  registerParameter(name: string, t: Tensor): Tensor {
    this.checkName(name);
    if (!isTensor(t)) throw new ArgumentError(`parameter '${name}' must be a Tensor, got ${describe(t)}`);
    if (t.dtype !== 'float32' && t.dtype !== 'float16' && t.dtype !== 'bfloat16') {
      throw new DTypeError(`parameter '${name}' must be a floating-point tensor, got ${t.dtype}`);
    }
    if (!t.isLeaf) throw new ArgumentError(`parameter '${name}' must be a leaf tensor (use t.detach())`);
    t.requiresGrad = true;
    this._params.set(name, t);
    return t;
  }

  /** Registers a non-trainable tensor that is part of the state dict. */
  registerBuffer(name: string, t: Tensor): Tensor {
    this.checkName(name);
    if (!isTensor(t)) throw new ArgumentError(`buffer '${name}' must be a Tensor, got ${describe(t)}`);
    this._buffers.set(name, t);
    return t;
  }

  /** Registers a child module. */
  registerModule<M extends Module>(name: string, m: M): M {
    this.checkName(name);
    if (!(m instanceof Module)) throw new ArgumentError(`child '${name}' must be a Module, got ${describe(m)}`);
    this._children.set(name, m);
    return m;
  }

  /**
   * Swaps the child registered as `name` for another module (quantization and pruning rebuild layers this
   * way). Throws if there is no such child.
   */
  replaceChild(name: string, m: Module): Module {
    if (!this._children.has(name))
      throw new ArgumentError(`${this.constructor.name} has no child named ${describe(name)}`);
    if (!(m instanceof Module)) throw new ArgumentError(`child '${name}' must be a Module, got ${describe(m)}`);
    const old = this._children.get(name)!;
    this._children.set(name, m);
    m.train(this.training);
    return old;
  }

  /** [dotted name, module] for this module and every descendant (this one first, named prefix or ''). */
  namedModules(prefix = ''): [string, Module][] {
    const out: [string, Module][] = [[prefix, this]];
    for (const [n, c] of this._children) out.push(...c.namedModules(prefix ? `${prefix}.${n}` : n));
    return out;
  }

  private checkName(name: string): void {
    if (typeof name !== 'string' || name === '' || name.includes('.')) {
      throw new ArgumentError(
        `a parameter/buffer/module name must be a non-empty string without dots, got ${describe(name)}`,
      );
    }
    if (this._params.has(name) || this._buffers.has(name) || this._children.has(name)) {
      throw new ArgumentError(`${this.constructor.name} already has a member named '${name}'`);
    }
  }

  /** The child registered as `name` (looked up on each call, so a child swapped by replaceChild is used). */
  protected child<M extends Module = Module>(name: string): M {
    const m = this._children.get(name);
    if (!m) throw new ArgumentError(`${this.constructor.name} has no child named ${describe(name)}`);
    return m as M;
  }

  /** Direct children, in registration order. */
  children(): Module[] {
    return [...this._children.values()];
  }
  /** Named direct children. */
  namedChildren(): [string, Module][] {
    return [...this._children.entries()];
  }

  /**
   * [dotted name, tensor] of every parameter (or buffer) in the tree; one shared by several modules (a layer used
   * twice, tied weights) under each of its names, as state dicts keep them.
   */
  private allNamed(buffers: boolean, prefix: string): [string, Tensor][] {
    const out: [string, Tensor][] = [];
    for (const [n, t] of buffers ? this._buffers : this._params) out.push([prefix + n, t]);
    for (const [n, c] of this._children) out.push(...c.allNamed(buffers, `${prefix}${n}.`));
    return out;
  }
  /**
   * [dotted name, parameter] for this module and every descendant; a parameter shared by several modules comes
   * once, under its first name (PyTorch's named_parameters), so an optimizer steps it once.
   */
  namedParameters(prefix = ''): [string, Tensor][] {
    return firstNames(this.allNamed(false, prefix));
  }
  /**
   * Every trainable tensor in the tree, each once.
   * @example new kn.nn.Linear(3, 2).parameters().length // 2
   */
  parameters(): Tensor[] {
    return this.namedParameters().map(([, t]) => t);
  }
  /** [dotted name, buffer] for this module and every descendant (a shared buffer once, under its first name). */
  namedBuffers(prefix = ''): [string, Tensor][] {
    return firstNames(this.allNamed(true, prefix));
  }
  /** Total number of trainable values. */
  numParameters(): number {
    return this.parameters().reduce((s, p) => s + p.size, 0);
  }

  /** Sets training mode on the whole tree. */
  train(mode = true): this {
    if (typeof mode !== 'boolean') throw new ArgumentError(`train(mode) takes a boolean, got ${describe(mode)}`);
    this.training = mode;
    for (const c of this._children.values()) c.train(mode);
    return this;
  }
  /**
   * Evaluation mode (same as train(false)).
   * @example new kn.nn.Dropout(0.5).eval().training // false
   */
  eval(): this {
    return this.train(false);
  }

  /**
   * Parameters and buffers by dotted name (a shared one under each of its names, as PyTorch's state_dict). The
   * tensors are views that share storage with the module (a snapshot needs `.clone()`); disposing them does not
   * affect the module.
   * @example Object.keys(new kn.nn.Linear(3, 2).stateDict()) // ['weight', 'bias']
   */
  stateDict(): StateDict {
    const sd = nameRecord<Tensor>();
    for (const [n, t] of this.stateEntries()) sd[n] = t.detach();
    return sd;
  }

  /**
   * @internal What state dicts hold, in PyTorch's order: a module's parameters, then its buffers, then each
   * child's entries; a shared tensor under every name it has.
   */
  stateEntries(prefix = ''): [string, Tensor][] {
    const out: [string, Tensor][] = [];
    for (const m of [this._params, this._buffers]) for (const [n, t] of m) out.push([prefix + n, t]);
    for (const [n, c] of this._children) out.push(...c.stateEntries(`${prefix}${n}.`));
    return out;
  }

  /**
   * Copies values into this module's parameters and buffers in place (optimizers keep working). With
   * `strict` (default) the keys must match exactly; shapes must always match.
   */
  loadStateDict(
    sd: Record<string, Tensor>,
    opts: { strict?: boolean } = {},
  ): { missing: string[]; unexpected: string[] } {
    checkOptions(opts, 'loadStateDict', ['strict']);
    const plan = this.planLoad(sd, opts.strict ?? true);
    plan.apply();
    return { missing: plan.missing, unexpected: plan.unexpected };
  }

  /**
   * @internal Checks `sd` as loadStateDict does and returns the copy it would make, without making it: a caller
   * restoring several parts (kn.io.loadCheckpoint) checks every part before it changes any.
   */
  planLoad(sd: Record<string, Tensor>, strict = true): { missing: string[]; unexpected: string[]; apply: () => void } {
    if (sd === null || typeof sd !== 'object')
      throw new ArgumentError(`loadStateDict takes a Record<string, Tensor>, got ${describe(sd)}`);
    const mine = new Map(this.stateEntries());
    // an entry missing under its name is read under an alias (a former name, PyTorch's fused in_proj); entries
    // added since a rename may be missing from a state dict that uses the former names
    const aliases = new Map<string, StateAlias>();
    const optional = new Map<string, string[]>();
    for (const [path, m] of this.namedModules()) {
      const a = m.stateAliases();
      if (a === null) continue;
      const pre = path ? `${path}.` : '';
      for (const al of a.aliases) aliases.set(pre + al.name, { ...al, from: pre + al.from });
      for (const o of a.optionalWithAlias)
        optional.set(
          pre + o,
          a.aliases.map((al) => pre + al.from),
        );
    }
    const used = new Set<string>();
    const sources = new Map<string, { src: unknown; key: string; alias?: StateAlias }>();
    for (const k of mine.keys()) {
      const v = own(sd, k);
      const alias = aliases.get(k);
      if (v !== undefined) sources.set(k, { src: v, key: k });
      else if (alias !== undefined && own(sd, alias.from) !== undefined) {
        used.add(alias.from);
        sources.set(k, { src: own(sd, alias.from), key: alias.from, alias });
      }
    }
    const missing = [...mine.keys()].filter((k) => !sources.has(k) && !optional.get(k)?.some((from) => used.has(from)));
    const unexpected = Object.keys(sd).filter((k) => !mine.has(k) && !used.has(k));
    if (strict && (missing.length || unexpected.length)) {
      throw new ValidationError(
        `state dict does not match ${this.constructor.name}: ` +
          `missing [${missing.join(', ')}], unexpected [${unexpected.join(', ')}]`,
      );
    }
    for (const [k, dst] of mine) {
      const s = sources.get(k);
      if (s === undefined) continue;
      const { src, key, alias } = s;
      if (!isTensor(src)) throw new ArgumentError(`state dict entry '${key}' must be a Tensor, got ${describe(src)}`);
      src.assertAlive('loadStateDict');
      dst.assertAlive('loadStateDict');
      const want = alias?.rows ? [alias.fusedRows!, ...dst.shape.slice(1)] : dst.shape;
      if (src.shape.length !== want.length || src.shape.some((d, i) => d !== want[i])) {
        throw new ShapeError(`state dict entry '${key}' has shape ${shapeStr(src.shape)}, expected ${shapeStr(want)}`);
      }
    }
    const apply = (): void =>
      noGrad(() => {
        for (const [k, dst] of mine) {
          const s = sources.get(k);
          if (s === undefined) continue;
          const src = s.src as Tensor,
            rows = s.alias?.rows;
          if (!rows) {
            dst.assign(src);
            continue;
          }
          const part = src.slice([rows[0]], [rows[1]]);
          try {
            dst.assign(part);
          } finally {
            part.dispose();
          }
        }
      });
    return { missing, unexpected, apply };
  }

  /** @internal Other names this class's state may be found under (see StateAlias); none by default. */
  stateAliases(): StateAliases | null {
    return null;
  }

  /** Clears the gradients of every parameter. */
  zeroGrad(): void {
    for (const p of this.parameters()) {
      p.grad?.dispose();
      p.grad = null;
    }
  }

  /** Frees every parameter and buffer. */
  dispose(): void {
    for (const [, t] of this.stateEntries()) t.dispose();
  }

  toString(): string {
    const inner = this.namedChildren().map(([n, c]) => `  (${n}): ${String(c).replace(/\n/g, '\n  ')}`);
    return inner.length
      ? `${this.constructor.name}(\n${inner.join('\n')}\n)`
      : `${this.constructor.name}(${this.extraRepr()})`;
  }
  /** Extra text for toString (layer sizes). */
  protected extraRepr(): string {
    return '';
  }
}

/** The pairs with each tensor once, under the first name it has. */
function firstNames(pairs: [string, Tensor][]): [string, Tensor][] {
  const seen = new Set<Tensor>();
  return pairs.filter(([, t]) => !seen.has(t) && seen.add(t) !== undefined);
}

/** Independent copies of a module's parameters and buffers (a snapshot to restore later with loadStateDict). */
export function cloneStateDict(m: Module): StateDict {
  return Object.fromEntries(
    Object.entries(m.stateDict()).map(([k, t]) => {
      const c = t.clone();
      t.dispose();
      return [k, c];
    }),
  );
}

/** Runs `fn` with `m` in eval mode, then puts its mode back (a training module goes back to training). */
export function inEvalMode<T>(m: Module, fn: () => T): T {
  const was = m.training;
  m.eval();
  try {
    return fn();
  } finally {
    if (was) m.train();
  }
}
