"""The index of concepts: look up, select by name or group, suggest close names.

The concepts are a plain list (`parity.concepts.CONCEPTS`, one module per group family); this
module only indexes it. Tests, the CLI and the benchmarks all iterate over this one list.
"""
from __future__ import annotations

import difflib
import functools

from parity.concept import Concept, Sample  # noqa: F401  (re-exported: the types a caller needs)

# Leaf functions that no parity comparison can cover, with the reason and where they are tested.
NOT_COMPARED: dict[str, str] = {
    "tensors.randn": "the frameworks' random streams differ by design (docs/traps.md, trap 17); "
                     "tests/test_goldens.py checks shape, dtype and moments in each",
    "checks.check_input": "a shared input check, not a computation: its errors are checked through the layers "
                          "that call it (Conv2d, BatchNorm2d, the pooling layers) in tests/test_layers_bad_input.py",
    "optim.Transformation": "the (init, update) container the optimisers return, not a computation; "
                            "tests/test_twins.py compares its fields, tests/test_twin_optim_checks.py and "
                            "tests/test_train_parity.py drive it through both Trainers",
    "checks.check_x64": "a warning, not a computation: JAX's twin warns once per process when float64 is asked "
                        "for with x64 off (torch's twin does nothing); tests/test_twin_dtypes.py::"
                        "test_x64_off_warns_once_per_process and ::test_x64_on_does_not_warn",
    "checks.x64_checked": "the decorator that puts check_x64 in front of a jitted JAX leaf (identity in torch); "
                          "every leaf it wraps is compared; tests/test_twin_dtypes.py::test_x64_on_does_not_warn",
}


@functools.cache
def _index() -> dict[str, Concept]:
    from parity.concepts import CONCEPTS
    index: dict[str, Concept] = {}
    for c in CONCEPTS:
        if c.name in index:
            raise ValueError(f"concept {c.name!r} is listed twice")
        index[c.name] = c
    return index


def all_concepts() -> list[Concept]:
    return list(_index().values())


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
    """Concepts by name or group name (all when `names` is empty), in list order."""
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
    index = _index()
    if name not in index:
        raise UnknownConcept(name, close_names(name))
    return index[name]


def close_names(name: str) -> list[str]:
    """Concept or group names resembling `name`, matching full names and the part after the dot."""
    concepts = all_concepts()
    by_key = {c.name: c.name for c in concepts}
    by_key.update({c.name.split(".", 1)[-1]: c.name for c in concepts})
    by_key.update({g: g for g in groups()})
    hits = difflib.get_close_matches(name, list(by_key), n=5, cutoff=0.6)
    return list(dict.fromkeys(by_key[h] for h in hits))
