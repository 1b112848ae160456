// Run by test/distributed.test.ts on 2 ranks: a StreamingDataset opened after init() shards its row groups by
// rank; each rank records the rows of its epoch 0, then fit() trains a DDP model on the stream.
// Usage: stream.ts OUT_DIR DATA_DIR
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as kn from '../../src/index.js';

const [out, data] = [process.argv[2]!, process.argv[3]!];
const d = kn.distributed;
const { rank, size } = d.init();
const ds = await kn.data.StreamingDataset.open(data, {
  columns: { x: ['a', 'b'], y: 'y', id: 'id' },
  batchSize: 32,
  seed: 3,
  maxMemoryBytes: 1 << 20,
});
const ids: number[] = [];
for await (const b of ds.batches(0)) {
  ids.push(...(b.id!.toArray() as Int32Array));
  for (const t of Object.values(b)) t.dispose();
}
kn.seed(50 + rank); // different initialisations: DDP's broadcast aligns them
const model = new kn.nn.Sequential(new kn.nn.Linear(2, 8), new kn.nn.Tanh(), new kn.nn.Linear(8, 2));
const ddp = new d.DistributedDataParallel(model);
const r = await kn.train.fit(ddp, {
  train: ds,
  loss: 'crossEntropy',
  optimizer: new kn.optim.Adam(ddp.parameters(), { lr: 0.02 }),
  epochs: 3,
  verbose: 'silent',
});
await ds.close();
const weights = Object.fromEntries(
  model.namedParameters().map(([n, p]) => [n, Array.from(p.toArray() as Float32Array)]),
);
writeFileSync(
  join(out, `stream-${rank}.json`),
  JSON.stringify({ rank, size, length: ds.length, ids, losses: r.history.map((h) => h.trainLoss), weights }),
);
