"""Tied weights: one torch module, or one torch Parameter, reachable at several paths of a model.

A model may assign one nn.Embedding to `shared` and to `encoder.embed_tokens`; torch's
`named_modules()` and `named_parameters()` list it once, under the first path (`shared`), so it is
one array, trained once, whose gradient sums both uses. The port keeps that: after its attributes are
built, the root writes each further path as a reference to the first one's Flax module
(`self.encoder.embed_tokens = self.shared`), which NNX holds as one module reachable at both paths.
The comparer pairs such a module by any of its torch paths (parity/porting/pairing.py `aliases`).
Hugging Face's T5 (transformers 5) ties two nn.Embedding objects through one Parameter instead
(`encoder.embed_tokens.weight = shared.weight`); two modules alike in all else compute one function
of one array, and `merge_alike` makes them one module at two paths in the copy that `port` traces.

A Parameter shared by two different modules (an LM head's `head.weight = emb.weight`) cannot be
written that way where the two layers keep the array in different layouts (an nnx.Embed's
(vocab, dim) table against an nnx.Linear's (dim, vocab) kernel); `parameter_ties` names those for the
port to report as not ported, rather than to train two arrays where torch trains one.
"""
from __future__ import annotations

from torch import nn

from parity.porting.pairing import aliases


def module_ties(model: nn.Module) -> list[tuple[str, list[str]]]:
    """(torch's name, [the other paths]) for each module reachable at several paths, outermost only:
    the children of a tied module are tied through it."""
    ties, covered = [], []
    for paths in aliases(model).values():
        if len(paths) < 2:
            continue
        others = [p for p in paths[1:] if not any(p.startswith(c + ".") for c in covered)]
        if others:
            ties.append((paths[0], others))
            covered += others
    return ties


def parameter_ties(model: nn.Module) -> list[list[str]]:
    """Paths of each Parameter held by several modules that are not one module at several paths."""
    first = {name: paths[0] for paths in aliases(model).values() for name in paths}
    by_param: dict[int, list[str]] = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        by_param.setdefault(id(p), []).append(name)
    out = []
    for names in by_param.values():
        own = [n for n in names if first[n.rpartition(".")[0]] == n.rpartition(".")[0]]  # at torch's names
        if len(own) > 1:
            out.append(own)
    return out


def _alike(a: nn.Module, b: nn.Module) -> bool:
    """Two modules that compute one function on one set of arrays: the same class, no children, no
    hooks, the very same Parameter and buffer objects, equal settings."""
    def settings(m):
        return {k: v for k, v in vars(m).items() if not k.startswith("_")}

    def arrays(m):
        return [(k, id(v)) for k, v in list(m._parameters.items()) + list(m._buffers.items())]
    hooks = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks")
    if not (type(a) is type(b) and not a._modules and not b._modules and arrays(a) == arrays(b)
            and bool(a._parameters) and not any(getattr(m, h, None) for m in (a, b) for h in hooks)):
        return False
    try:
        return bool(settings(a) == settings(b))
    except (RuntimeError, ValueError, TypeError):  # a setting that is an array: not compared, not merged
        return False


def merge_alike(model: nn.Module) -> list[tuple[str, str]]:
    """Make each module that holds the very same Parameters as an earlier one, and is alike in all else
    (`_alike`; Hugging Face's T5 in transformers 5 ties `encoder.embed_tokens.weight = shared.weight`
    between two nn.Embedding objects), that earlier module itself, at its path in `model` (in place):
    the same function of the same arrays, now one module at two paths. [(kept, replaced path)]."""
    seen: list[tuple[str, nn.Module]] = []
    merged = []
    for name, m in list(model.named_modules()):
        kept = next(((k, km) for k, km in seen if _alike(km, m)), None)
        if kept is None:
            if m._parameters and not m._modules:
                seen.append((name, m))
            continue
        parent, _, attr = name.rpartition(".")
        model.get_submodule(parent)._modules[attr] = kept[1]
        merged.append((kept[0], name))
    return merged


def nnx_path(model: nn.Module, name: str, flax_path) -> str:
    """The port's dotted path of torch module `name` as NNX names it: a module at several paths is
    named by NNX at the first in its traversal (attribute names sorted, list positions in order),
    which need not be torch's. `flax_path(model, torch_path)`: the port's path of one torch path."""
    def steps(path: str) -> tuple:
        return tuple(int(s) if s.isdigit() else s for s in path.split("."))
    paths = aliases(model).get(name, [name])
    return min((flax_path(model, p) for p in paths), key=steps)


def attribute_source(model: nn.Module, path: str, root: str = "self") -> str:
    """The port's Python expression for torch module `path`: an nn.Sequential's elements are its
    nnx.Sequential's `layers[i]`, an nn.ModuleList's its nnx.List's `[i]`."""
    src, m = root, model
    for step in path.split("."):
        if isinstance(m, nn.Sequential):
            src += f".layers[{list(m._modules).index(step)}]"
        elif isinstance(m, nn.ModuleList):
            src += f"[{int(step)}]"
        else:
            src += f".{step}"
        m = m.get_submodule(step)
    return src


def tie_lines(model: nn.Module) -> list[str]:
    """The lines closing the root's `__init__`: each further path of a tied module made a reference
    to the module at torch's first path."""
    lines = []
    for name, others in module_ties(model):
        lines.append(f"# tied in torch: one module at {len(others) + 1} paths, one array trained once")
        lines += [f"{attribute_source(model, o)} = {attribute_source(model, name)}" for o in others]
    return lines
