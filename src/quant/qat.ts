// Quantization-aware training: Linear/Conv2d layers that train in float but see their weights and inputs
// through fake quantization (quantize then dequantize, exactly the int8 scheme of the quantized layers), with
// the straight-through estimator for gradients (1 where the code needed no clamping, 0 elsewhere, as PyTorch).
// Input ranges are tracked as running min/max while training. convertQat then produces the real int8 model.
import { noGrad, quiet, record } from '../autograd/tape.js';
import { ArgumentError, describe } from '../errors.js';
import { Conv2d, Linear, convOptions } from '../nn/layers.js';
import { Module } from '../nn/module.js';
import { cloneModule } from '../nn/spec.js';
import { tensor } from '../ops/creation.js';
import { add, cast, clamp, eq, mul, sub } from '../ops/elementwise.js';
import { conv2d } from '../ops/conv.js';
import { reshape } from '../ops/movement.js';
import { assertTensor, type Tensor } from '../tensor/tensor.js';
import { quantCodes, quantizeWeightsInt8 } from './layers.js';
import { affineParams, childSlots, int8Layer } from './quantize.js';

/**
 * Fake quantization: the value of dequant(quant(x)) with scale (a number, or a tensor that broadcasts, e.g.
 * per channel) and zero point, by the kernels' rule (nearbyint(x * (1 / scale)) + zeroPoint, clamped to
 * [qmin, qmax]), and the straight-through gradient: 1 where that code is inside [qmin, qmax] before clamping, 0
 * elsewhere, as PyTorch's fake_quantize_per_tensor_affine / per_channel_affine (no gradient to the scale).
 * @example kn.quant.fakeQuant(kn.tensor([0.26, 5]), 0.1, 0, -127, 127).toList() // [0.30000001192092896, 5]
 */
export function fakeQuant(x: Tensor, scale: number | Tensor, zeroPoint: number, qmin: number, qmax: number): Tensor {
  assertTensor(x, 'fakeQuant x');
  if (typeof scale === 'number' && !(scale > 0))
    throw new ArgumentError(`fakeQuant scale must be > 0, got ${describe(scale)}`);
  if (!Number.isInteger(qmin) || !Number.isInteger(qmax) || qmin >= qmax)
    throw new ArgumentError(`fakeQuant needs integers qmin < qmax, got ${qmin} and ${qmax}`);
  if (!Number.isInteger(zeroPoint))
    throw new ArgumentError(`fakeQuant zeroPoint must be an integer, got ${describe(zeroPoint)}`);
  const [y, pass] = quiet(() => {
    const st = typeof scale === 'number' ? tensor(scale, [], { backend: x.backend }) : scale;
    const code = quantCodes(x, st).add(zeroPoint);
    const kept = clamp(code, qmin, qmax);
    return [mul(sub(kept, zeroPoint), st), cast(eq(kept, code), x.dtype)] as const; // 1 where nothing clamped
  });
  const out = record('fakeQuant', y, [x], [pass], (g, [m]) => [mul(g, m!)]);
  pass.dispose(); // the graph keeps its own view of the mask
  return out;
}

/** Running input range of a QAT layer (buffers, so checkpoints keep them). */
abstract class QatBase extends Module {
  readonly inputRange: Tensor;
  constructor(readonly rangeMomentum = 0.1) {
    super();
    this.inputRange = this.registerBuffer('inputRange', tensor([Infinity, -Infinity]));
  }
  /** Updates the running min/max in training, then fake-quantizes x with the current range (uint8, affine). */
  protected quantInput(x: Tensor): Tensor {
    if (this.training) {
      noGrad(() => {
        const lo = x.min().item(),
          hi = x.max().item();
        const [rlo, rhi] = Array.from(this.inputRange.toArray() as Float32Array) as [number, number];
        const m = this.rangeMomentum;
        const next = Number.isFinite(rlo) ? [rlo + m * (lo - rlo), rhi + m * (hi - rhi)] : [lo, hi];
        const t = tensor(next);
        this.inputRange.assign(t);
        t.dispose();
      });
    }
    const [lo, hi] = Array.from(this.inputRange.toArray() as Float32Array) as [number, number];
    if (!Number.isFinite(lo)) return x; // never trained: no range yet
    const { scale, zeroPoint } = affineParams([lo, hi]);
    return fakeQuant(x, scale, zeroPoint, 0, 255);
  }
  /** Fake-quantized weight: symmetric int8 per output channel. */
  protected quantWeight(w: Tensor): Tensor {
    const N = w.shape[0]!;
    const shape = [N, ...w.shape.slice(1).map(() => 1)];
    const s = noGrad(() => {
      const { q, scale } = quantizeWeightsInt8(w);
      q.dispose();
      const r = reshape(scale, shape);
      scale.dispose();
      return r;
    });
    const y = fakeQuant(w, s, 0, -127, 127);
    s.dispose();
    return y;
  }
}

/** Linear trained with fake-quantized weights and inputs. */
export class QatLinear extends QatBase {
  readonly weight: Tensor;
  readonly bias: Tensor | null;
  constructor(
    readonly inFeatures: number,
    readonly outFeatures: number,
    from?: Linear,
  ) {
    super();
    const src = from ?? new Linear(inFeatures, outFeatures);
    this.weight = this.registerParameter('weight', src.weight.detach().clone());
    this.bias = src.bias ? this.registerParameter('bias', src.bias.detach().clone()) : null;
    if (!from) src.dispose();
  }
  forward(x: Tensor): Tensor {
    const xq = this.quantInput(x);
    const wq = this.quantWeight(this.weight);
    const y = xq.matmul(wq.transpose());
    if (xq !== x) xq.dispose();
    wq.dispose();
    if (!this.bias) return y;
    const r = add(y, this.bias);
    y.dispose();
    return r;
  }
}

/** Conv2d trained with fake-quantized weights and inputs. */
export class QatConv2d extends QatBase {
  readonly weight: Tensor;
  readonly bias: Tensor | null;
  readonly opts: Conv2d['opts'];
  readonly inChannels: number;
  readonly outChannels: number;
  readonly kernelSize: [number, number];
  constructor(from: Conv2d) {
    super();
    this.weight = this.registerParameter('weight', from.weight.detach().clone());
    this.bias = from.bias ? this.registerParameter('bias', from.bias.detach().clone()) : null;
    this.opts = { ...from.opts };
    this.inChannels = from.inChannels;
    this.outChannels = from.outChannels;
    this.kernelSize = [from.weight.shape[2]!, from.weight.shape[3]!];
  }
  forward(x: Tensor): Tensor {
    const xq = this.quantInput(x);
    const wq = this.quantWeight(this.weight);
    const y = conv2d(xq, wq, this.bias, convOptions(this.opts));
    if (xq !== x) xq.dispose();
    wq.dispose();
    return y;
  }
}

function swapAll(model: Module, make: (m: Module) => Module | null): void {
  const slots = childSlots(model);
  for (const [name, m] of model.namedModules()) {
    const slot = slots.get(name);
    const n = slot ? make(m) : null;
    if (n) slot!.parent.replaceChild(slot!.key, n).dispose();
  }
}

/**
 * A copy of `model` whose Linear and Conv2d (groups 1) layers train with fake quantization. Train it as
 * usual (kn.train.fit), then call convertQat.
 */
export function prepareQat(model: Module): Module {
  if (!(model instanceof Module)) throw new ArgumentError(`prepareQat takes a kn.nn.Module, got ${describe(model)}`);
  const copy = cloneModule(model);
  swapAll(copy, (m) =>
    m instanceof Linear
      ? new QatLinear(m.inFeatures, m.outFeatures, m)
      : m instanceof Conv2d && (m.opts.groups ?? 1) === 1
        ? new QatConv2d(m)
        : null,
  );
  return copy;
}

/** The int8 model a QAT model stands for: QuantLinear/QuantConv2d with the learned input ranges. */
export function convertQat(model: Module): Module {
  if (!(model instanceof Module)) throw new ArgumentError(`convertQat takes a kn.nn.Module, got ${describe(model)}`);
  const targets = model.namedModules().filter(([n, m]) => n !== '' && m instanceof QatBase);
  if (!targets.length)
    throw new ArgumentError('convertQat: the model has no QAT layers (use kn.quant.prepareQat first)');
  swapAll(model, (m) => {
    if (!(m instanceof QatBase)) return null;
    const [lo, hi] = Array.from(m.inputRange.toArray() as Float32Array) as [number, number];
    const act = Number.isFinite(lo) ? affineParams([lo, hi]) : ('dynamic' as const);
    const q = m as QatLinear | QatConv2d;
    return int8Layer(q.weight, q.bias, act, q instanceof QatConv2d ? q.opts : {});
  });
  model.eval();
  return model;
}
