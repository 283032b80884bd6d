"""`port(torch_model, example_inputs, out_dir)`: write the Flax NNX port of a torch model, its weights,
and the proof that it computes and trains as the torch model does.

What lands in `out_dir`:
    <name>.py            the port: one nnx.Module class per torch class, importing jax and flax only
    weights.safetensors  torch's weights in the port's layout (parity/port/weights.py)
    load_weights.py      loads them into the port (NumPy, Flax and safetensors only)
    PROOF.md, proof.json what the comparer measured (parity/port/proof.py)
Every file is written atomically. A class or call that cannot be ported is named with its torch
source line; the port is then written with those spots raising NotImplementedError, marked
INCOMPLETE in its docstring and in PROOF.md, and no proof is attempted (`complete` is False).
"""
from __future__ import annotations

import copy
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from parity.console import write_json_atomic, write_text_atomic
from parity.port import proof, ties, weights
from parity.port.generate import generate, load_generated
from parity.porting.pairing import PortingError


# What the generator writes where the torch code drops out functionally (F.dropout, the dropout_p of
# scaled_dot_product_attention): the port computes eval mode there, no nnx.Dropout layer can share
# torch's masks, so the training check runs in eval mode (dropout off, BatchNorm on running statistics)
EVAL_ONLY = ("F.dropout with training=False", "dropout_p ignored")


@dataclass
class PortResult:
    """What `port` wrote and found. `passed`: complete, and every check of the proof agrees."""

    out_dir: Path
    file: Path
    root_class: str
    classes: list
    lines: int
    complete: bool
    problems: list
    tracer: dict
    seconds: float
    proof: dict = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return self.complete and bool(self.proof.get("passed")) and bool(self.proof.get("weights", {}).get("ok"))

    def summary(self) -> str:
        head = (f"{self.file}: {self.lines} lines, {len(self.classes)} classes, written in {self.seconds:.1f} s; ")
        if not self.complete:
            return head + f"INCOMPLETE — {len(self.problems)} call(s) or class(es) could not be ported"
        return head + ("PROVEN (float32, float64, gradients, training; PROOF.md)" if self.passed
                       else "NOT PROVEN — see PROOF.md")


def module_name(cls_name: str) -> str:
    """The port's file name: the torch class in snake case ("ResNetModel" → "resnet_model")."""
    s = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", cls_name).lower()
    s = re.sub(r"\W", "_", s).strip("_") or "model"
    return s if not s[0].isdigit() else f"m_{s}"


def _inputs(example_inputs) -> tuple:
    xs = example_inputs if isinstance(example_inputs, (tuple, list)) else (example_inputs,)
    if not xs:
        raise PortingError("example_inputs: give at least one input (a torch tensor or NumPy array)")
    out = []
    for i, x in enumerate(xs):
        if isinstance(x, torch.Tensor):
            x = x.detach().cpu().numpy()
        if not isinstance(x, np.ndarray) or x.dtype.kind not in "fiub":
            raise PortingError(f"example_inputs[{i}]: expected a torch tensor or NumPy array of numbers, got "
                               f"{type(x).__name__}")
        out.append(x.astype(np.float32) if x.dtype.kind == "f" else x)
    return tuple(out)


def port(torch_model, example_inputs, out_dir, *, steps: int = 20, timing: bool = True,
         on_stage=None) -> PortResult:
    """Write the port of `torch_model` (called as `torch_model(*example_inputs)`, inputs in torch's
    layout) into `out_dir` and prove it (module docstring). `steps`: training steps of the proof (0:
    none); `timing`: also time one training step in each framework; `on_stage(text)` is called as each
    stage begins, for a progress display."""
    if not isinstance(torch_model, torch.nn.Module):
        raise PortingError(f"torch_model must be a torch.nn.Module, got {type(torch_model).__name__}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise PortingError(f"steps must be an integer >= 0; got {steps!r}")
    stage = on_stage or (lambda text: None)
    x = _inputs(example_inputs)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    model = copy.deepcopy(torch_model).eval()  # the caller's model keeps its mode
    # modules tied by sharing every Parameter become one module at several paths (parity/port/ties.py)
    merged = ties.merge_alike(model)
    stage("trace and write the port")
    gen = generate(model, tuple(torch.as_tensor(a) for a in x))
    name = module_name(gen.root_class)
    file = out / f"{name}.py"
    write_text_atomic(gen.source, file)
    problems = [{"where": p.where, "what": p.what, "why": p.why} for p in gen.problems]
    result = PortResult(out, file, gen.root_class, list(gen.classes), gen.source.count("\n"), gen.complete,
                        problems, dict(gen.tracer), time.perf_counter() - t0)
    info = {"file": file.name, "complete": gen.complete, "problems": problems, "classes": list(gen.classes),
            "lines": result.lines, "seconds": result.seconds, "tracer": dict(gen.tracer), "root": gen.root_class,
            "build": gen.build, "tied": [f"{b} is {a}" for a, b in merged]}
    res: dict = {}
    if gen.complete:
        module = load_generated(gen, f"_parity_port_{name}")
        flax_model = eval(gen.build, vars(module))  # noqa: S307 — our own generated constructor call
        stage("convert the weights")
        # layers of no kind (a Hugging Face RMSNorm, GPT-2's Conv1D) are written with torch's parameter
        # names and layouts; the port names them for the comparer (`gen.weights`, empty where none)
        mapping = dict(gen.weights) or None
        flat, pairing = weights.to_flax(model, flax_model, x, mapping=mapping, layout=gen.layout)
        weights.save(flat, out / "weights.safetensors")
        write_text_atomic(weights.LOADER, out / "load_weights.py")
        info["weights"] = weights.round_trip(model, weights.load(out / "weights.safetensors"), pairing, flax_model)
        info["weights"]["written"] = len(flat)
        eval_only = [m for m in EVAL_ONLY if m in gen.source]
        res = proof.check(model, flax_model, x, steps=steps, timing=timing, on_stage=stage, weights=mapping,
                          layout=gen.layout, train=not eval_only, port_module=module)
        res["weights"] = info["weights"]
    result.proof = res
    write_text_atomic(proof.markdown(type(model).__name__, res, info), out / "PROOF.md")
    write_json_atomic({"port": info, "proof": res, "passed": result.passed}, out / "proof.json")
    return result
