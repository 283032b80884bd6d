"""The figures of README.md's compare section, measured: every example in examples/ compared in float32
(the scaled rule) and float64, where its planted bug is named, the depth-50 ResNet's float32 margin
under each rule, and the AdamW training verdict.

    .venv/bin/python scripts/compare_figures.py > /tmp/figures.md

Wall times are single runs on the machine it runs on (a rough guide, not a benchmark)."""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np
import optax
import torch
from flax import nnx

ROOT = Path(__file__).resolve().parents[1]
os.chdir(ROOT)  # source locations print relative to the repository
sys.path.insert(0, str(ROOT / "tests"))

from parity.porting import compare, compare_training  # noqa: E402
from parity.porting.load import abstract_model, load_target  # noqa: E402

# example → (layout, whether its planted bug is of a size float32 can see)
EXAMPLES = {"unet_decoder": ("nhwc", True), "audio_conv1d": ("nchw", True), "gpt_block": ("nhwc", False),
            "vit": ("nhwc", True), "lstm_tagger": ("nhwc", True), "resnet50": ("nhwc", True)}


def _run(name, dtype, buggy=False, rule=None):
    layout = EXAMPLES[name][0]
    t = load_target(f"examples/{name}.py:torch_model")()
    make = load_target(f"examples/{name}.py:flax_model")
    f = abstract_model(lambda: make(buggy, rngs=nnx.Rngs(0)))
    x = load_target(f"examples/{name}.py:example_input")()
    t0 = time.perf_counter()
    r = compare(t, f, x, dtype=dtype, layout=layout, rule=rule)
    return r, time.perf_counter() - t0


def examples_table() -> list[str]:
    lines = ["| example | layers compared | worst layer max abs, float32 / float64 | float32: worst × torch's own error "
             "| wall time f32 / f64 | planted bug named at (float64; float32) |", "|---|---|---|---|---|---|"]
    for name, (_, f32_bug) in EXAMPLES.items():
        r32, s32 = _run(name, "float32")
        r64, s64 = _run(name, "float64")
        b64, _ = _run(name, "float64", buggy=True)
        where = f"`{b64.first_divergence.torch.name}` ({b64.first_divergence.what})" if b64.first_divergence else "NOT FOUND"
        if f32_bug:
            b32, _ = _run(name, "float32", buggy=True)
            same = b32.first_divergence and b32.first_divergence.torch.name == b64.first_divergence.torch.name
            where += "; same in float32" if same else f"; float32: {b32.first_divergence}"
        else:
            where += "; float32 cannot tell (within rounding)"
        verdict = "" if r32.passed and r64.passed else " **FAIL**"
        lines.append(f"| {name}{verdict} | {r64.layers_compared} | {r32.worst_layer_error():.2g} / "
                     f"{r64.worst_layer_error():.2g} | {r32.worst_ratio():.2g} | {s32:.1f} / {s64:.1f} s | {where} |")
    return lines


def resnet50_margin() -> list[str]:
    fixed, _ = _run("resnet50", "float32", rule="fixed")
    scaled, _ = _run("resnet50", "float32")
    usage = max(sc.port_err / sc.bound for sc in scaled.scaled_verdicts())
    return [f"- ResNet-50, float32: the fixed rule (atol 1e-5) says {'SAME' if fixed.passed else 'DIFFERENT'}"
            + ("" if fixed.passed else f" ({fixed.first_divergence.what} of `{fixed.first_divergence.torch.name}`)")
            + f"; the scaled rule says {'SAME' if scaled.passed else 'DIFFERENT'}, its worst tensor at "
              f"{usage:.2f} of its bound, at most {scaled.worst_ratio():.3g}× torch float32's own error."]


def adamw() -> list[str]:
    from test_compare_training import _transformer
    out = []
    for dtype in ("float32", "float64"):
        t, f, batches, loss = _transformer()
        r = compare_training(t, f, batches, lambda ps: torch.optim.AdamW(ps, lr=1e-3, weight_decay=1e-4),
                             optax.adamw(1e-3, weight_decay=1e-4), 30, loss=loss, dtype=dtype)
        out.append(f"- AdamW (transformer_block, 30 steps, {dtype}): {'SAME' if r.passed else 'DIFFERENT'}; "
                   f"losses within {float(np.max(np.abs(r.flax_losses - r.torch_losses))):.2g}, parameters within "
                   f"{float(np.max(r.param_errors)):.2g} of the bound; "
                   f"{sum('not compared elementwise' in n for n in r.notes)} note on rounding-driven parameters")
    return out


if __name__ == "__main__":
    print("\n".join(examples_table() + [""] + resnet50_margin() + adamw()))
