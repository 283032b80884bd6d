"""Meta-tests that keep the twins twins and the registry complete."""
import importlib
import inspect
import pkgutil

import pytest

import jax_impl
import torch_impl
from parity import registry

# Keyword-only handles to a framework's own randomness: Flax NNX modules take `rngs`.
FRAMEWORK_ONLY_PARAMS = {"rngs"}


def _modules(pkg):
    return sorted(m.name for m in pkgutil.iter_modules(pkg.__path__) if not m.name.startswith("_"))


def _public(mod):
    return {n: o for n, o in vars(mod).items()
            if not n.startswith("_") and (inspect.isfunction(o) or inspect.isclass(o) or callable(o))
            and getattr(o, "__module__", "").startswith(mod.__name__)}


def _params(obj):
    obj = getattr(obj, "__wrapped__", obj)
    target = obj.__init__ if inspect.isclass(obj) else obj
    return [p for p in inspect.signature(target).parameters if p not in FRAMEWORK_ONLY_PARAMS | {"self"}]


def test_same_modules():
    assert _modules(jax_impl) == _modules(torch_impl)


@pytest.mark.parametrize("mod", _modules(jax_impl))
def test_same_public_names_and_parameters(mod):
    j = _public(importlib.import_module(f"jax_impl.{mod}"))
    t = _public(importlib.import_module(f"torch_impl.{mod}"))
    assert sorted(j) == sorted(t), f"{mod}: only in jax {sorted(set(j) - set(t))}, only in torch {sorted(set(t) - set(j))}"
    for name in j:
        assert _params(j[name]) == _params(t[name]), f"{mod}.{name}: parameters differ"


def test_every_public_name_is_covered_by_the_registry():
    covered = {n for c in registry.all_concepts() for n in c.covers} | set(registry.NOT_COMPARED)
    names = {f"{m}.{n}" for m in _modules(jax_impl) for n in _public(importlib.import_module(f"jax_impl.{m}"))}
    assert names - covered == set(), f"public leaf names without a concept: {sorted(names - covered)}"
    assert covered - names == set(), f"concepts cover names that do not exist: {sorted(covered - names)}"


def test_leaves_do_not_import_each_other_or_parity():
    for pkg, other in ((jax_impl, "torch"), (torch_impl, "jax")):
        for m in _modules(pkg):
            src = inspect.getsource(importlib.import_module(f"{pkg.__name__}.{m}"))
            assert "import parity" not in src and "from parity" not in src, f"{pkg.__name__}.{m} imports parity"
            assert f"import {other}" not in src and f"from {other}" not in src, f"{pkg.__name__}.{m} imports {other}"


def test_shared_shape_rules_import_no_framework():
    """shape_rules is the one place both leaves share: plain Python, so it cannot tie them together."""
    import subprocess
    import sys
    code = ("import sys, shape_rules; bad = {'jax', 'torch', 'flax', 'numpy', 'jax_impl', 'torch_impl', "
            "'parity'} & set(sys.modules); assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_readme_lists_every_group():
    """The README's table of concept groups keeps up with the registry."""
    from pathlib import Path
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    missing = [g for g in registry.groups() if f"| {g} |" not in readme]
    assert not missing, f"README.md's concept table lacks the groups {sorted(missing)}"
