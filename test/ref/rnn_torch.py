# Reference values for test/recurrent.test.ts: PyTorch's nn.LSTM and nn.GRU in float64 on fixed weights and inputs
# (w[i] = sin(0.37 i + seed) * 0.5 in each tensor's row-major order, parameters in named_parameters() order with
# seeds 1, 2, ...), with two layers, both directions, batch_first, an initial state and a packed batch of
# sequences of lengths 5, 3 and 1. Run with Debian's python3-torch:
#   /usr/bin/python3 test/ref/rnn_torch.py > test/ref/rnn_torch.json
import json

import torch
from common import fill, flat
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

torch.set_default_dtype(torch.float64)

N, L, F, H = 3, 5, 4, 3
lengths = [5, 3, 1]
x = torch.empty(N, L, F)
fill(x, 0.25)
out = {}
for kind in ("LSTM", "GRU"):
    m = getattr(torch.nn, kind)(F, H, num_layers=2, bidirectional=True, batch_first=True)
    for i, (_, p) in enumerate(m.named_parameters()):
        fill(p, 1.0 + i)
    h0 = torch.empty(4, N, H)
    fill(h0, 0.7)
    c0 = torch.empty(4, N, H)
    fill(c0, 0.8)
    state = (h0, c0) if kind == "LSTM" else h0
    y, st = m(x, state)
    full = {"y": flat(y), "h": flat(st[0] if kind == "LSTM" else st)}
    if kind == "LSTM":
        full["c"] = flat(st[1])
    packed = pack_padded_sequence(x, lengths, batch_first=True)
    yp, stp = m(packed, state)
    yp, _ = pad_packed_sequence(yp, batch_first=True, total_length=L)
    pk = {"y": flat(yp), "h": flat(stp[0] if kind == "LSTM" else stp)}
    if kind == "LSTM":
        pk["c"] = flat(stp[1])
    out[kind] = {"full": full, "packed": pk, "names": [n for n, _ in m.named_parameters()]}
print(json.dumps({"N": N, "L": L, "F": F, "H": H, "lengths": lengths, "cases": out}))
