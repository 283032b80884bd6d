"""What a concept is: plain data plus two implementations (like torch's OpInfo entries).

A concept names its JAX and PyTorch adapters, a seeded generator of NumPy samples (in PyTorch's
layout, the canonical one), how parameters convert, which gradients to compare, and which leaf
functions it covers. The concepts themselves are listed in `parity/concepts/`; `parity.registry`
indexes that list.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

TWINS = ("jax_impl", "torch_impl")


@dataclass(frozen=True)
class Sample:
    """One input case: NumPy inputs and torch-layout parameters, plus static options."""

    label: str
    inputs: dict[str, np.ndarray]
    params: dict[str, np.ndarray] = field(default_factory=dict)
    kwargs: dict[str, Any] = field(default_factory=dict)
    fd_ok: bool = True  # False where a kink (relu at 0) makes finite differences meaningless


@dataclass(frozen=True)
class Concept:
    """A concept implemented twice.

    `jax` and `torch` are adapters `f(params, inputs, **kwargs) -> array or tuple of arrays` that
    take and return the canonical (torch) layout; layout changes happen inside the JAX adapter, so
    gradients come back in the canonical layout too. Parameter gradients of the JAX side are in
    Flax layout and go back through `grads_to_torch`. `covers` names the leaf functions and classes
    (dotted, relative to `jax_impl`/`torch_impl`) the concept runs: `parity show` prints their
    source and the twins test checks every public leaf name is covered.
    """

    name: str
    group: str
    summary: str
    samples: Callable[[np.random.Generator, np.dtype], list[Sample]]
    jax: Callable[..., Any]
    torch: Callable[..., Any]
    covers: tuple[str, ...]
    grad_inputs: tuple[str, ...] = ()
    differentiable: bool = True
    params_to_jax: Callable[[dict], dict] | None = None
    grads_to_torch: Callable[[dict], dict] | None = None
    jit: bool = True  # the runner jits the JAX adapter; False only where tracing is impossible


@dataclass(frozen=True)
class Leaf:
    """An adapter that calls the leaf `name` ("activations.relu") of one twin package.

    The leaf is looked up at call time, so a patched leaf (a mutant in the tests) is what runs;
    `call(fn, params, inputs, **kwargs)` maps the runner's arguments onto the leaf's signature.
    """

    package: str
    name: str
    call: Callable[..., Any]

    def resolve(self) -> Callable[..., Any]:
        module, _, attr = self.name.rpartition(".")
        return getattr(importlib.import_module(f"{self.package}.{module}"), attr)

    def __call__(self, params, inputs, **kwargs):
        return self.call(self.resolve(), params, inputs, **kwargs)


def twin(name: str, group: str, summary: str, leaf: str, call: Callable[..., Any],
         also_covers: tuple[str, ...] = (), **fields) -> Concept:
    """A concept whose two adapters call the same dotted leaf name in each twin, the same way.

    Both adapters and `covers` come from the one name, so the source `parity show` prints, the
    function the benchmarks time and the function the tests compare cannot drift apart.
    """
    jax_leaf, torch_leaf = (Leaf(pkg, leaf, call) for pkg in TWINS)
    return Concept(name=name, group=group, summary=summary, jax=jax_leaf, torch=torch_leaf,
                   covers=(leaf, *also_covers), **fields)
