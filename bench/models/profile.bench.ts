// kn.profile on the two training steps the CPU-speed work targets (MLP 784-256-10 batch 128, and a LeNet-like
// conv step batch 64), with the profiler's cost measured: the same step timed with the profiler off and on,
// interleaved run by run (kn.bench's compare), and the top of each profile printed.
import * as kn from '../../src/index.js';
import { bench, cpuBench, lenet, trainer, mlp } from '../harness.js';

function mlpStep(): { step: () => number; dispose: () => void } {
  kn.seed(1);
  const model = mlp([784, 256, 10]);
  return trainer(model, kn.randn([128, 784]), kn.randint([128], 0, 10));
}

function lenetStep(): { step: () => number; dispose: () => void } {
  kn.seed(2);
  return trainer(lenet(), kn.randn([64, 1, 28, 28]), kn.randint([64], 0, 10));
}

export async function run(): Promise<void> {
  cpuBench('kn.profile overhead and per-op profiles');
  for (const [name, make] of [
    ['MLP 784-256-10, batch 128, Adam', mlpStep],
    ['LeNet-5-like conv net, batch 64, Adam', lenetStep],
  ] as const) {
    const { step, dispose } = make();
    for (let i = 0; i < 3; i++) step();
    const r = await bench(() => kn.profile(step), { minTimeMs: 3000, warmup: 3, compare: step });
    const p = kn.profile(step); // warm: after the timed runs
    const off = r.compare!;
    console.log(`\n## ${name}: ${p.events.length} kernel calls per step`);
    console.log(
      `step median: profiler off ${off.medianMs.toFixed(3)} ms, on ${r.medianMs.toFixed(3)} ms ` +
        `(+${(100 * (r.medianMs / off.medianMs - 1)).toFixed(1)}%, ${(((r.medianMs - off.medianMs) * 1000) / p.events.length).toFixed(2)} µs per kernel call; ` +
        `${r.repeats} interleaved runs each)`,
    );
    console.log(p.table({ top: 12 }));
    dispose();
  }
}
