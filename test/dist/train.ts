// Run by test/distributed.test.ts on 1 and 2 ranks: the same training on the same global batch, by hand and
// through fit(); then a fit that stops after 2 epochs, resumed by the 'resume' phase in a new job.
// Usage: train.ts OUT_DIR full|resume
import { createWriteStream, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as kn from '../../src/index.js';

const [out, phase] = [process.argv[2]!, process.argv[3] ?? 'full'];
const d = kn.distributed;
const { rank, size } = d.init();
const GLOBAL_BATCH = 64;

// data: the same on every rank (seeded), 3 classes from one random linear map
kn.seed(0);
const W = kn.randn([8, 3]);
function data(n: number, seed: number): kn.data.Dataset {
  kn.seed(seed);
  const x = kn.randn([n, 8]);
  const y = x.matmul(W).argmax(1).cast('int32');
  return new kn.data.Dataset({ x, y });
}
// the model: a different initialisation on every rank, so DDP's broadcast from rank 0 is what aligns them
function model(): kn.nn.Module {
  kn.seed(100 + rank);
  return new kn.nn.Sequential(new kn.nn.Linear(8, 32), new kn.nn.ReLU(), new kn.nn.Linear(32, 3));
}
const weights = (m: kn.nn.Module): Record<string, number[]> =>
  Object.fromEntries(m.namedParameters().map(([n, p]) => [n, Array.from(p.toArray() as Float32Array)]));

const train = data(512, 1),
  val = data(200, 2);

/** The fit() of every phase: Adam, accumulation of 2 micro-batches, accuracy and f1 on the val set. */
function fitOptions(
  ddp: kn.nn.Module,
  epochs: number,
  ckpt: string,
  extra: Partial<kn.train.FitOptions> = {},
): kn.train.FitOptions {
  return {
    train: new kn.data.DataLoader(train, { batchSize: GLOBAL_BATCH / 2 / size, shuffle: true, seed: 11 }),
    val: new kn.data.DataLoader(val, { batchSize: 50 }),
    loss: 'crossEntropy',
    optimizer: new kn.optim.Adam(ddp.parameters(), { lr: 1e-2 }),
    epochs,
    accumulate: 2,
    metrics: ['accuracy', 'f1'],
    checkpointDir: join(out, ckpt),
    verbose: 'silent',
    ...extra,
  };
}

const res: Record<string, unknown> = { rank, size };

if (phase === 'full') {
  // 1. a hand-written loop: DDP + DistributedSampler + SGD with momentum, 3 epochs
  {
    const ddp = new d.DistributedDataParallel(model(), { bucketCapMB: 0.0005, firstBucketMB: 0.0001 });
    const sampler = new d.DistributedSampler(train.length, { seed: 7 });
    const loader = new kn.data.DataLoader(train, { batchSize: GLOBAL_BATCH / size, sampler });
    const opt = new kn.optim.SGD(ddp.parameters(), { lr: 0.1, momentum: 0.9 });
    const losses: number[] = [];
    for (let epoch = 0; epoch < 3; epoch++) {
      let sum = 0;
      for (const b of loader.batches(epoch)) {
        kn.tidy(() => {
          const loss = kn.nn.loss.crossEntropy(ddp.forward(b.x!), b.y!);
          sum += loss.item();
          loss.backward();
        });
        opt.step();
        opt.zeroGrad();
        for (const t of Object.values(b)) t.dispose();
      }
      losses.push(d.allreduce(new Float64Array([sum / loader.length]), { op: 'mean' })[0]!);
    }
    res.manual = { losses, weights: weights(ddp), buckets: String(ddp).split('\n')[0] };
  }
  // 2. fit() with a val set, metrics, accumulation of 2 micro-batches, checkpoints, JSON log on rank 0 only
  {
    const ddp = new d.DistributedDataParallel(model());
    const stream = createWriteStream(join(out, `fit-log-${size}-${rank}.jsonl`));
    // with a tracker and an HTML report (rank 0 writes them; its sanity checks must not reach a collective)
    const run = rank === 0 ? kn.track.startRun({ dir: join(out, `mlruns-${size}`), systemMetrics: false }) : undefined;
    const r = await kn.train.fit(
      ddp,
      fitOptions(ddp, 4, `ckpt-full-${size}`, {
        verbose: 'json',
        logStream: stream,
        tracker: run,
        report: join(out, `report-${size}-${rank}.html`),
      }),
    );
    run?.end();
    await new Promise((ok) => stream.end(ok));
    res.fit = { history: r.history.map((h) => ({ ...h, seconds: 0 })), weights: weights(ddp) };
  }
  // a report asked for on rank 0 only, without validation metrics: the labels rank 0 gathers for its confusion
  // matrix need every rank in the collective (this hung before evaluate agreed on it across ranks)
  {
    const ddp = new d.DistributedDataParallel(model());
    const report = rank === 0 ? join(out, `report-rank0-only-${size}.html`) : undefined;
    await kn.train.fit(ddp, fitOptions(ddp, 1, `ckpt-report-${size}`, { metrics: [], report }));
  }
  // 3. the same fit, stopped after 2 epochs (the 'resume' phase continues it in a new job)
  {
    const ddp = new d.DistributedDataParallel(model());
    await kn.train.fit(ddp, fitOptions(ddp, 2, `ckpt-resume-${size}`));
  }
} else {
  kn.seed(999 + rank); // a different RNG state than the first job's: the checkpoint must restore it
  const ddp = new d.DistributedDataParallel(model());
  const r = await kn.train.fit(ddp, fitOptions(ddp, 4, `ckpt-resume-${size}`, { resume: true }));
  res.resumed = { from: r.resumedFrom, history: r.history.map((h) => ({ ...h, seconds: 0 })), weights: weights(ddp) };
}
writeFileSync(join(out, `train-${phase}-${size}-${rank}.json`), JSON.stringify(res));
