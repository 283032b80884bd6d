"""Seeded random data for comparing models that come without any (`parity compare` is given input
shapes only): the inputs, and the batches of a training comparison on them (inputs and MSE targets),
each drawn in NumPy the same way on every run."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def random_inputs(shapes, high, rng, dtype: str = "float32") -> tuple:
    """One array per shape from `rng`: integers in [0, high) where `high` is given (token ids), else
    N(0, 1) in `dtype`."""
    if high is not None:
        return tuple(rng.integers(0, high, s) for s in shapes)
    return tuple(rng.standard_normal(s).astype(dtype) for s in shapes)


class RandomBatches(Sequence):
    """`steps` training batches, each made when it is used (a long run never holds them all): batch
    k's inputs and MSE targets (N(0, 1), of `out_shape`) from its own generator, seeded by (seed, k)."""

    def __init__(self, shapes, high, seed: int, dtype: str, out_shape, steps: int):
        self.shapes, self.high, self.seed, self.dtype = shapes, high, seed, dtype
        self.out_shape, self.steps = out_shape, steps

    def __len__(self) -> int:
        return self.steps

    def __getitem__(self, k: int):
        if not 0 <= k < self.steps:
            raise IndexError(k)
        rng = np.random.default_rng([self.seed, 1, k])
        x = random_inputs(self.shapes, self.high, rng, self.dtype)
        return (x if len(x) > 1 else x[0]), rng.standard_normal(self.out_shape).astype(self.dtype)

