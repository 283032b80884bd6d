"""Regenerate the measured figures in README.md from the code (never typed by hand).

Runs `parity check` over every concept in every dtype it declares and one default `parity train` run,
then rewrites the block between the `figures` markers in README.md. Run it after adding a concept or
changing a tolerance; tests/test_readme.py fails when the block no longer matches the registry.

    .venv/bin/python scripts/readme_figures.py
"""
from __future__ import annotations

import re
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from parity import registry, runner, training  # noqa: E402
from parity.concepts import optim as optim_concepts  # noqa: E402
from parity.console import write_text_atomic  # noqa: E402
from parity.names import CONCEPT_DTYPES  # noqa: E402

START, END = "<!-- figures:start (scripts/readme_figures.py) -->", "<!-- figures:end -->"


def _e(x: float) -> str:
    return f"{x:.1e}" if x else "0 (bitwise)"


def _worst(rs, exact: bool = False) -> str:
    out = max((r.out_abs for r in rs if r.n_out), default=None)
    grad = max((r.grad_abs for r in rs if r.n_grad), default=None)
    cell = f"{'n/a' if out is None else _e(out)} / {'n/a' if grad is None else _e(grad)}"
    n_exact = sum(r.exact_out for r in rs)
    return cell + (f"; {n_exact} compared exactly, {sum(r.exact_differ for r in rs)} elements differ"
                   if exact and n_exact else "")


def check_figures() -> list[str]:
    concepts = registry.all_concepts()
    t0 = time.perf_counter()
    results = list(runner.run_all(concepts, CONCEPT_DTYPES))
    seconds = time.perf_counter() - t0
    failed = [f"{r.concept} ({r.dtype})" for r in results if not r.passed]
    dtypes = [dt for dt in CONCEPT_DTYPES if any(r.dtype == dt for r in results)]
    lines = [f"- `parity check`: {len(concepts)} concepts in {len(registry.groups())} groups, each in the dtypes "
             f"it declares: {len(results)} rows in {len(dtypes)} dtypes, {sum(r.passed for r in results)} of "
             f"{len(results)} pass" + (f" (failing: {', '.join(failed)})" if failed else "")
             + f"; {seconds:.0f} s on this machine (one process).",
             f"- Optimiser concepts compare the parameters after {optim_concepts.STEPS} steps "
             f"(tests/test_optim_three_ways.py runs 100).",
             "", "| group | float32 out / grad (abs) | float64 out / grad (abs) |", "|---|---|---|"]
    for g in registry.groups():
        cells = [_worst([r for r in results if r.group == g and r.dtype == dt]) for dt in ("float32", "float64")]
        lines.append(f"| {g} | {cells[0]} | {cells[1]} |")
    lines += ["", "| dtype | concepts | out / grad (abs), worst |", "|---|---|---|"]
    for dt in dtypes:
        rs = [r for r in results if r.dtype == dt]
        lines.append(f"| {dt} | {len(rs)} | {_worst(rs, exact=True)} |")
    return lines


def train_figures() -> list[str]:
    cfg = training.Config(model="simple_net", data="digits")
    t0 = time.perf_counter()
    run = training.train(cfg)
    seconds = time.perf_counter() - t0
    cv, av = run.curve_verdict(), run.accuracy_verdict()
    last = run.epochs[-1]
    diff = np.abs(run.losses["jax"].astype(np.float64) - run.losses["torch"].astype(np.float64))
    return [f"- `parity train` (simple_net, Adam, digits, float32, {len(diff)} steps, {seconds:.1f} s): "
            f"test accuracy jax {last['jax']['test_accuracy']:.4f}, torch {last['torch']['test_accuracy']:.4f}; "
            f"largest free-running per-step loss difference {diff.max():.2g}; loss curve "
            f"{'agrees' if cv.ok else 'DIFFERS'} ({cv.summary()}); test accuracy "
            f"{'agrees' if av.ok else 'DIFFERS'} ({av.summary()})."]


def main() -> int:
    readme = ROOT / "README.md"
    text = readme.read_text()
    if START not in text or END not in text:
        print(f"README.md lacks the markers {START} … {END}", file=sys.stderr)
        return 2
    block = "\n".join([START, *check_figures(), "", *train_figures(), END])
    text = re.sub(re.escape(START) + ".*?" + re.escape(END), lambda m: block, text, flags=re.S)
    write_text_atomic(text, readme)
    print(block)
    return 0


if __name__ == "__main__":
    sys.exit(main())
