"""The proof written beside a port: what the comparer measured between the torch model and the
generated Flax model, in PROOF.md (for people) and proof.json (for tools).

1. `compare` in float32 under the scaled rule (no worse than 8× torch float32's own error against a
   float64 run of the torch model, parity/porting/verdict.py) and in float64 under the fixed rule:
   every paired layer's output, the outputs, and the gradient of every input and parameter.
2. `compare_training`: `steps` Adam steps (torch.optim.Adam ⇄ optax.adam, lr 1e-3, the same eps) in
   training mode (BatchNorm on batch statistics, each paired Dropout given the same mask on both
   sides) on random batches, MSE to random targets; the curve rule of parity/curves.py.
3. The step time: one training step (forward, backward, Adam update) of torch eager and of the jitted
   JAX step, timed by benchmarks/harness.py (warm-up, the first call with its compilation reported
   apart, interleaved samples, medians; JAX waited for with block_until_ready).
"""
from __future__ import annotations

import copy
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import torch
from flax import nnx

from benchmarks import harness
from parity.port import widen
from parity.porting import compare, compare_training

LR = 1e-3


def random_batches(inputs: tuple, out_shape: tuple, steps: int, seed: int = 0) -> list:
    """`steps` batches shaped like the example inputs (integer inputs drawn below their example's
    largest value + 1, as token ids), each with an MSE target of the output's shape."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(steps):
        xs = []
        for x in inputs:
            x = np.asarray(x)
            if x.dtype.kind in "iu":
                xs.append(rng.integers(0, int(x.max()) + 1, x.shape).astype(x.dtype))
            else:
                xs.append(rng.standard_normal(x.shape).astype(np.float32))
        out.append((tuple(xs) if len(xs) > 1 else xs[0], rng.standard_normal(out_shape).astype(np.float32)))
    return out


def check(torch_model, flax_model, inputs: tuple, *, steps: int = 20, timing: bool = True,
          on_stage=None, weights: dict | None = None, layout: str = "nhwc", train: bool = True,
          port_module=None) -> dict:
    """Every measurement of the proof, as one JSON-ready dict (`passed` says whether all agree).
    `weights`: {torch name: Flax path} for arrays of layers of no kind; `layout`: the port's boundary;
    `train`: whether training runs in training mode (False where torch drops out in functions whose
    masks no Flax layer can share); `port_module`: the generated module of `flax_model`, whose float32
    casts float64 checks then widen on both sides (parity/port/widen.py)."""
    conv = weights or "torch->flax"
    stage = on_stage or (lambda name: None)
    x = tuple(np.asarray(a) for a in inputs)
    res: dict = {}
    for dtype in ("float32", "float64"):
        stage(f"compare {dtype}")
        if dtype == "float64" and port_module is not None:
            with widen.float32_as_float64(port_module) as casts:
                r = compare(torch_model, flax_model, x, dtype=dtype, weights=conv, layout=layout)
            res[dtype] = _compared(r)
            res[dtype]["widened_casts"] = casts.widened
            if casts.widened:  # the model casts to float32 itself: the float64 check as written, for the record
                res[dtype]["as_written"] = _compared(compare(torch_model, flax_model, x, dtype=dtype, weights=conv,
                                                             layout=layout))
        else:
            res[dtype] = _compared(compare(torch_model, flax_model, x, dtype=dtype, weights=conv, layout=layout))
    if steps:
        stage(f"train {steps} steps")
        with torch.no_grad():
            out = torch_model(*[torch.as_tensor(a) for a in x])
        batches = random_batches(x, tuple(out.shape), steps)
        widen_context = None if port_module is None else (lambda: widen.float32_as_float64(port_module))
        tr = compare_training(torch_model, flax_model, batches, lambda ps: torch.optim.Adam(ps, lr=LR),
                              optax.adam(LR), steps, loss="mse", train=train, weights=conv, layout=layout,
                              float64_context=widen_context)
        res["training"] = {"passed": tr.passed, "summary": tr.summary(), "steps": steps,
                           "mode": "training mode" if train else
                           "eval mode (torch drops out in functions, F.dropout or scaled_dot_product_attention's "
                           "dropout_p, whose masks no Flax layer can share)",
                           "optimizer": f"torch.optim.Adam(lr={LR:g}) ⇄ optax.adam({LR:g})",
                           "replays": [r.describe() for r in tr.replays], "notes": tr.notes,
                           "first_torch_loss": float(tr.torch_losses[0]), "last_torch_loss": float(tr.torch_losses[-1])}
    if timing:
        stage("time one training step")
        res["timing"] = step_times(torch_model, flax_model, x, layout=layout)
    res["passed"] = all(res[k]["passed"] for k in ("float32", "float64", "training") if k in res)
    return res


def _compared(r) -> dict:
    """One comparison's figures for proof.json."""
    grads = list(r.param_grads.values()) + list(r.input_grads.values())
    return {"passed": r.passed, "summary": r.summary(), "rule": r.rule, "layers": r.layers_compared,
            "worst_layer": r.worst_layer_error(), "worst_output": max((s.max_abs for s in r.outputs), default=0.0),
            "worst_gradient": max((s.max_abs for s in grads), default=0.0), "gradients": len(grads),
            "first_divergence": r.first_divergence.to_dict() if r.first_divergence else None}


def step_times(torch_model, flax_model, inputs: tuple, settings=None, layout: str = "nhwc") -> dict:
    """Median seconds of one Adam training step (MSE to zeros of the output's shape), torch eager vs
    JAX jit, on the CPU, with JAX's first call (compilation) apart."""
    settings = settings or harness.Settings(repeats=15, warmup=3, min_sample_s=0.01, max_time_s=3.0)
    t = copy.deepcopy(torch_model).train()
    t_in = [torch.as_tensor(a) for a in inputs]
    with torch.no_grad():
        target = torch.zeros_like(t(*t_in))
    opt = torch.optim.Adam(t.parameters(), lr=LR)

    def torch_step():
        opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.mse_loss(t(*t_in), target)
        loss.backward()
        opt.step()
        return loss

    f = nnx.clone(flax_model)
    f.train()
    graphdef, params, rest = nnx.split(f, nnx.Param, ...)
    tx = optax.adam(LR)
    f_in = [jnp.asarray(_flax_layout(a) if layout == "nhwc" else a) for a in inputs]
    state = {"params": params, "rest": rest, "opt": tx.init(params)}

    @jax.jit
    def jax_step(params, rest, opt_state, xs):
        def lossf(m):
            return jnp.mean(m(*xs).astype(jnp.float32) ** 2)
        m = nnx.merge(graphdef, params, rest)
        # nnx's transform, so that BatchNorm may update its statistics in the pass; gradients of Params only
        loss, g = nnx.value_and_grad(lossf, argnums=nnx.DiffState(0, nnx.Param))(m)
        updates, opt_state = tx.update(g, opt_state, params)
        return optax.apply_updates(params, updates), nnx.split(m, nnx.Param, ...)[2], opt_state, loss

    def run_jax():
        p, r, o, loss = jax_step(state["params"], state["rest"], state["opt"], f_in)
        state["params"], state["rest"], state["opt"] = p, r, o
        return loss

    t0 = time.perf_counter()
    # torch on one thread, as `parity compare` runs small models: a second intra-op thread waiting for a
    # busy core cost small models' passes 0.1–0.5 s each against about a millisecond (docs/measurements.md)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        timings = harness.measure_interleaved({"torch-eager": harness.Runner(torch_step, "torch"),
                                               "jax-jit": harness.Runner(run_jax, "jax")}, "cpu", settings)
    finally:
        torch.set_num_threads(threads)
    out = {"device": "cpu", "torch_threads": 1, "seconds": time.perf_counter() - t0}
    for mode, tm in timings.items():
        out[mode] = {"error": f"{type(tm).__name__}: {tm}"} if isinstance(tm, Exception) else tm.stats()
    if all(not isinstance(tm, Exception) for tm in timings.values()):
        out["jit_over_eager"] = harness.paired_ratio(timings["jax-jit"], timings["torch-eager"])
    return out


def _flax_layout(a: np.ndarray) -> np.ndarray:
    """The comparer's input rule: a 4-D floating input goes NCHW → NHWC."""
    a = np.asarray(a)
    return a.transpose(0, 2, 3, 1) if a.ndim == 4 and a.dtype.kind == "f" else a


def _widened_lines(r: dict) -> list[str]:
    """What PROOF.md says of a model that casts to float32 itself (parity/port/widen.py)."""
    if not r.get("widened_casts"):
        return []
    w = r["as_written"]
    return ["", f"The model casts to float32 itself ({r['widened_casts']} torch calls in the float64 run: "
            "`.to(torch.float32)`, `.float()`, `dtype=torch.float32`), and the port writes the same casts. "
            "The float64 row above widens those casts to float64 on both sides (torch under a function mode, "
            "the port with `jnp.float32` read as float64), so that it measures the port rather than float32 "
            "rounding; the float32 row, training and timing run the model as written. The float64 check as "
            f"written: {'SAME' if w['passed'] else 'DIFFERENT'}, worst layer {_fmt(w['worst_layer'])}, worst "
            f"output {_fmt(w['worst_output'])}, worst gradient {_fmt(w['worst_gradient'])} (float32 rounding of "
            "those casts). Training's float64 replays widen them likewise."]


def _fmt(x) -> str:
    return f"{x:.2g}" if isinstance(x, float) else str(x)


def markdown(name: str, res: dict, port: dict) -> str:
    """PROOF.md: the verdicts first, then what was measured and how."""
    lines = [f"# Proof: `{port['file']}` against the torch model `{name}`", ""]
    if not port["complete"]:
        lines += ["**INCOMPLETE PORT** — these could not be ported, so nothing below proves the port:", ""]
        lines += [f"- `{p['where']}`: {p['what']} — {p['why']}" for p in port["problems"]] + [""]
    verdict = "PROVEN" if res.get("passed") and port["complete"] else "NOT PROVEN"
    lines += [f"**{verdict}.** Generated {port['lines']} lines, {len(port['classes'])} classes "
              f"({', '.join(port['classes'])}) in {port['seconds']:.1f} s.", ""]
    if port.get("tied"):
        lines += [(f"Tied weights: {'; '.join(port['tied'])} — modules of one class holding the very same "
                   "Parameters, made one module at several paths before tracing (parity/port/ties.py)."), ""]
    lines += ["| check | verdict | worst layer | worst output | worst gradient |", "|---|---|---|---|---|"]
    for dtype in ("float32", "float64"):
        if dtype in res:
            r = res[dtype]
            lines.append(f"| compare, {dtype} ({r['rule']} rule), {r['layers']} layers, {r['gradients']} gradients "
                         f"| {'SAME' if r['passed'] else 'DIFFERENT'} | {_fmt(r['worst_layer'])} "
                         f"| {_fmt(r['worst_output'])} | {_fmt(r['worst_gradient'])} |")
    lines.append("")
    for dtype in ("float32", "float64"):
        if dtype in res:
            lines += [f"- {dtype}: {res[dtype]['summary']}"]
    lines += _widened_lines(res.get("float64", {}))
    if "training" in res:
        tr = res["training"]
        lines += ["", f"## Training: {tr['steps']} steps, {tr['optimizer']}, {tr.get('mode', 'training mode')}", "",
                  tr["summary"], ""]
        lines += [f"- replay: {r}" for r in tr["replays"]] + [f"- note: {n}" for n in tr["notes"]]
    w = port.get("weights")
    if w:
        lines += ["", "## Weights", "",
                  f"`weights.safetensors`: {w['written']} arrays in Flax's layout; torch → Flax → torch: "
                  f"{w['bit_exact']} of {w['arrays']} arrays bit-exact"
                  + (f", not held by the port: {', '.join(w['not_in_port'])}" if w["not_in_port"] else "")
                  + (f"; MISMATCHED: {', '.join(w['mismatched'])}" if w["mismatched"] else "") + "."]
    tm = res.get("timing")
    if tm and "jit_over_eager" in tm:
        e, j, r = tm["torch-eager"], tm["jax-jit"], tm["jit_over_eager"]
        lines += ["", "## One training step (CPU)", "",
                  "| | median | IQR | repeats |", "|---|---|---|---|",
                  f"| torch eager | {e['median_s'] * 1e3:.3g} ms | {e['iqr_s'] * 1e3:.2g} ms | {e['repeats']} |",
                  f"| JAX jit | {j['median_s'] * 1e3:.3g} ms | {j['iqr_s'] * 1e3:.2g} ms | {j['repeats']} |", "",
                  f"JAX jit step ÷ torch eager step: {r['ratio']:.3g} (95 % interval {r['ci_low']:.3g}–"
                  f"{r['ci_high']:.3g}); JAX's first call, with compilation: {j['first_call_s']:.2f} s."]
    lines += ["", "Reproduce (the torch model and the port, weights converted by the comparer):", "", "```python",
              "from flax import nnx", "from parity import compare", f"from {Path(port['file']).stem} import {port['root']}",
              f"report = compare(torch_model, {port['build']}, x)  # x: NumPy, torch's layout",
              "print(report.summary())", "```"]
    return "\n".join(lines) + "\n"
