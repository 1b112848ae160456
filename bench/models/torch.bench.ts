// kiln against PyTorch CPU (Debian's python3-torch: oneDNN for convolution, OpenBLAS for GEMM) on the work of
// issue 18, on 1 and all threads: GEMM (square N), conv2d forward + backward [N,16,28,28] * [32,16,3,3] pad 1,
// the MLP 784-256-10 training step (batch 128, Adam) and a LeNet-5-like training step (batch 64, Adam), each step
// reading the loss back, and an Adam step and an SGD (momentum 0.9) step alone over 200 parameters of 256
// (PyTorch's foreach optimizers). PyTorch runs in a child process (one per thread count) with the same warm-up and time
// budget; ratio = PyTorch time / kiln time (> 1: kiln is faster). The two sides alternate in rounds
// (KILN_BENCH_ROUNDS, default 2: kiln, PyTorch, kiln, PyTorch) and each side's figure is its best round median:
// on a shared machine a noisy minute slows whichever side it lands on, and a single kiln-then-PyTorch pass put
// a ratio anywhere from 0.8 to 9 for the same build. The per-round ratios are printed too. The measured FMA peak
// is printed per thread count so GFLOP/s figures can be read as a share of the machine.
import * as kn from '../../src/index.js';
import { bench, cpuBench, perCallPacking, fmt, lenet, trainer, mlp, warmDispatch } from '../harness.js';
import { coreType, torchPython, torchRows, type TorchRow } from '../peers/torch.js';

const MIN_MS = Number(process.env.KILN_BENCH_MIN_MS ?? 600);
const ROUNDS = Math.max(1, Math.floor(Number(process.env.KILN_BENCH_ROUNDS ?? 2)) || 1);
// the PyTorch child's timing loop stops at 2000 repeats (torch_common.py); kiln's the same, not bench()'s 1000
const TIMING = { minTimeMs: MIN_MS, maxRepeats: 2000 };

/** kiln's median ms for each piece of work, in the order torch_cpu.py prints them. */
async function kilnRows(): Promise<TorchRow[]> {
  const rows: TorchRow[] = [];
  await warmDispatch();
  for (const n of [128, 256, 512, 1024]) {
    kn.seed(n);
    const a = kn.randn([n, n]),
      b = kn.randn([n, n]);
    rows.push({
      work: 'gemm',
      size: n,
      medianMs: (await bench(() => a.matmul(b).dispose(), TIMING)).medianMs,
    });
    a.dispose();
    b.dispose();
  }
  for (const n of [16, 64]) {
    const x = kn.randn([n, 16, 28, 28]),
      w = kn.randn([32, 16, 3, 3]);
    x.requiresGrad = true;
    w.requiresGrad = true;
    const t = await bench(
      () =>
        kn.tidy(() => {
          // dispose, not just drop: a dropped gradient is freed by the GC later, so every step would allocate
          // (and page-fault) fresh buffers that PyTorch's refcounting recycles at once
          x.grad?.dispose();
          w.grad?.dispose();
          x.grad = null;
          w.grad = null;
          kn.conv2d(x, w, null, { padding: 1 }).sum().backward();
        }),
      TIMING,
    );
    rows.push({ work: 'conv', size: n, medianMs: t.medianMs });
    x.dispose();
    w.dispose();
  }
  kn.seed(1);
  const m = trainer(mlp([784, 256, 10]), kn.randn([128, 784]), kn.randint([128], 0, 10));
  rows.push({ work: 'mlp', size: 128, medianMs: (await bench(m.step, TIMING)).medianMs });
  m.dispose();
  kn.seed(2);
  const c = trainer(lenet(), kn.randn([64, 1, 28, 28]), kn.randint([64], 0, 10));
  rows.push({ work: 'cnn', size: 64, medianMs: (await bench(c.step, TIMING)).medianMs });
  c.dispose();
  // the optimizer step alone over 200 parameters of 256 (the dispatch cost of many small tensors)
  kn.seed(3);
  const ps = Array.from({ length: 200 }, () => {
    const t = kn.randn([256]);
    t.requiresGrad = true;
    t.grad = kn.randn([256]);
    return t;
  });
  const adam = new kn.optim.Adam(ps);
  rows.push({ work: 'adam', size: 200, medianMs: (await bench(() => adam.step(), TIMING)).medianMs });
  adam.dispose();
  const sgd = new kn.optim.SGD(ps, { lr: 1e-2, momentum: 0.9 });
  rows.push({ work: 'sgd', size: 200, medianMs: (await bench(() => sgd.step(), TIMING)).medianMs });
  sgd.dispose();
  for (const t of ps) {
    t.grad?.dispose();
    t.dispose();
  }
  return rows;
}

type CpuWork = 'gemm' | 'conv' | 'mlp' | 'cnn' | 'adam' | 'sgd';
const LABEL: Record<CpuWork, (n: number) => string> = {
  gemm: (n) => `GEMM ${n}x${n}x${n}`,
  conv: (n) => `conv2d fwd+bwd N=${n}`,
  mlp: (n) => `MLP step, batch ${n}`,
  cnn: (n) => `LeNet step, batch ${n}`,
  adam: (n) => `Adam step, ${n} x [256]`,
  sgd: (n) => `SGD step, ${n} x [256]`,
};
const FLOPS: Record<CpuWork, (n: number) => number> = {
  gemm: (n) => 2 * n ** 3,
  conv: (n) => 3 * 2 * n * 32 * 28 * 28 * 16 * 9,
  mlp: () => 0,
  cnn: () => 0,
  adam: () => 0,
  sgd: () => 0,
};

export async function run(): Promise<void> {
  const { addon, info } = cpuBench('against PyTorch CPU');
  const restorePacking = perCallPacking(addon);
  const py = torchPython();
  if (!py.python) console.log(`# ${py.reason}`);
  else console.log(`# PyTorch ${py.version} (${py.python}), OPENBLAS_CORETYPE=${coreType()}`);
  for (const threads of [...new Set([1, info.threads])]) {
    addon.setThreads(threads);
    const peak = addon.peakFlops(200).gflops;
    console.log(`### ${threads} thread(s), measured peak FMA ${peak.toFixed(1)} GFLOP/s`);
    console.log(
      `work                          kiln ms  PyTorch ms   ratio   kiln GFLOP/s  %peak  ratio per round (${ROUNDS})`,
    );
    const mineRounds: TorchRow[][] = [];
    const theirRounds: TorchRow[][] = [];
    for (let round = 0; round < ROUNDS; round++) {
      mineRounds.push(await kilnRows());
      if (py.python) theirRounds.push(torchRows(py.python, threads, MIN_MS / 1000));
    }
    const find = (rows: TorchRow[], r: TorchRow): TorchRow | undefined =>
      rows.find((o) => o.work === r.work && o.size === r.size);
    for (const r of mineRounds[0]!) {
      const kilnMs = Math.min(...mineRounds.map((rows) => find(rows, r)!.medianMs));
      const torchMs = theirRounds.map((rows) => find(rows, r)?.medianMs ?? NaN);
      const best = Math.min(...torchMs);
      const work = r.work as CpuWork;
      const fl = FLOPS[work](r.size);
      const gf = fl ? fl / (kilnMs * 1e6) : NaN;
      const perRound = torchMs.map((t, i) => fmt(t / find(mineRounds[i]!, r)!.medianMs, 2).trim()).join(' / ');
      const have = theirRounds.length > 0 && !Number.isNaN(best);
      console.log(
        `${LABEL[work](r.size).padEnd(28)} ${fmt(kilnMs, 3)}  ${have ? fmt(best, 3) : '       -'}  ${have ? fmt(best / kilnMs, 2) : '       -'}  ${Number.isNaN(gf) ? '            -' : fmt(gf, 1).padStart(13)}  ${Number.isNaN(gf) ? '    -' : `${((100 * gf) / peak).toFixed(0).padStart(4)}%`}  ${have ? perRound : ''}`,
      );
    }
  }
  addon.setThreads(info.threads);
  restorePacking();
}
