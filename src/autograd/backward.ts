import { ArgumentError, ShapeError } from '../errors.js';
import { keep, tidy } from '../engine/memory.js';
import { onesLike, zerosLike } from '../ops/creation.js';
import { add, cast } from '../ops/elementwise.js';
import { clone } from '../ops/movement.js';
import { shapeStr, sameShape } from '../tensor/shape.js';
import { assertTensor, type Tensor } from '../tensor/tensor.js';
import { activeRecorder } from '../profile/recorder.js';
import { noGrad, type Node } from './tape.js';

/** Called when a leaf's gradient is final for the current backward pass (see onGradReady). */
export type GradReadyHook = (leaf: Tensor) => void;
const gradHooks = new WeakMap<Tensor, GradReadyHook>();
let hookCount = 0;
const endHooks = new Set<() => void>();

/**
 * @internal Calls `hook(leaf)` during backward() as soon as no further contribution to `leaf.grad` can arrive
 * in that pass (every edge into the leaf has been processed). kn.distributed starts a gradient bucket's
 * allreduce from here, so communication overlaps the rest of backward. Returns a function that removes it.
 */
export function onGradReady(leaf: Tensor, hook: GradReadyHook): () => void {
  if (gradHooks.has(leaf)) throw new ArgumentError('this tensor already has a gradient-ready hook');
  gradHooks.set(leaf, hook);
  hookCount++;
  return () => {
    if (gradHooks.get(leaf) === hook) {
      gradHooks.delete(leaf);
      hookCount--;
    }
  };
}

/** @internal Calls `hook()` at the end of every successful backward(), after all gradients are accumulated. */
export function onBackwardEnd(hook: () => void): () => void {
  endHooks.add(hook);
  return () => endHooks.delete(hook);
}

function accumulateLeaf(leaf: Tensor, g: Tensor): void {
  if (!sameShape(leaf.shape, g.shape)) {
    throw new ShapeError(`internal: gradient ${shapeStr(g.shape)} does not match leaf ${shapeStr(leaf.shape)}`);
  }
  if (leaf.isDisposed) return;
  const gg = g.dtype === leaf.dtype ? g : cast(g, leaf.dtype);
  // A leaf's grad owns its storage: never a view of an intermediate or of another leaf's grad (add's vjp
  // hands the same tensor to both inputs), so an optimizer may later update it in place.
  const prev = leaf.grad;
  leaf.grad = keep(prev ? add(prev, gg) : clone(gg));
  if (prev) prev.dispose();
}

/**
 * Reverse-mode differentiation from `root` into the `.grad` of every leaf that requires a gradient.
 * Frees the graph afterwards unless `retainGraph` is set.
 * @example const x = kn.tensor([3], undefined, { requiresGrad: true }); kn.backward(x.mul(x).sum()); x.grad!.toList() // [6]
 */
export function backward(root: Tensor, grad?: Tensor, opts: { retainGraph?: boolean } = {}): void {
  const rec = activeRecorder;
  if (rec === null) backwardPass(root, grad, opts);
  else rec.phaseSpan('backward', 'backward', () => backwardPass(root, grad, opts));
}

function backwardPass(root: Tensor, grad: Tensor | undefined, opts: { retainGraph?: boolean }): void {
  assertTensor(root, 'backward()');
  if (!root.requiresGrad) {
    throw new ArgumentError('backward(): this tensor does not require a gradient (no input had requiresGrad: true)');
  }
  if (grad === undefined && root.size !== 1) {
    throw new ShapeError(
      `backward() without a gradient needs a one-element output, got shape ${shapeStr(root.shape)}; pass the output gradient`,
    );
  }
  if (grad !== undefined) {
    assertTensor(grad, 'backward(grad)');
    if (!sameShape(grad.shape, root.shape))
      throw new ShapeError(
        `backward(grad): gradient shape ${shapeStr(grad.shape)} must match the output ${shapeStr(root.shape)}`,
      );
  }
  noGrad(() =>
    tidy(() => {
      const g0 = grad ?? onesLike(root);
      const rootNode = root.node;
      if (!rootNode) {
        accumulateLeaf(root, g0);
        return;
      }
      // iterative post-order DFS: inputs before consumers
      const order: Node[] = [];
      const seen = new Set<Node>([rootNode]);
      const stack: [Node, number][] = [[rootNode, 0]];
      while (stack.length) {
        const top = stack[stack.length - 1]!;
        const [n, i] = top;
        if (i < n.edges.length) {
          top[1]++;
          const e = n.edges[i];
          if (e && 'node' in e && !seen.has(e.node)) {
            seen.add(e.node);
            stack.push([e.node, 0]);
          }
        } else {
          stack.pop();
          order.push(n);
        }
      }
      // leaves with a gradient-ready hook: how many edges into each are still to be processed
      const waiting = hookCount > 0 ? new Map<Tensor, number>() : null;
      if (waiting) {
        for (const n of order)
          for (const e of n.edges)
            if (e && 'leaf' in e && gradHooks.has(e.leaf)) waiting.set(e.leaf, (waiting.get(e.leaf) ?? 0) + 1);
      }
      const grads = new Map<Node, Tensor>([[rootNode, g0]]);
      for (let k = order.length - 1; k >= 0; k--) {
        const n = order[k]!;
        const g = grads.get(n);
        if (g) {
          grads.delete(n);
          if (n.freed) {
            throw new ArgumentError(
              `backward(): the graph through '${n.op}' was already freed by an earlier backward(); ` +
                'pass { retainGraph: true } to the first call to backpropagate twice',
            );
          }
          const needs = n.edges.map((e) => e !== null);
          const rec = activeRecorder;
          const inGrads =
            rec === null ? n.vjp(g, n.saved, needs) : rec.vjpSpan(n, n.op, () => n.vjp(g, n.saved, needs));
          n.edges.forEach((e, i) => {
            const gi = inGrads[i];
            if (!e || !gi) return;
            if ('leaf' in e) {
              accumulateLeaf(e.leaf, gi);
            } else {
              const prev = grads.get(e.node);
              grads.set(e.node, prev ? add(prev, gi) : gi);
            }
          });
        }
        if (waiting) {
          for (const e of n.edges) {
            if (!e || !('leaf' in e)) continue;
            const left = waiting.get(e.leaf);
            if (left === undefined) continue;
            if (left > 1) waiting.set(e.leaf, left - 1);
            else {
              waiting.delete(e.leaf);
              gradHooks.get(e.leaf)?.(e.leaf);
            }
          }
        }
      }
      if (!opts.retainGraph) for (const n of order) n.freeSaved();
    }),
  );
  for (const h of [...endHooks]) h();
}

/**
 * Returns a function computing the gradient of scalar-valued `f` with respect to each of its tensor arguments.
 * @example const df = kn.grad((x) => x.mul(x).sum()); df(kn.tensor([3])) // [6]
 */
export function grad(f: (...args: Tensor[]) => Tensor): (...args: Tensor[]) => Tensor | Tensor[] {
  if (typeof f !== 'function') throw new ArgumentError('grad(f) takes a function');
  return (...args: Tensor[]) => {
    const leaves = args.map((a, i) => {
      assertTensor(a, `grad(f) argument ${i}`);
      const l = a.detach();
      l.requiresGrad = true;
      return l;
    });
    const grads = tidy(() => {
      const out = f(...leaves);
      assertTensor(out, 'grad(f): the value f returns');
      backward(out);
      return leaves.map((l) => {
        const g = l.grad ?? zerosLike(l);
        l.grad = null;
        return g;
      });
    });
    for (const l of leaves) l.dispose();
    return grads.length === 1 ? grads[0]! : grads;
  };
}
