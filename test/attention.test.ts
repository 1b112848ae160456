// Attention, Transformer layers, sequence/pooling/residual layers and kn.models: the same numbers as PyTorch
// (test/ref/attention_torch.py, float64) on every backend, finite-difference gradients, masks and dropout,
// architecture specs both ways (including hostile ones), quantization and pruning of the Linear layers
// inside attention, and the model zoo's shapes, saving and sampling.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as kn from '../src/index.js';
import { KVDecoder } from '../src/models/decode.js';
import { allclose, nativeBackends, onBackend, randomArray, rng, sinFill, throwsKiln, tempDir } from './helpers.js';

const BACKENDS = ['js', ...nativeBackends()] as kn.BackendName[];
const close = (a: ArrayLike<number>, e: ArrayLike<number>, atol = 1e-5, rtol = 1e-4, what = ''): void => {
  const r = allclose(a, e, atol, rtol);
  assert.ok(r.ok, `${what} ${r.message}`);
};
const f64 = (t: kn.Tensor): number[] => Array.from(t.toFloat64Array());
const gc = (f: (...x: kn.Tensor[]) => kn.Tensor, xs: kn.Tensor[], tol = 2e-3): void => {
  const r = kn.gradcheck(f, xs, { atol: tol, rtol: tol });
  assert.ok(r.ok, `gradcheck: max abs err ${r.maxAbsErr} at ${JSON.stringify(r.worst)}`);
};
const rnd = (shape: number[], seed: number, scale = 1): kn.Tensor =>
  kn.tensor(
    randomArray(
      rng(seed),
      shape.reduce((a, b) => a * b, 1),
    ).map((v) => v * scale),
    shape,
  );

// ---- PyTorch reference (test/ref/attention_torch.py) ----
interface Ref {
  N: number;
  L: number;
  S: number;
  E: number;
  H: number;
  F: number;
  cases: Record<string, { y: number[]; w?: number[] }>;
}
const ref = JSON.parse(readFileSync(new URL('./ref/attention_torch.json', import.meta.url), 'utf8')) as Ref;
const { N, L, S, E, H, F } = ref;
const fill = sinFill;
function mhaState(prefix: string, seed: number): Record<string, kn.Tensor> {
  const sd: Record<string, kn.Tensor> = {};
  ['q_proj', 'k_proj', 'v_proj'].forEach((n, j) => {
    sd[`${prefix}${n}.weight`] = fill([E, E], seed + j);
    sd[`${prefix}${n}.bias`] = fill([E], seed + 10 + j);
  });
  sd[`${prefix}out_proj.weight`] = fill([E, E], seed + 3);
  sd[`${prefix}out_proj.bias`] = fill([E], seed + 13);
  return sd;
}
function layerState(seed: number, decoder: boolean): Record<string, kn.Tensor> {
  const sd = { ...mhaState('self_attn.', seed), ...(decoder ? mhaState('multihead_attn.', seed + 20) : {}) };
  sd['linear1.weight'] = fill([F, E], seed + 4);
  sd['linear1.bias'] = fill([F], seed + 14);
  sd['linear2.weight'] = fill([E, F], seed + 5);
  sd['linear2.bias'] = fill([E], seed + 15);
  (decoder ? [1, 2, 3] : [1, 2]).forEach((k, i) => {
    sd[`norm${k}.weight`] = fill([E], seed + 6 + i);
    sd[`norm${k}.bias`] = fill([E], seed + 16 + i);
  });
  return sd;
}

for (const b of BACKENDS) {
  test(`MultiheadAttention and Transformer layers give PyTorch's numbers (${b})`, () =>
    onBackend(b, () =>
      kn.tidy(() => {
        const x = fill([N, L, E], 0.5),
          mem = fill([N, S, E], 0.9);
        const mha = new kn.nn.MultiheadAttention(E, H, { batchFirst: true });
        mha.loadStateDict(mhaState('', 1.0));
        let r = mha.attend(x, x, x, { needWeights: true });
        close(f64(r.output), ref.cases.mha_self!.y, 2e-5, 1e-4, 'self-attention');
        close(f64(r.weights!), ref.cases.mha_self!.w!, 2e-5, 1e-4, 'weights');
        const pad = kn.tensor(new Uint8Array([0, 0, 0, 1, 0, 1, 0, 0]), [2, 4], { dtype: 'bool' });
        r = mha.attend(x, mem, mem, { keyPaddingMask: pad, needWeights: true });
        close(f64(r.output), ref.cases.mha_cross_pad!.y, 2e-5, 1e-4, 'cross-attention with padding');
        close(f64(r.weights!), ref.cases.mha_cross_pad!.w!, 2e-5, 1e-4, 'padded weights');
        close(f64(mha.attend(x, x, x, { isCausal: true }).output), ref.cases.mha_causal!.y, 2e-5, 1e-4, 'causal');
        // PyTorch's bool attn_mask (true = not allowed) gives the same as isCausal
        const upper = kn.tensor(new Uint8Array([0, 1, 1, 0, 0, 1, 0, 0, 0]), [3, 3], { dtype: 'bool' });
        close(f64(mha.attend(x, x, x, { attnMask: upper }).output), ref.cases.mha_causal!.y, 2e-5, 1e-4, 'bool mask');
        // sequence-first layout (PyTorch's default) is the same computation transposed
        const seqFirst = new kn.nn.MultiheadAttention(E, H);
        seqFirst.loadStateDict(mhaState('', 1.0));
        const ys = seqFirst.call(x.transpose(0, 1).contiguous()).transpose(0, 1).contiguous();
        close(f64(ys), ref.cases.mha_self!.y, 2e-5, 1e-4, 'sequence-first');
        for (const pre of [false, true]) {
          const opts = { dimFeedforward: F, dropout: 0, batchFirst: true, normFirst: pre };
          const enc = new kn.nn.TransformerEncoderLayer(E, H, opts);
          enc.loadStateDict(layerState(2.0, false));
          enc.eval();
          close(f64(enc.call(x)), ref.cases[pre ? 'enc_pre' : 'enc_post']!.y, 5e-5, 1e-4, `encoder pre=${pre}`);
          const dec = new kn.nn.TransformerDecoderLayer(E, H, opts);
          dec.loadStateDict(layerState(3.0, true));
          dec.eval();
          close(f64(dec.decode(x, mem)), ref.cases[pre ? 'dec_pre' : 'dec_post']!.y, 5e-5, 1e-4, `decoder pre=${pre}`);
        }
        const g = new kn.nn.TransformerEncoderLayer(E, H, {
          dimFeedforward: F,
          dropout: 0,
          batchFirst: true,
          activation: 'gelu',
        });
        g.loadStateDict(layerState(2.0, false));
        close(f64(g.call(x)), ref.cases.enc_gelu!.y, 5e-5, 1e-4, 'gelu encoder');
      }),
    ));

  test(`PyTorch's own Transformer state dict (fused in_proj) loads strictly (${b})`, async () => {
    const file = new URL('./ref/attention_torch.safetensors', import.meta.url).pathname;
    const theirs = await kn.io.load(file, { backend: b });
    onBackend(b, () =>
      kn.tidy(() => {
        assert.equal(theirs['self_attn.in_proj_weight']!.shape, [3 * E, E]);
        const dec = new kn.nn.TransformerDecoderLayer(E, H, { dimFeedforward: F, dropout: 0, batchFirst: true });
        assert.equal(dec.loadStateDict(theirs), { missing: [], unexpected: [] });
        dec.eval();
        const x = fill([N, L, E], 0.5),
          mem = fill([N, S, E], 0.9);
        close(f64(dec.decode(x, mem)), ref.cases.dec_post!.y, 5e-5, 1e-4, 'decoder from PyTorch state');
        // k_proj's rows are in_proj_weight's second third
        const k = f64(dec.stateDict()['self_attn.k_proj.weight']!);
        assert.equal(k, Array.from(theirs['self_attn.in_proj_weight']!.toFloat64Array()).slice(E * E, 2 * E * E));
        const bad = { ...theirs, 'self_attn.in_proj_weight': kn.zeros([2 * E, E]) };
        throwsKiln(
          () => dec.loadStateDict(bad),
          kn.ShapeError,
          new RegExp(`'self_attn.in_proj_weight' has shape \\[${2 * E}, ${E}\\], expected \\[${3 * E}, ${E}\\]`),
        );
        const none: Record<string, kn.Tensor> = { ...theirs };
        delete none['multihead_attn.in_proj_bias'];
        throwsKiln(
          () => dec.loadStateDict(none),
          kn.ValidationError,
          /missing \[multihead_attn\.q_proj\.bias, multihead_attn\.k_proj\.bias, multihead_attn\.v_proj\.bias\]/,
        );
        Object.values(theirs).forEach((t) => t.dispose());
      }),
    );
  });

  test(`attention, rotary, Conv1d, pooling and residual layers pass gradient checks (${b})`, () =>
    onBackend(b, () =>
      kn.tidy(() => {
        // gradcheck evaluates f on js too: masks and modules are made on the backend of its inputs, modules
        // from the same seed so both sides hold the same weights
        const at = (x: kn.Tensor, t: kn.Tensor): kn.Tensor => (t.backend === x.backend ? t : t.to(x.backend));
        const mod =
          (make: () => kn.nn.Module) =>
          (x: kn.Tensor | undefined): kn.Tensor =>
            onBackend(x!.backend, () => {
              kn.seed(3);
              return make();
            }).call(x!);
        const q = rnd([2, 3, 4], 1, 0.5),
          k = rnd([2, 5, 4], 2, 0.5),
          v = rnd([2, 5, 3], 3, 0.5);
        gc((q, k, v) => kn.nn.scaledDotProductAttention(q!, k!, v!), [q, k, v]);
        const q2 = rnd([2, 4, 4], 4, 0.5);
        gc((q, v) => kn.nn.scaledDotProductAttention(q!, q!, v!, { isCausal: true }), [q2, rnd([2, 4, 3], 5)]);
        const additive = rnd([3, 5], 6);
        gc(
          (q, k, v) => kn.nn.scaledDotProductAttention(q!, k!, v!, { attnMask: at(q!, additive), scale: 0.7 }),
          [q, k, v],
        );
        gc((x) => kn.nn.applyRotary(x!, { offset: 2 }), [rnd([2, 3, 4], 7)]);
        gc(
          mod(() => new kn.nn.MultiheadAttention(4, 2, { batchFirst: true, rotary: true, causal: true })),
          [rnd([2, 3, 4], 8)],
        );
        gc(
          mod(() => new kn.nn.TransformerEncoderLayer(4, 2, { dimFeedforward: 6, dropout: 0, normFirst: true })),
          [rnd([3, 2, 4], 9)],
          3e-3,
        );
        gc(
          mod(() => new kn.nn.Linear(4, 3)),
          [rnd([2, 3, 4], 10)],
        ); // a batch of sequences through one weight
        const w = rnd([5, 4], 12),
          a = rnd([2, 3, 4], 11);
        gc((w) => kn.matmul(at(w!, a), w!.transpose()), [w]);
        gc(
          mod(() => new kn.nn.Conv1d(2, 3, 3, { stride: 2, padding: 1, dilation: 1 })),
          [rnd([2, 2, 7], 13)],
        );
        gc(
          mod(() => new kn.nn.AdaptiveAvgPool2d([2, 3])),
          [rnd([1, 2, 5, 7], 14)],
        );
        gc(
          mod(() => new kn.nn.AvgPool2d(2, { stride: 1 })),
          [rnd([1, 2, 4, 4], 15)],
        );
        for (const mode of ['mean', 'max', 'first', 'last'] as const)
          gc(
            mod(() => new kn.nn.SequencePool(mode)),
            [rnd([2, 3, 4], 16)],
          );
        gc(
          mod(() => new kn.nn.Residual(new kn.nn.Sequential(new kn.nn.Linear(4, 4), new kn.nn.Tanh()))),
          [rnd([2, 4], 17)],
        );
        gc(
          mod(
            () =>
              new kn.nn.Sequential(
                new kn.nn.LearnedPositionalEmbedding(6, 4),
                new kn.nn.SinusoidalPositionalEncoding(4),
              ),
          ),
          [rnd([2, 3, 4], 18)],
        );
      }),
    ));
}

test("the fused attention kernel gives the ops path's outputs and gradients, in memory linear in length", () =>
  kn.tidy(() => {
    for (const b of BACKENDS)
      onBackend(b, () => {
        kn.seed(12);
        const q = rnd([2, 3, 70, 8], 1),
          k = rnd([2, 3, 90, 8], 2),
          v = rnd([2, 3, 90, 5], 3),
          g = rnd([2, 3, 70, 5], 4);
        const bits = Uint8Array.from({ length: 2 * 90 }, (_, i) => (i % 5 === 1 ? 0 : 1));
        const allowed = kn.tensor(bits, [2, 1, 1, 90], { dtype: 'bool' });
        // the same mask as an additive float tensor that requires grad takes the ops path
        const additive = kn.where(allowed, 0, -Infinity);
        additive.requiresGrad = true;
        const run = (mask: kn.Tensor): number[][] => {
          const [qq, kk, vv] = [q, k, v].map((t) => {
            const c = t.clone();
            c.requiresGrad = true;
            return c;
          }) as [kn.Tensor, kn.Tensor, kn.Tensor];
          const o = kn.nn.scaledDotProductAttention(qq, kk, vv, { attnMask: mask, isCausal: true, scale: 0.3 });
          o.mul(g).sum().backward();
          return [o, qq.grad!, kk.grad!, vv.grad!].map(f64);
        };
        const fused = run(allowed),
          ops = run(additive);
        ['output', 'dq', 'dk', 'dv'].forEach((n, i) => close(fused[i]!, ops[i]!, 2e-5, 1e-4, `${b} ${n}`));
      });
    // memory: forward and backward at L = S = 1024 never hold an L x S matrix (4 MiB); the ops path holds several
    const L = 1024;
    const q = rnd([1, L, 16], 5),
      k = rnd([1, L, 16], 6),
      v = rnd([1, L, 16], 7);
    const peak = (mask: kn.Tensor | null): number => {
      kn.resetPeakMemory();
      const base = kn.memory().numBytes;
      kn.tidy(() => {
        const [qq, kk, vv] = [q, k, v].map((t) => {
          const c = t.clone();
          c.requiresGrad = true;
          return c;
        }) as [kn.Tensor, kn.Tensor, kn.Tensor];
        kn.nn.scaledDotProductAttention(qq, kk, vv, { isCausal: true, attnMask: mask }).sum().backward();
      });
      return kn.memory().peakBytes - base;
    };
    const zero = kn.zeros([L, L]);
    zero.requiresGrad = true;
    const fusedPeak = peak(null),
      opsPeak = peak(zero);
    assert.ok(fusedPeak < 1 << 20, `fused attention peak ${fusedPeak} bytes`);
    assert.ok(opsPeak > 4 * L * L, `ops path peak ${opsPeak} bytes`);
  }));

// A query row whose keys are all masked (a padded query with padded keys, a prefix mask): PyTorch's SDPA gives
// zeros since 2.5 (its _safe_softmax) where softmax over -inf gives NaN, and the row passes no gradient back. The
// fused kernel of every backend and the ops path (a float mask that requires grad) must agree with that, and the
// gradients must be those of the same attention without the dead rows.
test('a query row with every key masked gives zeros and passes no gradient, fused and in ops', () =>
  kn.tidy(() => {
    for (const b of BACKENDS)
      onBackend(b, () => {
        const [B, Lq, Sk, D, Dv] = [2, 5, 7, 6, 3];
        const q = rnd([B, Lq, D], 21),
          k = rnd([B, Sk, D], 22),
          v = rnd([B, Sk, Dv], 23),
          g = rnd([B, Lq, Dv], 24);
        const dead = (bb: number, i: number): boolean => (bb === 0 && i === 1) || (bb === 1 && (i === 0 || i === 4));
        const bits = Uint8Array.from({ length: B * Lq * Sk }, (_, n) => {
          const bb = Math.floor(n / (Lq * Sk)),
            i = Math.floor(n / Sk) % Lq;
          return dead(bb, i) ? 0 : n % 3 === 0 ? 0 : 1;
        });
        const allowed = kn.tensor(bits, [B, Lq, Sk], { dtype: 'bool' });
        const grads = (mask: kn.Tensor, qs: kn.Tensor, gs: kn.Tensor): number[][] => {
          const [qq, kk, vv] = [qs, k, v].map((t) => {
            const c = t.clone();
            c.requiresGrad = true;
            return c;
          }) as [kn.Tensor, kn.Tensor, kn.Tensor];
          const o = kn.nn.scaledDotProductAttention(qq, kk, vv, { attnMask: mask, scale: 0.4 });
          o.mul(gs).sum().backward();
          return [o, qq.grad!, kk.grad!, vv.grad!].map(f64);
        };
        const additive = kn.where(allowed, 0, -Infinity);
        additive.requiresGrad = true;
        const fused = grads(allowed, q, g),
          ops = grads(additive, q, g);
        // the live rows alone: batch 0 without row 1, batch 1 without rows 0 and 4 (padded back to 4 rows with a
        // copy of a live row whose output gradient is 0, so it adds nothing)
        const live = [
          [0, 2, 3, 4, 0],
          [1, 2, 3, 1, 1],
        ];
        const pick = (t: kn.Tensor, zeroPad: boolean): kn.Tensor =>
          kn.stack(
            live.map((rows, bb) =>
              kn.stack(
                rows.map((i, r) => {
                  const row = t.slice([bb, i, 0], [bb + 1, i + 1, t.shape[2]!]).reshape([t.shape[2]!]);
                  return zeroPad && r >= (bb === 0 ? 4 : 3) ? row.mul(0) : row;
                }),
              ),
            ),
          );
        const liveMask = pick(allowed.cast('int32'), false).cast('bool');
        const want = grads(liveMask, pick(q, false), pick(g, true));
        for (const [name, got] of [
          ['fused', fused],
          ['ops', ops],
        ] as const) {
          const [o, dq, dk, dv] = got as [number[], number[], number[], number[]];
          assert.ok([...o, ...dq, ...dk, ...dv].every(Number.isFinite), `${b} ${name}: all finite`);
          for (let bb = 0; bb < B; bb++)
            for (let i = 0; i < Lq; i++) {
              const out = o.slice((bb * Lq + i) * Dv, (bb * Lq + i + 1) * Dv);
              const gq = dq.slice((bb * Lq + i) * D, (bb * Lq + i + 1) * D);
              if (dead(bb, i)) {
                assert.equal(out, [0, 0, 0], `${b} ${name}: output of dead row [${bb}, ${i}]`);
                assert.ok(
                  gq.every((x) => x === 0),
                  `${b} ${name}: dq of dead row [${bb}, ${i}]`,
                );
              } else {
                const r = live[bb]!.indexOf(i);
                close(out, want[0]!.slice((bb * 5 + r) * Dv, (bb * 5 + r + 1) * Dv), 1e-6, 1e-5, `${b} ${name} out`);
                close(gq, want[1]!.slice((bb * 5 + r) * D, (bb * 5 + r + 1) * D), 1e-6, 1e-5, `${b} ${name} dq`);
              }
            }
          close(dk, want[2]!, 1e-6, 1e-5, `${b} ${name} dk`);
          close(dv, want[3]!, 1e-6, 1e-5, `${b} ${name} dv`);
        }
        // gradcheck evaluates on the float64 reference backend; the inputs move there, the mask and g follow
        const at = (t: kn.Tensor, like: kn.Tensor): kn.Tensor => t.to(like.backend);
        gc(
          (qq, kk, vv) =>
            kn.nn
              .scaledDotProductAttention(qq, kk, vv, { attnMask: at(allowed, qq) })
              .mul(at(g, qq))
              .sum(),
          [q.clone(), k.clone(), v.clone()],
        );
      });
  }));

test('Conv1d and the pooling layers compute their definitions', () =>
  kn.tidy(() => {
    kn.seed(2);
    const c = new kn.nn.Conv1d(2, 3, 3, { stride: 2, padding: 1, dilation: 2, groups: 1 });
    const x = rnd([2, 2, 9], 1);
    const X = x.toFloat64Array(),
      W = c.weight.toFloat64Array(),
      B = c.bias!.toFloat64Array();
    const y = c.call(x);
    const Lout = Math.floor((9 + 2 - 2 * 2 - 1) / 2) + 1;
    assert.equal(y.shape, [2, 3, Lout]);
    const want: number[] = [];
    for (let n = 0; n < 2; n++)
      for (let o = 0; o < 3; o++)
        for (let t = 0; t < Lout; t++) {
          let s = B[o]!;
          for (let ci = 0; ci < 2; ci++)
            for (let j = 0; j < 3; j++) {
              const p = t * 2 - 1 + j * 2;
              if (p >= 0 && p < 9) s += X[n * 18 + ci * 9 + p]! * W[o * 6 + ci * 3 + j]!;
            }
          want.push(s);
        }
    close(f64(y), want);
    // adaptive windows [floor(i n / out), ceil((i + 1) n / out)) as PyTorch
    const img = rnd([1, 1, 5, 7], 2);
    const I = img.toFloat64Array();
    const out: number[] = [];
    for (let i = 0; i < 2; i++)
      for (let j = 0; j < 3; j++) {
        const [r0, r1] = [Math.floor((i * 5) / 2), Math.ceil(((i + 1) * 5) / 2)];
        const [c0, c1] = [Math.floor((j * 7) / 3), Math.ceil(((j + 1) * 7) / 3)];
        let s = 0;
        for (let r = r0; r < r1; r++) for (let cc = c0; cc < c1; cc++) s += I[r * 7 + cc]!;
        out.push(s / ((r1 - r0) * (c1 - c0)));
      }
    close(f64(new kn.nn.AdaptiveAvgPool2d([2, 3]).call(img)), out);
    close(f64(new kn.nn.AdaptiveAvgPool2d(1).call(img)), [I.reduce((a, b) => a + b, 0) / 35]);
    assert.equal(new kn.nn.GlobalAvgPool2d().call(rnd([2, 3, 4, 4], 3)).shape, [2, 3]);
    const seq = rnd([2, 3, 4], 4);
    const Sq = seq.toFloat64Array();
    close(f64(new kn.nn.SequencePool('first').call(seq)), [...Sq.slice(0, 4), ...Sq.slice(12, 16)]);
    close(f64(new kn.nn.SequencePool('last', { batchFirst: false }).call(seq)), Array.from(Sq.slice(12, 24)));
    throwsKiln(() => new kn.nn.Residual(new kn.nn.Linear(4, 3)).call(kn.ones([2, 4])), kn.ShapeError, /shortcut/);
  }));

test('masks: padded keys and future positions get zero weight; dropout only in training', () =>
  kn.tidy(() => {
    kn.seed(5);
    const mha = new kn.nn.MultiheadAttention(8, 2, { batchFirst: true, dropout: 0.5 });
    mha.eval();
    const x = rnd([2, 4, 8], 1);
    const pad = kn.tensor(new Uint8Array([0, 0, 1, 1, 0, 0, 0, 1]), [2, 4], { dtype: 'bool' });
    const w = mha.attend(x, x, x, { keyPaddingMask: pad, isCausal: true, needWeights: true }).weights!;
    const W = w.toFloat64Array(),
      P = [0, 0, 1, 1, 0, 0, 0, 1];
    for (let n = 0; n < 2; n++)
      for (let i = 0; i < 4; i++) {
        let row = 0;
        for (let j = 0; j < 4; j++) {
          const v = W[n * 16 + i * 4 + j]!;
          row += v;
          if (j > i || P[n * 4 + j]) assert.is(v, 0, `weight of a masked pair [${n}, ${i}, ${j}]`);
        }
        assert.ok(Math.abs(row - 1) < 1e-5, `row sums to 1: ${row}`);
      }
    // changing a padded key's value leaves every output alone
    const x2 = x.toFloat64Array();
    x2[2 * 8] = x2[2 * 8]! + 5; // batch 0, position 2 (padded)
    const a = mha.attend(x, x, x, { keyPaddingMask: pad }).output;
    const xb = kn.tensor(Float32Array.from(x2), [2, 4, 8]);
    const bq = mha.attend(x, xb, xb, { keyPaddingMask: pad }).output;
    close(f64(bq), f64(a), 1e-6, 1e-6, 'padded key ignored');
    const e1 = f64(mha.call(x)),
      e2 = f64(mha.call(x));
    assert.equal(e1, e2, 'eval is deterministic');
    mha.train();
    assert.not.equal(f64(mha.call(x)), e1, 'training mode drops attention weights');
    throwsKiln(
      () => mha.attend(x, x, x, { keyPaddingMask: kn.ones([2, 4]) }),
      kn.DTypeError,
      /keyPaddingMask must be a bool/,
    );
    throwsKiln(() => mha.attend(x, x, x, { attnMask: kn.ones([3, 3]) }), kn.ShapeError, /attnMask must be \[4, 4\]/);
    throwsKiln(() => mha.call(kn.ones([2, 4, 6])), kn.ShapeError, /last dimension is 8/);
    throwsKiln(() => new kn.nn.MultiheadAttention(6, 4), kn.ArgumentError, /divisible by numHeads/);
    throwsKiln(
      () => new kn.nn.TransformerDecoderLayer(8, 2).call(kn.ones([2, 3, 8])),
      kn.ArgumentError,
      /decode\(tgt, memory\)/,
    );
    throwsKiln(
      () => new kn.nn.LearnedPositionalEmbedding(4, 8).call(kn.ones([1, 5, 8])),
      kn.ShapeError,
      /exceeds maxLen 4/,
    );
  }));

test('specs: every new layer round-trips, hostile specs are refused before allocating', async () => {
  kn.seed(4);
  const models: [kn.nn.Module, kn.Tensor][] = [
    [
      kn.models.transformerClassifier({ vocabSize: 20, numClasses: 3, dModel: 8, nHead: 2, maxLen: 16 }),
      kn.randint([2, 5], 0, 20),
    ],
    [kn.models.charLM({ vocabSize: 12, blockSize: 8, dModel: 8, nHead: 2, numLayers: 1 }), kn.randint([2, 6], 0, 12)],
    [kn.models.resnet({ blocks: 1, widths: [4, 8] }), kn.randn([2, 3, 8, 8])],
    [kn.models.lenet5({ activation: 'tanh' }), kn.randn([1, 1, 28, 28])],
    [
      new kn.nn.Sequential(
        new kn.nn.Conv1d(3, 4, 3, { padding: 1 }),
        new kn.nn.ReLU(),
        new kn.nn.Conv1d(4, 4, 3, { groups: 2 }),
      ),
      kn.randn([2, 3, 9]),
    ],
    [
      new kn.nn.Sequential(
        new kn.nn.SinusoidalPositionalEncoding(8, 32, { batchFirst: false }),
        new kn.nn.TransformerEncoderLayer(8, 2, { dimFeedforward: 8, rotary: true }),
        new kn.nn.SequencePool('max', { batchFirst: false }),
      ),
      kn.randn([5, 2, 8]),
    ],
    [
      new kn.nn.Sequential(
        new kn.nn.AvgPool2d(2, { padding: 1, countIncludePad: false }),
        new kn.nn.AdaptiveAvgPool2d([2, 3]),
      ),
      kn.randn([1, 2, 6, 6]),
    ],
  ];
  const dir = tempDir('kiln-attn-');
  for (const [i, [m, x]] of models.entries()) {
    m.eval();
    const spec = kn.nn.toSpec(m);
    const copy = kn.nn.fromSpec(JSON.parse(JSON.stringify(spec)));
    assert.equal(kn.nn.toSpec(copy), spec);
    copy.loadStateDict(m.stateDict());
    copy.eval();
    close(f64(copy.call(x)), f64(m.call(x)), 1e-6, 1e-6, `model ${i}`);
    const file = join(dir, `m${i}.safetensors`);
    await kn.io.save(file, m);
    const { model: loaded } = await kn.io.loadModel(file);
    loaded.eval();
    close(f64(loaded.call(x)), f64(m.call(x)), 1e-6, 1e-6, `model ${i} from its file`);
  }
  const mhaSpec = kn.nn.toSpec(new kn.nn.MultiheadAttention(8, 2)) as { layers: unknown[] } & Record<string, unknown>;
  const bad = (patch: Record<string, unknown>, re: RegExp): void =>
    throwsKiln(() => kn.nn.fromSpec({ ...mhaSpec, ...patch }), kn.FormatError, re);
  bad({ numHeads: 3 }, /divisible by numHeads/);
  bad({ layers: mhaSpec.layers.slice(0, 3) }, /list of 4 layer specs/);
  bad({ layers: [...mhaSpec.layers.slice(0, 3), { type: 'ReLU' }] }, /must be a Linear \(the layer's out_proj\)/);
  const wide = { type: 'Linear', inFeatures: 8, outFeatures: 9, bias: true };
  bad({ layers: [wide, ...mhaSpec.layers.slice(1)] }, /q_proj's outFeatures must be 8/);
  bad({ dropout: 1 }, /dropout/);
  throwsKiln(
    () => kn.nn.fromSpec({ type: 'TransformerEncoderLayer', dModel: 1e6, nHead: 1, layers: [] }),
    kn.FormatError,
    /list of 8 layer specs/,
  );
  throwsKiln(
    () =>
      kn.nn.fromSpec({
        type: 'LearnedPositionalEmbedding',
        maxLen: 1e6,
        dModel: 1e6,
      }),
    kn.FormatError,
    /parameter values/,
  );
  throwsKiln(() => kn.nn.fromSpec({ type: 'Residual', layers: [] }), kn.FormatError, /body/);
  throwsKiln(() => kn.nn.fromSpec({ type: 'SequencePool', mode: 'median' }), kn.FormatError, /'mode'/);
});

test('quantization and pruning reach the Linear layers inside attention; the quantized model saves', async () => {
  kn.seed(6);
  const m = kn.models.transformerClassifier({ vocabSize: 30, numClasses: 4, dModel: 32, nHead: 4, maxLen: 16 });
  m.eval();
  const x = kn.randint([8, 12], 0, 30);
  const calib = [kn.randint([8, 12], 0, 30)];
  const { model: q } = kn.quant.quantize(m, { scheme: 'int8', calibration: calib });
  const names = q
    .namedModules()
    .filter(([, l]) => l.constructor.name === 'QuantLinear')
    .map(([n]) => n);
  assert.ok(names.includes('2.self_attn.q_proj') && names.includes('3.self_attn.out_proj'), names.join(' '));
  assert.is(names.length, 2 * 6 + 1, 'four projections and two feed-forward Linears per layer, plus the head');
  const want = f64(m.call(x)),
    got = f64(q.call(x));
  let s = 0,
    n = 0;
  for (let i = 0; i < want.length; i++) {
    s += want[i]! ** 2;
    n += (want[i]! - got[i]!) ** 2;
  }
  const sqnr = 10 * Math.log10(s / n);
  assert.ok(sqnr > 20, `int8 transformer vs float SQNR ${sqnr.toFixed(1)} dB`);
  const file = join(tempDir('kiln-attnq-'), 'q.safetensors');
  await kn.io.save(file, q);
  const { model: back } = await kn.io.loadModel(file);
  close(f64(back.call(x)), got, 1e-6, 1e-6, 'quantized model from its file');
  kn.prune.magnitude(m, { amount: 0.5, scope: 'global' });
  const attnW = m
    .namedParameters()
    .find(([k]) => k === '2.self_attn.k_proj.weight')![1]
    .toFloat64Array();
  const zeros = attnW.filter((v) => v === 0).length / attnW.length;
  assert.ok(zeros > 0.2, `attention projections are pruned too (${(zeros * 100).toFixed(0)}% zeros)`);
});

test('kn.models: shapes, parameter counts, training step and seeded sampling', () => {
  kn.seed(7);
  assert.equal(kn.models.mlp(784, [256], 10).call(kn.zeros([2, 784])).shape, [2, 10]);
  assert.is(kn.models.resnet().numParameters() > 0.26e6 && kn.models.resnet().numParameters() < 0.28e6, true);
  assert.is(kn.models.lenet5().numParameters(), 61706);
  const lm = kn.models.charLM({ vocabSize: 6, blockSize: 8, dModel: 16, nHead: 2, numLayers: 1, dropout: 0 });
  // learns a repeating pattern quickly: next token = (token + 1) mod 6
  const opt = new kn.optim.Adam(lm.parameters(), { lr: 1e-2 });
  const seqs = Int32Array.from({ length: 4 * 9 }, (_, i) => ((i % 9) + Math.floor(i / 9)) % 6);
  const xs = new Int32Array(32),
    ys = new Int32Array(32);
  for (let r = 0; r < 4; r++) {
    xs.set(seqs.subarray(r * 9, r * 9 + 8), r * 8);
    ys.set(seqs.subarray(r * 9 + 1, r * 9 + 9), r * 8);
  }
  let first = 0,
    last = 0;
  for (let step = 0; step < 60; step++) {
    last = kn.tidy(() => {
      const loss = kn.nn.loss.crossEntropy(lm.call(kn.tensor(xs, [4, 8])).reshape([32, 6]), kn.tensor(ys, [32]));
      opt.zeroGrad();
      loss.backward();
      opt.step();
      return loss.item();
    });
    if (step === 0) first = last;
  }
  assert.ok(last < 0.1 * first, `loss ${first} -> ${last}`);
  kn.seed(11);
  // every step's tensors are freed as it ends (42 a step were left to the garbage collector)
  const live = kn.memory().numTensors;
  const a = kn.models.generate(lm, [2], { maxNewTokens: 6, temperature: 0.5, blockSize: 8 });
  assert.is(kn.memory().numTensors, live, 'generate leaves no tensors behind');
  kn.seed(11);
  assert.equal(kn.models.generate(lm, [2], { maxNewTokens: 6, temperature: 0.5, blockSize: 8 }), a);
  assert.equal(a, [2, 3, 4, 5, 0, 1, 2], 'samples the learned pattern');
  assert.equal(kn.models.generate(lm, [4], { maxNewTokens: 6, stopToken: 5, topK: 1 }), [4, 5]);
  throwsKiln(() => kn.models.generate(lm, []), kn.ArgumentError, /non-empty list/);
  throwsKiln(
    () => kn.models.transformerClassifier({ vocabSize: 10, numClasses: 2, dModel: 10, nHead: 3 }),
    kn.ArgumentError,
    /divisible/,
  );
});

/** The whole model's output for `ids` against the KV-cached decoder's, fed in the given chunks. */
function cachedMatchesFull(m: kn.nn.Module, ids: number[], chunks: number[], what: string): void {
  kn.tidy(() => {
    const full = m.call(kn.tensor(Int32Array.from(ids), [1, ids.length])).toArray() as Float32Array;
    const dec = KVDecoder.for(m);
    assert.ok(dec, `${what}: decodes with a cache`);
    try {
      const parts: number[] = [];
      let at = 0;
      for (const c of chunks) {
        const before = kn.memory().numTensors;
        parts.push(...(kn.tidy(() => dec.step(ids.slice(at, at + c)).toArray()) as Float32Array));
        // the cache replaces its two tensors per layer: what a step leaves behind is only what it kept
        assert.is(
          kn.memory().numTensors,
          before + (at === 0 ? 2 * KV_LAYERS : 0),
          `${what}: step ${at} keeps its cache only`,
        );
        at += c;
      }
      close(parts, full, 1e-5, 1e-4, what);
    } finally {
      dec.dispose();
    }
  });
}
const KV_LAYERS = 2;

for (const b of BACKENDS)
  test(`generate's KV cache gives the whole-context outputs and tokens (${b})`, () =>
    onBackend(b, () => {
      kn.seed(21);
      const lm = kn.models.charLM({ vocabSize: 11, blockSize: 12, dModel: 16, nHead: 2, numLayers: KV_LAYERS });
      lm.eval();
      const ids = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 0, 3];
      // the prompt, then single tokens; then several new positions at once over a filled cache (a bottom-right
      // causal mask)
      cachedMatchesFull(lm, ids, [5, 1, 1, 1, 1, 1, 1, 1], 'charLM');
      cachedMatchesFull(lm, ids, [4, 3, 5], 'charLM, chunks');
      // rotary attention, sinusoidal positions, post-norm layers, ReLU, a quantized head
      const rot = new kn.nn.Sequential(
        new kn.nn.Embedding(11, 16),
        new kn.nn.SinusoidalPositionalEncoding(16, 32),
        ...[0, 1].map(
          () =>
            new kn.nn.TransformerEncoderLayer(16, 4, {
              dimFeedforward: 24,
              batchFirst: true,
              causal: true,
              rotary: true,
            }),
        ),
        new kn.nn.Linear(16, 11),
      );
      rot.eval();
      cachedMatchesFull(rot, ids, [3, 1, 4, 1, 3], 'rotary, sinusoidal, post-norm');
      for (const scheme of ['int8-dynamic', 'int4'] as const)
        cachedMatchesFull(kn.quant.quantize(rot, { scheme }).model.eval(), ids, [6, 1, 5], scheme);
      // generate: the same tokens with and without the cache, past blockSize (the window slides and the cache is
      // dropped), nothing left behind
      for (const o of [{ blockSize: 12 }, { blockSize: 6, topK: 3 }, { temperature: 0.7 }] as const) {
        const live = kn.memory().numTensors;
        kn.seed(4);
        const a = kn.models.generate(lm, [3, 1], { maxNewTokens: 10, ...o });
        assert.is(kn.memory().numTensors, live, 'generate frees its cache');
        kn.seed(4);
        assert.equal(kn.models.generate(lm, [3, 1], { maxNewTokens: 10, ...o, kvCache: false }), a, JSON.stringify(o));
      }
      // past the position table: without blockSize the window is the table's length (12), with or without
      // the cache; a blockSize beyond the table is the model's error
      kn.seed(6);
      const long = kn.models.generate(lm, [1], { maxNewTokens: 20 });
      assert.is(long.length, 21);
      kn.seed(6);
      assert.equal(kn.models.generate(lm, [1], { maxNewTokens: 20, blockSize: 12, kvCache: false }), long);
      for (const kvCache of [true, false])
        throwsKiln(
          () => kn.models.generate(lm, [1], { maxNewTokens: 13, blockSize: 20, kvCache }),
          kn.ShapeError,
          /LearnedPositionalEmbedding: sequence length 13 exceeds maxLen 12/,
        );
    }));

test('the KV cache is used only where a position at a time gives the same result', () => {
  kn.seed(22);
  const enc = (causal: boolean, batchFirst = true): kn.nn.Module =>
    new kn.nn.Sequential(
      new kn.nn.Embedding(7, 8),
      new kn.nn.TransformerEncoderLayer(8, 2, { dimFeedforward: 8, batchFirst, causal }),
      new kn.nn.Linear(8, 7),
    ).eval();
  assert.ok(KVDecoder.for(enc(true)));
  assert.is(KVDecoder.for(enc(false)), null, 'bidirectional attention sees later positions');
  assert.is(KVDecoder.for(enc(true, false)), null, 'sequence-first layers');
  assert.is(KVDecoder.for(enc(true).train()), null, 'training mode (dropout)');
  const lstm = new kn.nn.Sequential(new kn.nn.Embedding(7, 8), new kn.nn.LSTM(8, 8, { batchFirst: true }));
  assert.is(KVDecoder.for(lstm.eval()), null, 'a recurrent layer');
  class Scaled extends kn.nn.Linear {
    override forward(x: kn.Tensor): kn.Tensor {
      return super.forward(x.mul(2)); // an override could do anything: only the exact classes are trusted
    }
  }
  assert.is(KVDecoder.for(new kn.nn.Sequential(new kn.nn.Embedding(7, 8), new Scaled(8, 7)).eval()), null);
  const patched = new kn.nn.Linear(8, 7);
  patched.forward = (x: kn.Tensor): kn.Tensor => x.sum(1, true); // mixes positions
  assert.is(KVDecoder.for(new kn.nn.Sequential(new kn.nn.Embedding(7, 8), patched).eval()), null, 'own forward');
  // a model the cache cannot run still generates, a step over the whole context
  const bi = enc(false);
  kn.seed(1);
  const a = kn.models.generate(bi, [1, 2], { maxNewTokens: 4 });
  kn.seed(1);
  assert.equal(kn.models.generate(bi, [1, 2], { maxNewTokens: 4, kvCache: false }), a);
  throwsKiln(
    () => kn.models.generate(bi, [1], { kvCache: 1 as unknown as boolean }),
    kn.ArgumentError,
    /kvCache must be a boolean, got 1/,
  );
  // logits the sampler cannot use are an error, not a silent last token
  const head = new kn.nn.Linear(8, 7);
  const lm = new kn.nn.Sequential(new kn.nn.Embedding(7, 8), head).eval();
  kn.noGrad(() => head.bias!.assign(kn.tensor([0, 0, Number.NaN, 0, 0, 0, 0])));
  throwsKiln(() => kn.models.generate(lm, [1]), kn.ValidationError, /logit for token 2 is NaN at step 0/);
  kn.noGrad(() => {
    head.weight.assign(kn.zeros([7, 8]));
    head.bias!.assign(kn.full([7], -Infinity));
  });
  throwsKiln(() => kn.models.generate(lm, [1]), kn.ValidationError, /every logit is -Infinity at step 0/);
  // a temperature far below 1 is greedy, not an overflow: 1e-300 divides the shifted logits
  kn.noGrad(() => head.bias!.assign(kn.tensor([0, 1, 3, 2, 0, 0, 0])));
  assert.equal(kn.models.generate(lm, [1], { maxNewTokens: 3, temperature: 1e-300 }), [1, 2, 2, 2]);
});

test('generate: topP samples from the smallest set of likely tokens, after temperature and topK', () => {
  // every position's logits are log [0.5, 0.3, 0.15, 0.05]
  const head = new kn.nn.Linear(4, 4);
  kn.noGrad(() => {
    head.weight.assign(kn.zeros([4, 4]));
    head.bias!.assign(kn.tensor([0.5, 0.3, 0.15, 0.05].map(Math.log)));
  });
  const lm = new kn.nn.Sequential(new kn.nn.Embedding(4, 4), head).eval();
  const counts = (o: kn.models.GenerateOptions): number[] => {
    kn.seed(9);
    const c = [0, 0, 0, 0];
    for (const t of kn.models.generate(lm, [0], { maxNewTokens: 800, ...o }).slice(1)) c[t]!++;
    return c.map((v) => v / 800);
  };
  // 0.5 + 0.3 reaches 0.7: tokens 0 and 1 in proportion 5:3
  let f = counts({ topP: 0.7 });
  assert.equal([f[2], f[3]], [0, 0], `topP 0.7: ${f}`);
  assert.ok(Math.abs(f[0]! - 0.625) < 0.07, `topP 0.7: ${f}`);
  f = counts({ topP: 0.9 });
  assert.ok(f[3] === 0 && f[2]! > 0.08 && Math.abs(f[0]! - 0.5 / 0.95) < 0.07, `topP 0.9: ${f}`);
  assert.equal(counts({ topP: 0.4 }), [1, 0, 0, 0], 'the most likely token alone reaches 0.4');
  // temperature 2 flattens to [0.38, 0.29, 0.21, 0.12]: 0.6 needs two tokens; topK 1 leaves one whatever topP
  f = counts({ topP: 0.6, temperature: 2 });
  assert.ok(f[2] === 0 && f[3] === 0 && f[1]! > 0.3, `temperature 2, topP 0.6: ${f}`);
  assert.equal(counts({ topP: 0.99, topK: 1 }), [1, 0, 0, 0]);
  assert.ok(counts({})[3]! > 0.02, 'no topP: every token');
  for (const bad of [0, 1.5, Number.NaN, '0.5'])
    throwsKiln(
      () => kn.models.generate(lm, [0], { topP: bad as number }),
      kn.ArgumentError,
      /topP must be a number in \(0, 1\]/,
    );
});

test('a Transformer classifier serves token ids from its file; non-integer ids get 400', async () => {
  kn.seed(8);
  const m = kn.models.transformerClassifier({ vocabSize: 30, numClasses: 3, dModel: 16, nHead: 2, maxLen: 16 });
  m.eval();
  const file = join(tempDir('kiln-attn-serve-'), 'clf.safetensors');
  await kn.io.save(file, m);
  assert.ok(kn.nn.takesIds(m) && !kn.nn.takesIds(kn.models.mlp(2, [], 2)));
  const srv = await kn.serve.createServer(file, { port: 0, inputShape: [6] });
  try {
    const ids = [
      [1, 2, 3, 4, 5, 6],
      [7, 0, 29, 3, 3, 1],
    ];
    const r = await fetch(`${srv.url}/predict`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ inputs: ids }),
    });
    assert.is(r.status, 200);
    const body = (await r.json()) as { outputs: { output: number[]; argmax: number }[] };
    const want = f64(m.call(kn.tensor(Int32Array.from(ids.flat()), [2, 6])));
    close(
      body.outputs.flatMap((o) => o.output),
      want,
      1e-5,
      1e-4,
      'served logits',
    );
    const bad = await fetch(`${srv.url}/predict`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ input: [1, 2.5, 3, 4, 5, 6] }),
    });
    assert.is(bad.status, 400);
  } finally {
    await srv.close();
  }
});

test('Graph: branching models run, save with their architecture, quantize, export to ONNX', async () => {
  // an inception-style block: two branches concatenated, a gated skip, then a head
  const build = (): { g: kn.nn.Graph; x: kn.nn.GraphValue } => {
    kn.seed(13);
    const g = new kn.nn.Graph();
    const x = g.input();
    const a = x.then(new kn.nn.Linear(6, 4)).then(new kn.nn.ReLU());
    const shared = new kn.nn.Linear(6, 4);
    const b = x.then(shared).then(new kn.nn.Tanh());
    const gate = x.then(shared).then(new kn.nn.Sigmoid()); // the same weights twice
    const h = g.concat([a, g.mul(b, gate)], 1);
    g.output(g.add(h, x.then(new kn.nn.Linear(6, 8))).then(new kn.nn.Linear(8, 3)));
    return { g, x };
  };
  const { g, x } = build();
  const inp = kn.randn([5, 6]);
  const y = g.call(inp);
  assert.equal(y.shape, [5, 3]);
  // the same numbers written out by hand
  const [l0, , l2, , , l5, l6] = g.layers as kn.nn.Linear[];
  const ha = l0!.call(inp).relu(),
    hb = l2!.call(inp).tanh(),
    hg = l2!.call(inp).sigmoid();
  const want = l6!.call(kn.concat([ha, hb.mul(hg)], 1).add(l5!.call(inp)));
  close(f64(y), f64(want), 1e-6, 1e-6, 'graph forward');
  assert.is(g.layers.length, 7, 'a layer applied twice is one child');
  const r = kn.gradcheck((t) => onBackend(t!.backend, build).g.call(t!), [kn.randn([2, 6])], {
    atol: 2e-3,
    rtol: 2e-3,
  });
  assert.ok(r.ok, `graph gradcheck ${r.maxAbsErr}`);
  const file = join(tempDir('kiln-graph-'), 'g.safetensors');
  await kn.io.save(file, g);
  const { model } = await kn.io.loadModel(file);
  assert.equal(kn.nn.toSpec(model), kn.nn.toSpec(g));
  close(f64(model.call(inp)), f64(y), 1e-6, 1e-6, 'graph from its file');
  const { model: q } = kn.quant.quantize(g, { scheme: 'int8-dynamic' });
  assert.is(q.namedModules().filter(([, m]) => m.constructor.name === 'QuantLinear').length, 4);
  assert.equal(q.call(inp).shape, [5, 3]);
  assert.ok(kn.io.toOnnx(g, { inputShape: [6] }).length > 100, 'exports (onnx.test runs it in onnxruntime)');
  const bad = (patch: Record<string, unknown>, re: RegExp): void =>
    throwsKiln(() => kn.nn.fromSpec({ ...kn.nn.toSpec(g), ...patch }), kn.FormatError, re);
  bad({ output: 99 }, /earlier node/);
  bad({ nodes: [{ op: 'input' }, { op: 'layer', layer: 9, inputs: [0] }] }, /layer index/);
  bad({ nodes: [{ op: 'layer', layer: 0, inputs: [1] }] }, /earlier node/);
  bad({ nodes: [{ op: 'input' }, { op: 'input' }] }, /one input node/);
  bad({ nodes: [{ op: 'input' }, { op: 'pow', inputs: [0, 0] }] }, /unknown node op/);
  throwsKiln(() => new kn.nn.Graph().call(inp), kn.ArgumentError, /no output/);
  throwsKiln(() => g.add(x), kn.ArgumentError, /at least two/);
  throwsKiln(() => new kn.nn.Graph().output(x), kn.ArgumentError, /value of this graph/);
});

test.run();
