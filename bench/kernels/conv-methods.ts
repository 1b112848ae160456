// Child of conv.bench.ts: times the three conv2d kernels (forward, input gradient, weight gradient) per layer
// shape on the method KILN_CONV_ALGO selects in this process (im2col, direct, or the rule when unset), on
// KILN_NUM_THREADS threads, and prints one JSON line: [{ shape, fwd, input, weight }] in µs per call (median of
// five profiled rounds).
import * as kn from '../../src/index.js';

export const METHOD_SHAPES: [string, number[], number[], kn.Conv2dOptions][] = [
  ['16x28x28 -> 32, 3x3 pad 1', [16, 16, 28, 28], [32, 16, 3, 3], { padding: 1 }],
  ['1x28x28 -> 6, 5x5 pad 2', [64, 1, 28, 28], [6, 1, 5, 5], { padding: 2 }],
  ['6x14x14 -> 16, 5x5', [64, 6, 14, 14], [16, 6, 5, 5], {}],
  ['3x32x32 -> 32, 3x3 pad 1', [32, 3, 32, 32], [32, 3, 3, 3], { padding: 1 }],
  ['64x56x56 -> 64, 3x3 pad 1 (N=1)', [1, 64, 56, 56], [64, 64, 3, 3], { padding: 1 }],
  ['128x14x14 -> 128, 3x3 pad 1', [8, 128, 14, 14], [128, 128, 3, 3], { padding: 1 }],
  ['64x8x8 -> 64, 3x3 pad 1', [32, 64, 8, 8], [64, 64, 3, 3], { padding: 1 }],
  ['16x9x9 -> 32, 5x5', [32, 16, 9, 9], [32, 16, 5, 5], {}],
  ['32x4x4 -> 32, 3x3 pad 1', [64, 32, 4, 4], [32, 32, 3, 3], { padding: 1 }],
];

export interface MethodRow {
  shape: string;
  fwd: number;
  input: number;
  weight: number;
}

async function main(): Promise<void> {
  const rows: MethodRow[] = [];
  for (const [shape, xs, ws, o] of METHOD_SHAPES) {
    kn.seed(1);
    const x = kn.randn(xs),
      w = kn.randn(ws);
    x.requiresGrad = true;
    w.requiresGrad = true;
    const step = (): void =>
      kn.tidy(() => {
        x.grad?.dispose();
        w.grad?.dispose();
        x.grad = null;
        w.grad = null;
        kn.conv2d(x, w, null, o).sum().backward();
      });
    for (let i = 0; i < 3; i++) step();
    const per: Record<'fwd' | 'input' | 'weight', number[]> = { fwd: [], input: [], weight: [] };
    for (let r = 0; r < 5; r++) {
      const p = kn.profile(() => {
        for (let i = 0; i < 6; i++) step();
      });
      const us = (op: string): number => ((p.ops.find((e) => e.op === op)?.kernelMs ?? NaN) / 6) * 1000;
      per.fwd.push(us('conv2d'));
      per.input.push(us('conv2dBackwardInput'));
      per.weight.push(us('conv2dBackwardWeight'));
    }
    const med = (v: number[]): number => [...v].sort((a, b) => a - b)[2]!;
    rows.push({ shape, fwd: med(per.fwd), input: med(per.input), weight: med(per.weight) });
    x.dispose();
    w.dispose();
  }
  console.log(JSON.stringify(rows));
}

if (process.argv[1]?.endsWith('conv-methods.ts')) await main();
