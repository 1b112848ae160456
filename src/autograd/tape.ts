// The tape: each recorded op output holds a Node with edges to its inputs' nodes (or to leaf tensors) and
// the tensors its vjp needs, saved as private aliases so user disposal cannot break backward. Nodes are
// reference counted by the tensors and nodes that point at them; when the last goes, saved tensors are freed.
import { tidy, untrack } from '../engine/memory.js';
import { ArgumentError, describe } from '../errors.js';
import { activeRecorder } from '../profile/recorder.js';
import type { Tensor } from '../tensor/tensor.js';

export type Edge = { node: Node } | { leaf: Tensor } | null;
/** Gradient of the output -> gradients of each input (null where not needed or not differentiable). */
export type Vjp = (g: Tensor, saved: readonly Tensor[], needs: readonly boolean[]) => readonly (Tensor | null)[];

let gradEnabled = true;

export function isGradEnabled(): boolean {
  return gradEnabled;
}

/**
 * Runs `fn` without recording operations for autograd.
 * @example const w = kn.ones([2], { requiresGrad: true }); kn.noGrad(() => w.mul(2)).requiresGrad // false
 */
export function noGrad<T>(fn: () => T): T {
  if (typeof fn !== 'function') throw new ArgumentError(`noGrad(fn) takes a function, got ${describe(fn)}`);
  return withGrad(false, fn);
}

/**
 * @internal Runs `fn` without recording and frees every tensor it made except those it returns: for work whose
 * result is host data (a number read with item(), an array) or a few tensors kept on purpose.
 */
export function quiet<T>(fn: () => T): T {
  return tidy(() => withGrad(false, fn));
}

/** @internal Runs `fn` with gradient recording on or off (backward with createGraph turns it on). */
export function withGrad<T>(enabled: boolean, fn: () => T): T {
  const prev = gradEnabled;
  gradEnabled = enabled;
  try {
    return fn();
  } finally {
    gradEnabled = prev;
  }
}

/** Where a saved tensor came from: input i of the op (>= 0), the op's own output (SAVED_OUTPUT), or neither (a
 * constant the op made, SAVED_CONSTANT). Differentiating a vjp again (createGraph) reconnects saved tensors to
 * their history through this. */
export const SAVED_OUTPUT = -1;
export const SAVED_CONSTANT = -2;

let probing = false,
  probeHit = false;
/**
 * @internal Runs `fn` without recording (like noGrad) and tells whether any op it ran had an input that
 * requires a gradient, i.e. whether the result would have been differentiable (activation checkpointing).
 */
export function probeNoGrad<T>(fn: () => T): { value: T; differentiable: boolean } {
  const prev = [probing, probeHit];
  probing = true;
  probeHit = false;
  try {
    const value = withGrad(false, fn);
    return { value, differentiable: probeHit };
  } finally {
    [probing, probeHit] = prev as [boolean, boolean];
  }
}

export class Node {
  private refs = 0;
  freed = false;
  constructor(
    readonly op: string,
    readonly edges: readonly Edge[],
    public saved: Tensor[],
    readonly vjp: Vjp,
    readonly outShape: readonly number[],
    readonly savedFrom: readonly number[] = [],
    /** each saved tensor's storage version when it was saved (Tensor.version) */
    readonly savedVersions: readonly number[] = [],
  ) {
    for (const e of edges) if (e && 'node' in e) e.node.retain();
  }
  retain(): void {
    this.refs++;
  }
  /** Drops one reference; frees saved tensors and releases parents when none remain (iteratively). */
  release(): void {
    const stack: Node[] = [this];
    while (stack.length) {
      const n = stack.pop()!;
      if (--n.refs > 0) continue;
      n.freeSaved();
      for (const e of n.edges) if (e && 'node' in e) stack.push(e.node);
    }
  }
  freeSaved(): void {
    for (const t of this.saved) t.dispose();
    this.saved = [];
    this.freed = true;
  }
}

/**
 * Records `out` as produced from `inputs` if any input requires a gradient. `saved` tensors are aliased
 * (storage shared, lifetime owned by the node) and handed to `vjp` in order.
 */
export function record(op: string, out: Tensor, inputs: readonly Tensor[], saved: readonly Tensor[], vjp: Vjp): Tensor {
  if (!gradEnabled) {
    if (probing && !probeHit) probeHit = inputs.some((t) => t.requiresGrad);
    return out;
  }
  if (!inputs.some((t) => t.requiresGrad)) return out;
  const edges: Edge[] = inputs.map((t) => (t.node ? { node: t.node } : t.requiresGrad ? { leaf: t } : null));
  const aliases = saved.map((t) => {
    const a = t.view(t.shape, t.strides, t.offset);
    untrack(a);
    return a;
  });
  const savedFrom = saved.map((t) => {
    if (t === out) return SAVED_OUTPUT;
    const i = inputs.indexOf(t);
    return i >= 0 ? i : SAVED_CONSTANT;
  });
  const node = new Node(
    op,
    edges,
    aliases,
    vjp,
    out.shape,
    savedFrom,
    saved.map((t) => t.version),
  );
  const rec = activeRecorder;
  if (rec !== null) rec.tagNode(node);
  out.setNode(node);
  return out;
}
