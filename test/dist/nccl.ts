// Run by test/cuda-emu.test.ts through `kiln launch` on the emulated cuda backend (kiln_cuda.so on the CPU
// emulation, NCCL emulated between the processes): NCCL's collectives on device buffers, then a few steps of
// DistributedDataParallel with SGD on a fixed global batch, its gradients reduced by NCCL on the device (or, with
// no NCCL, through host memory and MPI). Writes OUT_DIR/nccl-<tag>-<size>-<rank>.json.
// Usage: nccl.ts OUT_DIR TAG
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as kn from '../../src/index.js';
import { loadAddon } from '../../src/backends/native/binding.js';
import { ncclComm } from '../../src/distributed/comm.js';

const [out, tag] = [process.argv[2]!, process.argv[3]!];
const d = kn.distributed;
const { rank, size } = d.init();
kn.setBackend('cuda');
const addon = loadAddon().addon!;
const res: Record<string, unknown> = { rank, size, nccl: addon.ncclStatus() };

// the collectives themselves, where NCCL is in use: exact small integers, so every reduction order agrees
if (!res.nccl && size > 1 && ncclComm().ok) {
  const run = (t: kn.Tensor, f: (h: number) => void): number[] => {
    f(t.storageHandle() as number);
    return Array.from(t.toArray() as ArrayLike<number>);
  };
  const mine = (dtype: 'float32' | 'int32'): kn.Tensor => kn.tensor([rank + 1, 10 * rank, -rank, 7], [4], { dtype });
  res.collectives = {
    sum: run(mine('float32'), (h) => addon.ncclAllreduce(h, 0)),
    mean: run(mine('float32'), (h) => addon.ncclAllreduce(h, 1)),
    max: run(mine('float32'), (h) => addon.ncclAllreduce(h, 2)),
    min: run(mine('float32'), (h) => addon.ncclAllreduce(h, 3)),
    sumInt32: run(mine('int32'), (h) => addon.ncclAllreduce(h, 0)),
    broadcastFrom1: run(mine('float32'), (h) => addon.ncclBroadcast(h, 1)),
  };
}

// DDP: every rank takes its share of the same global batch; the model starts differently on every rank (DDP's
// broadcast from rank 0 aligns them)
kn.seed(0);
const x = kn.randn([48, 6]);
const y = x
  .matmul(kn.randn([6, 4]))
  .argmax(1)
  .cast('int32');
const rows = 48 / size;
const xr = x.slice([rank * rows, 0], [(rank + 1) * rows, 6]).contiguous();
const yr = y.slice([rank * rows], [(rank + 1) * rows]).contiguous();
kn.seed(100 + rank);
const model = new kn.nn.Sequential(new kn.nn.Linear(6, 16), new kn.nn.ReLU(), new kn.nn.Linear(16, 4));
const ddp = new d.DistributedDataParallel(model, { bucketCapMB: 0.0002, firstBucketMB: 0.0001 });
const opt = new kn.optim.SGD(ddp.parameters(), { lr: 0.2, momentum: 0.9 });
const losses: number[] = [];
for (let step = 0; step < 4; step++) {
  kn.tidy(() => {
    const loss = kn.nn.loss.crossEntropy(ddp.forward(xr), yr);
    losses.push(d.allreduce(new Float64Array([loss.item()]), { op: 'mean' })[0]!);
    loss.backward();
  });
  opt.step();
  opt.zeroGrad();
}
res.ncclReason = ddp.ncclReason;
res.buckets = String(ddp).split('\n')[0];
res.backend = model.parameters()[0]!.backend;
res.losses = losses;
res.weights = Object.fromEntries(model.namedParameters().map(([n, p]) => [n, Array.from(p.toArray() as Float32Array)]));
writeFileSync(join(out, `nccl-${tag}-${size}-${rank}.json`), JSON.stringify(res));
