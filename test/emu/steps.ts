// Run by test/cuda-emu.test.ts on the emulated cuda backend with KILN_EMU_TRACE naming a file the emulated runtime
// appends a line to for each call kiln makes of it (test/native/cuda_emu_runtime.h: launches, synchronizations,
// allocations, copies, memsets). Trains two models as users write the loop: an MLP of 5 Linear layers (10
// parameters) with Adam, and a small CNN (Conv2d, ReLU, MaxPool2d, Linear) with SGD and momentum, each: forward
// and loss, zeroGrad and backward, the optimizer's step, the loss read with item(). After two steps to warm the
// caching allocator, one more step runs with a marker line appended to the trace before each of those phases.
// Then kn.train.fit trains a third model on 4 batches with gradient clipping. Prints one JSON line: per model, its
// parameter count and per phase the runtime calls counted by kind, with the kernels launched; for fit, its host
// waits, optimizer steps, and the GEMMs launched after a wait but before the step that follows it.
import { appendFileSync, readFileSync } from 'node:fs';
import * as kn from '../../src/index.js';
import { randomArray, rng } from '../helpers.js';

const trace = process.env.KILN_EMU_TRACE;
if (!trace) throw new Error('steps.ts: set KILN_EMU_TRACE to the file the emulated runtime traces to');
kn.setBackend('cuda');
kn.seed(7);
const r = rng(7);
const PHASES = ['forward', 'backward', 'step', 'item'] as const;
type Phase = (typeof PHASES)[number];

interface Counts {
  launch: number;
  sync: number;
  malloc: number;
  free: number;
  memset: number;
  h2d: number;
  d2h: number;
  d2d: number;
  kernels: string[];
}
const empty = (): Counts => ({
  launch: 0,
  sync: 0,
  malloc: 0,
  free: 0,
  memset: 0,
  h2d: 0,
  d2h: 0,
  d2d: 0,
  kernels: [],
});

/** Trains `model` on (x, y) for three steps, marking the third step's phases in the trace. */
function steps(name: string, model: kn.nn.Module, opt: kn.optim.Optimizer, x: kn.Tensor, y: kn.Tensor) {
  const mark = (what: string): void => appendFileSync(trace!, `mark ${name} ${what}\n`);
  const losses: number[] = [];
  for (let i = 0; i < 3; i++) {
    const traced = i === 2;
    kn.tidy(() => {
      if (traced) mark('forward');
      const loss = kn.nn.loss.crossEntropy(model.call(x), y);
      if (traced) mark('backward');
      opt.zeroGrad();
      loss.backward();
      if (traced) mark('step');
      opt.step();
      if (traced) mark('item');
      losses.push(loss.item());
      if (traced) mark('end');
    });
  }
  return { params: model.parameters().length, losses };
}

const mlp = new kn.nn.Sequential(
  new kn.nn.Linear(48, 64),
  new kn.nn.ReLU(),
  new kn.nn.Linear(64, 64),
  new kn.nn.ReLU(),
  new kn.nn.Linear(64, 64),
  new kn.nn.ReLU(),
  new kn.nn.Linear(64, 32),
  new kn.nn.ReLU(),
  new kn.nn.Linear(32, 10),
);
const cnn = new kn.nn.Sequential(
  new kn.nn.Conv2d(1, 4, 3, { padding: 1 }),
  new kn.nn.ReLU(),
  new kn.nn.MaxPool2d(2),
  new kn.nn.Flatten(),
  new kn.nn.Linear(4 * 6 * 6, 10),
);
const labels = (n: number, classes = 10): kn.Tensor =>
  kn.tensor(
    Array.from({ length: n }, () => Math.floor(r() * classes)),
    [n],
    { dtype: 'int32' },
  );
const runs = {
  mlp: steps('mlp', mlp, new kn.optim.Adam(mlp.parameters()), kn.tensor(randomArray(r, 32 * 48), [32, 48]), labels(32)),
  cnn: steps(
    'cnn',
    cnn,
    new kn.optim.SGD(cnn.parameters(), { lr: 0.05, momentum: 0.9 }),
    kn.tensor(randomArray(r, 8 * 144), [8, 1, 12, 12]),
    labels(8),
  ),
};

// kn.train.fit on 4 batches with clipping: its host waits, and the GEMMs queued after each wait but before the
// optimizer's step (a backward queued only after the loss was read would put its GEMMs there)
appendFileSync(trace, 'mark fit begin\n');
const fitModel = new kn.nn.Sequential(new kn.nn.Linear(12, 16), new kn.nn.ReLU(), new kn.nn.Linear(16, 3));
const data = new kn.data.Dataset({ x: kn.tensor(randomArray(r, 64 * 12), [64, 12]), y: labels(64, 3) });
const fitted = await kn.train.fit(fitModel, {
  train: new kn.data.DataLoader(data, { batchSize: 16 }),
  loss: 'crossEntropy',
  optimizer: new kn.optim.Adam(fitModel.parameters()),
  epochs: 1,
  clipGradNorm: 0.5,
  verbose: 'silent',
});
appendFileSync(trace, 'mark fit end\n');

// one pass over the trace: a mark line `mark <name> <phase>` opens a section (`end` closes it), and every runtime
// call is counted in the section it falls in
const phases = {
  mlp: Object.fromEntries(PHASES.map((p) => [p, empty()])) as Record<Phase, Counts>,
  cnn: Object.fromEntries(PHASES.map((p) => [p, empty()])) as Record<Phase, Counts>,
};
const fit = { batches: 4, trainLoss: fitted.history[0]!.trainLoss, sync: 0, steps: 0, gemmsAfterWait: 0 };
let at: Counts | 'fit' | null = null,
  waited = false;
for (const line of readFileSync(trace, 'utf8').split('\n')) {
  const [kind, a, b] = line.split(' ');
  if (kind === 'mark') {
    if (a === 'fit') at = b === 'begin' ? 'fit' : null;
    else if (a === 'mlp' || a === 'cnn') at = b === 'end' ? null : phases[a][b as Phase];
    continue;
  }
  if (!at || !kind) continue;
  if (at === 'fit') {
    if (kind === 'sync') {
      fit.sync++;
      waited = true;
    } else if (line.startsWith('launch step_multi')) {
      fit.steps++;
      waited = false;
    } else if (waited && line.startsWith('launch matmul')) fit.gemmsAfterWait++;
  } else if (kind === 'launch') {
    at.launch++;
    at.kernels.push(line.slice('launch '.length));
  } else if (kind === 'copy') at[a as 'h2d' | 'd2h' | 'd2d']++;
  else if (kind === 'sync' || kind === 'malloc' || kind === 'free' || kind === 'memset') at[kind]++;
}
const out = {
  mlp: { ...runs.mlp, phases: phases.mlp },
  cnn: { ...runs.cnn, phases: phases.cnn },
};
console.log(JSON.stringify({ ...out, fit }));
