import { ArgumentError, ShapeError, checkOptions } from '../errors.js';
import { keep, tidy } from '../engine/memory.js';
import { onesLike, zerosLike } from '../ops/creation.js';
import { add, cast } from '../ops/elementwise.js';
import { clone } from '../ops/movement.js';
import { shapeStr, sameShape } from '../tensor/shape.js';
import { assertTensor, isTensor, type Tensor } from '../tensor/tensor.js';
import { activeRecorder } from '../profile/recorder.js';
import { SAVED_CONSTANT, SAVED_OUTPUT, isGradEnabled, withGrad, type Node } from './tape.js';

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

/**
 * Adds `g` into `leaf.grad`. A leaf's grad owns its storage: never a view of an intermediate or of another leaf's
 * grad (add's vjp hands the same tensor to both inputs), so an optimizer or DDP may later update it in place.
 * `handOver`: the caller knows no one else holds `g`; if it also owns its whole buffer it becomes the grad as
 * it is, without a copy.
 */
function accumulateLeaf(leaf: Tensor, g: Tensor, handOver = false): void {
  if (!sameShape(leaf.shape, g.shape)) {
    throw new ShapeError(`internal: gradient ${shapeStr(g.shape)} does not match leaf ${shapeStr(leaf.shape)}`);
  }
  if (leaf.isDisposed) return;
  const gg = g.dtype === leaf.dtype ? g : cast(g, leaf.dtype);
  const prev = leaf.grad;
  if (prev) leaf.grad = keep(add(prev, gg));
  else leaf.grad = keep((handOver || gg !== g) && gg.ownsBuffer() ? gg : clone(gg));
  if (prev) prev.dispose();
}

/** backward() options. */
export interface BackwardOptions {
  /** keep the graph so backward can run through it again (default: false, or true with createGraph) */
  retainGraph?: boolean;
  /** record the backward pass itself, so the gradients are differentiable again (gradients of gradients) */
  createGraph?: boolean;
}

/**
 * Reverse-mode differentiation from `root` into the `.grad` of every leaf that requires a gradient.
 * Frees the graph afterwards unless `retainGraph` is set. With `createGraph`, the gradients carry their own
 * graph (they require gradients), so they can be differentiated again to any order. The options may also come
 * second, without a gradient: `backward(root, { retainGraph: true })` (PyTorch's keyword form).
 * @example const x = kn.tensor([3], undefined, { requiresGrad: true }); kn.backward(x.mul(x).sum()); x.grad!.toList() // [6]
 */
export function backward(root: Tensor, gradOrOpts?: Tensor | BackwardOptions, options?: BackwardOptions): void {
  const keyword =
    gradOrOpts !== null && typeof gradOrOpts === 'object' && !isTensor(gradOrOpts) && options === undefined;
  const grad = keyword ? undefined : (gradOrOpts as Tensor | undefined);
  const opts = (keyword ? (gradOrOpts as BackwardOptions) : options) ?? {};
  checkOptions(opts, 'backward', ['retainGraph', 'createGraph']);
  const rec = activeRecorder;
  if (rec === null) backwardPass([root], grad, opts, null);
  else rec.phaseSpan('backward', 'backward', () => backwardPass([root], grad, opts, null));
}

/**
 * @internal The gradients of `root` with respect to `inputs` (any tensors that require gradients, leaves or not),
 * returned instead of accumulated into `.grad` (torch.autograd.grad). Inputs `root` does not depend on get
 * zeros. With createGraph the results are differentiable again.
 */
export function gradients(
  root: Tensor,
  inputs: readonly Tensor[],
  grad: Tensor | undefined,
  opts: BackwardOptions,
): Tensor[] {
  assertTensor(root, 'gradients()');
  if (!root.requiresGrad) return inputs.map((t) => zerosLike(t)); // root does not depend on any input
  const out = new Map<Tensor, Tensor>();
  backwardPass([root], grad, opts, { inputs, out });
  return inputs.map((t) => out.get(t) ?? zerosLike(t));
}

function checkRoot(root: Tensor, grad: Tensor | undefined): void {
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
}

/**
 * Refuses a backward through a node whose saved tensors were overwritten in place since it saved them (an
 * optimizer step or a loaded state between forward and backward): its gradient would use the new values and be
 * silently wrong. PyTorch raises the same way.
 */
function checkSavedVersions(n: Node): void {
  n.saved.forEach((t, i) => {
    const was = n.savedVersions[i];
    if (was === undefined || t.version === was) return;
    const what =
      n.savedFrom[i] === SAVED_OUTPUT
        ? 'its output'
        : (n.savedFrom[i] ?? -1) >= 0
          ? `its input ${n.savedFrom[i]}`
          : 'a value';
    throw new ArgumentError(
      `backward(): '${n.op}' saved ${what} ${shapeStr(t.shape)} for its gradient, and it was modified in place ` +
        `since (version ${t.version}, saved at ${was}), e.g. by optimizer.step() or loadStateDict() before ` +
        'backward(); call backward() before updating it, or compute from a clone() of it',
    );
  });
}

/** The tensors a node saved, reconnected to their autograd history (for createGraph): a saved input gets the
 * input's node (or is the leaf itself), a saved output gets this node. */
function liveSaved(n: Node): Tensor[] {
  return n.saved.map((a, i) => {
    const from = n.savedFrom[i] ?? SAVED_CONSTANT;
    const edge = from >= 0 ? n.edges[from] : null;
    if (edge && 'leaf' in edge) return edge.leaf.isDisposed ? a : edge.leaf;
    const node = from === SAVED_OUTPUT ? n : edge && 'node' in edge ? edge.node : null;
    if (!node) return a;
    const v = a.view(a.shape, a.strides, a.offset);
    v.setNode(node);
    return v;
  });
}

function backwardPass(
  roots: readonly Tensor[],
  grad: Tensor | undefined,
  opts: BackwardOptions,
  capture: { inputs: readonly Tensor[]; out: Map<Tensor, Tensor> } | null,
  nested = false,
): void {
  const root = roots[0]!;
  checkRoot(root, grad);
  const createGraph = opts.createGraph === true;
  const retain = opts.retainGraph ?? createGraph;
  // with capture: gradients go to these tensors (by node, or by identity for leaves), not into .grad
  const byNode = new Map<Node, Tensor>();
  const leafInputs = new Set<Tensor>();
  if (capture) {
    for (const t of capture.inputs) {
      assertTensor(t, 'gradient input');
      if (!t.requiresGrad) throw new ArgumentError('a gradient input does not require a gradient');
      if (t.node) byNode.set(t.node, t);
      else leafInputs.add(t);
    }
  }
  const toLeaf = (leaf: Tensor, g: Tensor, handOver = false): void => {
    if (!capture) return accumulateLeaf(leaf, g, handOver && !createGraph);
    if (!leafInputs.has(leaf)) return;
    const prev = capture.out.get(leaf);
    capture.out.set(leaf, keep(prev ? add(prev, g) : g));
    if (prev) prev.dispose();
  };
  withGrad(createGraph, () =>
    tidy(() => {
      const g0 = grad ?? onesLike(root);
      const rootNode = root.node;
      if (!rootNode) {
        toLeaf(root, g0);
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
      const waiting = hookCount > 0 && !capture ? new Map<Tensor, number>() : null;
      if (waiting) {
        for (const n of order)
          for (const e of n.edges)
            if (e && 'leaf' in e && gradHooks.has(e.leaf)) waiting.set(e.leaf, (waiting.get(e.leaf) ?? 0) + 1);
      }
      const grads = new Map<Node, Tensor>([[rootNode, g0]]);
      // how many pending node gradients are each tensor (a vjp may hand one tensor to several inputs): a gradient
      // is freed as soon as nothing pending is it, so backward holds less memory and the views a vjp made of it
      // become the sole holders of their buffers (a leaf can then take them without a copy). Plain first-order
      // passes only; transforms (capture, createGraph) leave everything to the tidy.
      const early = !capture && !createGraph;
      const uses = new Map<Tensor, number>();
      const release = (t: Tensor, keepIt: boolean): void => {
        const u = (uses.get(t) ?? 0) - 1;
        if (u > 0) uses.set(t, u);
        else {
          uses.delete(t);
          if (early && !keepIt && t !== g0) t.dispose();
        }
      };
      for (let k = order.length - 1; k >= 0; k--) {
        const n = order[k]!;
        const g = grads.get(n);
        if (g) {
          grads.delete(n);
          const input = byNode.get(n);
          if (input) capture!.out.set(input, keep(g)); // every contribution to n has arrived (reverse post-order)
          if (n.freed) {
            throw new ArgumentError(
              `backward(): the graph through '${n.op}' was already freed by an earlier backward(); ` +
                'pass { retainGraph: true } to the first call to backpropagate twice',
            );
          }
          checkSavedVersions(n);
          const needs = n.edges.map((e) => e !== null);
          const saved = createGraph ? liveSaved(n) : n.saved;
          const rec = activeRecorder;
          const inGrads = rec === null ? n.vjp(g, saved, needs) : rec.vjpSpan(n, n.op, () => n.vjp(g, saved, needs));
          // the incoming gradient is consumed (unless the vjp passed it on): free it before the results are handed
          // out, so a view the vjp made of it is the only holder of the buffer when a leaf takes it
          release(g, inGrads.includes(g) || input !== undefined);
          n.edges.forEach((e, i) => {
            const gi = inGrads[i];
            if (!e || !gi) return;
            if ('leaf' in e) {
              // a gradient the vjp made for this edge alone (not the incoming one, not repeated) can be handed over
              toLeaf(e.leaf, gi, gi !== g && inGrads.indexOf(gi) === i && inGrads.lastIndexOf(gi) === i);
            } else {
              const prev = grads.get(e.node);
              if (prev) {
                grads.set(e.node, add(prev, gi));
                release(prev, inGrads.includes(prev));
              } else {
                grads.set(e.node, gi);
                uses.set(gi, (uses.get(gi) ?? 0) + 1);
              }
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
      if (!retain) for (const n of order) n.freeSaved();
    }),
  );
  if (!capture && !nested) for (const h of [...endHooks]) h();
}

/**
 * @internal A backward pass run inside another one's vjp (activation checkpointing): gradients accumulate into
 * leaves as usual, but the end-of-backward hooks wait for the outer pass.
 */
export function nestedBackward(root: Tensor, grad: Tensor, opts: BackwardOptions): void {
  backwardPass([root], grad, opts, null, true);
}

/**
 * Returns a function computing the gradient of scalar-valued `f` with respect to each of its tensor arguments.
 * With `createGraph` the gradients are differentiable again: `kn.grad((x) => kn.grad(f, { createGraph: true })(x).sum())`
 * is a second derivative. An argument that already requires a gradient (inside another transform) is
 * differentiated where it is, so transforms nest.
 * @example const df = kn.grad((x) => x.mul(x).sum()); df(kn.tensor([3])) // [6]
 */
export function grad(
  f: (...args: Tensor[]) => Tensor,
  opts: { createGraph?: boolean } = {},
): (...args: Tensor[]) => Tensor | Tensor[] {
  if (typeof f !== 'function') throw new ArgumentError('grad(f) takes a function');
  checkOptions(opts, 'grad(f, opts)', ['createGraph']);
  const createGraph = opts.createGraph === true;
  return (...args: Tensor[]) => {
    const owned: Tensor[] = [];
    const inputs = args.map((a, i) => {
      assertTensor(a, `grad(f) argument ${i}`);
      if (a.requiresGrad && isGradEnabled()) return a; // nested in another transform: keep the connection
      const l = a.detach();
      l.requiresGrad = true;
      owned.push(l);
      return l;
    });
    try {
      const grads = tidy(() => {
        const out = f(...inputs);
        assertTensor(out, 'grad(f): the value f returns');
        return gradients(out, inputs, undefined, { createGraph });
      });
      return grads.length === 1 ? grads[0]! : grads;
    } finally {
      for (const l of owned) l.dispose();
    }
  };
}
