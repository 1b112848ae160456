# Helpers shared by the PyTorch reference scripts of this folder.
import math

import torch


def fill(t, seed):
    """w[i] = sin(0.37 i + seed) * 0.5 in the tensor's row-major order (the tests build the same numbers)."""
    n = t.numel()
    v = torch.tensor([math.sin(0.37 * i + seed) * 0.5 for i in range(n)]).reshape(t.shape)
    with torch.no_grad():
        t.copy_(v)


def flat(t):
    return [float(x) for x in t.reshape(-1).tolist()]
