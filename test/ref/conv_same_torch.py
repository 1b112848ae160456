# Reference values for test/nn.test.ts: PyTorch's padding='same' convolutions in float64 on fixed weights and
# inputs (w[i] = sin(0.37 i + seed) * 0.5): odd and even kernels with dilation (an odd total padding puts the
# extra zero at the end), forward and input/weight gradients. Run with Debian's python3-torch:
#   /usr/bin/python3 test/ref/conv_same_torch.py > test/ref/conv_same_torch.json
import json

import torch
import torch.nn.functional as F
from common import fill, flat

torch.set_default_dtype(torch.float64)
out = {}
for name, kernel, dilation in (("k3", (3, 3), (1, 1)), ("k4x3d2", (4, 3), (1, 2)), ("k2d3", (2, 2), (3, 1))):
    x = torch.empty(2, 3, 6, 7)
    fill(x, 0.1)
    w = torch.empty(4, 3, *kernel)
    fill(w, 0.2)
    x.requires_grad_(True)
    w.requires_grad_(True)
    y = F.conv2d(x, w, padding="same", dilation=dilation)
    up = torch.empty(*y.shape)
    fill(up, 0.3)
    y.backward(up)
    out[name] = {"y": flat(y.detach()), "dx": flat(x.grad), "dw": flat(w.grad), "shape": list(y.shape)}
x1 = torch.empty(2, 3, 9)
fill(x1, 0.4)
w1 = torch.empty(5, 3, 4)
fill(w1, 0.5)
out["conv1d_k4"] = {"y": flat(F.conv1d(x1, w1, padding="same")), "shape": [2, 5, 9]}
print(json.dumps(out))
