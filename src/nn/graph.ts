// A small functional graph API for branching models (Keras' functional models, PyTorch's torch.fx graphs in
// spirit): layers applied to symbolic nodes, merged by add, mul or concat, with one input and one output. The
// graph is a Module whose children are its layers (so quantization, pruning, state dicts and optimizers see them)
// and whose spec lists the layers and the nodes, so a branching model saves with its architecture, loads, serves
// and exports to ONNX like a Sequential.
import { ArgumentError, ShapeError, describe } from '../errors.js';
import { add, mul } from '../ops/elementwise.js';
import { concat } from '../ops/movement.js';
import type { Tensor } from '../tensor/tensor.js';
import { Module } from './module.js';
import { registerLayer, type SpecFields } from './registry.js';
import type { SpecReader } from './spec_reader.js';

/** One node of a graph: the input, a layer applied to a node, or a merge of nodes. */
export type GraphNode =
  | { op: 'input' }
  | { op: 'layer'; layer: number; inputs: [number] }
  | { op: 'add' | 'mul'; inputs: number[] }
  | { op: 'concat'; axis: number; inputs: number[] };

/** A symbolic value of a graph under construction (what `input`, `apply` and the merges return). */
export class GraphValue {
  /** @internal */
  constructor(
    readonly graph: Graph,
    readonly node: number,
  ) {}
  /** Applies a layer to this value (shorthand for graph.apply(layer, this)). */
  then(layer: Module): GraphValue {
    return this.graph.apply(layer, this);
  }
}

/**
 * A model wired as a graph of layers. Build it with `input()`, `apply(layer, value)` (or `value.then(layer)`),
 * `add`, `mul`, `concat` and `output(value)`; then call it like any Module.
 * @example
 * const g = new kn.nn.Graph();
 * const x = g.input();
 * const y = g.add(x.then(new kn.nn.Linear(4, 4)), x.then(new kn.nn.Linear(4, 4)).then(new kn.nn.ReLU()));
 * g.output(y.then(new kn.nn.Linear(4, 2)));
 * g.call(kn.ones([3, 4])).shape // [3, 2]
 */
export class Graph extends Module {
  private readonly _nodes: GraphNode[] = [];
  private readonly _layers: Module[] = [];
  private _output = -1;

  /** The nodes in evaluation order (each refers only to earlier ones). */
  get nodes(): readonly GraphNode[] {
    return this._nodes;
  }
  /** The node whose value forward returns (-1 until `output` is called). */
  get outputNode(): number {
    return this._output;
  }
  /** The distinct layers, in the order they were first applied (also the children's names "0", "1", ...). */
  get layers(): readonly Module[] {
    return this.children();
  }

  /** The graph's input (one per graph). */
  input(): GraphValue {
    if (this._nodes.some((n) => n.op === 'input')) throw new ArgumentError('a Graph has one input; reuse its value');
    return this.push({ op: 'input' });
  }
  /** A layer applied to a value; applying the same layer object twice shares its weights. */
  apply(layer: Module, value: GraphValue): GraphValue {
    if (!(layer instanceof Module)) throw new ArgumentError(`Graph.apply takes a Module, got ${describe(layer)}`);
    if (layer === this) throw new ArgumentError('a Graph cannot contain itself');
    const v = this.own(value, 'apply');
    let i = this._layers.indexOf(layer);
    if (i < 0) {
      i = this._layers.length;
      this._layers.push(layer);
      this.registerModule(String(i), layer);
    }
    return this.push({ op: 'layer', layer: i, inputs: [v] });
  }
  /** The elementwise sum of values (broadcasting). */
  add(...values: GraphValue[]): GraphValue {
    return this.push({ op: 'add', inputs: this.merge(values, 'add') });
  }
  /** The elementwise product of values (gating). */
  mul(...values: GraphValue[]): GraphValue {
    return this.push({ op: 'mul', inputs: this.merge(values, 'mul') });
  }
  /** Values joined along `axis` (default 1, the feature or channel axis). */
  concat(values: GraphValue[], axis = 1): GraphValue {
    if (!Number.isInteger(axis)) throw new ArgumentError(`Graph.concat axis must be an integer, got ${describe(axis)}`);
    return this.push({ op: 'concat', axis, inputs: this.merge(values, 'concat') });
  }
  /** Sets the value forward returns. */
  output(value: GraphValue): this {
    this._output = this.own(value, 'output');
    return this;
  }

  forward(x: Tensor): Tensor {
    if (this._output < 0) throw new ArgumentError('this Graph has no output: call graph.output(value) first');
    const vals = new Array<Tensor | undefined>(this._nodes.length);
    const layers = this.children();
    this._nodes.forEach((n, i) => {
      const at = (k: number): Tensor => vals[k]!;
      if (n.op === 'input') vals[i] = x;
      else if (n.op === 'layer') vals[i] = layers[n.layer]!.call(at(n.inputs[0]));
      else if (n.op === 'concat') vals[i] = concat(n.inputs.map(at), n.axis);
      else {
        const f = n.op === 'add' ? add : mul;
        vals[i] = n.inputs.slice(1).reduce((acc, k) => f(acc, at(k)), at(n.inputs[0]!));
      }
    });
    const y = vals[this._output];
    if (!y) throw new ShapeError('this Graph has no input node, so forward cannot use its argument');
    return y;
  }

  /** @internal Rebuilds a graph from checked parts (fromSpec). */
  static fromParts(layers: Module[], nodes: GraphNode[], output: number): Graph {
    const g = new Graph();
    layers.forEach((l, i) => {
      g._layers.push(l);
      g.registerModule(String(i), l);
    });
    g._nodes.push(...nodes);
    g._output = output;
    return g;
  }

  private push(n: GraphNode): GraphValue {
    this._nodes.push(n);
    return new GraphValue(this, this._nodes.length - 1);
  }
  private own(v: GraphValue, what: string): number {
    if (!(v instanceof GraphValue) || v.graph !== this)
      throw new ArgumentError(`Graph.${what} takes a value of this graph, got ${describe(v)}`);
    return v.node;
  }
  private merge(values: GraphValue[], what: string): number[] {
    if (!Array.isArray(values) || values.length < 2)
      throw new ArgumentError(`Graph.${what} needs at least two values, got ${describe(values)}`);
    return values.map((v) => this.own(v, what));
  }
  protected override extraRepr(): string {
    return `${this._nodes.length} nodes`;
  }
}

// ---- description (nn/registry.ts) ----

/** Checks the untrusted node list of a Graph spec against its layer count. */
function readNodes(
  o: SpecFields,
  r: SpecReader,
  path: string,
  nLayers: number,
): { nodes: GraphNode[]; output: number } {
  const raw = o.nodes;
  if (!Array.isArray(raw) || raw.length === 0 || raw.length > 100_000)
    r.fail(path, `'nodes' must be a non-empty list, got ${describe(raw)}`);
  const nodes: GraphNode[] = [];
  const ref = (v: unknown, i: number, where: string): number => {
    if (!Number.isInteger(v) || (v as number) < 0 || (v as number) >= i)
      r.fail(where, `must refer to an earlier node (0..${i - 1}), got ${describe(v)}`);
    return v as number;
  };
  let inputs = 0;
  raw.forEach((n, i) => {
    const where = `${path}.nodes[${i}]`;
    const no = r.obj(n, where);
    const op = no.op;
    const ins = (): number[] => {
      if (!Array.isArray(no.inputs) || no.inputs.length === 0 || no.inputs.length > 1024)
        r.fail(where, `'inputs' must be a non-empty list of node indices, got ${describe(no.inputs)}`);
      return (no.inputs as unknown[]).map((v) => ref(v, i, where));
    };
    if (op === 'input') {
      if (++inputs > 1) r.fail(where, 'a Graph has one input node');
      nodes.push({ op: 'input' });
    } else if (op === 'layer') {
      const layer = no.layer;
      if (!Number.isInteger(layer) || (layer as number) < 0 || (layer as number) >= nLayers)
        r.fail(where, `'layer' must be a layer index in [0, ${nLayers}), got ${describe(layer)}`);
      const x = ins();
      if (x.length !== 1) r.fail(where, `a layer node takes one input, got ${x.length}`);
      nodes.push({ op: 'layer', layer: layer as number, inputs: [x[0]!] });
    } else if (op === 'add' || op === 'mul') {
      const x = ins();
      if (x.length < 2) r.fail(where, `'${op}' merges at least two nodes`);
      nodes.push({ op, inputs: x });
    } else if (op === 'concat') {
      const x = ins();
      if (x.length < 2) r.fail(where, "'concat' merges at least two nodes");
      nodes.push({ op, axis: r.num(no, 'axis', where, Number.isInteger, 'an integer', 1), inputs: x });
    } else r.fail(where, `unknown node op ${describe(op)} (input, layer, add, mul, concat)`);
  });
  const output = ref(o.output, nodes.length, `${path}.output`);
  return { nodes, output };
}

const graphLayers = (o: SpecFields, r: SpecReader, path: string): unknown[] => {
  const ls = o.layers;
  if (!Array.isArray(ls)) r.fail(path, `'layers' must be a list, got ${describe(ls)}`);
  return ls as unknown[];
};

registerLayer(Graph, {
  type: 'Graph',
  toSpec: (g, child) => {
    if (g.outputNode < 0) throw new ArgumentError('a Graph without an output has no spec: call graph.output first');
    return {
      type: 'Graph',
      layers: g.layers.map((c, i) => child(c, i)),
      nodes: g.nodes.map((n) => structuredClone(n)),
      output: g.outputNode,
    };
  },
  params: (o, r, path) => (readNodes(o, r, path, graphLayers(o, r, path).length), 0),
  children: graphLayers,
  fromSpec: (o, r, path, child) => {
    const layers = graphLayers(o, r, path).map((_, i) => child(i));
    const { nodes, output } = readNodes(o, r, path, layers.length);
    return Graph.fromParts(layers, nodes, output);
  },
});
