"""The device audit: parity in both precision modes, cross-device agreement and determinism.

Produces one JSON record and a markdown summary. Built for `--device cuda` and runnable
on the CPU, where cross-device comparison is not applicable and determinism is checked the same way.
"""
from __future__ import annotations

import time

import numpy as np

from parity import precision, report, runner
from parity.registry import Concept
from parity.concept import np_dtype


def _side(framework: str, concept: Concept, s, device: str, cts):
    if framework == "torch":
        out, grads, _ = runner.run_torch(concept, s, device, cts)
    else:
        out, grads = runner.run_jax(concept, s, device, cts)
    return {**{f"out[{i}]": o for i, o in enumerate(out)}, **grads}


def _self_compare(concept: Concept, dtype: str, framework: str, dev_a: str, dev_b: str,
                  mode: str, bitwise: bool) -> dict:
    """Run one framework's side twice (on dev_a, then dev_b) and compare every tensor."""
    tol, _ = runner.run_tolerance(dtype, "cuda" if "cuda" in (dev_a, dev_b) else "cpu", mode)
    worst, max_abs, ok, error = "", 0.0, True, ""
    try:
        concept = concept.at(dtype)
        with precision.policy(mode):
            samples = concept.samples(np.random.default_rng(runner.SEED), np_dtype(dtype))
            for i, s in enumerate(samples):
                _, _, cts = runner.run_torch(concept, s, "cpu", ct_seed=runner.SEED + i)
                a = _side(framework, concept, s, dev_a, cts)
                b = _side(framework, concept, s, dev_b, cts)
                for k in a:
                    if bitwise:
                        same = np.array_equal(a[k], b[k], equal_nan=True)
                        if same:
                            d = 0.0
                        else:  # inf − inf and all-NaN tensors are expected here: no numpy warning for them
                            with np.errstate(invalid="ignore", over="ignore"):
                                diff = np.abs(a[k].astype(np.float64) - b[k])
                            d = float(diff[~np.isnan(diff)].max()) if (~np.isnan(diff)).any() else float("nan")
                        good = same
                    else:
                        c = runner.compare(a[k], b[k], tol, s.label, k)
                        d, good = c.max_abs, c.ok
                    if d > max_abs or (not good and ok):
                        worst, max_abs = f"{s.label} {k}", max(d, max_abs)
                    ok = ok and good
    except Exception as e:  # reported, never raised: an audit lists everything it saw
        ok, error = False, f"{type(e).__name__}: {e}"
    return {"concept": concept.name, "framework": framework, "dtype": dtype, "mode": mode,
            "max_abs": max_abs, "ok": ok, "where": worst, "error": error}


def run_audit(concepts: list[Concept], device: str = "cuda", dtypes=precision.DTYPES,
              modes=precision.MODES, progress=None) -> dict:
    """Parity per mode and dtype (each of `dtypes` a concept declares), cross-device agreement (cuda vs
    cpu), bitwise determinism."""
    t0 = time.perf_counter()
    out = {"environment": report.environment(), "device": device,
           "deterministic_switches": precision.deterministic_enabled(), "parity": [],
           "cross_device": [], "determinism": []}
    for c in concepts:
        for dt in (d for d in dtypes if d in c.dtypes):
            for m in modes:
                out["parity"].append(runner.run_concept(c, dt, device, m).to_dict())
            for fw in ("jax", "torch"):
                if device != "cpu":
                    out["cross_device"].append(_self_compare(c, dt, fw, device, "cpu", "strict", False))
                out["determinism"].append(_self_compare(c, dt, fw, device, device, "strict", True))
        if progress:
            progress(c)
    out["seconds"] = time.perf_counter() - t0
    return out


def markdown(a: dict) -> str:
    """A readable summary of an audit record."""
    env = a["environment"]
    lines = [f"# Parity audit on {a['device']}", "",
             f"Device: {env.get('cuda_device', env.get('cpu'))}; jax {env['jax']}, flax {env['flax']}, "
             f"optax {env['optax']}, torch {env['torch']}; {a['seconds']:.0f} s. Deterministic "
             f"switches (XLA deterministic ops, torch.use_deterministic_algorithms): "
             f"{'on' if a['deterministic_switches'] else 'off'}.", "",
             "## Parity by precision mode", "",
             "| concept | dtype | mode | out abs | out rel | grad abs | grad rel | rtol / atol | pass |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in a["parity"]:
        lines.append(f"| {r['concept']} | {r['dtype']} | {r['precision']} | {r['out_abs']:.2e} | "
                     f"{r['out_rel']:.2e} | {r['grad_abs']:.2e} | {r['grad_rel']:.2e} | "
                     f"{r['rtol']:.2g} / {r['atol']:.2g} | {'PASS' if r['passed'] else 'FAIL ' + r['error'][:60]} |")
    for key, title, note in (("cross_device", "Each framework against itself on the CPU",
                              "strict mode; tolerance as for parity"),
                             ("determinism", "Determinism: two runs, bitwise",
                              "max abs = how far the second run moved")):
        rows = a[key]
        lines += ["", f"## {title}", "", f"{note}.", ""]
        if not rows:
            lines.append("Not applicable on this device.")
            continue
        bad = [r for r in rows if not r["ok"]]
        lines.append(f"{len(rows) - len(bad)} of {len(rows)} (concept, dtype, framework) cases hold.")
        if bad:
            lines += ["", "| concept | framework | dtype | max abs | where | error |", "|---|---|---|---|---|---|"]
            lines += [f"| {r['concept']} | {r['framework']} | {r['dtype']} | {r['max_abs']:.2e} | "
                      f"{r['where']} | {r['error'][:80]} |" for r in bad]
    return "\n".join(lines) + "\n"
