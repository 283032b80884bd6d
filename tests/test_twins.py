"""Meta-tests that keep the twins twins and the registry complete."""
import importlib
import inspect
import pkgutil
import types

import pytest

import jax_impl
import torch_impl
from parity import registry

# Parameters only one framework has: left out of every signature comparison.
FRAMEWORK_ONLY_PARAMS = {
    "self": "the bound instance",
    "rngs": "Flax NNX modules take their randomness as a keyword-only nnx.Rngs",
}
# Parameters compared by name, position and kind but not by default.
FRAMEWORK_DEFAULTS = {
    "dtype": "the default is a torch.dtype in one twin and a jnp dtype in the other",
}

# The call entry point of a twin class: torch's `forward` is Flax's `__call__`. They are compared
# as one member under this name; no other member is mapped.
CALL = "forward/__call__"
ENTRY_POINTS = {"forward": CALL, "__call__": CALL}

# Known differences the comparison accepts: "module.Name" (the constructor) or
# "module.Name.member" -> the reason. An entry that no longer differs fails the test.
ALLOWED_DIFFERENCES = {
    "train.Trainer.model": "both Trainers expose `.model`: torch's is the caller's module, trained in "
                           "place, so a plain attribute set in __init__ (invisible on the class); JAX's "
                           "state is split arrays, so a property merges them into a fresh module",
    "train.Trainer.state": "JAX's trainer state is an explicit pytree (parameters, other variables, optimiser "
                           "state) that teacher forcing and the data-parallel step read and replace; torch keeps "
                           "that state inside the module and the torch.optim optimiser",
}

_PROJECT = ("jax_impl", "torch_impl")


def _modules(pkg):
    return sorted(m.name for m in pkgutil.iter_modules(pkg.__path__) if not m.name.startswith("_"))


def _public(mod):
    return {n: o for n, o in vars(mod).items()
            if not n.startswith("_") and (inspect.isfunction(o) or inspect.isclass(o) or callable(o))
            and getattr(o, "__module__", "").startswith(mod.__name__)}


def _params(obj):
    """(name, kind, default) of each parameter of a function, or of a class's constructor."""
    obj = getattr(obj, "__wrapped__", obj)
    if inspect.isclass(obj):
        # a NamedTuple is built by __new__ (its first parameter is the class), anything else by __init__
        target, skip = (obj.__new__, 1) if obj.__init__ is object.__init__ else (obj.__init__, 0)
    else:
        target, skip = obj, 0
    params = list(inspect.signature(target).parameters.values())[skip:]
    return [(p.name, p.kind.description, "<framework default>" if p.name in FRAMEWORK_DEFAULTS else p.default)
            for p in params if p.name not in FRAMEWORK_ONLY_PARAMS]


def _show(params):
    """A compared parameter list written like a signature: (x, axis=-1, *, keep=False)."""
    out, kinds = [], [kind for _, kind, _ in params] + [None]  # kinds[-1] is "before the first" too
    for i, (name, kind, default) in enumerate(params):
        if kind == "keyword-only" and kinds[i - 1] not in ("keyword-only", "variadic positional"):
            out.append("*")
        stars = {"variadic positional": "*", "variadic keyword": "**"}.get(kind, "")
        out.append(stars + name + ("" if default is inspect.Parameter.empty else f"={default!r}"))
        if kind == "positional-only" and kinds[i + 1] != "positional-only":
            out.append("/")
    return f"({', '.join(out)})"


def _members(cls):
    """Public methods and properties of a class, defined on it or inherited from a project class
    (not from nnx.Module, torch.nn.Module or another library class); the call entry point under CALL."""
    out = {}
    for klass in reversed(cls.__mro__):  # a subclass's definition replaces its base's
        if klass.__module__.split(".")[0] not in _PROJECT:
            continue
        for name, v in vars(klass).items():
            name = ENTRY_POINTS.get(name, name)
            if name.startswith("_"):
                continue
            if isinstance(v, (staticmethod, classmethod)):
                out[name] = (type(v).__name__, v.__func__)
            elif inspect.isfunction(v):
                out[name] = ("method", v)
            elif isinstance(v, property):
                out[name] = ("property", None)
    return out


def _differences(prefix, j, t):
    """Every way the JAX object `j` and its torch twin `t` differ, as {dotted name: description}."""
    if inspect.isclass(j) != inspect.isclass(t):
        return {prefix: "a class in one twin only"}
    out = {}
    if _params(j) != _params(t):
        out[prefix] = f"signatures differ: jax {_show(_params(j))}, torch {_show(_params(t))}"
    if inspect.isclass(j):
        jm, tm = _members(j), _members(t)
        for name in sorted(set(jm) | set(tm)):
            where = f"{prefix}.{name}"
            if name not in jm or name not in tm:
                out[where] = f"only in {'jax' if name in jm else 'torch'}"
            elif jm[name][0] != tm[name][0]:
                out[where] = f"a {jm[name][0]} in jax, a {tm[name][0]} in torch"
            elif jm[name][1] is not None and _params(jm[name][1]) != _params(tm[name][1]):
                out[where] = (f"signatures differ: jax {_show(_params(jm[name][1]))}, "
                              f"torch {_show(_params(tm[name][1]))}")
        jf, tf = getattr(j, "_fields", None), getattr(t, "_fields", None)  # NamedTuples
        if jf != tf:
            out[prefix] = f"fields differ: jax {jf}, torch {tf}"
    return out


def test_same_modules():
    assert _modules(jax_impl) == _modules(torch_impl)


@pytest.mark.parametrize("mod", _modules(jax_impl))
def test_same_public_names_and_signatures(mod):
    """Same public names; same parameters (names, order, kind, defaults) and same public members."""
    j = _public(importlib.import_module(f"jax_impl.{mod}"))
    t = _public(importlib.import_module(f"torch_impl.{mod}"))
    assert sorted(j) == sorted(t), f"{mod}: only in jax {sorted(set(j) - set(t))}, only in torch {sorted(set(t) - set(j))}"
    found = {}
    for name in sorted(j):
        found.update(_differences(f"{mod}.{name}", j[name], t[name]))
    unexpected = {k: v for k, v in found.items() if k not in ALLOWED_DIFFERENCES}
    assert not unexpected, f"{mod}: twins differ:\n" + "\n".join(f"  {k}: {v}" for k, v in unexpected.items())
    stale = [k for k in ALLOWED_DIFFERENCES if k.split(".")[0] == mod and k not in found]
    assert not stale, f"{mod}: allowed differences that no longer differ (remove them): {stale}"


def test_the_signature_comparison_catches_planted_differences():
    """A changed default, a reordered or re-kinded parameter, a missing method and a changed
    entry point are each reported; framework-only parameters and library methods are not."""
    def ref(x, axis=-1, *, keep=False, dtype=None):
        pass

    def other_default(x, axis=0, *, keep=False, dtype=None):
        pass

    def reordered(axis, x, *, keep=False):
        pass

    def positional_keep(x, axis=-1, keep=False):
        pass

    def framework_only(x, axis=-1, *, keep=False, dtype="float32", rngs=None):
        pass

    def positional_dtype(x, axis=-1, dtype=None, *, keep=False):
        pass

    assert not _differences("m.f", ref, framework_only)
    for planted in (other_default, reordered, positional_keep, positional_dtype):
        assert "m.f" in _differences("m.f", ref, planted), planted.__name__

    def make(entry, fn, extra=None):
        ns = {"__module__": "torch_impl.fake", entry: fn, "__init__": lambda self, n: None}
        if extra:
            ns[extra] = lambda self: None
        return types.new_class("Layer", (), {}, lambda d: d.update(ns))

    def call(self, x, mask=None):
        pass

    def forward(self, x, mask=1):
        pass

    assert not _differences("m.Layer", make("__call__", call), make("forward", call))
    assert set(_differences("m.Layer", make("__call__", call), make("forward", forward))) == {f"m.Layer.{CALL}"}
    extra = _differences("m.Layer", make("__call__", call, "reset"), make("forward", call))
    assert set(extra) == {"m.Layer.reset"}

    library = types.new_class("Library", (), {}, lambda d: d.update({"__module__": "torch.nn", "train": call}))
    derived = types.new_class("Layer", (library,), {}, lambda d: d.update({"__module__": "torch_impl.fake"}))
    assert "train" not in _members(derived)


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


def test_leaves_import_no_private_name_across_modules():
    """What one leaf module uses from another is public (shared helpers live in `checks`)."""
    import ast
    for pkg in (jax_impl, torch_impl):
        for m in _modules(pkg):
            tree = ast.parse(inspect.getsource(importlib.import_module(f"{pkg.__name__}.{m}")))
            for node in ast.walk(tree):
                if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(pkg.__name__):
                    private = [a.name for a in node.names if a.name.startswith("_")]
                    assert not private, f"{pkg.__name__}.{m} imports private {private} from {node.module}"
                # or reaches one through the package: jax_impl.conv._check_input
                if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
                    base = node.value
                    if isinstance(base, ast.Attribute) and isinstance(base.value, ast.Name) \
                            and base.value.id == pkg.__name__:
                        raise AssertionError(f"{pkg.__name__}.{m} uses private {ast.unparse(node)}")


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
