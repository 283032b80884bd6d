"""Training in PyTorch: zero_grad(set_to_none) → forward → loss → backward → step, in place.

The optimiser runs on its fast path (fused where torch has it, CPU included; `optim.from_library`);
a pure (init, update) pair from `optim` works too. JAX's twin jits a pure step with donated buffers.
"""
import torch

from torch_impl.optim import Transformation


class Trainer:
    """Trains `model` with `optimizer` on `loss_fn(outputs, targets)`.

    `optimizer` is a factory `params -> torch.optim.Optimizer` (as `optim.from_library` returns),
    an Optimizer already built on the model's parameters, or a pure (init, update) pair.
    """

    def __init__(self, model, optimizer, loss_fn):
        self.model, self.loss_fn = model.train(), loss_fn
        self.params = [p for p in model.parameters() if p.requires_grad]
        self._pure = isinstance(optimizer, Transformation)
        if self._pure:
            self.optimizer, self.opt_state = optimizer, optimizer.init(tuple(p.detach() for p in self.params))
        elif isinstance(optimizer, torch.optim.Optimizer):
            self.optimizer = optimizer
        else:
            self.optimizer = optimizer(self.params)

    def step(self, x, y, idx=None):
        """One update on the batch x[idx], y[idx] (all of x, y when idx is None); returns the loss."""
        xb, yb = (x, y) if idx is None else (x[idx], y[idx])
        if self._pure:
            for p in self.params:
                p.grad = None
        else:
            self.optimizer.zero_grad(set_to_none=True)
        loss = self.loss_fn(self.model(xb), yb)
        loss.backward()
        if self._pure:
            with torch.no_grad():
                updates, self.opt_state = self.optimizer.update(
                    tuple(p.grad for p in self.params), self.opt_state, tuple(p.detach() for p in self.params))
                torch._foreach_add_(self.params, list(updates))
        else:
            self.optimizer.step()
        return loss.detach()

    def step_at(self, x, y, rows, i):
        """`step` on the batch of row i of `rows` (k, batch): x[rows[i]], y[rows[i]] (JAX's twin keeps
        the rows on the device for a whole epoch this way)."""
        return self.step(x, y, rows[i])

    def epoch(self, x, y, rows):
        """One `step` per row of `rows` (k, batch), in order; returns the k losses as one tensor
        (JAX's twin runs them in one lax.scan). A row whose first index is negative is skipped (its
        loss is nan), as in JAX's twin, where such rows pad runs to one compiled length."""
        keep = (torch.as_tensor(rows)[:, 0] >= 0).tolist()  # one read of the rows, not one per row
        losses = [self.step(x, y, r) if k else None for r, k in zip(rows, keep)]
        like = next((v for v in losses if v is not None), torch.zeros(()))
        return torch.stack([torch.full_like(like, float("nan")) if v is None else v for v in losses])

    @torch.no_grad()
    def predict(self, x):
        """The model's outputs for x under the current parameters (eval mode)."""
        self.model.eval()
        try:
            return self.model(x)
        finally:
            self.model.train()

    def accuracy(self, x, y):
        """Fraction of rows of x whose largest output is at the label in y."""
        return int((self.predict(x).argmax(dim=-1) == y).sum()) / len(y)
