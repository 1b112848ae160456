// Activation checkpointing on a deep MLP (24 blocks of Linear 512-2048, GELU, Linear 2048-512, batch 256): peak
// bytes live during one training step and the step time, with and without kn.checkpoint per block; and the
// cost of higher-order autograd when unused: a first-order MLP step timed through kn.bench.
import * as kn from '../../src/index.js';
import { bench, cpuBench } from '../harness.js';

export async function run(): Promise<void> {
  cpuBench('activation checkpointing');
  kn.seed(1);
  const D = 512,
    H = 2048,
    B = 256,
    L = 24;
  const blocks = Array.from(
    { length: L },
    () => new kn.nn.Sequential(new kn.nn.Linear(D, H), new kn.nn.GELU(), new kn.nn.Linear(H, D)),
  );
  const params = blocks.flatMap((b) => b.parameters());
  const opt = new kn.optim.Adam(params);
  const x = kn.randn([B, D]);
  const step = (ck: boolean): number =>
    kn.tidy(() => {
      opt.zeroGrad();
      let h = x;
      for (const blk of blocks) h = ck ? kn.checkpoint((z) => blk.call(z).add(z), h) : blk.call(h).add(h);
      const loss = h.pow(2).mean();
      loss.backward();
      opt.step();
      return loss.item();
    });
  step(false);
  const weights = params.reduce((s, p) => s + p.size * 4, 0);
  console.log(
    `## deep MLP: ${L} residual blocks ${D}-${H}-${D}, batch ${B}, Adam; weights ${(weights / 2 ** 20).toFixed(1)} MiB`,
  );
  console.log('                     peak MiB (step)  above weights, Adam state, grads   step ms (median)');
  const base = kn.memory().numBytes; // weights, Adam state, the last step's gradients, input
  for (const ck of [false, true]) {
    kn.resetPeakMemory();
    step(ck);
    const peak = kn.memory().peakBytes;
    const t = await bench(() => step(ck), { minTimeMs: 4000, warmup: 1 });
    console.log(
      `${(ck ? 'checkpoint per block' : 'plain').padEnd(20)} ${(peak / 2 ** 20).toFixed(1).padStart(16)} ${((peak - base) / 2 ** 20).toFixed(1).padStart(33)} ${t.medianMs.toFixed(1).padStart(18)}`,
    );
  }
  opt.dispose();
  for (const b of blocks) b.dispose();
  x.dispose();
}
