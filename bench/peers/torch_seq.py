# PyTorch CPU peer for bench/models/sequence.bench.ts: a Transformer encoder layer training step (d 256, 4 heads,
# feed-forward 1024, dropout 0.1, batch 16 x 128 tokens, Adam), an LSTM training step (128 -> 256, batch 32 x 64
# steps, Adam) and causal attention forward + backward (4 heads of 64, L = 512 and 2048; PyTorch 1.13 has no
# fused scaled_dot_product_attention, so this is softmax(q k^T) v in ops, as its nn.MultiheadAttention does),
# and greedy decoding of 128 tokens after a 128-token prompt from a GPT-style character model (d 256, 4 heads,
# 4 pre-norm GELU layers, vocabulary 96) with a KV cache written as GPT-2 implementations do (PyTorch has none
# built in), and without one (the whole context each step, as nn.TransformerEncoder would run it).
# Usage: python3 torch_seq.py THREADS MIN_SECONDS; prints {"work", "size", "medianMs"} JSON lines.
import math

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


class Block(torch.nn.Module):
    def __init__(self, d, h):
        super().__init__()
        self.h = h
        self.ln1, self.ln2 = torch.nn.LayerNorm(d), torch.nn.LayerNorm(d)
        self.qkv, self.proj = torch.nn.Linear(d, 3 * d), torch.nn.Linear(d, d)
        self.fc1, self.fc2 = torch.nn.Linear(d, 4 * d), torch.nn.Linear(4 * d, d)

    def forward(self, x, cache):
        n, l, d = x.shape
        q, k, v = (t.view(n, l, self.h, d // self.h).transpose(1, 2) for t in self.qkv(self.ln1(x)).split(d, -1))
        if cache is not None:
            k, v = torch.cat([cache[0], k], 2), torch.cat([cache[1], v], 2)
        t = k.shape[2]
        s = q @ k.transpose(-1, -2) / math.sqrt(d // self.h)
        if l > 1:
            s = s + torch.triu(torch.full((l, t), float("-inf")), t - l + 1)
        y = (torch.softmax(s, -1) @ v).transpose(1, 2).reshape(n, l, d)
        x = x + self.proj(y)
        return x + self.fc2(torch.nn.functional.gelu(self.fc1(self.ln2(x)))), (k, v)


class CharLM(torch.nn.Module):
    def __init__(self, vocab=96, d=256, h=4, layers=4, block=256):
        super().__init__()
        self.tok, self.pos = torch.nn.Embedding(vocab, d), torch.nn.Embedding(block, d)
        self.blocks = torch.nn.ModuleList(Block(d, h) for _ in range(layers))
        self.ln, self.head = torch.nn.LayerNorm(d), torch.nn.Linear(d, vocab)

    def forward(self, ids, caches, start):
        x = self.tok(ids) + self.pos(torch.arange(start, start + ids.shape[1]))
        out = []
        for b, c in zip(self.blocks, caches):
            x, kv = b(x, c)
            out.append(kv)
        return self.head(self.ln(x)), out


lm = CharLM().eval()
prompt = torch.arange(128).remainder(96).view(1, 128)


def generate(cached):
    with torch.no_grad():
        ids, caches, fed = prompt, [None] * 4, 0
        for _ in range(128):
            feed = ids[:, fed:] if cached else ids
            logits, kv = lm(feed, caches if cached else [None] * 4, fed if cached else 0)
            if cached:
                caches, fed = kv, ids.shape[1]
            ids = torch.cat([ids, logits[:, -1].argmax(-1, keepdim=True)], 1)
        return ids


emit("generate", 128, timed(lambda: generate(True), warmup=1))
emit("generate-full", 128, timed(lambda: generate(False), warmup=1))
