"""What a concept is: plain data plus two implementations (like torch's OpInfo entries).

A concept names its JAX and PyTorch adapters, a seeded generator of NumPy samples (in PyTorch's
layout, the canonical one), how parameters convert, which gradients to compare, which leaf
functions it covers, the dtypes it runs in and the traps of docs/traps.md it shows. A dtype whose
samples or adapters differ from the concept's own (float16, integers, complex) is a `Variant` of
it. The concepts themselves are listed in `parity/concepts/`; `parity.registry` indexes that list.
"""
from __future__ import annotations

import dataclasses
import importlib
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from parity.names import FLOATS

TWINS = ("jax_impl", "torch_impl")


def np_dtype(name: str) -> np.dtype:
    """The NumPy dtype of a dtype name, bfloat16 included (ml_dtypes', the one JAX uses)."""
    if name == "bfloat16":
        import ml_dtypes  # installed with jax
        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype(name)


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

    `dtypes` are the dtypes the concept runs in, each a row of `parity check`: the sample generator
    receives the dtype; a dtype listed in one of `variants` runs that variant's samples and adapters
    instead (`at`). `traps` are the numbers of the docs/traps.md sections the concept shows
    (tests/test_concept_traps.py checks them against docs/traps.md).
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
    dtypes: tuple[str, ...] = FLOATS
    variants: tuple[Variant, ...] = ()
    traps: tuple[int, ...] = ()

    def __post_init__(self):
        extra = [d for v in self.variants for d in v.dtypes if d not in self.dtypes]
        if extra:
            raise ValueError(f"{self.name}: variant dtypes {extra} are not among its dtypes {self.dtypes}")

    def at(self, dtype: str) -> Concept:
        """The concept as it runs in `dtype`: its variant for that dtype, or itself."""
        if dtype not in self.dtypes:
            raise ValueError(f"{self.name} does not run in {dtype} (its dtypes: {', '.join(self.dtypes)})")
        for v in self.variants:
            if dtype in v.dtypes:
                return dataclasses.replace(self, samples=v.samples, dtypes=v.dtypes, variants=(), **v.fields)
        return self

    def with_variant(self, v: Variant) -> Concept:
        """This concept also running in `v.dtypes`, none of which it runs in yet (and covering what `v`
        covers)."""
        if set(v.dtypes) & set(self.dtypes):
            raise ValueError(f"{self.name} runs in {sorted(set(v.dtypes) & set(self.dtypes))} already: "
                             f"a variant adds dtypes")
        covers = (*self.covers, *(c for c in v.fields.get("covers", ()) if c not in self.covers))
        return dataclasses.replace(self, dtypes=(*self.dtypes, *v.dtypes), variants=(*self.variants, v), covers=covers,
                                   traps=(*self.traps, *(t for t in v.traps if t not in self.traps)))


@dataclass(frozen=True, eq=False)  # compared and hashed by identity: `fields` is a dict
class Variant:
    """How a concept runs in `dtypes`: its own samples, and `fields` that replace the concept's
    (adapters, `differentiable`, `grad_inputs`, the converters, `covers`) in those dtypes. `owner`
    names the concept it belongs to; `traps` join the owner's."""

    owner: str
    dtypes: tuple[str, ...]
    samples: Callable[[np.random.Generator, np.dtype], list[Sample]]
    fields: dict[str, Any] = field(default_factory=dict)
    traps: tuple[int, ...] = ()


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


def variant(owner: str, dtypes: tuple[str, ...], samples, leaf: str | None = None, call=None,
            traps: tuple[int, ...] = (), **fields) -> Variant:
    """A variant whose adapters call the dotted `leaf` in each twin (as `twin` does), or take `fields`'s."""
    if leaf is not None:
        fields.update(jax=Leaf(TWINS[0], leaf, call), torch=Leaf(TWINS[1], leaf, call),
                      covers=(leaf, *fields.get("covers", ())))
    return Variant(owner, tuple(dtypes), samples, fields, tuple(traps))
