"""The registry of concepts: each one is data plus two implementations (like torch's OpInfo).

A concept names its JAX and PyTorch adapters, a seeded generator of NumPy samples (in PyTorch's
layout, the canonical one), how parameters convert, which gradients to compare, and which leaf
functions it covers. Tests, the CLI and the benchmarks all iterate over this one registry.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np


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
    Flax layout and go back through `grads_to_torch`.
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
    nonfinite_ok: bool = False
    jit: bool = True  # the runner jits the JAX adapter; False only where tracing is impossible
    tol_scale: float = 1.0
    tol_reason: str = ""

    def __post_init__(self):
        if self.tol_scale != 1.0 and not self.tol_reason:
            raise ValueError(f"concept {self.name}: a widened tolerance needs tol_reason")


REGISTRY: dict[str, Concept] = {}

# Leaf functions that no parity comparison can cover, with the reason and where they are tested.
NOT_COMPARED: dict[str, str] = {
    "tensors.randn": "the frameworks' random streams differ by design (trap 17); "
                     "tests/test_goldens.py checks shape, dtype and moments in each",
}


def register(concept: Concept) -> Concept:
    if concept.name in REGISTRY:
        raise ValueError(f"concept {concept.name!r} registered twice")
    REGISTRY[concept.name] = concept
    return concept


def all_concepts() -> list[Concept]:
    _load()
    return list(REGISTRY.values())


def groups() -> list[str]:
    return sorted({c.group for c in all_concepts()})


class UnknownConcept(KeyError):
    def __init__(self, name: str, close: list[str]):
        self.name, self.close = name, close
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        super().__init__(f"unknown concept or group {name!r}{hint}")

    def __str__(self):
        return self.args[0]


def select(names: list[str] | None) -> list[Concept]:
    """Concepts by name or group name (all when `names` is empty), in registry order."""
    concepts = all_concepts()
    if not names:
        return concepts
    chosen: list[Concept] = []
    for n in names:
        hit = [c for c in concepts if c.name == n or c.group == n]
        if not hit:
            raise UnknownConcept(n, close_names(n))
        chosen += [c for c in hit if c not in chosen]
    return chosen


def get(name: str) -> Concept:
    _load()
    if name not in REGISTRY:
        raise UnknownConcept(name, close_names(name))
    return REGISTRY[name]


def close_names(name: str) -> list[str]:
    """Concept or group names resembling `name`, matching full names and the part after the dot."""
    concepts = all_concepts()
    by_key = {c.name: c.name for c in concepts}
    by_key.update({c.name.split(".", 1)[-1]: c.name for c in concepts})
    by_key.update({g: g for g in groups()})
    hits = difflib.get_close_matches(name, list(by_key), n=5, cutoff=0.6)
    return list(dict.fromkeys(by_key[h] for h in hits))


def _load():
    import parity.concepts  # noqa: F401  (registers everything on import)
