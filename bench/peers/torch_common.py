# Shared by the PyTorch peer scripts of this folder: the thread count and time budget from argv, the timing loop
# (warm-up, then repeats until the budget, median) and the JSON line each measurement prints.
import json
import sys
import time

import torch

threads = int(sys.argv[1])
min_s = float(sys.argv[2])
torch.set_num_threads(threads)
torch.manual_seed(0)


def timed(fn, warmup=3):
    for _ in range(warmup):
        fn()
    ts = []
    t_end = time.perf_counter() + min_s
    while len(ts) < 5 or time.perf_counter() < t_end:
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
        if len(ts) >= 2000:
            break
    ts.sort()
    return ts[len(ts) // 2] * 1000


def emit(work, size, ms):
    print(json.dumps({"work": work, "size": size, "medianMs": ms}), flush=True)
