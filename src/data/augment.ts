// Augmentation on the fly: transforms of a batch (images [N, C, H, W] or table rows [N, F]) applied by a
// DataLoader or StreamingDataset as it yields each batch. Seeded per (loader seed, epoch, batch index), so an
// epoch's augmented batches are the same on every run and after a resume, and kiln's global generator is never
// touched. compose() moves each batch tensor to host memory once, runs the steps there (flips, noise and cutout in
// place; crops and rotations into one new buffer each) and makes one tensor of each at the end.
import { ArgumentError, DTypeError, ShapeError, checkOptions, describe } from '../errors.js';
import { tensor } from '../ops/creation.js';
import { pair } from '../ops/conv.js';
import { nameRecord } from '../records.js';
import { isTensor, type Tensor } from '../tensor/tensor.js';
import { permutation, type BatchTransform } from './loader.js';

export type { BatchTransform, TransformContext } from './loader.js';

/** A batch tensor in host memory while the steps of a compose() run. */
interface HostArray {
  data: Float32Array | Int32Array | Uint8Array | Int8Array;
  shape: number[];
  dtype: Tensor['dtype'];
}

/** What a step sees: the batch's arrays by name and the batch's generator. */
export interface AugmentContext {
  arrays: Map<string, HostArray>;
  rng: () => number;
}

/** One augmentation step (from kn.data.augment.*). */
export interface Augmentation {
  readonly name: string;
  apply(ctx: AugmentContext): void;
}

function floatArray(ctx: AugmentContext, key: string, what: string, ndim?: number): HostArray {
  const a = ctx.arrays.get(key);
  if (!a)
    throw new ArgumentError(
      `${what}: the batch has no '${key}' tensor; it has [${[...ctx.arrays.keys()].join(', ')}] (set key)`,
    );
  if (!(a.data instanceof Float32Array)) throw new DTypeError(`${what}: '${key}' must be float32, got ${a.dtype}`);
  if (ndim !== undefined && a.shape.length !== ndim)
    throw new ShapeError(`${what}: '${key}' must be ${ndim === 4 ? '[N, C, H, W]' : `${ndim}-D`}, got [${a.shape}]`);
  return a;
}

function prob(p: unknown, what: string): number {
  if (typeof p !== 'number' || !(p >= 0 && p <= 1))
    throw new ArgumentError(`${what} must be a probability in [0, 1], got ${describe(p)}`);
  return p;
}

function nonNeg(v: unknown, what: string): number {
  if (typeof v !== 'number' || !(v >= 0) || !Number.isFinite(v))
    throw new ArgumentError(`${what} must be a finite number >= 0, got ${describe(v)}`);
  return v;
}

/** A standard normal draw (Box-Muller) from a uniform generator. */
function normal(rng: () => number): number {
  const u = Math.max(rng(), 1e-300),
    v = rng();
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
}

/** A Gamma(a, 1) draw (Marsaglia-Tsang; boosted for a < 1). */
function gamma(a: number, rng: () => number): number {
  if (a < 1) return gamma(a + 1, rng) * Math.pow(Math.max(rng(), 1e-300), 1 / a);
  const d = a - 1 / 3,
    c = 1 / Math.sqrt(9 * d);
  for (;;) {
    let x: number, v: number;
    do {
      x = normal(rng);
      v = 1 + c * x;
    } while (v <= 0);
    v = v * v * v;
    const u = rng();
    if (u < 1 - 0.0331 * x ** 4 || Math.log(u) < 0.5 * x * x + d * (1 - v + Math.log(v))) return d * v;
  }
}

/**
 * Flips each image left-right with probability `horizontal` (default 0.5) and upside-down with `vertical` (default 0).
 * @example kn.data.augment.randomFlip({ horizontal: 1 }).name // "randomFlip"
 */
export function randomFlip(opts: { horizontal?: number; vertical?: number; key?: string } = {}): Augmentation {
  checkOptions(opts, 'randomFlip', ['horizontal', 'vertical', 'key']);
  const ph = prob(opts.horizontal ?? 0.5, 'randomFlip horizontal'),
    pv = prob(opts.vertical ?? 0, 'randomFlip vertical');
  const key = opts.key ?? 'x';
  return {
    name: 'randomFlip',
    apply(ctx) {
      const a = floatArray(ctx, key, 'randomFlip', 4);
      const [N, C, H, W] = a.shape as [number, number, number, number];
      const d = a.data;
      for (let n = 0; n < N; n++) {
        const h = ctx.rng() < ph,
          v = ctx.rng() < pv;
        for (let c = 0; c < C; c++) {
          const base = (n * C + c) * H * W;
          if (h) for (let y = 0; y < H; y++) d.subarray(base + y * W, base + y * W + W).reverse();
          if (v)
            for (let y = 0; y < H >> 1; y++) {
              const top = d.slice(base + y * W, base + y * W + W);
              d.copyWithin(base + y * W, base + (H - 1 - y) * W, base + (H - y) * W);
              d.set(top, base + (H - 1 - y) * W);
            }
        }
      }
    },
  };
}

/**
 * A random `size` (or [height, width]) window of each image after zero-padding it by `padding` on every side (the
 * CIFAR recipe: padding 4, crop back to 32).
 * @example kn.data.augment.randomCrop(28, { padding: 2 }).name // "randomCrop"
 */
export function randomCrop(
  size: number | readonly [number, number],
  opts: { padding?: number; key?: string } = {},
): Augmentation {
  checkOptions(opts, 'randomCrop', ['padding', 'key']);
  const [ch, cw] = pair(size ?? NaN, NaN, 'randomCrop size', 1);
  const pad = opts.padding ?? 0;
  if (!Number.isInteger(pad) || pad < 0)
    throw new ArgumentError(`randomCrop padding must be an integer >= 0, got ${describe(opts.padding)}`);
  const key = opts.key ?? 'x';
  return {
    name: 'randomCrop',
    apply(ctx) {
      const a = floatArray(ctx, key, 'randomCrop', 4);
      const [N, C, H, W] = a.shape as [number, number, number, number];
      if (ch > H + 2 * pad || cw > W + 2 * pad)
        throw new ShapeError(`randomCrop: a ${ch}x${cw} crop does not fit a ${H}x${W} image padded by ${pad}`);
      const src = a.data as Float32Array;
      const out = new Float32Array(N * C * ch * cw);
      for (let n = 0; n < N; n++) {
        const oy = Math.floor(ctx.rng() * (H + 2 * pad - ch + 1)) - pad,
          ox = Math.floor(ctx.rng() * (W + 2 * pad - cw + 1)) - pad;
        const x0 = Math.max(0, ox),
          x1 = Math.min(W, ox + cw);
        for (let c = 0; c < C; c++)
          for (let y = 0; y < ch; y++) {
            const sy = oy + y;
            if (sy < 0 || sy >= H || x1 <= x0) continue;
            const s = ((n * C + c) * H + sy) * W;
            out.set(src.subarray(s + x0, s + x1), ((n * C + c) * ch + y) * cw + (x0 - ox));
          }
      }
      a.data = out;
      a.shape = [N, C, ch, cw];
    },
  };
}

/**
 * Rotates each image by an angle drawn uniformly from [-degrees, degrees] about its centre (bilinear, `fill`
 * outside the image).
 * @example kn.data.augment.randomRotation(15).name // "randomRotation"
 */
export function randomRotation(degrees: number, opts: { fill?: number; key?: string } = {}): Augmentation {
  checkOptions(opts, 'randomRotation', ['fill', 'key']);
  const deg = nonNeg(degrees, 'randomRotation degrees');
  const fill = opts.fill ?? 0;
  const key = opts.key ?? 'x';
  return {
    name: 'randomRotation',
    apply(ctx) {
      const a = floatArray(ctx, key, 'randomRotation', 4);
      const [N, C, H, W] = a.shape as [number, number, number, number];
      const src = a.data as Float32Array;
      const out = new Float32Array(src.length);
      const cy = (H - 1) / 2,
        cx = (W - 1) / 2;
      for (let n = 0; n < N; n++) {
        const th = ((ctx.rng() * 2 - 1) * deg * Math.PI) / 180;
        const cs = Math.cos(th),
          sn = Math.sin(th);
        for (let y = 0; y < H; y++)
          for (let x = 0; x < W; x++) {
            // inverse map: where in the source this output pixel comes from
            const sx = cs * (x - cx) + sn * (y - cy) + cx,
              sy = -sn * (x - cx) + cs * (y - cy) + cy;
            const x0 = Math.floor(sx),
              y0 = Math.floor(sy);
            const fx = sx - x0,
              fy = sy - y0;
            for (let c = 0; c < C; c++) {
              const base = (n * C + c) * H * W;
              const px = (yy: number, xx: number): number =>
                yy >= 0 && yy < H && xx >= 0 && xx < W ? src[base + yy * W + xx]! : fill;
              out[base + y * W + x] =
                (1 - fy) * ((1 - fx) * px(y0, x0) + fx * px(y0, x0 + 1)) +
                fy * ((1 - fx) * px(y0 + 1, x0) + fx * px(y0 + 1, x0 + 1));
            }
          }
      }
      a.data = out;
    },
  };
}

/**
 * Cutout (DeVries & Taylor 2017): with probability `p` (default 1) zeroes (or `fill`s) a `size` x `size` square
 * centred at a uniform point of each image, clipped at the border.
 * @example kn.data.augment.cutout(8).name // "cutout"
 */
export function cutout(size: number, opts: { p?: number; fill?: number; key?: string } = {}): Augmentation {
  checkOptions(opts, 'cutout', ['p', 'fill', 'key']);
  if (!Number.isInteger(size) || size < 1)
    throw new ArgumentError(`cutout size must be a positive integer, got ${describe(size)}`);
  const p = prob(opts.p ?? 1, 'cutout p');
  const fill = opts.fill ?? 0;
  const key = opts.key ?? 'x';
  return {
    name: 'cutout',
    apply(ctx) {
      const a = floatArray(ctx, key, 'cutout', 4);
      const [N, C, H, W] = a.shape as [number, number, number, number];
      for (let n = 0; n < N; n++) {
        const on = ctx.rng() < p;
        const cy = Math.floor(ctx.rng() * H),
          cx = Math.floor(ctx.rng() * W);
        if (!on) continue;
        const y0 = Math.max(0, cy - (size >> 1)),
          y1 = Math.min(H, cy - (size >> 1) + size);
        const x0 = Math.max(0, cx - (size >> 1)),
          x1 = Math.min(W, cx - (size >> 1) + size);
        for (let c = 0; c < C; c++)
          for (let y = y0; y < y1; y++)
            a.data.fill(fill, ((n * C + c) * H + y) * W + x0, ((n * C + c) * H + y) * W + x1);
      }
    },
  };
}

/**
 * Adds Gaussian noise with standard deviation `std` to every value of a float batch tensor (images or table rows;
 * NaN stays NaN). For tables, `std` may be per feature ([F] values, e.g. 0.05 x each column's spread).
 * @example kn.data.augment.gaussianNoise(0.1).name // "gaussianNoise"
 */
export function gaussianNoise(std: number | readonly number[], opts: { key?: string; p?: number } = {}): Augmentation {
  checkOptions(opts, 'gaussianNoise', ['key', 'p']);
  const stds =
    typeof std === 'number'
      ? [nonNeg(std, 'gaussianNoise std')]
      : Array.isArray(std)
        ? std.map((s, i) => nonNeg(s, `gaussianNoise std[${i}]`))
        : null;
  if (!stds || stds.length === 0)
    throw new ArgumentError(`gaussianNoise std must be a number or a list per feature, got ${describe(std)}`);
  const p = prob(opts.p ?? 1, 'gaussianNoise p');
  const key = opts.key ?? 'x';
  return {
    name: 'gaussianNoise',
    apply(ctx) {
      const a = floatArray(ctx, key, 'gaussianNoise');
      const N = a.shape[0] ?? 1;
      const per = a.data.length / Math.max(N, 1);
      const last = a.shape.at(-1) ?? 1;
      if (stds.length > 1 && stds.length !== last)
        throw new ShapeError(`gaussianNoise: ${stds.length} std values for a last dimension of ${last}`);
      for (let n = 0; n < N; n++) {
        if (ctx.rng() >= p) continue;
        for (let i = n * per; i < (n + 1) * per; i++)
          a.data[i]! += stds[stds.length > 1 ? i % last : 0]! * normal(ctx.rng);
      }
    },
  };
}

/**
 * mixup (Zhang et al. 2018): each batch becomes lambda * batch + (1 - lambda) * (the batch in a random order), with
 * lambda ~ Beta(alpha, alpha); integer labels become the same mix of one-hot rows, float32 [N, numClasses], which
 * kn.nn.loss.crossEntropy takes as class probabilities.
 * @example kn.data.augment.mixup(0.2, { numClasses: 10 }).name // "mixup"
 */
export function mixup(alpha: number, opts: { numClasses: number; key?: string; targetKey?: string }): Augmentation {
  checkOptions(opts, 'mixup', ['numClasses', 'key', 'targetKey'], 'required');
  if (typeof alpha !== 'number' || !(alpha > 0) || !Number.isFinite(alpha))
    throw new ArgumentError(`mixup alpha must be a positive number, got ${describe(alpha)}`);
  const C = opts.numClasses;
  if (!Number.isInteger(C) || C < 2) throw new ArgumentError(`mixup needs numClasses >= 2, got ${describe(C)}`);
  const key = opts.key ?? 'x',
    tk = opts.targetKey ?? 'y';
  return {
    name: 'mixup',
    apply(ctx) {
      const a = floatArray(ctx, key, 'mixup');
      const y = ctx.arrays.get(tk);
      if (!y) throw new ArgumentError(`mixup: the batch has no '${tk}' labels (set targetKey)`);
      const N = a.shape[0]!;
      const g1 = gamma(alpha, ctx.rng),
        g2 = gamma(alpha, ctx.rng);
      const lam = g1 / (g1 + g2);
      const perm = permutation(N, ctx.rng);
      const per = a.data.length / Math.max(N, 1);
      const src = (a.data as Float32Array).slice();
      for (let n = 0; n < N; n++) {
        const m = perm[n]!;
        for (let i = 0; i < per; i++) a.data[n * per + i] = lam * src[n * per + i]! + (1 - lam) * src[m * per + i]!;
      }
      const soft = new Float32Array(N * C);
      const labelAt = (n: number): Float32Array => {
        if (y.shape.length === 2) return (y.data as Float32Array).subarray(n * C, n * C + C);
        const k = y.data[n]!;
        if (!Number.isInteger(k) || k < 0 || k >= C)
          throw new ArgumentError(`mixup: label ${k} of row ${n} is not in [0, ${C})`);
        const o = new Float32Array(C);
        o[k] = 1;
        return o;
      };
      if (y.shape.length === 2 && y.shape[1] !== C)
        throw new ShapeError(`mixup: soft labels [N, ${y.shape[1]}] for ${C} classes`);
      for (let n = 0; n < N; n++) {
        const u = labelAt(n),
          v = labelAt(perm[n]!);
        for (let c = 0; c < C; c++) soft[n * C + c] = lam * u[c]! + (1 - lam) * v[c]!;
      }
      ctx.arrays.set(tk, { data: soft, shape: [N, C], dtype: 'float32' });
    },
  };
}

/**
 * Chains augmentation steps into a batch transform for DataLoader / StreamingDataset (`transform` option). The
 * batch's tensors go to host memory once, through every step, and back once (on the batch's backend).
 * @example typeof kn.data.augment.compose(kn.data.augment.randomFlip(), kn.data.augment.cutout(4)) // "function"
 */
export function compose(...steps: Augmentation[]): BatchTransform {
  steps.forEach((s, i) => {
    if (!s || typeof s.apply !== 'function')
      throw new ArgumentError(`compose step ${i} is not a kn.data.augment step, got ${describe(s)}`);
  });
  return (batch, ctx) => {
    const arrays = new Map<string, HostArray>();
    let backend: Tensor['backend'] | undefined;
    for (const [k, t] of Object.entries(batch)) {
      if (!isTensor(t)) throw new ArgumentError(`batch entry '${k}' is not a Tensor`);
      backend ??= t.backend;
      arrays.set(k, { data: t.toArray() as HostArray['data'], shape: [...t.shape], dtype: t.dtype });
    }
    for (const s of steps) s.apply({ arrays, rng: ctx.rng });
    const out = nameRecord<Tensor>();
    for (const [k, a] of arrays) out[k] = tensor(a.data, a.shape, { dtype: a.dtype, backend });
    for (const t of Object.values(batch)) t.dispose();
    return out;
  };
}
