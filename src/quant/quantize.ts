// Post-training quantization of a model built from kiln's standard layers: a copy of the model with its
// Linear (and, for int8, Conv2d) layers replaced by quantized ones, plus a per-layer sensitivity report.
//   int8          weights symmetric per output channel; activations per tensor, asymmetric uint8, from
//                 calibration data (min-max or percentile ranges)
//   int8-dynamic  weights as above; activations quantized at run time (per row for Linear, per image for Conv2d)
//   int4          weight-only, groups of 32/64/128 inputs per scale (Linear layers)
import { noGrad } from '../autograd/tape.js';
import { ArgumentError, ValidationError, checkOptions, describe, optionKeys } from '../errors.js';
import { tidy } from '../engine/memory.js';
import { Conv2d, Linear } from '../nn/layers.js';
import { Module } from '../nn/module.js';
import { cloneModule } from '../nn/spec.js';
import type { Pair } from '../ops/conv.js';
import type { ActivationQuant } from '../ops/quant.js';
import { isTensor, type Tensor } from '../tensor/tensor.js';
import { INT4_LAYOUT } from './layout.js';
import { Int4Linear, QuantConv2d, QuantLinear, quantizeWeightsInt4, quantizeWeightsInt8 } from './layers.js';

/** Quantization schemes. */
export type Scheme = 'int8' | 'int8-dynamic' | 'int4';

/** quantize options. */
export interface QuantizeOptions {
  scheme: Scheme;
  /** Model inputs: required for 'int8' (activation ranges) and for the sensitivity report. */
  calibration?: Tensor | readonly Tensor[];
  /** The same as `calibration` (the name kn.quant's pinned call shape uses); give one of the two. */
  calibrate?: Tensor | readonly Tensor[];
  /**
   * int8 weights: one scale per output channel (default true), or false for one scale for the whole tensor.
   * int4 always has a scale per group of `groupSize` inputs and takes no false here.
   */
  perChannel?: boolean;
  /** How activation ranges are taken from calibration data (default 'minmax'). */
  method?: 'minmax' | 'percentile';
  /** For 'percentile': the upper percentile kept (default 99.99; the lower one is 100 - p). */
  percentile?: number;
  /** int4 group size (default 32). */
  groupSize?: number;
  /** Dotted module names to keep in float. */
  keepFloat?: readonly string[];
  /** Keep in float every layer whose quantization alone drops the model output's SQNR below this (dB). */
  minSqnrDb?: number;
}

/** One row of the report. */
export interface LayerReport {
  name: string;
  type: string;
  /** what the layer became */
  quantized: Scheme | 'float';
  /** SQNR of the model output with only this layer quantized (dB; null without calibration data) */
  sqnrDb: number | null;
  /** why a layer was kept in float */
  reason: string | null;
  /** the input range used for static activation quantization */
  inputRange: [number, number] | null;
}

/** What quantize returns. */
export interface QuantizeResult {
  model: Module;
  layers: LayerReport[];
  /** SQNR of the quantized model's output against the float model on the calibration data (dB) */
  sqnrDb: number | null;
}

/** Signal-to-quantization-noise ratio of `approx` against `ref`, in dB (Infinity when they are equal). */
export function sqnr(ref: Tensor, approx: Tensor): number {
  return tidy(() => {
    const s = ref.mul(ref).sum().item();
    const n = ref.sub(approx).pow(2).sum().item();
    return n === 0 ? Infinity : 10 * Math.log10(s / n);
  });
}

interface Target {
  name: string;
  parent: Module;
  key: string;
  layer: Linear | Conv2d;
}

function batchesOf(c: Tensor | readonly Tensor[] | undefined): Tensor[] {
  if (c === undefined) return [];
  const list = isTensor(c) ? [c] : c;
  if (!Array.isArray(list) || !list.every(isTensor))
    throw new ArgumentError(`calibration must be a Tensor or a list of Tensors, got ${describe(c)}`);
  return [...list];
}

/** Collects the inputs of every target layer over the calibration batches (forward is wrapped, then restored). */
function observeInputs(
  model: Module,
  targets: Target[],
  batches: Tensor[],
  method: 'minmax' | 'percentile',
  pct: number,
): Map<string, [number, number]> {
  const lo = new Map<string, number>(),
    hi = new Map<string, number>(),
    samples = new Map<string, number[]>();
  const MAX_SAMPLES = 200_000;
  for (const t of targets) {
    const layer = t.layer as Module & { forward: (x: Tensor) => Tensor };
    const orig = Object.getPrototypeOf(layer).forward as (x: Tensor) => Tensor;
    layer.forward = (x: Tensor): Tensor => {
      const v = x.toArray() as Float32Array;
      if (method === 'minmax') {
        let a = lo.get(t.name) ?? 0,
          b = hi.get(t.name) ?? 0;
        for (let i = 0; i < v.length; i++) {
          const e = v[i]!;
          if (e < a) a = e;
          if (e > b) b = e;
        }
        lo.set(t.name, a);
        hi.set(t.name, b);
      } else {
        const s = samples.get(t.name) ?? [];
        const step = Math.max(1, Math.ceil(v.length / (MAX_SAMPLES / batches.length)));
        for (let i = 0; i < v.length; i += step) s.push(v[i]!);
        samples.set(t.name, s);
      }
      return orig.call(layer, x);
    };
  }
  try {
    noGrad(() => {
      for (const b of batches)
        tidy(() => {
          model.call(b);
        });
    });
  } finally {
    for (const t of targets) delete (t.layer as unknown as Record<string, unknown>).forward;
  }
  const out = new Map<string, [number, number]>();
  for (const t of targets) {
    if (method === 'minmax') out.set(t.name, [lo.get(t.name) ?? 0, hi.get(t.name) ?? 0]);
    else {
      const s = Float64Array.from(samples.get(t.name) ?? [0]).sort();
      const q = (p: number): number => s[Math.min(s.length - 1, Math.max(0, Math.round((p / 100) * (s.length - 1))))]!;
      out.set(t.name, [Math.min(0, q(100 - pct)), Math.max(0, q(pct))]);
    }
  }
  return out;
}

/** uint8 affine parameters for a range that holds 0. */
export function affineParams(range: readonly [number, number]): { scale: number; zeroPoint: number } {
  const lo = Math.min(0, range[0]),
    hi = Math.max(0, range[1]);
  if (!(Number.isFinite(lo) && Number.isFinite(hi)))
    throw new ValidationError(`activation range [${lo}, ${hi}] is not finite`);
  if (hi === lo) return { scale: 1, zeroPoint: 0 };
  const scale = Math.fround((hi - lo) / 255);
  return { scale, zeroPoint: Math.min(255, Math.max(0, Math.round(-lo / scale))) };
}

/**
 * An int8 layer standing for a float Linear ([out, in] weight) or Conv2d ([out, in, kh, kw] weight, groups 1):
 * the weight quantized per output channel (or per tensor), the bias, and how the input is quantized.
 */
export function int8Layer(
  weight: Tensor,
  bias: Tensor | null,
  act: ActivationQuant,
  conv: { stride?: Pair; padding?: Pair; dilation?: Pair } = {},
  perChannel = true,
): QuantLinear | QuantConv2d {
  return noGrad(() => {
    const { q, scale } = quantizeWeightsInt8(weight, perChannel);
    const [out, inp, kh, kw] = weight.shape as [number, number, number?, number?];
    const p2 = (v: Pair | undefined, d: number): [number, number] =>
      v === undefined ? [d, d] : typeof v === 'number' ? [v, v] : [v[0], v[1]];
    const m =
      weight.ndim === 2
        ? new QuantLinear(inp, out, { bias: bias !== null, act })
        : new QuantConv2d(inp, out, [kh!, kw!], {
            stride: p2(conv.stride, 1),
            padding: p2(conv.padding, 0),
            dilation: p2(conv.dilation, 1),
            bias: bias !== null,
            act,
          });
    m.weightQ.assign(q);
    m.weightScale.assign(scale);
    if (bias) m.bias!.assign(bias);
    q.dispose();
    scale.dispose();
    return m;
  });
}

/** Where each named module hangs: its parent and its key there (the root, named '', has none). */
export function childSlots(model: Module): Map<string, { parent: Module; key: string }> {
  const byName = new Map(model.namedModules());
  const out = new Map<string, { parent: Module; key: string }>();
  for (const name of byName.keys()) {
    if (name === '') continue;
    const dot = name.lastIndexOf('.');
    out.set(name, { parent: byName.get(dot < 0 ? '' : name.slice(0, dot))!, key: name.slice(dot + 1) });
  }
  return out;
}

function quantizedLayer(
  layer: Linear | Conv2d,
  scheme: Scheme,
  act: ActivationQuant,
  groupSize: number,
  perChannel: boolean,
): Module {
  if (scheme !== 'int4')
    return int8Layer(layer.weight, layer.bias, act, layer instanceof Conv2d ? layer.opts : {}, perChannel);
  return noGrad(() => {
    const l = layer as Linear;
    const q = new Int4Linear(l.inFeatures, l.outFeatures, groupSize, { bias: l.bias !== null });
    const { packed, scale } = quantizeWeightsInt4(l.weight, groupSize);
    q.weightPacked.assign(packed);
    q.weightScale.assign(scale);
    if (l.bias) q.bias!.assign(l.bias);
    packed.dispose();
    scale.dispose();
    return q;
  });
}

/**
 * Quantizes a copy of `model` (the original is not changed). Needs a model made of kiln's standard layers
 * (kn.nn.toSpec); other layers stay as they are. With calibration data the report gives each layer's SQNR.
 */
export function quantize(model: Module, opts: QuantizeOptions): QuantizeResult {
  if (!(model instanceof Module)) throw new ArgumentError(`quantize takes a kn.nn.Module, got ${describe(model)}`);
  checkOptions(
    opts,
    'quantize',
    optionKeys<QuantizeOptions>({
      scheme: true,
      calibration: true,
      calibrate: true,
      perChannel: true,
      method: true,
      percentile: true,
      groupSize: true,
      keepFloat: true,
      minSqnrDb: true,
    }),
    'required',
  );
  const scheme = opts.scheme;
  if (scheme !== 'int8' && scheme !== 'int8-dynamic' && scheme !== 'int4')
    throw new ArgumentError(`scheme must be 'int8', 'int8-dynamic' or 'int4', got ${describe(scheme)}`);
  const method = opts.method ?? 'minmax';
  if (method !== 'minmax' && method !== 'percentile')
    throw new ArgumentError(`method must be 'minmax' or 'percentile', got ${describe(method)}`);
  const pct = opts.percentile ?? 99.99;
  if (!(pct > 50 && pct <= 100)) throw new ArgumentError(`percentile must be in (50, 100], got ${describe(pct)}`);
  const groupSize = opts.groupSize ?? 32;
  if (scheme === 'int4' && !(INT4_LAYOUT.groupSizes as readonly number[]).includes(groupSize)) {
    throw new ArgumentError(
      `groupSize must be one of ${INT4_LAYOUT.groupSizes.join(', ')}, got ${describe(groupSize)}`,
    );
  }
  if (opts.calibration !== undefined && opts.calibrate !== undefined)
    throw new ArgumentError('quantize takes calibration or calibrate (the same inputs), not both');
  const perChannel = opts.perChannel ?? true;
  if (typeof perChannel !== 'boolean')
    throw new ArgumentError(`perChannel must be true or false, got ${describe(opts.perChannel)}`);
  if (scheme === 'int4' && !perChannel)
    throw new ArgumentError(`scheme 'int4' has a scale per group of groupSize inputs: perChannel false is for int8`);
  const batches = batchesOf(opts.calibration ?? opts.calibrate);
  if (scheme === 'int8' && batches.length === 0) {
    throw new ArgumentError(
      "scheme 'int8' quantizes activations with ranges from calibration data: pass calibration inputs, or use 'int8-dynamic'",
    );
  }
  const keepFloat = new Set(opts.keepFloat ?? []);

  const copy = cloneModule(model).eval();

  const targets: Target[] = [];
  const reports = new Map<string, LayerReport>();
  const slots = childSlots(copy);
  for (const [name, m] of copy.namedModules()) {
    if (!(m instanceof Linear || m instanceof Conv2d)) continue;
    const rep: LayerReport = {
      name,
      type: m.constructor.name,
      quantized: 'float',
      sqnrDb: null,
      reason: null,
      inputRange: null,
    };
    reports.set(name, rep);
    const slot = slots.get(name);
    if (!slot) {
      rep.reason = 'the model itself is a single layer; wrap it in a Sequential';
      continue;
    }
    if (keepFloat.has(name)) {
      rep.reason = 'keepFloat';
      continue;
    }
    if (m instanceof Conv2d && scheme === 'int4') {
      rep.reason = 'int4 covers Linear layers only';
      continue;
    }
    if (m instanceof Conv2d && (m.opts.groups ?? 1) !== 1) {
      rep.reason = 'grouped convolution is not quantized';
      continue;
    }
    targets.push({ name, ...slot, layer: m });
  }

  const ranges =
    scheme === 'int8' ? observeInputs(copy, targets, batches, method, pct) : new Map<string, [number, number]>();
  const replacement = new Map<string, Module>();
  for (const t of targets) {
    const range = ranges.get(t.name);
    const act: ActivationQuant = scheme === 'int8' ? affineParams(range!) : 'dynamic';
    if (range) reports.get(t.name)!.inputRange = [Math.min(0, range[0]), Math.max(0, range[1])];
    replacement.set(t.name, quantizedLayer(t.layer, scheme, act, groupSize, perChannel));
  }

  // sensitivity: each layer quantized alone, the model output compared with the float model's
  const refs = batches.length ? noGrad(() => batches.map((b) => copy.call(b))) : [];
  const outputSqnr = (): number =>
    noGrad(() => {
      let s = 0,
        n = 0;
      batches.forEach((b, i) =>
        tidy(() => {
          const y = copy.call(b);
          s += refs[i]!.mul(refs[i]!).sum().item();
          n += refs[i]!.sub(y).pow(2).sum().item();
        }),
      );
      return n === 0 ? Infinity : 10 * Math.log10(s / n);
    });
  if (batches.length) {
    for (const t of targets) {
      t.parent.replaceChild(t.key, replacement.get(t.name)!);
      reports.get(t.name)!.sqnrDb = outputSqnr();
      t.parent.replaceChild(t.key, t.layer);
    }
  }
  for (const t of targets) {
    const rep = reports.get(t.name)!;
    if (opts.minSqnrDb !== undefined && rep.sqnrDb !== null && rep.sqnrDb < opts.minSqnrDb) {
      rep.reason = `sensitive: SQNR ${rep.sqnrDb.toFixed(1)} dB < ${opts.minSqnrDb} dB`;
      replacement.get(t.name)!.dispose();
      continue;
    }
    t.parent.replaceChild(t.key, replacement.get(t.name)!);
    t.layer.dispose();
    rep.quantized = scheme;
  }
  const total = batches.length ? outputSqnr() : null;
  refs.forEach((r) => r.dispose());
  copy.eval();
  return { model: copy, layers: [...reports.values()], sqnrDb: total };
}
