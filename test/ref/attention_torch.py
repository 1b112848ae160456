# Reference values for test/attention.test.ts: PyTorch's nn.MultiheadAttention and nn.TransformerEncoderLayer /
# nn.TransformerDecoderLayer (post- and pre-norm) in float64 on fixed weights and inputs, written as JSON.
# Weights and inputs are w[i] = sin(0.37 i + seed) * 0.5 in each tensor's row-major order, so the test builds the
# same numbers. Also writes the post-norm decoder layer's state dict as attention_torch.safetensors (PyTorch's
# names, in_proj_weight fused). Run with Debian's python3-torch:  /usr/bin/python3 test/ref/attention_torch.py > test/ref/attention_torch.json
import json
from pathlib import Path

import torch
from common import fill, flat, save_safetensors

torch.set_default_dtype(torch.float64)


def mha_params(mha, seed):
    # kiln keeps q/k/v as three Linear layers; torch's in_proj_weight is their rows stacked
    E = mha.embed_dim
    w = torch.empty(3 * E, E)
    b = torch.empty(3 * E)
    for j in range(3):
        fill(w[j * E : (j + 1) * E], seed + j)
        fill(b[j * E : (j + 1) * E], seed + 10 + j)
    with torch.no_grad():
        mha.in_proj_weight.copy_(w)
        mha.in_proj_bias.copy_(b)
    fill(mha.out_proj.weight, seed + 3)
    fill(mha.out_proj.bias, seed + 13)


def layer_params(layer, seed, decoder):
    mha_params(layer.self_attn, seed)
    if decoder:
        mha_params(layer.multihead_attn, seed + 20)
    fill(layer.linear1.weight, seed + 4)
    fill(layer.linear1.bias, seed + 14)
    fill(layer.linear2.weight, seed + 5)
    fill(layer.linear2.bias, seed + 15)
    norms = [layer.norm1, layer.norm2] + ([layer.norm3] if decoder else [])
    for i, n in enumerate(norms):
        fill(n.weight, seed + 6 + i)
        fill(n.bias, seed + 16 + i)



N, L, S, E, H, F = 2, 3, 4, 8, 2, 16
x = torch.empty(N, L, E)
fill(x, 0.5)
mem = torch.empty(N, S, E)
fill(mem, 0.9)
out = {}

mha = torch.nn.MultiheadAttention(E, H, batch_first=True)
mha_params(mha, 1.0)
y, w = mha(x, x, x)
out["mha_self"] = {"y": flat(y), "w": flat(w)}
pad = torch.tensor([[False, False, False, True], [False, True, False, False]])
y, w = mha(x, mem, mem, key_padding_mask=pad)
out["mha_cross_pad"] = {"y": flat(y), "w": flat(w)}
causal = torch.triu(torch.ones(L, L, dtype=torch.bool), 1)
y, _ = mha(x, x, x, attn_mask=causal)
out["mha_causal"] = {"y": flat(y)}

for norm_first in (False, True):
    enc = torch.nn.TransformerEncoderLayer(E, H, F, dropout=0.0, batch_first=True, norm_first=norm_first)
    layer_params(enc, 2.0, False)
    enc.eval()
    out["enc_" + ("pre" if norm_first else "post")] = {"y": flat(enc(x))}
    dec = torch.nn.TransformerDecoderLayer(E, H, F, dropout=0.0, batch_first=True, norm_first=norm_first)
    layer_params(dec, 3.0, True)
    dec.eval()
    out["dec_" + ("pre" if norm_first else "post")] = {"y": flat(dec(x, mem, tgt_mask=causal))}
    if not norm_first:  # PyTorch's own state dict (fused in_proj), in float32 as models are saved
        sd = {k: v.float() for k, v in dec.state_dict().items()}
        save_safetensors(sd, Path(__file__).with_name("attention_torch.safetensors"))
enc = torch.nn.TransformerEncoderLayer(E, H, F, dropout=0.0, batch_first=True, activation="gelu")
layer_params(enc, 2.0, False)
enc.eval()
out["enc_gelu"] = {"y": flat(enc(x))}

print(json.dumps({"N": N, "L": L, "S": S, "E": E, "H": H, "F": F, "cases": out}))
