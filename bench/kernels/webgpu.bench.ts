// The webgpu backend side by side with cpu in one run: float32 matmul GFLOP/s (each timing ends with a read, so
// it includes the GPU's work and one round trip), the MNIST MLP's training step (784-512-256-10, batch 128,
// Adam) and the int4 linear's fused kernel. On a machine without a GPU this measures Mesa's llvmpipe (a CPU
// rasteriser) and is a correctness-path figure, not a GPU one. Rerun on a GPU with `npm run bench webgpu`
// (bench/gpu/webgpu.sh sets up Vulkan on the lent H100).
import * as kn from '../../src/index.js';
import { webgpuStatus } from '../../src/backends/webgpu/index.js';
import { fmt, measure, mlp } from '../harness.js';

const gflops = (n: number, ms: number): number => (2 * n ** 3) / (ms * 1e6);

function mlpStep(): { step: () => void; dispose: () => void } {
  kn.seed(1);
  const model = mlp([784, 512, 256, 10]);
  const opt = new kn.optim.Adam(model.parameters(), { lr: 1e-3 });
  const x = kn.randn([128, 784]),
    y = kn.randint([128], 0, 10);
  return {
    step: () => {
      kn.tidy(() => {
        const loss = kn.nn.loss.crossEntropy(model.call(x), y);
        opt.zeroGrad();
        loss.backward();
        opt.step();
        loss.item();
      });
    },
    dispose: () => {
      x.dispose();
      y.dispose();
    },
  };
}

export async function run(): Promise<void> {
  const st = webgpuStatus();
  if (!st.available) {
    console.log(`# webgpu unavailable: ${st.reason}`);
    return;
  }
  const a = st.adapter!;
  console.log(`## webgpu adapter: ${a.description || a.architecture} via ${a.backend} (${a.featureLevel})`);
  const sizes = (
    process.env.KILN_BENCH_WEBGPU_SIZES ?? (a.backend === 'vulkan' ? '256,512,1024,2048,4096' : '128,256,512')
  )
    .split(',')
    .map(Number);
  console.log('## matmul float32, GFLOP/s (median, each run ends with a read)');
  console.log('     N   webgpu      cpu  webgpu/cpu');
  for (const n of sizes) {
    const r: Record<string, number> = {};
    for (const b of ['webgpu', 'cpu'] as kn.BackendName[]) {
      kn.setBackend(b);
      kn.seed(n);
      const x = kn.randn([n, n]),
        w = kn.randn([n, n]);
      const t = await measure(
        () =>
          kn.tidy(() => {
            x.matmul(w).sum().item();
          }),
        { warmup: 2, repeats: n >= 1024 ? 10 : 30, minTimeMs: 300 },
      );
      r[b] = gflops(n, t.medianMs);
      x.dispose();
      w.dispose();
    }
    console.log(`${String(n).padStart(6)} ${fmt(r.webgpu!)} ${fmt(r.cpu!)}  ${fmt(r.webgpu! / r.cpu!, 2)}`);
  }
  console.log('## MLP 784-512-256-10 training step (batch 128, Adam, loss read back each step), steps/s');
  const steps: Record<string, number> = {};
  for (const b of ['webgpu', 'cpu'] as kn.BackendName[]) {
    kn.setBackend(b);
    const m = mlpStep();
    const t = await measure(m.step, { warmup: 3, repeats: 30, minTimeMs: 1000 });
    steps[b] = 1000 / t.medianMs;
    m.dispose();
  }
  console.log(`webgpu ${fmt(steps.webgpu!)}  cpu ${fmt(steps.cpu!)}  webgpu/cpu ${fmt(steps.webgpu! / steps.cpu!, 2)}`);
  console.log(
    '## int4 linear 784 -> 512 (groups of 32), batch 256: fused qlinearInt4 vs dequantize + matmul, ms (median)',
  );
  for (const b of ['webgpu', 'cpu'] as kn.BackendName[]) {
    kn.setBackend(b);
    kn.seed(2);
    const { packed, scale } = kn.quant.quantizeWeightsInt4(kn.randn([512, 784]), 32);
    const layer = new kn.quant.Int4Linear(784, 512, 32, { bias: false });
    layer.weightPacked.assign(packed);
    layer.weightScale.assign(scale);
    const x = kn.randn([256, 784]);
    const fused = await measure(
      () =>
        kn.tidy(() => {
          kn.qlinearInt4(x, packed, scale, null, 32).sum().item();
        }),
      { repeats: 20, minTimeMs: 300 },
    );
    const comp = await measure(
      () =>
        kn.tidy(() => {
          x.matmul(layer.dequantized().transpose()).sum().item();
        }),
      { repeats: 20, minTimeMs: 300 },
    );
    console.log(
      `${b.padEnd(7)} fused ${fmt(fused.medianMs, 2)}  composite ${fmt(comp.medianMs, 2)}  speed-up ${fmt(comp.medianMs / fused.medianMs, 2)}x`,
    );
    [packed, scale, x].forEach((t) => t.dispose());
  }
  kn.setBackend('cpu');
}
