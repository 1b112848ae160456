// Weight initialisers, drawn from kiln's seeded generator (kn.seed makes them reproducible).
import { ArgumentError, checkOptions, describe } from '../errors.js';
import { rand, randn } from '../ops/random.js';
import { zeros } from '../ops/creation.js';
import type { Tensor } from '../tensor/tensor.js';

/** fan_in and fan_out of a weight shape: [out, in] for Linear, [out, in/groups, kH, kW] for Conv2d. */
export function fans(shape: readonly number[]): { fanIn: number; fanOut: number } {
  if (shape.length < 2) throw new ArgumentError(`fan-in/out need a weight of rank >= 2, got shape [${shape}]`);
  const receptive = shape.slice(2).reduce((a, b) => a * b, 1);
  return { fanIn: shape[1]! * receptive, fanOut: shape[0]! * receptive };
}

function positive(x: number, what: string): number {
  if (typeof x !== 'number' || !Number.isFinite(x) || x <= 0)
    throw new ArgumentError(`${what} must be a positive number, got ${describe(x)}`);
  return x;
}

/**
 * He/Kaiming uniform: U(-b, b) with b = gain * sqrt(3 / fanIn); gain defaults to sqrt(2) (ReLU).
 * @example kn.nn.init.kaimingUniform([64, 32]).shape // [64, 32]
 */
export function kaimingUniform(shape: readonly number[], opts: { gain?: number; fanIn?: number } = {}): Tensor {
  checkOptions(opts, 'kaimingUniform', ['gain', 'fanIn']);
  const fanIn = positive(opts.fanIn ?? fans(shape).fanIn, 'fanIn');
  const b = positive(opts.gain ?? Math.SQRT2, 'gain') * Math.sqrt(3 / fanIn);
  return rand(shape, { low: -b, high: b });
}

/**
 * He/Kaiming normal: N(0, gain^2 / fanIn).
 * @example kn.nn.init.kaimingNormal([8, 4]).shape // [8, 4]
 */
export function kaimingNormal(shape: readonly number[], opts: { gain?: number; fanIn?: number } = {}): Tensor {
  checkOptions(opts, 'kaimingNormal', ['gain', 'fanIn']);
  const fanIn = positive(opts.fanIn ?? fans(shape).fanIn, 'fanIn');
  return randn(shape, { std: positive(opts.gain ?? Math.SQRT2, 'gain') / Math.sqrt(fanIn) });
}

/**
 * Glorot/Xavier uniform: U(-b, b) with b = gain * sqrt(6 / (fanIn + fanOut)).
 * @example kn.nn.init.xavierUniform([8, 4]).shape // [8, 4]
 */
export function xavierUniform(shape: readonly number[], opts: { gain?: number } = {}): Tensor {
  checkOptions(opts, 'xavierUniform', ['gain']);
  const { fanIn, fanOut } = fans(shape);
  const b = positive(opts.gain ?? 1, 'gain') * Math.sqrt(6 / (fanIn + fanOut));
  return rand(shape, { low: -b, high: b });
}

/**
 * Glorot/Xavier normal: N(0, gain^2 * 2 / (fanIn + fanOut)).
 * @example kn.nn.init.xavierNormal([8, 4]).shape // [8, 4]
 */
export function xavierNormal(shape: readonly number[], opts: { gain?: number } = {}): Tensor {
  checkOptions(opts, 'xavierNormal', ['gain']);
  const { fanIn, fanOut } = fans(shape);
  return randn(shape, { std: positive(opts.gain ?? 1, 'gain') * Math.sqrt(2 / (fanIn + fanOut)) });
}

/** The weight initialisers a layer can be built with. */
export type InitName = 'kaimingUniform' | 'kaimingNormal' | 'xavierUniform' | 'xavierNormal' | 'default';

/**
 * Builds a weight: 'default' is PyTorch's layer default (Kaiming uniform with a = sqrt(5), i.e. U(+-1/sqrt(fanIn))),
 * which keeps initial logits small so a C-class classifier starts near loss ln(C).
 */
export function initWeight(shape: readonly number[], name: InitName = 'default'): Tensor {
  switch (name) {
    case 'default':
      return kaimingUniform(shape, { gain: Math.sqrt(1 / 3) });
    case 'kaimingUniform':
      return kaimingUniform(shape);
    case 'kaimingNormal':
      return kaimingNormal(shape);
    case 'xavierUniform':
      return xavierUniform(shape);
    case 'xavierNormal':
      return xavierNormal(shape);
    default:
      throw new ArgumentError(
        `init must be one of default, kaimingUniform, kaimingNormal, xavierUniform, xavierNormal; got ${describe(name)}`,
      );
  }
}

/** Bias U(+-1/sqrt(fanIn)) for the default init, zeros otherwise. */
export function initBias(n: number, fanIn: number, name: InitName = 'default'): Tensor {
  if (name !== 'default') return zeros([n]);
  const b = 1 / Math.sqrt(fanIn);
  return rand([n], { low: -b, high: b });
}
