// The cuda backend: float32 (exact by default; TF32 tensor cores with KILN_CUDA_GEMM=tf32, read once per process)
// and bfloat16 GEMM in TFLOP/s, and the MNIST MLP training step (784-512-256-10, batch 128, Adam, loss read back
// each step). Compare with bench/gpu/torch_ref.py (cuBLAS through PyTorch) in the same run: bash
// bench/gpu/check.sh runs both, and this bench again under KILN_CUDA_GEMM=tf32, KILN_CUDA_CUBLASLT and
// KILN_CUDA_WGMMA=1 (bfloat16, then also TF32, on kiln's Hopper kernel). Every
// timed product is also checked: 256 sampled entries against a float64 dot of the same (rounded) inputs, the
// error relative to sum |a||b| of the entry, which must stay under 1e-5 (2e-3 under TF32, 4e-3 for bfloat16,
// whose result is rounded to bfloat16), or the bench throws.
// With KILN_GPU_PEERS naming the JSON lines bench/gpu/torch_ref.py printed in the same run, each figure is also
// printed as a ratio to PyTorch's (cuBLAS in the same mode; eager for the MLP step) beside the goals.
// Skips without a device.
import { existsSync, readFileSync } from 'node:fs';
import * as kn from '../../src/index.js';
import { currentBackend, unavailableReason } from '../../src/backends/registry.js';
import { fmt, measure, measureAsync, mlp } from '../harness.js';

/** The largest error of 256 sampled entries of c = a b against float64 dots, relative to sum |a_ik b_kj|. */
function sampledError(a: kn.Tensor, b: kn.Tensor, c: kn.Tensor, n: number): number {
  const read = (t: kn.Tensor): Float32Array => {
    const f = t.cast('float32');
    const v = f.toArray() as Float32Array;
    if (f !== t) f.dispose();
    return v;
  };
  const av = read(a),
    bv = read(b),
    cv = read(c);
  c.dispose();
  let worst = 0;
  for (let s = 0; s < 256; s++) {
    const i = (s * 7919 + 13) % n,
      j = (s * 104729 + 71) % n;
    let dot = 0,
      mag = 0;
    for (let k = 0; k < n; k++) {
      dot += av[i * n + k]! * bv[k * n + j]!;
      mag += Math.abs(av[i * n + k]! * bv[k * n + j]!);
    }
    worst = Math.max(worst, Math.abs(cv[i * n + j]! - dot) / (mag || 1));
  }
  return worst;
}

/**
 * PyTorch's figures from torch_ref.py's JSON lines: 'gemm fp32 4096' -> TFLOP/s, 'mlp' -> steps/s (none when the
 * file is missing: the run that writes it failed, and the figures print without ratios).
 */
export function loadPeers(path: string | undefined): Map<string, number> {
  const peers = new Map<string, number>();
  if (!path || !existsSync(path)) return peers;
  for (const line of readFileSync(path, 'utf8').split('\n')) {
    if (!line.startsWith('{')) continue;
    const r = JSON.parse(line) as { bench?: string; mode?: string; n?: number; tflops?: number; steps_per_s?: number };
    if (r.bench === 'gemm' && typeof r.tflops === 'number') peers.set(`gemm ${r.mode} ${r.n}`, r.tflops);
    if (r.bench === 'mlp' && typeof r.steps_per_s === 'number') peers.set('mlp', r.steps_per_s);
  }
  return peers;
}

/** ' = 0.85x cuBLAS (goal >= 0.80)' when PyTorch's figure is there, else ''. */
export function ratioNote(ours: number, peer: number | undefined, name: string, goal: number): string {
  if (peer === undefined || !(peer > 0)) return '';
  return ` = ${(ours / peer).toFixed(2)}x ${name} (goal >= ${goal.toFixed(2)})`;
}

export async function run(): Promise<void> {
  const why = unavailableReason('cuda');
  if (why !== null) {
    console.log(`# cuda unavailable: ${why}`);
    return;
  }
  kn.setBackend('cuda');
  const peers = loadPeers(process.env.KILN_GPU_PEERS);
  const cuda = kn.info().cuda;
  const mode = cuda?.matmul ?? '?';
  // bfloat16 products come back rounded to bfloat16 (2^-9 of |c| <= sum |a||b|)
  const bounds = { float32: mode === 'tf32' ? 2e-3 : 1e-5, bfloat16: 4e-3 } as const;
  const bf16 = cuda?.wgmma
    ? `, ${mode === 'tf32' ? 'bfloat16 and TF32' : 'bfloat16'} on the wgmma kernel (KILN_CUDA_WGMMA=1)`
    : '';
  console.log(`## cuda GEMM (square N), TFLOP/s (median; each run ends with a sync); float32 mode ${mode}${bf16}`);
  for (const n of [1024, 2048, 4096]) {
    const row: string[] = [];
    for (const dtype of ['float32', 'bfloat16'] as const) {
      kn.seed(n);
      const a = kn.randn([n, n]).cast(dtype),
        b = kn.randn([n, n]).cast(dtype);
      const t = await measureAsync(
        async () => {
          a.matmul(b).dispose();
          await currentBackend().sync();
        },
        { warmup: 3, repeats: 20, minTimeMs: 500 },
      );
      const err = sampledError(a, b, a.matmul(b), n);
      const bound = bounds[dtype];
      if (!(err <= bound)) throw new Error(`cuda ${dtype} GEMM N=${n}: sampled error ${err} is over ${bound}`);
      const tflops = (2 * n ** 3) / (t.medianMs * 1e9);
      // the goals: float32 >= 80% of cuBLAS SGEMM (in the same mode), bfloat16 >= 70%
      const peer = peers.get(`gemm ${dtype === 'bfloat16' ? 'bf16' : mode} ${n}`);
      const note = ratioNote(tflops, peer, 'cuBLAS', dtype === 'bfloat16' ? 0.7 : 0.8);
      row.push(`${dtype} ${fmt(tflops, 1)}${note} (err ${err.toExponential(1)})`);
      a.dispose();
      b.dispose();
    }
    console.log(`N=${n}  ${row.join('  ')}`);
  }
  kn.seed(1);
  const model = mlp([784, 512, 256, 10]);
  const opt = new kn.optim.Adam(model.parameters(), { lr: 1e-3 });
  const x = kn.randn([128, 784]),
    y = kn.randint([128], 0, 10);
  const t = await measure(
    () =>
      kn.tidy(() => {
        const loss = kn.nn.loss.crossEntropy(model.call(x), y);
        opt.zeroGrad();
        loss.backward();
        opt.step();
        loss.item();
      }),
    { warmup: 10, repeats: 200, minTimeMs: 2000 },
  );
  const steps = 1000 / t.medianMs;
  console.log(
    `## MLP training step: ${fmt(steps, 1)} steps/s${ratioNote(steps, peers.get('mlp'), 'PyTorch eager', 1)}`,
  );
  kn.setBackend('cpu');
}
