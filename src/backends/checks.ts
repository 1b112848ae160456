// Kernel argument checks shared by the TypeScript backends (js, webgpu), with the messages the native addon
// gives for the same mistakes: the same bad call fails the same way on every backend.
import { ArgumentError, ShapeError } from '../errors.js';
import { convOutSize, sameShape } from '../tensor/shape.js';
import type { KernelView } from './backend.js';
import { attrsOf } from '../ops/table.js';

const numel = (s: readonly number[]): number => s.reduce((a, b) => a * b, 1);

export function checkBiasAct(act: number): void {
  if (act !== 0 && act !== 1 && act !== 2)
    throw new ArgumentError(`biasAct: act must be 0 (none), 1 (relu) or 2 (gelu), got ${act}`);
}

export function checkClamp(lo: number, hi: number): void {
  if (lo > hi) throw new ArgumentError(`clamp needs min <= max, got min=${lo} max=${hi}`);
}

export function checkRandomInt(lo: number, hi: number): void {
  if (!(hi > lo) || hi - lo > 4294967296 || lo < -2147483648 || hi > 2147483648) {
    throw new ArgumentError(`randomInt needs low < high within int32, got [${lo}, ${hi})`);
  }
}

/** [N, F] for the column kernels (rowHash, nanColumnStats, nanQuantile). */
export function checkColumns(v: KernelView, op: string): [number, number] {
  if (v.shape.length !== 2) throw new ShapeError(`${op} takes [N, F]`);
  return v.shape as [number, number];
}

export function checkQuantile(q: number): void {
  if (!(q >= 0 && q <= 1)) throw new ArgumentError(`nanQuantile: q must be in [0, 1], got ${q}`);
}

/** Softmax cross-entropy inputs: logits [N, C], labels [N], `want` inputs plus an optional weight [C]. */
export function checkCrossEntropy(
  ins: readonly KernelView[],
  want: number,
  op: string,
): { n: number; c: number; weight: KernelView | null } {
  if (ins.length !== want && ins.length !== want + 1)
    throw new ArgumentError(`${op} takes ${want} inputs and an optional weight, got ${ins.length}`);
  const [n, c] = ins[0]!.shape as [number, number];
  if (ins[0]!.shape.length !== 2 || ins[1]!.shape.length !== 1 || ins[1]!.shape[0] !== n)
    throw new ShapeError(`${op}: logits must be [N, C] and labels [N]`);
  const weight = ins.length === want + 1 ? ins[want]! : null;
  if (weight && numel(weight.shape) !== c) throw new ShapeError(`${op}: weight must be [${c}]`);
  if (want === 3 && numel(ins[2]!.shape) !== n) throw new ShapeError(`${op}: the row gradient must have ${n} values`);
  return { n, c, weight };
}

/** Optimizer step inputs: one of `counts` inputs, all of the parameter's shape; returns its element count. */
export function checkOptim(ins: readonly KernelView[], op: string, counts: readonly number[]): number {
  if (!counts.includes(ins.length))
    throw new ArgumentError(`${op} takes ${counts.join(' or ')} inputs, got ${ins.length}`);
  for (const v of ins) {
    if (!sameShape(v.shape, ins[0]!.shape))
      throw new ShapeError(`${op}: an input has shape [${v.shape}] but the parameter has [${ins[0]!.shape}]`);
  }
  return numel(ins[0]!.shape);
}

export function checkAdam(attrs: readonly number[], op: 'adamStep' | 'adamStepMulti' = 'adamStep'): void {
  const { bias1, bias2 } = attrsOf(op, attrs);
  if (!(bias1 > 0 && bias1 <= 1 && bias2 > 0 && bias2 <= 1))
    throw new ArgumentError(`${op}: bias corrections must be in (0, 1], got ${bias1} and ${bias2}`);
}

/**
 * adamStepMulti's inputs: 1-8 groups of (param, grad, m, v), each group of one shape. Returns the groups with
 * their element counts.
 */
export function checkAdamMulti(ins: readonly KernelView[]): { group: KernelView[]; n: number }[] {
  if (ins.length < 4 || ins.length > 32 || ins.length % 4 !== 0)
    throw new ArgumentError(`adamStepMulti takes 1 to 8 groups of (param, grad, m, v), got ${ins.length} inputs`);
  const groups: { group: KernelView[]; n: number }[] = [];
  for (let q = 0; q < ins.length; q += 4) {
    const group = ins.slice(q, q + 4);
    groups.push({ group, n: checkOptim(group, 'adamStepMulti', [4]) });
  }
  return groups;
}

/**
 * sgdStepMulti's inputs: 1-8 groups of (param, grad, momentum buffer), each group of one shape. Returns the groups
 * with their element counts.
 */
export function checkSgdMulti(ins: readonly KernelView[]): { group: KernelView[]; n: number }[] {
  if (ins.length < 3 || ins.length > 24 || ins.length % 3 !== 0)
    throw new ArgumentError(
      `sgdStepMulti takes 1 to 8 groups of (param, grad, momentum buffer), got ${ins.length} inputs`,
    );
  const groups: { group: KernelView[]; n: number }[] = [];
  for (let q = 0; q < ins.length; q += 3) {
    const group = ins.slice(q, q + 3);
    groups.push({ group, n: checkOptim(group, 'sgdStepMulti', [3]) });
  }
  return groups;
}

export function checkSgd(ins: readonly KernelView[], attrs: readonly number[]): void {
  if (attrsOf('sgdStep', attrs).nesterov && ins.length < 3)
    throw new ArgumentError('sgdStep: nesterov needs a momentum buffer');
}

/** The int4 linear's inputs: x [M, K], packed uint8 [N, G*g/2], scales [N, G] with G = ceil(K / g)[, bias [N]]. */
export function checkQlinearInt4(
  ins: readonly KernelView[],
  attrs: readonly number[],
): { M: number; K: number; N: number; G: number; g: number } {
  if (ins.length !== 3 && ins.length !== 4)
    throw new ArgumentError(`qlinearInt4 takes (x, packed, scales[, bias]), got ${ins.length} inputs`);
  const g = attrsOf('qlinearInt4', attrs).groupSize;
  if (![32, 64, 128].includes(g)) throw new ArgumentError(`qlinearInt4: groupSize must be 32, 64 or 128, got ${g}`);
  const [x, w, s] = ins as [KernelView, KernelView, KernelView];
  if (x.shape.length !== 2 || w.shape.length !== 2 || s.shape.length !== 2)
    throw new ShapeError(`qlinearInt4: x, packed and scales must be 2-D, got [${x.shape}], [${w.shape}], [${s.shape}]`);
  const M = x.shape[0]!,
    K = x.shape[1]!,
    N = w.shape[0]!,
    G = Math.ceil(K / g);
  if (w.shape[1] !== (G * g) / 2 || s.shape[0] !== N || s.shape[1] !== G) {
    throw new ShapeError(
      `qlinearInt4: for K = ${K} in groups of ${g}, packed must be [${N}, ${(G * g) / 2}] and scales [${N}, ${G}], got [${w.shape}] and [${s.shape}]`,
    );
  }
  if (ins[3] && numel(ins[3].shape) !== N)
    throw new ShapeError(`qlinearInt4: bias must have ${N} values, got [${ins[3].shape}]`);
  return { M, K, N, G, g };
}

/** The int8 linear's inputs (x [M, K], wq [N, K], wscale [N][, bias [N]]) and activation quantization. */
export function checkQlinear(
  ins: readonly KernelView[],
  attrs: readonly number[],
): { M: number; K: number; N: number; sx: number; zx: number } {
  if (ins.length !== 3 && ins.length !== 4)
    throw new ArgumentError(`qlinearInt8 takes (x, wq, wscale[, bias]), got ${ins.length} inputs`);
  const [x, w] = ins as [KernelView, KernelView];
  if (x.shape.length !== 2 || w.shape.length !== 2 || w.shape[1] !== x.shape[1]) {
    throw new ShapeError(`qlinearInt8: x [${x.shape}] and wq [${w.shape}] must be [M, K] and [N, K]`);
  }
  const M = x.shape[0]!,
    K = x.shape[1]!,
    N = w.shape[0]!;
  if (K > 65536) throw new ShapeError(`qlinearInt8: K = ${K} is over 65536 (int32 accumulators could overflow)`);
  const [sx, zx] = attrs as [number, number];
  if (!(sx >= 0) || !Number.isInteger(zx) || zx < 0 || zx > 255)
    throw new ArgumentError(`qlinearInt8: xScale must be >= 0 and xZero an integer in [0, 255], got ${sx} and ${zx}`);
  return { M, K, N, sx, zx };
}

/** The geometry of an int8 convolution call (x [N, C, H, W], wq [O, C, kh, kw], wscale [O][, bias [O]]), checked. */
export interface QconvGeometry {
  N: number;
  C: number;
  H: number;
  W: number;
  O: number;
  kh: number;
  kw: number;
  OH: number;
  OW: number;
  sh: number;
  sw: number;
  ph: number;
  pw: number;
  dh: number;
  dw: number;
  sx: number;
  zx: number;
  relu: boolean;
  /** the max pool's kernel and stride (1: none), and the pooled output's height and width */
  pool: number;
  PH: number;
  PW: number;
}

/** qconv2dInt8's operands and attributes, with the addon's messages. */
export function checkQconv(ins: readonly KernelView[], attrs: readonly number[]): QconvGeometry {
  if (ins.length !== 3 && ins.length !== 4)
    throw new ArgumentError(`qconv2dInt8 takes (x, wq, wscale[, bias]), got ${ins.length} inputs`);
  const [x, w, ws] = ins as [KernelView, KernelView, KernelView];
  const a = attrsOf('qconv2dInt8', attrs);
  const [sh, sw, ph, pw, dh, dw] = [a.strideH, a.strideW, a.padH, a.padW, a.dilationH, a.dilationW];
  if (!(sh >= 1 && sw >= 1 && dh >= 1 && dw >= 1 && ph >= 0 && pw >= 0 && a.groups === 1))
    throw new ArgumentError(
      `qconv2dInt8 needs stride >= 1, dilation >= 1, padding >= 0 and one group; got stride [${sh}, ${sw}] padding [${ph}, ${pw}] dilation [${dh}, ${dw}] groups ${a.groups}`,
    );
  if (x.shape.length !== 4 || w.shape.length !== 4 || w.shape[1] !== x.shape[1])
    throw new ShapeError(`qconv2dInt8: x [${x.shape}] and wq [${w.shape}] must be [N, C, H, W] and [O, C, kH, kW]`);
  const [N, C, H, W] = x.shape as [number, number, number, number];
  const [O, , kh, kw] = w.shape as [number, number, number, number];
  if (kh < 1 || kw < 1) throw new ShapeError(`qconv2dInt8: the kernel must be at least 1x1, got ${kh}x${kw}`);
  if (C * kh * kw > 65536)
    throw new ShapeError(`qconv2dInt8: C*kH*kW = ${C * kh * kw} is over 65536 (int32 accumulators could overflow)`);
  if (numel(ws.shape) !== O) throw new ShapeError(`qconv2dInt8: wscale must have ${O} values, got [${ws.shape}]`);
  if (ins[3] && numel(ins[3].shape) !== O)
    throw new ShapeError(`qconv2dInt8: bias must have ${O} values, got [${ins[3].shape}]`);
  const OH = convOutSize(H, kh, sh, ph, dh),
    OW = convOutSize(W, kw, sw, pw, dw);
  if (OH === 0 || OW === 0)
    throw new ShapeError(`qconv2dInt8: kernel ${kh}x${kw} is larger than the padded input ${H + 2 * ph}x${W + 2 * pw}`);
  const sx = a.xScale,
    zx = a.xZero;
  if (!(sx >= 0) || !Number.isInteger(zx) || zx < 0 || zx > 255)
    throw new ArgumentError(`qconv2dInt8: xScale must be >= 0 and xZero an integer in [0, 255], got ${sx} and ${zx}`);
  if (a.relu !== 0 && a.relu !== 1) throw new ArgumentError(`qconv2dInt8: relu must be 0 or 1, got ${a.relu}`);
  const pool = a.pool;
  if (!Number.isInteger(pool) || pool < 1 || pool > Math.min(OH, OW))
    throw new ArgumentError(
      `qconv2dInt8: pool must be an integer from 1 (none) to the output's smaller side ${Math.min(OH, OW)}, got ${pool}`,
    );
  const [PH, PW] = [Math.floor(OH / pool), Math.floor(OW / pool)];
  return { N, C, H, W, O, kh, kw, OH, OW, sh, sw, ph, pw, dh, dw, sx, zx, relu: a.relu === 1, pool, PH, PW };
}

/** The geometry of an attention kernel call (forward: want 3; backward: want 5), checked. */
export interface AttentionGeometry {
  B: number;
  L: number;
  S: number;
  D: number;
  Dv: number;
  /** the additive mask [1 | B, L, S], if given */
  mask: KernelView | null;
  /** whether the mask has one [L, S] slice per batch (else one shared) */
  maskBatched: boolean;
}

export function checkAttention(
  ins: readonly KernelView[],
  want: number,
  op: string,
  attrs: readonly number[],
): AttentionGeometry {
  if (ins.length !== want && ins.length !== want + 1)
    throw new ArgumentError(`${op} takes ${want} inputs and an optional mask, got ${ins.length}`);
  const [q, k, v] = ins as [KernelView, KernelView, KernelView];
  if (q.shape.length !== 3 || k.shape.length !== 3 || v.shape.length !== 3)
    throw new ShapeError(`${op}: q, k and v must be 3-D [B, L, D], [B, S, D], [B, S, Dv]`);
  const [B, L, D] = q.shape as [number, number, number];
  const [, S, Dv] = v.shape as [number, number, number];
  if (k.shape[0] !== B || v.shape[0] !== B || k.shape[2] !== D || k.shape[1] !== S)
    throw new ShapeError(`${op}: q [${q.shape}], k [${k.shape}] and v [${v.shape}] disagree`);
  if (want === 5) {
    if (!sameShape(ins[3]!.shape, [B, L, Dv + 1]))
      throw new ShapeError(`${op}: the forward output must be [${B}, ${L}, ${Dv + 1}], got [${ins[3]!.shape}]`);
    if (!sameShape(ins[4]!.shape, [B, L, Dv]))
      throw new ShapeError(`${op}: the output gradient must be [${B}, ${L}, ${Dv}], got [${ins[4]!.shape}]`);
  }
  const mask = ins.length === want + 1 ? ins[want]! : null;
  if (
    mask &&
    (mask.shape.length !== 3 ||
      (mask.shape[0] !== 1 && mask.shape[0] !== B) ||
      mask.shape[1] !== L ||
      mask.shape[2] !== S)
  )
    throw new ShapeError(`${op}: the mask must be [1 or ${B}, ${L}, ${S}], got [${mask.shape}]`);
  const { scale, causal, dropoutThreshold, seed } = attrsOf(
    op === 'attention' ? 'attention' : 'attentionBackward',
    attrs,
  );
  if (!Number.isFinite(scale)) throw new ArgumentError(`${op}: scale must be finite, got ${scale}`);
  if (causal !== 0 && causal !== 1) throw new ArgumentError(`${op}: causal must be 0 or 1, got ${causal}`);
  for (const [n, x] of [
    ['dropoutThreshold', dropoutThreshold],
    ['seed', seed],
  ] as const)
    if (!Number.isInteger(x) || x < 0 || x > 0xffffffff)
      throw new ArgumentError(`${op}: ${n} must be an integer in [0, 2^32), got ${x}`);
  return { B, L, S, D, Dv, mask, maskBatched: mask !== null && mask.shape[0] === B && B > 1 };
}

/** lowbias32 (Chris Wellons): the integer hash attention dropout uses on every backend. */
export function hash32(x: number): number {
  x = (x ^ (x >>> 16)) >>> 0;
  x = Math.imul(x, 0x7feb352d) >>> 0;
  x = (x ^ (x >>> 15)) >>> 0;
  x = Math.imul(x, 0x846ca68b) >>> 0;
  return (x ^ (x >>> 16)) >>> 0;
}

/** Whether attention dropout keeps weight `index` ((b * L + i) * S + j, mod 2^32) for this seed and threshold. */
export function attentionKeeps(seed: number, threshold: number, index: number): boolean {
  return hash32((index ^ hash32(seed)) >>> 0) >= threshold;
}

/** The [R, C] geometry of a layerNorm kernel call (forward: x[, weight, bias]; backward: x, dy[, weight]). */
export function checkLayerNorm(
  ins: readonly KernelView[],
  op: 'layerNorm' | 'layerNormBackward',
  attrs: readonly number[],
): { R: number; C: number; affine: boolean } {
  const fwd = op === 'layerNorm';
  if (fwd ? ins.length !== 1 && ins.length !== 3 : ins.length !== 2 && ins.length !== 3)
    throw new ArgumentError(
      fwd
        ? `layerNorm takes x and optionally weight and bias, got ${ins.length} inputs`
        : `layerNormBackward takes x, dy and optionally weight, got ${ins.length} inputs`,
    );
  const x = ins[0]!;
  if (x.shape.length !== 2) throw new ShapeError(`${op}: x must be [R, C], got [${x.shape}]`);
  const [R, C] = x.shape as [number, number];
  if (!fwd && !sameShape(ins[1]!.shape, x.shape))
    throw new ShapeError(`${op}: dy must be [${R}, ${C}] like x, got [${ins[1]!.shape}]`);
  for (const w of ins.slice(fwd ? 1 : 2))
    if (numel(w.shape) !== C) throw new ShapeError(`${op}: weight and bias must have ${C} values, got [${w.shape}]`);
  const { eps } = attrsOf(op, attrs);
  if (!(eps >= 0) || !Number.isFinite(eps)) throw new ArgumentError(`${op}: eps must be finite and >= 0, got ${eps}`);
  return { R, C, affine: ins.length === 3 };
}
