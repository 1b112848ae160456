// Run by test/distributed.test.ts under `kiln launch -np 2`.
//   fail OUT:     rank 1 throws in the middle of training while rank 0 waits for its gradients: the job must end
//                 (non-zero), never hang, with a message from both ranks.
//   mismatch OUT: the ranks build different models: DistributedDataParallel must say so on every rank.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as kn from '../../src/index.js';

const [mode, out] = [process.argv[2]!, process.argv[3]!];
const d = kn.distributed;
const { rank } = d.init();
kn.seed(1);
const hidden = mode === 'mismatch' && rank === 1 ? 17 : 16;
const net = new kn.nn.Sequential(new kn.nn.Linear(4, hidden), new kn.nn.ReLU(), new kn.nn.Linear(hidden, 2));
if (mode === 'mismatch') {
  let msg = 'no error';
  try {
    new d.DistributedDataParallel(net);
  } catch (e) {
    msg = `${(e as Error).name}: ${(e as Error).message}`;
  }
  writeFileSync(join(out, `mismatch-${rank}.json`), JSON.stringify({ rank, msg }));
} else {
  const ddp = new d.DistributedDataParallel(net);
  const x = kn.randn([8, 4]),
    y = kn.tensor([0, 1, 0, 1, 0, 1, 0, 1], undefined, { dtype: 'int32' });
  for (let step = 0; step < 5; step++) {
    if (rank === 1 && step === 3) throw new Error(`simulated failure on rank 1 at step ${step}`);
    kn.tidy(() => kn.nn.loss.crossEntropy(ddp.forward(x), y).backward());
  }
  writeFileSync(join(out, `fail-${rank}-finished.json`), '{}');
}
