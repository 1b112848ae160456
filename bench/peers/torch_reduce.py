# PyTorch CPU peer for bench/kernels/reduce.bench.ts: the same reductions, timed the same way, and the same
# accuracy probes. Usage: python3 torch_reduce.py THREADS MIN_SECONDS
# Prints one JSON object per line: {"work": ..., "size": ..., "medianMs": ...} or {"work": ..., "value": ...}.
import json

import torch
from torch_common import emit, timed

F = torch.nn.functional
x = torch.rand(1 << 22)
emit("sum", 1 << 22, timed(lambda: x.sum().item()))
rows = torch.rand(4096, 256)
emit("rowsum", 4096, timed(lambda: rows.sum(1)))
cols = torch.rand(65536, 64)
emit("colsum", 65536, timed(lambda: cols.sum(0)))
logits = torch.randn(512, 1000)
emit("softmax", 512, timed(lambda: torch.softmax(logits, 1)))
emit("logsoftmax", 512, timed(lambda: torch.log_softmax(logits, 1)))
lg = logits.clone().requires_grad_(True)
labels = torch.randint(0, 1000, (512,))


def ce_step():
    lg.grad = None
    F.cross_entropy(lg, labels).backward()


emit("ce", 512, timed(ce_step))


def acc(work, value):
    print(json.dumps({"work": work, "value": value}), flush=True)


# relative errors against float64: a whole sum and column sums of 0.1f, and log-softmax of logits near 1e4
tenth = torch.tensor(0.1).double().item()
acc("err-sum", abs(torch.full([1 << 22], 0.1).sum().double().item() - tenth * 2**22) / (tenth * 2**22))
c = torch.full([1 << 18, 4], 0.1).sum(0).double()
acc("err-colsum", ((c - tenth * 2**18).abs() / (tenth * 2**18)).max().item())
big = (torch.randn(256, 100) + 1e4).float()
ref = torch.log_softmax(big.double(), 1)
acc("err-logsoftmax", ((torch.log_softmax(big, 1).double() - ref).abs() / ref.abs()).max().item())
