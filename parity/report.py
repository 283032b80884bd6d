"""Turns runner results into tables, JSON records and environment records (files: parity.console)."""
from __future__ import annotations

import platform
from pathlib import Path

from rich.table import Table
from rich.text import Text

from parity.runner import Result


def environment() -> dict:
    """Versions and devices, recorded beside every result file."""
    import flax
    import jax
    import optax
    import torch

    env = {
        "python": platform.python_version(), "platform": platform.platform(),
        "cpu": _cpu_model(), "jax": jax.__version__, "flax": flax.__version__,
        "optax": optax.__version__, "torch": torch.__version__,
        "jax_devices": [str(d) for d in jax.devices()],
        "torch_threads": torch.get_num_threads(),
    }
    if torch.cuda.is_available():
        env["cuda_device"] = torch.cuda.get_device_name(0)
        env["torch_cuda"] = torch.version.cuda
    return env


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def results_json(results: list[Result], complete: bool = True) -> dict:
    """The JSON record of a check; `complete` is False for a run cut short (Ctrl-C)."""
    return {"environment": environment(), "complete": complete, "results": [r.to_dict() for r in results],
            "passed": sum(r.passed for r in results), "failed": sum(not r.passed for r in results)}


def _e(x: float) -> str:
    return "—" if x == 0 else f"{x:.1e}"


def _cells(r: Result, which: str) -> tuple[str, str]:
    """The abs and rel cells of `which` ("out" or "grad"): "—" bitwise equal, "n/a" nothing compared;
    integer outputs, compared exactly, show "equal" or "N differ" instead of an error size."""
    n = getattr(r, f"n_{which}")
    if n:
        return _e(getattr(r, f"{which}_abs")), _e(getattr(r, f"{which}_rel"))
    if which == "out" and r.exact_out:
        return ("equal" if not r.exact_differ else f"{r.exact_differ} differ"), "n/a"
    return "n/a", "n/a"


def results_table(results: list[Result], title: str = "") -> Table:
    """One row per result; cells hold data only, so nothing in them is read as markup."""
    t = Table(title=title, show_lines=False, header_style="bold")
    for col, just in (("concept", "left"), ("dtype", "left"), ("device", "left"), ("out abs", "right"),
                      ("out rel", "right"), ("grad abs", "right"), ("grad rel", "right"),
                      ("rtol/atol", "right"), ("cases", "right"), ("result", "center")):
        t.add_column(col, justify=just, no_wrap=True)
    for r in results:
        verdict = Text("PASS", style="green") if r.passed else Text("FAIL", style="bold red")
        cells = (r.concept, r.dtype, r.device, *_cells(r, "out"), *_cells(r, "grad"),
                 f"{r.rtol:.2g}/{r.atol:.2g}", str(r.n_samples))
        t.add_row(*map(Text, cells), verdict)
    return t


def failure_lines(results: list[Result]) -> list[str]:
    lines = []
    for r in results:
        if r.passed:
            continue
        if r.error:
            lines.append(f"{r.concept} [{r.dtype}, {r.device}]: raised {r.error}")
        else:
            lines += [f"{r.concept} [{r.dtype}, {r.device}]: {f}" for f in r.failures]
    return lines
