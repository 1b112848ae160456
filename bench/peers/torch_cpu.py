# PyTorch CPU peer for bench/models/torch.bench.ts: the same work as kiln's benches, timed the same way (warm-up,
# then repeats until a time budget, median). Usage: python3 torch_cpu.py THREADS MIN_SECONDS
# Prints one JSON object per line: {"work": ..., "size": ..., "medianMs": ...}.
# Thread count: torch.set_num_threads for oneDNN/ATen, and the caller sets OPENBLAS_NUM_THREADS (OpenBLAS, which
# torch uses for GEMM on Debian, ignores set_num_threads) and OPENBLAS_CORETYPE.
import torch
from torch_common import emit, timed


for n in [128, 256, 512, 1024]:
    a, b = torch.randn(n, n), torch.randn(n, n)
    emit("gemm", n, timed(lambda: torch.mm(a, b)))

for n in [16, 64]:
    x = torch.randn(n, 16, 28, 28, requires_grad=True)
    w = torch.randn(32, 16, 3, 3, requires_grad=True)

    def conv_step():
        x.grad = None
        w.grad = None
        torch.nn.functional.conv2d(x, w, padding=1).sum().backward()

    emit("conv", n, timed(conv_step))


def train_step(model, x, y):
    opt = torch.optim.Adam(model.parameters(), lr=3e-4)
    loss_fn = torch.nn.CrossEntropyLoss()

    def step():
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        return loss.item()

    return step


mlp = torch.nn.Sequential(torch.nn.Linear(784, 256), torch.nn.ReLU(), torch.nn.Linear(256, 10))
emit("mlp", 128, timed(train_step(mlp, torch.randn(128, 784), torch.randint(0, 10, (128,)))))

lenet = torch.nn.Sequential(
    torch.nn.Conv2d(1, 6, 5, padding=2),
    torch.nn.ReLU(),
    torch.nn.MaxPool2d(2),
    torch.nn.Conv2d(6, 16, 5),
    torch.nn.ReLU(),
    torch.nn.MaxPool2d(2),
    torch.nn.Flatten(),
    torch.nn.Linear(400, 120),
    torch.nn.ReLU(),
    torch.nn.Linear(120, 84),
    torch.nn.ReLU(),
    torch.nn.Linear(84, 10),
)
emit("cnn", 64, timed(train_step(lenet, torch.randn(64, 1, 28, 28), torch.randint(0, 10, (64,)))))

# the optimizer step alone over many small parameters (multi-tensor "foreach" Adam, and SGD with momentum)
params = [torch.randn(256, requires_grad=True) for _ in range(200)]
for p in params:
    p.grad = torch.randn(256)
adam = torch.optim.Adam(params, lr=3e-4, foreach=True)
emit("adam", 200, timed(adam.step))
sgd = torch.optim.SGD(params, lr=1e-2, momentum=0.9, foreach=True)
emit("sgd", 200, timed(sgd.step))
