// Run by bench/dist/distributed.bench.ts under `kiln launch`. Prints one JSON line from rank 0.
//   allreduce [chunkMB]: median ms of a blocking allreduce of 4 KiB, 4 MiB and 64 MiB (max over ranks)
//   train mlp|cnn GLOBAL_BATCH overlap(0|1): samples/s of DDP training steps on this world size
import * as kn from '../../src/index.js';
import { measure, mlp } from '../harness.js';

const d = kn.distributed;
const [mode, a1, a2, a3] = process.argv.slice(2);
const w = d.init(mode === 'allreduce' && a1 ? { chunkMB: Number(a1) } : {});
const out = (o: unknown): void => {
  if (w.rank === 0) console.log(JSON.stringify(o));
};
const worstMedian = (ms: number): number => d.allreduce(new Float64Array([ms]), { op: 'max' })[0]!;

if (mode === 'allreduce') {
  const rows: { bytes: number; ms: number }[] = [];
  for (const bytes of [4096, 4 << 20, 64 << 20]) {
    const buf = new Float32Array(bytes / 4).fill(1);
    const repeats = bytes >= 64 << 20 ? 8 : bytes >= 4 << 20 ? 30 : 300;
    const t = await measure(
      () => {
        d.barrier();
        d.allreduce(buf);
      },
      { warmup: 2, repeats, minTimeMs: 0 },
    );
    // the barrier is part of each timed call: time it alone and subtract
    const tb = await measure(() => d.barrier(), { warmup: 2, repeats, minTimeMs: 0 });
    rows.push({ bytes, ms: worstMedian(Math.max(0, t.medianMs - tb.medianMs)) });
  }
  out({ size: w.size, rows });
} else {
  const [model, batch, overlap] = [a1 ?? 'mlp', Number(a2 ?? 256), a3 !== '0'];
  const local = batch / w.size;
  kn.seed(1);
  const net =
    model === 'cnn'
      ? new kn.nn.Sequential(
          new kn.nn.Conv2d(1, 16, 3, { padding: 1 }),
          new kn.nn.ReLU(),
          new kn.nn.MaxPool2d(2),
          new kn.nn.Conv2d(16, 32, 3, { padding: 1 }),
          new kn.nn.ReLU(),
          new kn.nn.MaxPool2d(2),
          new kn.nn.Flatten(),
          new kn.nn.Linear(32 * 7 * 7, 10),
        )
      : mlp([784, 1024, 1024, 10]);
  const ddp = new d.DistributedDataParallel(net, { overlap });
  const opt = new kn.optim.Adam(ddp.parameters());
  kn.seed(2 + w.rank);
  const x = model === 'cnn' ? kn.randn([local, 1, 28, 28]) : kn.randn([local, 784]);
  const y = kn.randint([local], 0, 10);
  const t = await measure(
    () =>
      kn.tidy(() => {
        opt.zeroGrad();
        kn.nn.loss.crossEntropy(ddp.forward(x), y).backward();
        opt.step();
      }),
    { warmup: 3, repeats: 25, minTimeMs: 2000 },
  );
  const ms = worstMedian(t.medianMs);
  out({
    size: w.size,
    model,
    batch,
    overlap,
    threads: kn.info().cpu?.threads,
    ms,
    samplesPerS: (batch / ms) * 1000,
    params: net.numParameters(),
  });
}
