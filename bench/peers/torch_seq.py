# PyTorch CPU peer for bench/models/sequence.bench.ts: a Transformer encoder layer training step (d 256, 4 heads,
# feed-forward 1024, dropout 0.1, batch 16 x 128 tokens, Adam), an LSTM training step (128 -> 256, batch 32 x 64
# steps, Adam) and causal attention forward + backward (4 heads of 64, L = 512 and 2048; PyTorch 1.13 has no
# fused scaled_dot_product_attention, so this is softmax(q k^T) v in ops, as its nn.MultiheadAttention does).
# Usage: python3 torch_seq.py THREADS MIN_SECONDS; prints {"work", "size", "medianMs"} JSON lines.
import torch
from torch_common import emit, timed


def step_of(model, x):
    opt = torch.optim.Adam(model.parameters(), lr=3e-4)

    def step():
        opt.zero_grad()
        out = model(x)
        loss = (out[0] if isinstance(out, tuple) else out).pow(2).mean()
        loss.backward()
        opt.step()
        return loss.item()

    return step


enc = torch.nn.TransformerEncoderLayer(256, 4, 1024, dropout=0.1, batch_first=True)
emit("encoder", 128, timed(step_of(enc, torch.randn(16, 128, 256))))
lstm = torch.nn.LSTM(128, 256, batch_first=True)
emit("lstm", 64, timed(step_of(lstm, torch.randn(32, 64, 128))))
for L in [512, 2048]:
    q, k, v = (torch.randn(4, L, 64, requires_grad=True) for _ in range(3))
    causal = torch.triu(torch.full((L, L), float("-inf")), 1)

    def att():
        q.grad = k.grad = v.grad = None
        s = torch.softmax(q @ k.transpose(1, 2) / 8.0 + causal, -1)
        (s @ v).sum().backward()

    emit("attention", L, timed(att, warmup=1))
