# Helpers shared by the PyTorch reference scripts of this folder.
import json
import math
import struct

import torch


def fill(t, seed):
    """w[i] = sin(0.37 i + seed) * 0.5 in the tensor's row-major order (the tests build the same numbers)."""
    n = t.numel()
    v = torch.tensor([math.sin(0.37 * i + seed) * 0.5 for i in range(n)]).reshape(t.shape)
    with torch.no_grad():
        t.copy_(v)


def flat(t):
    return [float(x) for x in t.reshape(-1).tolist()]


def save_safetensors(sd, path):
    """A state dict as a safetensors file (8-byte header length, JSON header, little-endian bytes in header
    order), written here by hand: Debian packages no safetensors module. float32 and int64, as torch saves."""
    header, blobs, off = {}, [], 0
    for k, v in sd.items():
        raw = v.contiguous().numpy().tobytes()
        header[k] = {
            "dtype": {torch.float32: "F32", torch.int64: "I64"}[v.dtype],
            "shape": list(v.shape),
            "data_offsets": [off, off + len(raw)],
        }
        blobs.append(raw)
        off += len(raw)
    head = json.dumps(header).encode()
    head += b" " * (-len(head) % 8)
    path.write_bytes(struct.pack("<Q", len(head)) + head + b"".join(blobs))
