# PyTorch reference figures for the kiln CUDA benchmarks (bench/gpu/check.sh): cuBLAS SGEMM (TF32 off and on) and
# BF16 GEMM at the same sizes, and the MNIST MLP training step (784-512-256-10, batch 128, Adam, eager) with the
# loss read back every step, like kiln's. Prints one JSON object per line.
import json
import time

import torch

torch.manual_seed(0)
dev = torch.device("cuda")


def timed(fn, warmup=3, reps=20):
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        ts.append(time.perf_counter() - t0)
    ts.sort()
    return ts[len(ts) // 2]


for n in [1024, 2048, 4096]:
    for mode in ["fp32", "tf32", "bf16"]:
        torch.backends.cuda.matmul.allow_tf32 = mode == "tf32"
        dt = torch.bfloat16 if mode == "bf16" else torch.float32
        a = torch.randn(n, n, device=dev, dtype=dt)
        b = torch.randn(n, n, device=dev, dtype=dt)
        s = timed(lambda: a @ b)
        print(json.dumps({"bench": "gemm", "peer": "torch/cublas", "mode": mode, "n": n, "tflops": 2 * n**3 / s / 1e12}))

torch.backends.cuda.matmul.allow_tf32 = False
model = torch.nn.Sequential(
    torch.nn.Linear(784, 512), torch.nn.ReLU(), torch.nn.Linear(512, 256), torch.nn.ReLU(), torch.nn.Linear(256, 10)
).to(dev)
opt = torch.optim.Adam(model.parameters(), lr=1e-3)
x = torch.randn(128, 784, device=dev)
y = torch.randint(0, 10, (128,), device=dev)


def step():
    loss = torch.nn.functional.cross_entropy(model(x), y)
    opt.zero_grad()
    loss.backward()
    opt.step()
    loss.item()


s = timed(step, warmup=10, reps=200)
print(json.dumps({"bench": "mlp", "peer": "torch eager", "steps_per_s": 1 / s}))
