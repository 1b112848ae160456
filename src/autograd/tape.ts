// The tape: each recorded op output holds a Node with edges to its inputs' nodes (or to leaf tensors) and
// the tensors its vjp needs, saved as private aliases so user disposal cannot break backward. Nodes are
// reference counted by the tensors and nodes that point at them; when the last goes, saved tensors are freed.
import { untrack } from '../engine/memory.js';
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
  const prev = gradEnabled;
  gradEnabled = false;
  try {
    return fn();
  } finally {
    gradEnabled = prev;
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
  if (!gradEnabled || !inputs.some((t) => t.requiresGrad)) return out;
  const edges: Edge[] = inputs.map((t) => (t.node ? { node: t.node } : t.requiresGrad ? { leaf: t } : null));
  const aliases = saved.map((t) => {
    const a = t.view(t.shape, t.strides, t.offset);
    untrack(a);
    return a;
  });
  const node = new Node(op, edges, aliases, vjp, out.shape);
  const rec = activeRecorder;
  if (rec !== null) rec.tagNode(node);
  out.setNode(node);
  return out;
}
