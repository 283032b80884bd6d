"""`generate(torch_model, example_inputs)`: the source of a Flax NNX port of a torch model.

The port is a readable module file (one nnx.Module class per torch class, attribute names kept, so
that `parity.porting.compare` pairs its layers with torch's by name), written from one trace of the
model on `example_inputs` (parity/port/graph.py), through the op table (parity/port/ops.py) and the
layer kinds' `flax_source`, assembled by parity/port/emit.py. What cannot be ported is a `Problem`
(torch source file:line, what, why), written into the file as `raise NotImplementedError(...)` at
the spot, with `INCOMPLETE PORT` in the module docstring; `complete` is False then.
"""
from __future__ import annotations

import ast
import sys
import types
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from parity.port import emit as E
from parity.port import graph as G
from parity.port import parametrized as P
from parity.port import ties
from parity.port.emit import Problem

__all__ = ["generate", "GeneratedPort", "Problem", "load_generated"]


@dataclass
class GeneratedPort:
    """The source of a port and what is known about it."""

    source: str
    root_class: str
    classes: list[str]
    build: str  # a source expression constructing the root, e.g. "TorchResNetBlock(rngs=nnx.Rngs(0))"
    problems: list[Problem] = field(default_factory=list)
    complete: bool = True
    tracer: dict = field(default_factory=dict)  # torch class name → "fx" | "export"
    layout: str = "nhwc"
    # torch parameter → Flax path for parameters of torch modules that have no layer kind but no
    # sub-modules either (HF's LlamaRMSNorm, GPT-2's Conv1D; a kind's subclass whose forward computes
    # something else, parity/port/subclass.py): the comparer takes such a module for a layer it cannot
    # pair, or for its parent's kind; pass `compare(..., weights=port.weights)` (empty when there are none)
    weights: dict = field(default_factory=dict)


def _as_torch(x):
    if isinstance(x, torch.Tensor):
        return x
    a = np.asarray(x)
    return torch.as_tensor(a)


def generate(torch_model: nn.Module, example_inputs, *, layout: str = "nhwc") -> GeneratedPort:
    """Trace `torch_model` on `example_inputs` (an array or a tuple of arrays, torch's layout) and
    write its Flax NNX port. `layout="nhwc"`: the port takes 4-D image inputs channels-last (N, H, W, C),
    as `parity.porting.compare` gives them with its default layout; "nchw": it takes torch's layout."""
    if layout not in ("nhwc", "nchw"):
        raise ValueError(f"layout must be 'nhwc' or 'nchw', got {layout!r}")
    inputs = example_inputs if isinstance(example_inputs, (tuple, list)) else (example_inputs,)
    inputs = tuple(_as_torch(x) for x in inputs)
    model = torch_model.eval()
    traced = G.trace_model(model, inputs)
    root_in_cl = tuple(layout == "nhwc" and x.dim() == 4 and x.is_floating_point() for x in inputs)
    port = E.Port(model, traced, root_in_cl, layout)
    port.code_of("", root_in_cl)
    _write_ties(model, port)
    bodies, root, classes, helpers, uses_math = E.assemble(port)
    tracer = {}
    for code in port.codes.values():
        tracer[code.torch_cls.__name__] = code.tracer
    problems = port.problems
    doc = [f"Flax NNX port of torch `{E.class_name(type(model))}` ({G.source_of(type(model))}), written by "
           f"`parity port` from one trace of the model.", ""]
    if problems:
        doc.insert(0, f"INCOMPLETE PORT: {len(problems)} part(s) could not be ported and raise "
                      f"NotImplementedError: " + "; ".join(p.line() for p in problems[:5])
                   + (" ..." if len(problems) > 5 else ""))
        doc.insert(1, "")
    if any(c.tracer == "export" for c in port.codes.values()):
        doc.append("Traced with torch.export: shapes are specialised to the example's.")
    if layout == "nhwc" and any(root_in_cl):
        doc.append("Images are channels-last: 4-D inputs (N, H, W, C), convolutions run NHWC.")
    else:
        doc.append("Inputs in torch's layout; convolutions run channels-last inside.")
    doc.append(f"Build: {root}(rngs=nnx.Rngs(0)); torch's weights load by name "
               f"(parity.porting.pair_models(torch_model, flax_model, x).load_flax(...)).")
    spec = [f"{code.path or '<root>'}: {', '.join(code.specialised[:3])}" for code in port.codes.values()
            if code.specialised]
    if spec:
        doc.append("Python values the trace fixed to the example's: " + "; ".join(spec[:4]))
    src = E.file_source(bodies, helpers, uses_math, doc)
    if problems:  # the code after a NotImplementedError is never reached: values it would read look unused
        src = src.replace('"""\n', '"""\n\n# ruff: noqa: F841\n', 1) if src.startswith('"""') else src
    src = E.format_source(src)
    ast.parse(src)
    weights = {}
    for name, m in model.named_modules():
        if not name or G.is_layer(m):
            continue
        names = [pn for pn, _ in m.named_parameters(recurse=False)] if not list(m.children()) else []
        if P.is_parametrized(m):  # the originals, in nnx.Dicts under torch's names; and a layer's own
            names = [f"parametrizations.{pn}" for pn, _ in m.parametrizations.named_parameters()]
            if [n for n, _ in m.named_children()] == ["parametrizations"]:
                names += [pn for pn, _ in m.named_parameters(recurse=False)]
        for pn in names:
            weights[f"{name}.{pn}"] = f"{ties.nnx_path(model, name, _flax_path)}.{pn}"
    return GeneratedPort(source=src, root_class=root, classes=classes, build=f"{root}(rngs=nnx.Rngs(0))",
                         problems=list(problems), complete=not problems, tracer=tracer, layout=layout,
                         weights=weights)


def _write_ties(model: nn.Module, port) -> None:
    """Tied weights (parity/port/ties.py): a module at several paths becomes one Flax module referenced
    at each; a Parameter shared by different modules is reported as not ported."""
    init = port.codes[""].init
    init += ties.tie_lines(model)
    for names in ties.parameter_ties(model):
        why = ("one Parameter held by different modules (tied weights); the port would hold one array "
               "per module and train them apart")
        port.problems.append(Problem(G.source_of(type(model)), f"tied parameter `{'` = `'.join(names)}`", why))
        init.append(f"raise NotImplementedError({why!r})")


def _flax_path(model: nn.Module, name: str) -> str:
    """The port's path of torch module `name`: an nn.Sequential's elements are in its nnx.Sequential's
    `layers`."""
    steps, m = [], model
    for step in name.split("."):
        if isinstance(m, nn.Sequential):
            steps.append("layers")
        steps.append(step)
        m = m.get_submodule(step)
    return ".".join(steps)


def load_generated(port: GeneratedPort, module_name: str = "parity_port_generated") -> types.ModuleType:
    """The port's source executed into a fresh module object (nothing written, nothing registered in
    sys.modules)."""
    mod = types.ModuleType(module_name)
    mod.__file__ = f"<{module_name}>"
    code = compile(port.source, mod.__file__, "exec")
    exec(code, mod.__dict__)  # noqa: S102 — the source generate() wrote
    return mod


del sys
