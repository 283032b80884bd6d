"""Derivatives and gradient descent in PyTorch (docs/concepts.md §2).

torch records operations on tensors with `requires_grad` and `backward()` accumulates into `.grad`
until it is zeroed; a non-scalar output needs a `gradient=` argument (docs/traps.md, trap 26).
"""
import torch


def quadratic(x):
    """The seed's y = 2x² + 3x + 1 (dy/dx = 4x + 3, so 11 at x = 2)."""
    return 2 * x**2 + 3 * x + 1


def poly_sum(x):
    """The seed's y = Σ (x² + 2x + 1) (dy/dx = 2x + 2)."""
    return torch.sum(x**2 + 2 * x + 1)


def value_and_grad(fn, x):
    """(fn(x), d fn / dx) for a scalar-valued fn, via `requires_grad_` and `backward()`."""
    x = x.detach().clone().requires_grad_(True)
    y = fn(x)
    y.backward()
    return y.detach(), x.grad


@torch.no_grad()
def gd_step(params, grads, lr):
    """One step of the update rule w ← w − lr · dJ/dw over a tuple of tensors (new tensors)."""
    return tuple(p - lr * g for p, g in zip(params, grads))


def fit_line(xs, ys, k0, b0, lr, steps):
    """Fit y = kx + b to points by full-batch gradient descent on the mean squared error.

    Returns (k, b). Each step records the graph, calls `backward()`, updates and zeroes `.grad`.
    """
    k = torch.tensor(k0, dtype=xs.dtype, requires_grad=True)
    b = torch.tensor(b0, dtype=xs.dtype, requires_grad=True)
    for _ in range(steps):
        loss = torch.mean((k * xs + b - ys) ** 2)
        loss.backward()
        with torch.no_grad():
            k -= lr * k.grad
            b -= lr * b.grad
        k.grad = None
        b.grad = None
    return k.detach(), b.detach()
