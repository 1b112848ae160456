// `npx tsx examples/quickstart.ts`: autograd without the nn/optim layers — a small MLP written with raw ops
// on a seeded two-spirals problem, trained on the native cpu backend and on the float64 js reference, which
// must learn the same thing, plus gradient checks. (`npm run demo` is examples/mnist.ts.)
import * as kn from '../src/index.js';

function spirals(n: number): { x: kn.Tensor; labels: Int32Array } {
  kn.seed(1);
  const noise = kn.tidy(() => kn.randn([2 * n, 2], { std: 0.08 }).toArray());
  const xs = new Float32Array(4 * n),
    labels = new Int32Array(2 * n);
  for (let i = 0; i < 2 * n; i++) {
    const cls = i % 2,
      t = ((i >> 1) / n) * 3 * Math.PI + 0.5,
      r = t / (3 * Math.PI);
    const s = cls ? -1 : 1;
    xs[2 * i] = s * r * Math.cos(t) + noise[2 * i]!;
    xs[2 * i + 1] = s * r * Math.sin(t) + noise[2 * i + 1]!;
    labels[i] = cls;
  }
  return { x: kn.tensor(xs, [2 * n, 2]), labels };
}

function train(backend: kn.BackendName, steps: number): { loss: number; acc: number; ms: number } {
  kn.setBackend(backend);
  const { x, labels } = spirals(200);
  const oneHot = kn.tensor(Array.from(labels, (l) => (l ? [0, 1] : [1, 0])));
  kn.seed(42);
  const params = [
    kn.randn([2, 64], { std: Math.sqrt(2 / 2) }),
    kn.zeros([64]),
    kn.randn([64, 64], { std: Math.sqrt(2 / 64) }),
    kn.zeros([64]),
    kn.randn([64, 2], { std: Math.sqrt(1 / 64) }),
    kn.zeros([2]),
  ];
  const forward = (p: kn.Tensor[]): kn.Tensor =>
    x.matmul(p[0]!).add(p[1]!).gelu().matmul(p[2]!).add(p[3]!).gelu().matmul(p[4]!).add(p[5]!);
  const lossOf = (...p: kn.Tensor[]): kn.Tensor => forward(p).logSoftmax().mul(oneHot).sum(1).mean().neg();
  const dloss = kn.grad(lossOf);
  const t0 = performance.now();
  let p = params;
  // Adam, lr 1e-2 for this toy problem (kn.optim arrives with the training-stack issue)
  const m = p.map((t) => kn.zerosLike(t)),
    v = p.map((t) => kn.zerosLike(t));
  for (let step = 1; step <= steps; step++) {
    const g = dloss(...p) as kn.Tensor[];
    const old = p;
    p = kn.tidy(() =>
      p.map((w, i) => {
        const mi = m[i]!.mul(0.9).add(g[i]!.mul(0.1)),
          vi = v[i]!.mul(0.999).add(g[i]!.mul(g[i]!).mul(0.001));
        m[i]!.dispose();
        v[i]!.dispose();
        m[i] = kn.keep(mi);
        v[i] = kn.keep(vi);
        const mh = mi.div(1 - 0.9 ** step),
          vh = vi.div(1 - 0.999 ** step);
        return w.sub(mh.mul(1e-2).div(vh.sqrt().add(1e-8)));
      }),
    );
    g.forEach((t) => t.dispose());
    old.forEach((t) => t.dispose());
  }
  m.forEach((t) => t.dispose());
  v.forEach((t) => t.dispose());
  const ms = performance.now() - t0;
  const { loss, acc } = kn.tidy(() => {
    const logits = forward(p);
    const pred = logits.argmax(1).toArray();
    let ok = 0;
    pred.forEach((c, i) => {
      ok += +(c === labels[i]);
    });
    return { loss: lossOf(...p).item(), acc: ok / labels.length };
  });
  [...p, x, oneHot].forEach((t) => t.dispose());
  return { loss, acc, ms };
}

console.log(`kiln ${JSON.stringify(kn.backends())}; default backend ${kn.getBackend()}`);
const steps = 300;
for (const b of kn.backends()) {
  const r = train(b, steps);
  console.log(
    `${b.padEnd(4)} ${steps} Adam steps on two spirals (400 points, MLP 2-64-64-2): loss ${r.loss.toFixed(4)}, ` +
      `train accuracy ${(100 * r.acc).toFixed(1)}%, ${(r.ms / steps).toFixed(2)} ms/step`,
  );
}
kn.setBackend(kn.backends()[0]!);
const gc = kn.tidy(() =>
  kn.gradcheck((a, b) => a.matmul(b).gelu().softmax().sum(0), [kn.randn([3, 4]), kn.randn([4, 5])]),
);
console.log(`gradcheck(matmul -> gelu -> softmax): ok=${gc.ok}, max abs err ${gc.maxAbsErr.toExponential(2)}`);
console.log('memory:', JSON.stringify(kn.memory()));
