"""Turns runner results into tables, JSON files and environment records."""
from __future__ import annotations

import json
import os
import platform
import tempfile
from pathlib import Path

from rich.table import Table

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


def write_text_atomic(text: str, path: str | os.PathLike) -> None:
    """Write a file so that a reader never sees it half-written (temp file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def write_json_atomic(obj, path: str | os.PathLike) -> None:
    """Write JSON atomically (see write_text_atomic)."""
    write_text_atomic(json.dumps(obj, indent=2, default=float) + "\n", path)


def results_json(results: list[Result]) -> dict:
    return {"environment": environment(), "results": [r.to_dict() for r in results],
            "passed": sum(r.passed for r in results), "failed": sum(not r.passed for r in results)}


def _e(x: float) -> str:
    return "—" if x == 0 else f"{x:.1e}"


def results_table(results: list[Result], title: str = "") -> Table:
    t = Table(title=title, show_lines=False, header_style="bold")
    for col, just in (("concept", "left"), ("dtype", "left"), ("device", "left"), ("out abs", "right"),
                      ("out rel", "right"), ("grad abs", "right"), ("grad rel", "right"),
                      ("rtol/atol", "right"), ("cases", "right"), ("result", "center")):
        t.add_column(col, justify=just, no_wrap=True)
    for r in results:
        verdict = "[green]PASS[/]" if r.passed else "[bold red]FAIL[/]"
        t.add_row(r.concept, r.dtype, r.device, _e(r.out_abs), _e(r.out_rel), _e(r.grad_abs),
                  _e(r.grad_rel), f"{r.rtol:.2g}/{r.atol:.2g}", str(r.n_samples), verdict)
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
