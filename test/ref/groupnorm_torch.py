# Reference values for test/nn.test.ts: PyTorch's nn.GroupNorm in float64 on fixed weights and inputs (w[i] =
# sin(0.37 i + seed) * 0.5), forward and backward, for a 4-D input with an affine weight and bias, a 3-D input
# without them, and a 2-D input in one group. Run with Debian's python3-torch:
#   /usr/bin/python3 test/ref/groupnorm_torch.py > test/ref/groupnorm_torch.json
import json

import torch
from common import fill, flat

torch.set_default_dtype(torch.float64)
out = {}
for name, groups, channels, shape, affine in (
    ("affine4d", 3, 6, (2, 6, 3, 4), True),
    ("plain3d", 2, 4, (3, 4, 5), False),
    ("one2d", 1, 4, (2, 4), True),
):
    gn = torch.nn.GroupNorm(groups, channels, affine=affine)
    if affine:
        fill(gn.weight, 1.0)
        fill(gn.bias, 2.0)
    x = torch.empty(*shape)
    fill(x, 0.3)
    x = x * 3 + 1  # away from zero mean and unit variance, so the normalisation does something
    x.requires_grad_(True)
    y = gn(x)
    up = torch.empty(*shape)
    fill(up, 5.0)
    y.backward(up)
    case = {"y": flat(y.detach()), "dx": flat(x.grad)}
    if affine:
        case["dweight"] = flat(gn.weight.grad)
        case["dbias"] = flat(gn.bias.grad)
    out[name] = case
print(json.dumps(out))
