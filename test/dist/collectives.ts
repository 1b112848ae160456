// Run by test/distributed.test.ts under `kiln launch -np 2`: every collective on real MPI, results as JSON.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as kn from '../../src/index.js';

const out = process.argv[2]!;
const d = kn.distributed;
const w = d.init({ chunkMB: 1 }); // 1 MiB pieces, so the 12 MB message below is reduced in many
const r = w.rank;
const res: Record<string, unknown> = { info: w, isMain: d.isMain(), isDistributed: d.isDistributed() };

// sum of 3,000,001 floats: (rank+1) * ((i%7)+1) summed over ranks = 3 * ((i%7)+1) on 2 ranks
const big = new Float32Array(3_000_001).map((_, i) => (r + 1) * ((i % 7) + 1));
d.allreduce(big);
let bad = -1;
const tri = (w.size * (w.size + 1)) / 2;
for (let i = 0; i < big.length; i++)
  if (big[i] !== tri * ((i % 7) + 1)) {
    bad = i;
    break;
  }
res.bigFirstWrong = bad;
res.f64 = {
  sum: Array.from(d.allreduce(new Float64Array([r + 0.5, -r]), { op: 'sum' })),
  mean: Array.from(d.allreduce(new Float64Array([r, 2 * r]), { op: 'mean' })),
  max: Array.from(d.allreduce(new Float64Array([r, -r]), { op: 'max' })),
  min: Array.from(d.allreduce(new Float64Array([r, -r]), { op: 'min' })),
};
res.i32 = Array.from(d.allreduce(new Int32Array([r, 7, -r]), { op: 'sum' }));
const t = kn.tensor([
  [r, 1],
  [2, 3 * r],
]);
d.allreduce(t, { op: 'mean' });
res.tensorMean = t.toList();
const ti = kn.tensor([r + 1, 5], undefined, { dtype: 'int32' });
d.allreduce(ti, { op: 'max' });
res.tensorIntMax = ti.toList();
// two async reductions in flight at once, while the event loop keeps turning
let ticks = 0;
const spin = setInterval(() => ticks++, 0);
const a1 = new Float32Array(1 << 20).fill(r + 1),
  a2 = new Float64Array(1000).fill(r * 10);
const [x1, x2] = await Promise.all([d.allreduceAsync(a1), d.allreduceAsync(a2, { op: 'mean' })]);
clearInterval(spin);
res.async = [x1[0], x1[x1.length - 1], x2[0], x2[999]];
res.asyncIsSameArray = x1 === a1;
res.eventLoopTicked = ticks >= 0;
const b = kn.tensor([r === 0 ? 42 : -1, r === 0 ? 7 : -1]);
d.broadcast(b, 0);
res.broadcast = b.toList();
const b1 = new Float32Array([r, r]);
await d.broadcastAsync(b1, w.size - 1);
res.broadcastFromLast = Array.from(b1);
const g = d.allgather(kn.tensor([r, r * 2]));
res.allgather = { shape: g.shape, values: g.toList() };
res.allgatherObject = d.allgatherObject({ rank: r, name: 'x'.repeat(r + 1) });
res.broadcastObject = d.broadcastObject(r === 0 ? { from: 0, list: [1, 2, 3] } : null);
d.barrier();
await d.barrierAsync();
// bad arguments throw KilnErrors and leave the job usable
const errs: string[] = [];
for (const f of [
  () => d.allreduce(new Float32Array(2), { op: 'prod' as 'sum' }),
  () => d.allreduce(new Int32Array(2), { op: 'mean' }),
  () => d.broadcast(new Float32Array(2), 5),
  () => d.allreduce([1, 2] as unknown as Float32Array),
]) {
  try {
    f();
    errs.push('no error');
  } catch (e) {
    errs.push(`${(e as Error).name}: ${(e as Error).message}`);
  }
}
res.errors = errs;
res.afterErrors = Array.from(d.allreduce(new Float32Array([1])));
// samplers of every rank partition the dataset
const s = new d.DistributedSampler(10, { seed: 3 });
s.setEpoch(2);
res.sampler = Array.from(s.indices());
res.threads = process.env.KILN_NUM_THREADS ?? null;
writeFileSync(join(out, `collectives-${r}.json`), JSON.stringify(res));
