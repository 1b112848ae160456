# Reference values for test/nn.test.ts: PyTorch's BatchNorm2d (momentum 0.1) and BatchNorm1d (momentum None,
# a cumulative average) in a small convolutional net, float32, on fixed weights and inputs (w[i] =
# sin(0.37 i + seed) * 0.5, parameters in named_parameters() order with seeds 1, 2, ...). Three training-mode
# forwards on batches filled with seeds 11, 12, 13 move the running statistics; then an eval-mode forward on
# seed 20. Writes the outputs and running statistics as JSON, and the final state dict as a safetensors file
# (written here by hand: num_batches_tracked is int64, as torch saves it). Run with Debian's python3-torch:
#   /usr/bin/python3 test/ref/batchnorm_torch.py > test/ref/batchnorm_torch.json
import json
import sys
from pathlib import Path

import torch
from common import fill, flat, save_safetensors

torch.manual_seed(0)
net = torch.nn.Sequential(
    torch.nn.Conv2d(2, 3, 3, padding=1),
    torch.nn.BatchNorm2d(3),
    torch.nn.Tanh(),
    torch.nn.Flatten(),
    torch.nn.Linear(3 * 4 * 4, 5),
    torch.nn.BatchNorm1d(5, momentum=None),
)
for i, (_, p) in enumerate(net.named_parameters()):
    fill(p, 1.0 + i)
out = {"train": []}
net.train()
for seed in (11, 12, 13):
    x = torch.empty(4, 2, 4, 4)
    fill(x, seed)
    with torch.no_grad():
        out["train"].append(flat(net(x)))
net.eval()
x = torch.empty(4, 2, 4, 4)
fill(x, 20)
with torch.no_grad():
    out["eval"] = flat(net(x))
sd = net.state_dict()
out["state"] = {k: flat(v.float()) for k, v in sd.items()}
out["keys"] = list(sd.keys())

save_safetensors(sd, Path(__file__).with_name("batchnorm_torch.safetensors"))
json.dump(out, sys.stdout)
print()
