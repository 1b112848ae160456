# Reference values for the special-value checks of test/conformance.test.ts: PyTorch's float32 results (and
# gradients) of the elementwise ops, reductions, (log-)softmax, cross-entropy and casts on signed zeros,
# infinities, NaN, subnormals and huge values, written as JSON. Non-finite numbers are the strings "nan", "inf",
# "-inf" and "-0". Run with Debian's python3-torch:
#   /usr/bin/python3 test/ref/special_torch.py > test/ref/special_torch.json
import json
import math

import torch

F = torch.nn.functional
NAN, INF = float("nan"), float("inf")


def enc(values):
    out = []
    for x in values:
        x = float(x)
        if math.isnan(x):
            out.append("nan")
        elif math.isinf(x):
            out.append("inf" if x > 0 else "-inf")
        elif x == 0 and math.copysign(1, x) < 0:
            out.append("-0")
        else:
            out.append(x)
    return out


def flat(t):
    return enc(t.detach().float().reshape(-1).tolist())


def f32(values, shape=None):
    t = torch.tensor(values, dtype=torch.float32)
    return t.reshape(shape) if shape else t


SPECIAL = [0.0, -0.0, 1.0, -1.0, 0.5, -2.5, 3.0, INF, -INF, NAN, 1e-30, -1e-30, 1e-45, 88.7, -104.0, 1e38, -1e38,
           20.0, -20.0, 2.0]
cases = []


def case(name, op, inputs, out, **extra):
    cases.append({"name": name, "op": op, "inputs": [{"values": flat(t), "shape": list(t.shape)} for t in inputs],
                  "out": flat(out), **extra})


x = f32(SPECIAL)
unary = {"neg": torch.neg, "abs": torch.abs, "sign": torch.sign, "exp": torch.exp, "log": torch.log,
         "sqrt": torch.sqrt, "tanh": torch.tanh, "sigmoid": torch.sigmoid, "relu": torch.relu, "gelu": F.gelu,
         "silu": F.silu}
for op, fn in unary.items():
    case(f"{op} of special values", op, [x], fn(x))

a, b = x.repeat_interleave(len(SPECIAL)), x.repeat(len(SPECIAL))  # every pair
binary = {"add": torch.add, "sub": torch.sub, "mul": torch.mul, "div": torch.div, "pow": torch.pow,
          "maximum": torch.maximum, "minimum": torch.minimum, "eq": torch.eq, "ne": torch.ne, "lt": torch.lt,
          "le": torch.le, "gt": torch.gt, "ge": torch.ge}
for op, fn in binary.items():
    case(f"{op} of every pair of special values", op, [a, b], fn(a, b))

for lo, hi in [(0.0, 1.0), (-1.0, None), (None, 2.0), (1.0, 1.0)]:
    case(f"clamp to [{lo}, {hi}] of special values", "clamp", [x], torch.clamp(x, lo, hi), lo=lo, hi=hi)

rows = f32([[1, 2, NAN, 0, 5], [INF, 1, 2, INF, 3], [-INF] * 5, [3, 3, 1, 3, -0.0], [INF, -INF, 0, 1, 2],
            [7] * 5, [1e38, 1e38, 1e38, -1e38, 1], [NAN, INF, 1, NAN, 2], [1e8, 1e8, 1e8 - 8, 1e8, -1e8],
            [1e4 + 0.5, 1e4, 1e4 - 0.25, 9990, 1e4 + 0.5], [-1e8, -1e8 - 8, -1e8, -1e8 + 8, -1e8]])
for axis in (1, 0):
    reductions = {"sum": lambda t: t.sum(axis), "mean": lambda t: t.mean(axis), "max": lambda t: t.amax(axis),
                  "min": lambda t: t.amin(axis), "argmax": lambda t: t.argmax(axis),
                  "argmin": lambda t: t.argmin(axis), "var": lambda t: t.var(axis),
                  "softmax": lambda t: torch.softmax(t, axis), "logSoftmax": lambda t: torch.log_softmax(t, axis)}
    for op, fn in reductions.items():
        case(f"{op} over axis {axis} of rows with special and huge values", op, [rows], fn(rows), axis=axis)

# cross-entropy of huge logits: log-softmax is (x - max) - log sum exp(x - max)
logits = f32([[1e8, 1e8, 1e8 - 8, 0], [1e4 + 0.5, 1e4, 1e4 - 0.25, 9990], [-1e8, -1e8 - 8, -1e8, -1e8 + 8],
              [3e38, 3e38, 2e38, 2.9e38], [0.5, -1, 2, 0.25]])
labels = torch.tensor([0, 2, 3, 1, 2])
weight = f32([0.5, 2, 1, 1.5])
for smoothing in (0.0, 0.1):
    for w in (None, weight):
        lg = logits.clone().requires_grad_(True)
        loss = F.cross_entropy(lg, labels, weight=w, label_smoothing=smoothing, reduction="none")
        loss.backward(f32([1, -0.5, 2, 1, 0.25]))
        case(f"crossEntropy of huge logits, smoothing {smoothing}{', weighted' if w is not None else ''}",
             "crossEntropy", [logits], loss, labels=labels.tolist(), smoothing=smoothing,
             weight=None if w is None else flat(w), rowGrad=[1, -0.5, 2, 1, 0.25], grad=flat(lg.grad))

casts = {"bool": (f32([0.0, -0.0, 1.7, -1.7, 0.49, NAN, INF, 1e-45]), torch.bool),
         "int32": (f32([0.0, -0.0, 1.7, -1.7, 2.5, -2.5, 255.9, 1e9, -1e9, 0.49, 2147483520.0]), torch.int32),
         "uint8": (f32([0.0, 1.7, 2.5, 127.5, 255.9, 0.49]), torch.uint8),
         "int8": (f32([0.0, -1.7, 1.7, 127.5, -128.5]), torch.int8),
         "float16": (f32([1.00048828125, 1.00146484375, 65504, 65519, 65520, 1e-8, 6e-8, 3e38, -1.00048828125,
                          5.96e-8, 2.98e-8, 70000, NAN, -INF]), torch.float16),
         "bfloat16": (f32([1.00390625, 1.01171875, 1.0117188, 3.3895314e38, 3.4e38, 1e-40, -1.00390625, NAN, INF,
                           9.2e-41]), torch.bfloat16)}
for to, (v, dt) in casts.items():
    case(f"cast to {to}", "cast", [v], v.to(dt), to=to)

# gradients of sum(f(x)) at special points
P = f32([0.0, -0.0, 1.0, -1.0, 2.0, -2.0, 0.5, 3.0, INF, -INF, 1e-3])
for op in ["abs", "relu", "sqrt", "log", "exp", "tanh", "sigmoid", "gelu", "silu", "neg"]:
    t = P.clone().requires_grad_(True)
    unary[op](t).sum().backward()
    case(f"gradient of {op} at special points", op, [P], t.grad, grad=True)
A = f32([0.0, 1.0, 2.0, -1.0, 2.0, 0.0, -2.0, 3.0, 0.0, 4.0])
B = f32([0.0, 1.0, 1.0, 3.0, 2.0, 2.0, 0.5, -0.5, -1.0, 0.0])
for op in ["maximum", "minimum", "pow", "div", "mul"]:
    ta, tb = A.clone().requires_grad_(True), B.clone().requires_grad_(True)
    binary[op](ta, tb).sum().backward()
    case(f"gradient of {op} at ties and zeros", op, [A, B], ta.grad, gradB=flat(tb.grad), grad=True)
C = f32([-1.0, 0.0, 0.5, 1.0, 2.0, -2.0])
for lo, hi in [(0.0, 1.0), (-1.0, None), (None, 2.0)]:
    t = C.clone().requires_grad_(True)
    torch.clamp(t, lo, hi).sum().backward()
    case(f"gradient of clamp to [{lo}, {hi}] at its bounds", "clamp", [C], t.grad, lo=lo, hi=hi, grad=True)
R = f32([[1, 3, 3, 2], [5, 5, 5, 5], [0, -1, -1, -2]])
for op, fn in {"max": lambda t: t.amax(1), "min": lambda t: t.amin(1), "var": lambda t: t.var(1)}.items():
    t = R.clone().requires_grad_(True)
    fn(t).sum().backward()
    case(f"gradient of {op} over axis 1 with ties", op, [R], t.grad, axis=1, grad=True)

json.dump({"torch": torch.__version__, "cases": cases}, __import__("sys").stdout, separators=(",", ":"))
