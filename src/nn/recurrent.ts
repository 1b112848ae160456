// Recurrent layers: LSTM and GRU with PyTorch's parameter names, gate order and layouts (sequence-first by
// default, batchFirst on request), several layers, bidirectional, dropout between layers, and sequences of
// different lengths ("packed" by a lengths list: each sequence stops at its own end, outputs past it are zero
// and the final state is the state at the last valid step; the reverse direction starts at each sequence's end).
// Layers pass the sequence as a list of per-step tensors (slicing one [L, N, F] tensor per step would give every
// step's gradient the size of the whole sequence); each step does the input and the recurrent matmul and the
// elementwise gates. A training LSTM direction is one autograd node (lstmSequence) whose backward is
// backpropagation through time in ops, with one matmul over all steps for each weight gradient.
import { ArgumentError, ShapeError, checkOptions, describe, optionKeys } from '../errors.js';
import { tensor, zeros } from '../ops/creation.js';
import { add, mul, sigmoid, sub, tanh } from '../ops/elementwise.js';
import { concat, reshape, slice, stack, transpose } from '../ops/movement.js';
import { rand } from '../ops/random.js';
import { isGradEnabled, noGrad, record, withGrad } from '../autograd/tape.js';
import { gradients } from '../autograd/backward.js';
import { isTensor, type Tensor } from '../tensor/tensor.js';
import { shapeStr } from '../tensor/shape.js';
import { dropoutRate } from './attention.js';
import { keepMask, posInt } from './layers.js';
import { Module } from './module.js';
import { registerLayer, type SpecFields } from './registry.js';
import type { SpecReader } from './spec_reader.js';

/** Options of {@link LSTM} and {@link GRU} (PyTorch's, camel-cased). */
export interface RecurrentOptions {
  /** Stacked layers (default 1). */
  numLayers?: number;
  /** Input and recurrent biases (default true). */
  bias?: boolean;
  /** Inputs and outputs are [N, L, F] (true) or [L, N, F] (false, the default). */
  batchFirst?: boolean;
  /** Dropout on the outputs of every layer but the last, in training mode (default 0). */
  dropout?: number;
  /** A second direction reads the sequence backwards; outputs concatenate both (default false). */
  bidirectional?: boolean;
}
const RECURRENT_OPTIONS = optionKeys<RecurrentOptions>({
  numLayers: true,
  bias: true,
  batchFirst: true,
  dropout: true,
  bidirectional: true,
});

/** Initial state and sequence lengths for {@link LSTM.run} / {@link GRU.run}. */
export interface RecurrentInput {
  /** Initial hidden state [numLayers * directions, N, hidden] (default zeros). */
  h0?: Tensor;
  /** LSTM only: initial cell state, same shape as h0 (default zeros). */
  c0?: Tensor;
  /** Valid length of each sequence (1..L): a packed batch of sequences of different lengths. */
  lengths?: readonly number[];
}

/** What {@link LSTM.run} / {@link GRU.run} return. */
export interface RecurrentOutput {
  /** Every step's top-layer hidden state, [L, N, directions * hidden] (or [N, L, ...] with batchFirst). */
  output: Tensor;
  /** The final hidden state of every layer and direction, [numLayers * directions, N, hidden]. */
  h: Tensor;
  /** LSTM only: the final cell state. */
  c?: Tensor;
}

/** One step of a cell: the new hidden (and cell) state from the projected input and the previous state. */
type Step = (xp: Tensor, h: Tensor, c: Tensor | null, whh: Tensor, bhh: Tensor | null) => [Tensor, Tensor | null];

abstract class Recurrent extends Module {
  readonly numLayers: number;
  readonly bias: boolean;
  readonly batchFirst: boolean;
  readonly dropout: number;
  readonly bidirectional: boolean;
  protected abstract readonly gates: number;
  protected abstract readonly hasCell: boolean;
  protected abstract step: Step;
  constructor(
    kind: string,
    gates: number,
    readonly inputSize: number,
    readonly hiddenSize: number,
    opts: RecurrentOptions,
  ) {
    super();
    checkOptions(opts, kind, RECURRENT_OPTIONS);
    posInt(inputSize, `${kind} inputSize`);
    posInt(hiddenSize, `${kind} hiddenSize`);
    this.numLayers = posInt(opts.numLayers ?? 1, `${kind} numLayers`);
    this.bias = opts.bias ?? true;
    this.batchFirst = opts.batchFirst ?? false;
    this.dropout = dropoutRate(opts.dropout ?? 0, `${kind} dropout`);
    this.bidirectional = opts.bidirectional ?? false;
    // PyTorch's initialisation: U(-1/sqrt(hidden), 1/sqrt(hidden)) for every weight and bias
    const k = 1 / Math.sqrt(hiddenSize);
    const u = (shape: number[]): Tensor =>
      noGrad(() =>
        rand(shape)
          .mul(2 * k)
          .sub(k),
      );
    for (let l = 0; l < this.numLayers; l++) {
      for (const sfx of this.bidirectional ? ['', '_reverse'] : ['']) {
        const inF = l === 0 ? inputSize : hiddenSize * (this.bidirectional ? 2 : 1);
        this.registerParameter(`weight_ih_l${l}${sfx}`, u([gates * hiddenSize, inF]));
        this.registerParameter(`weight_hh_l${l}${sfx}`, u([gates * hiddenSize, hiddenSize]));
        if (this.bias) {
          this.registerParameter(`bias_ih_l${l}${sfx}`, u([gates * hiddenSize]));
          this.registerParameter(`bias_hh_l${l}${sfx}`, u([gates * hiddenSize]));
        }
      }
    }
  }
  protected param(name: string): Tensor | null {
    return this.namedParameters().find(([n]) => n === name)?.[1] ?? null;
  }
  forward(x: Tensor): Tensor {
    return this.run(x).output;
  }
  /** The layer over a whole sequence, with optional initial state and per-sequence lengths. */
  run(x: Tensor, input: RecurrentInput = {}): RecurrentOutput {
    const kind = this.constructor.name;
    checkOptions(input, `${kind}.run`, optionKeys<RecurrentInput>({ h0: true, c0: true, lengths: true }));
    if (!isTensor(x)) throw new ArgumentError(`${kind}: input must be a Tensor, got ${describe(x)}`);
    if (x.ndim !== 3 || x.shape[2] !== this.inputSize)
      throw new ShapeError(
        `${kind} expects ${this.batchFirst ? '[N, L, ' : '[L, N, '}${this.inputSize}], got ${shapeStr(x.shape)}`,
      );
    const seq = this.batchFirst ? transpose(x, 0, 1) : x;
    const L = seq.shape[0]!,
      N = seq.shape[1]!,
      H = this.hiddenSize;
    const dirs = this.bidirectional ? 2 : 1;
    const stateShape = [this.numLayers * dirs, N, H];
    const checkState = (t: Tensor | undefined, what: string): Tensor | null => {
      if (t === undefined) return null;
      if (!isTensor(t) || t.ndim !== 3 || t.shape.some((d, i) => d !== stateShape[i]))
        throw new ShapeError(`${kind}: ${what} must be ${shapeStr(stateShape)}, got ${describe(t)}`);
      return t;
    };
    const h0 = checkState(input.h0, 'h0'),
      c0 = this.hasCell ? checkState(input.c0, 'c0') : null;
    if (!this.hasCell && input.c0 !== undefined) throw new ArgumentError(`${kind} has no cell state: drop c0`);
    const masks = this.lengthMasks(input.lengths, L, N, x);
    // every layer reads and writes a list of per-step [N, F] tensors: slicing one [L, N, F] tensor per step would
    // give each step's gradient the size of the whole sequence
    let layerIn = Array.from({ length: L }, (_, t) => reshape(slice(seq, [t], [t + 1]), [N, seq.shape[2]!]));
    const hs: Tensor[] = [],
      cs: Tensor[] = [];
    for (let l = 0; l < this.numLayers; l++) {
      const outs: Tensor[][] = [];
      for (let d = 0; d < dirs; d++) {
        const sfx = d === 1 ? '_reverse' : '';
        const idx = l * dirs + d;
        const pick = (t: Tensor | null): Tensor =>
          t ? reshape(slice(t, [idx], [idx + 1]), [N, H]) : zeros([N, H], { backend: x.backendInstance.name });
        const [o, h, c] = this.directionOf(layerIn, l, sfx, d === 1, pick(h0), this.hasCell ? pick(c0) : null, masks);
        outs.push(o);
        hs.push(h);
        if (c) cs.push(c);
      }
      layerIn = dirs === 1 ? outs[0]! : outs[0]!.map((f, t) => concat([f, outs[1]![t]!], 1));
      if (this.training && this.dropout > 0 && l < this.numLayers - 1) {
        const p = this.dropout;
        layerIn = layerIn.map((v) => mul(v, keepMask(v.shape, p)));
      }
    }
    const stacked = stack(layerIn, 0);
    const output = this.batchFirst ? transpose(stacked, 0, 1) : stacked;
    const r: RecurrentOutput = { output, h: stack(hs, 0) };
    if (this.hasCell) r.c = stack(cs, 0);
    return r;
  }
  /** [L] masks [N, 1] (1 while t < length) for a packed batch, or null when every sequence is full. */
  private lengthMasks(lengths: readonly number[] | undefined, L: number, N: number, like: Tensor): Tensor[] | null {
    if (lengths === undefined) return null;
    const kind = this.constructor.name;
    if (!Array.isArray(lengths) || lengths.length !== N)
      throw new ArgumentError(`${kind}: lengths must list ${N} sequence lengths, got ${describe(lengths)}`);
    lengths.forEach((n, i) => {
      if (!Number.isInteger(n) || n < 1 || n > L)
        throw new ArgumentError(`${kind}: lengths[${i}] must be an integer in [1, ${L}], got ${describe(n)}`);
    });
    if (lengths.every((n) => n === L)) return null;
    return Array.from({ length: L }, (_, t) =>
      tensor(
        Float32Array.from(lengths, (n) => (t < n ? 1 : 0)),
        [N, 1],
        { backend: like.backendInstance.name },
      ),
    );
  }
  /** One direction of one layer: the generic per-step ops, unless the cell has a sequence-level node. */
  protected directionOf(
    xs: readonly Tensor[],
    l: number,
    sfx: string,
    reverse: boolean,
    h0: Tensor,
    c0: Tensor | null,
    masks: Tensor[] | null,
  ): [Tensor[], Tensor, Tensor | null] {
    return this.direction(xs, this.weightsOf(l, sfx), reverse, h0, c0, masks);
  }
  /** @internal The parameter tensors of one direction of one layer. */
  weightsOf(l: number, sfx: string): { wih: Tensor; whh: Tensor; bih: Tensor | null; bhh: Tensor | null } {
    return {
      wih: this.param(`weight_ih_l${l}${sfx}`)!,
      whh: this.param(`weight_hh_l${l}${sfx}`)!,
      bih: this.param(`bias_ih_l${l}${sfx}`),
      bhh: this.param(`bias_hh_l${l}${sfx}`),
    };
  }
  /** @internal One direction over the sequence in per-step ops (differentiable to any order). */
  direction(
    xs: readonly Tensor[],
    w: { wih: Tensor; whh: Tensor; bih: Tensor | null; bhh: Tensor | null },
    reverse: boolean,
    h0: Tensor,
    c0: Tensor | null,
    masks: Tensor[] | null,
  ): [Tensor[], Tensor, Tensor | null] {
    const L = xs.length;
    const wih = transpose(w.wih),
      whh = w.whh;
    const bih = w.bih,
      bhh = w.bhh;
    let h = h0,
      c = c0;
    const outs = new Array<Tensor>(L);
    for (let s = 0; s < L; s++) {
      const t = reverse ? L - 1 - s : s;
      let xp = xs[t]!.matmul(wih);
      if (bih) xp = add(xp, bih);
      const [hn, cn] = this.step(xp, h, c, whh, bhh);
      const m = masks?.[t];
      if (m) {
        // past a sequence's end: keep the state, output zeros
        h = add(mul(m, hn), mul(sub(1, m), h));
        if (c && cn) c = add(mul(m, cn), mul(sub(1, m), c));
        outs[t] = mul(m, hn);
      } else {
        h = hn;
        c = cn;
        outs[t] = hn;
      }
    }
    return [outs, h, c];
  }
  protected override extraRepr(): string {
    return `${this.inputSize}, ${this.hiddenSize}, layers=${this.numLayers}${this.bidirectional ? ', bidirectional' : ''}`;
  }
}

/** Columns [i*H, (i+1)*H) of a [N, k*H] gate tensor. */
const gate = (g: Tensor, i: number, H: number): Tensor => slice(g, [0, i * H], [null, (i + 1) * H]);

/**
 * Long short-term memory (Hochreiter & Schmidhuber 1997) as PyTorch computes it: gates i, f, g, o from
 * W_ih x + b_ih + W_hh h + b_hh; c' = f c + i g; h' = o tanh(c'). `call(x)` returns the outputs; `run(x, {h0, c0,
 * lengths})` also the final states.
 * @example new kn.nn.LSTM(3, 5, { batchFirst: true }).call(kn.ones([2, 4, 3])).shape // [2, 4, 5]
 */
export class LSTM extends Recurrent {
  protected readonly gates = 4;
  protected readonly hasCell = true;
  constructor(inputSize: number, hiddenSize: number, opts: RecurrentOptions = {}) {
    super('LSTM', 4, inputSize, hiddenSize, opts);
  }
  protected override directionOf(
    xs: readonly Tensor[],
    l: number,
    sfx: string,
    reverse: boolean,
    h0: Tensor,
    c0: Tensor | null,
    masks: Tensor[] | null,
  ): [Tensor[], Tensor, Tensor | null] {
    if (!isGradEnabled() || xs.length === 0) return this.direction(xs, this.weightsOf(l, sfx), reverse, h0, c0, masks);
    return lstmSequence(this, xs, l, sfx, reverse, h0, c0!, masks);
  }
  protected step: Step = (xp, h, c, whh, bhh) => {
    const H = this.hiddenSize;
    let g = add(xp, h.matmul(transpose(whh)));
    if (bhh) g = add(g, bhh);
    const i = sigmoid(gate(g, 0, H)),
      f = sigmoid(gate(g, 1, H)),
      gg = tanh(gate(g, 2, H)),
      o = sigmoid(gate(g, 3, H));
    const c2 = add(mul(f, c!), mul(i, gg));
    return [mul(o, tanh(c2)), c2];
  };
}

/**
 * One LSTM direction as a single autograd node: the forward runs without a tape and keeps each step's gates, and
 * the backward is backpropagation through time written in ops, ending in one matmul over all steps for each
 * weight gradient (per-step nodes would add every step's weight gradient separately). The packed result is
 * [L + 2, N, H]: the outputs, then the final h and c. A gradient of the gradient (createGraph) recomputes the
 * per-step ops and differentiates them.
 */
function lstmSequence(
  m: LSTM,
  xs: readonly Tensor[],
  l: number,
  sfx: string,
  reverse: boolean,
  h0: Tensor,
  c0: Tensor,
  masks: Tensor[] | null,
): [Tensor[], Tensor, Tensor] {
  const L = xs.length,
    N = h0.shape[0]!,
    H = m.hiddenSize;
  const { wih, whh, bih, bhh } = m.weightsOf(l, sfx);
  const params = [wih, whh, ...(bih && bhh ? [bih, bhh] : [])];
  const order = Array.from({ length: L }, (_, s) => (reverse ? L - 1 - s : s));
  interface Saved {
    i: Tensor;
    f: Tensor;
    g: Tensor;
    o: Tensor;
    tc: Tensor;
    cPrev: Tensor;
    hPrev: Tensor;
  }
  const saved = new Array<Saved>(L);
  const packed = noGrad(() => {
    const wihT = transpose(wih),
      whhT = transpose(whh);
    let h = h0,
      c = c0;
    const outs = new Array<Tensor>(L);
    for (const t of order) {
      let z = add(xs[t]!.matmul(wihT), h.matmul(whhT));
      if (bih && bhh) z = add(add(z, bih), bhh);
      const i = sigmoid(gate(z, 0, H)),
        f = sigmoid(gate(z, 1, H)),
        g = tanh(gate(z, 2, H)),
        o = sigmoid(gate(z, 3, H));
      const cn = add(mul(f, c), mul(i, g));
      const tc = tanh(cn);
      const hn = mul(o, tc);
      saved[t] = { i, f, g, o, tc, cPrev: c, hPrev: h };
      const mk = masks?.[t];
      if (mk) {
        h = add(mul(mk, hn), mul(sub(1, mk), h));
        c = add(mul(mk, cn), mul(sub(1, mk), c));
        outs[t] = mul(mk, hn);
      } else {
        h = hn;
        c = cn;
        outs[t] = hn;
      }
    }
    return stack([...outs, h, c], 0);
  });
  const inputs = [...xs, h0, c0, ...params];
  const node = record('lstm', packed, inputs, inputs, (G, ins, needs) => {
    const xsIn = ins.slice(0, L) as Tensor[];
    const [h0In, c0In, wihIn, whhIn, bihIn] = ins.slice(L) as Tensor[];
    if (isGradEnabled()) {
      // createGraph: the same function in per-step ops, differentiated with a graph
      const y = withGrad(true, () => {
        const w = { wih: wihIn!, whh: whhIn!, bih: bihIn ?? null, bhh: ins[L + 5] ?? null };
        const [outs, h, c] = m.direction(xsIn, w, reverse, h0In!, c0In!, masks);
        return stack([...outs, h, c!], 0);
      });
      const want = ins.map((t, k) => needs[k] === true && t.requiresGrad);
      const gs = gradients(
        y,
        ins.filter((_, k) => want[k]),
        G,
        { createGraph: true },
      );
      let n = 0;
      return want.map((w) => (w ? gs[n++]! : null));
    }
    const row = (k: number): Tensor => reshape(slice(G, [k], [k + 1]), [N, H]);
    let dh = row(L),
      dc = row(L + 1);
    const dG = new Array<Tensor>(L);
    for (let s = L - 1; s >= 0; s--) {
      const t = order[s]!;
      const { i, f, g, o, tc, cPrev } = saved[t]!;
      const mk = masks?.[t];
      const dout = row(t);
      let dhn: Tensor, dcn: Tensor;
      let dhPass: Tensor | null = null,
        dcPass: Tensor | null = null;
      if (mk) {
        const keep = sub(1, mk);
        dhn = mul(mk, add(dh, dout));
        dcn = mul(mk, dc);
        dhPass = mul(keep, dh);
        dcPass = mul(keep, dc);
      } else {
        dhn = add(dh, dout);
        dcn = dc;
      }
      const dct = add(dcn, mul(mul(dhn, o), sub(1, mul(tc, tc))));
      const di = mul(mul(dct, g), mul(i, sub(1, i)));
      const df = mul(mul(dct, cPrev), mul(f, sub(1, f)));
      const dg = mul(mul(dct, i), sub(1, mul(g, g)));
      const dO = mul(mul(dhn, tc), mul(o, sub(1, o)));
      const dz = concat([di, df, dg, dO], 1);
      dG[t] = dz;
      dh = dz.matmul(whhIn!);
      if (dhPass) dh = add(dh, dhPass);
      dc = mul(dct, f);
      if (dcPass) dc = add(dc, dcPass);
    }
    // weight gradients: one matmul over every step
    const dGall = reshape(stack(dG, 0), [L * N, 4 * H]);
    const X = reshape(stack(xsIn, 0), [L * N, xsIn[0]!.shape[1]!]);
    const Hp = reshape(
      stack(
        saved.map((sv) => sv.hPrev),
        0,
      ),
      [L * N, H],
    );
    const dGt = transpose(dGall);
    const dX = dGall.matmul(wihIn!);
    const dxs = Array.from({ length: L }, (_, t) => slice(dX, [t * N], [(t + 1) * N]));
    const db = bihIn ? [dGall.sum(0), dGall.sum(0)] : [];
    return [...dxs, dh, dc, dGt.matmul(X), dGt.matmul(Hp), ...db];
  });
  const outs = Array.from({ length: L }, (_, t) => reshape(slice(node, [t], [t + 1]), [N, H]));
  return [outs, reshape(slice(node, [L], [L + 1]), [N, H]), reshape(slice(node, [L + 1], [L + 2]), [N, H])];
}

/**
 * Gated recurrent unit (Cho et al. 2014) as PyTorch computes it: r, z from W_i x + b_i + W_h h + b_h;
 * n = tanh(W_in x + b_in + r (W_hn h + b_hn)); h' = (1 - z) n + z h. `call(x)` returns the outputs;
 * `run(x, {h0, lengths})` also the final state.
 * @example new kn.nn.GRU(3, 5).call(kn.ones([4, 2, 3])).shape // [4, 2, 5]
 */
export class GRU extends Recurrent {
  protected readonly gates = 3;
  protected readonly hasCell = false;
  constructor(inputSize: number, hiddenSize: number, opts: RecurrentOptions = {}) {
    super('GRU', 3, inputSize, hiddenSize, opts);
  }
  protected step: Step = (xp, h, _c, whh, bhh) => {
    const H = this.hiddenSize;
    let hp = h.matmul(transpose(whh));
    if (bhh) hp = add(hp, bhh);
    const r = sigmoid(add(gate(xp, 0, H), gate(hp, 0, H))),
      z = sigmoid(add(gate(xp, 1, H), gate(hp, 1, H)));
    const n = tanh(add(gate(xp, 2, H), mul(r, gate(hp, 2, H))));
    return [add(mul(sub(1, z), n), mul(z, h)), null];
  };
}

// ---- descriptions (nn/registry.ts) ----

function recurrentOpts(o: SpecFields, r: SpecReader, path: string): RecurrentOptions {
  return {
    numLayers: r.int(o, 'numLayers', path, 1, 1),
    bias: r.bool(o, 'bias', path, true),
    batchFirst: r.bool(o, 'batchFirst', path, false),
    dropout: r.num(o, 'dropout', path, (p) => p >= 0 && p < 1, 'in [0, 1)', 0),
    bidirectional: r.bool(o, 'bidirectional', path, false),
  };
}
for (const [cls, type, gates] of [
  [LSTM, 'LSTM', 4],
  [GRU, 'GRU', 3],
] as const) {
  registerLayer<Recurrent>(cls, {
    type,
    toSpec: (m) => ({
      type,
      inputSize: m.inputSize,
      hiddenSize: m.hiddenSize,
      numLayers: m.numLayers,
      bias: m.bias,
      batchFirst: m.batchFirst,
      dropout: m.dropout,
      bidirectional: m.bidirectional,
    }),
    params: (o, r, path) => {
      const F = r.int(o, 'inputSize', path, 1),
        H = r.int(o, 'hiddenSize', path, 1);
      const { numLayers, bias, bidirectional } = recurrentOpts(o, r, path);
      const dirs = bidirectional ? 2 : 1;
      let n = 0;
      for (let l = 0; l < numLayers!; l++) {
        const inF = l === 0 ? F : H * dirs;
        n += dirs * gates * H * (inF + H + (bias ? 2 : 0));
      }
      return n;
    },
    fromSpec: (o, r, path) =>
      new cls(r.int(o, 'inputSize', path, 1), r.int(o, 'hiddenSize', path, 1), recurrentOpts(o, r, path)),
  });
}
