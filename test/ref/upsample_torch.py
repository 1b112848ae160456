# Reference values for test/nn.test.ts: PyTorch's F.interpolate in float64 on fixed inputs (w[i] =
# sin(0.37 i + seed) * 0.5): nearest and bilinear (align_corners False and True), by scale factor and by size,
# up and down, forward and input gradient. Run with Debian's python3-torch:
#   /usr/bin/python3 test/ref/upsample_torch.py > test/ref/upsample_torch.json
import json

import torch
import torch.nn.functional as F
from common import fill, flat

torch.set_default_dtype(torch.float64)
CASES = [
    ("nearest_x2", dict(scale_factor=2, mode="nearest")),
    ("nearest_size", dict(size=(5, 11), mode="nearest")),
    ("nearest_down", dict(size=(2, 3), mode="nearest")),
    ("bilinear_x2", dict(scale_factor=2, mode="bilinear", align_corners=False)),
    ("bilinear_size", dict(size=(5, 11), mode="bilinear", align_corners=False)),
    ("bilinear_corners", dict(size=(5, 11), mode="bilinear", align_corners=True)),
    ("bilinear_down", dict(size=(2, 3), mode="bilinear", align_corners=False)),
    ("bilinear_x1_5", dict(scale_factor=(1.5, 2.5), mode="bilinear", align_corners=False)),
]
out = {}
for name, kw in CASES:
    x = torch.empty(2, 3, 4, 6)
    fill(x, 0.7)
    x.requires_grad_(True)
    y = F.interpolate(x, **kw)
    up = torch.empty(*y.shape)
    fill(up, 0.9)
    y.backward(up)
    out[name] = {"y": flat(y.detach()), "dx": flat(x.grad), "shape": list(y.shape)}
print(json.dumps(out))
