# Reference values for test/higher-order.test.ts ("MAML"): one inner SGD step on a support set, the query loss
# at the adapted weights, and its gradient with respect to the initial weights through the inner step
# (second order, create_graph=True). Run with Debian's python3-torch:  /usr/bin/python3 test/ref/maml_torch.py
import torch

torch.set_default_dtype(torch.float64)
W = torch.tensor([[0.5, -0.3, 0.8], [0.1, 0.4, -0.6]], requires_grad=True)  # [2, 3]: 3 inputs -> 2 outputs
b = torch.tensor([0.05, -0.1], requires_grad=True)
xs = torch.tensor([[1.0, 0.5, -0.2], [0.3, -1.0, 0.7], [-0.4, 0.2, 0.9]])
ys = torch.tensor([[0.2, -0.1], [0.0, 0.3], [-0.2, 0.1]])
xq = torch.tensor([[0.6, -0.3, 0.1], [-0.8, 0.4, 0.5]])
yq = torch.tensor([[0.1, 0.2], [-0.3, 0.0]])
# kiln's scalar operands are float32 values (the js backend computes in float64 from there): use the same number
alpha = float(torch.tensor(0.4, dtype=torch.float32))


def f(W, b, x):
    return torch.tanh(x @ W.t() + b)


inner = ((f(W, b, xs) - ys) ** 2).mean()
gW, gb = torch.autograd.grad(inner, (W, b), create_graph=True)
W1, b1 = W - alpha * gW, b - alpha * gb
outer = ((f(W1, b1, xq) - yq) ** 2).mean()
oW, ob = torch.autograd.grad(outer, (W, b))
print("outer loss", repr(outer.item()))
print("dW", [[repr(v) for v in row] for row in oW.tolist()])
print("db", [repr(v) for v in ob.tolist()])
