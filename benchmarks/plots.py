"""PNG plots of benchmark results: time per call against size (log-log), and the speedups."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import NullLocator  # noqa: E402

from benchmarks.harness import MODES, SPEEDUPS  # noqa: E402
from parity.console import write_bytes_atomic  # noqa: E402

STYLE = {"jax-jit": ("tab:blue", "-o"), "jax-eager": ("tab:blue", ":o"), "jax-scan": ("tab:cyan", "-s"),
         "torch-eager": ("tab:red", ":^"), "torch-compile": ("tab:red", "-^"),
         "torch-compile-ro": ("tab:orange", "-v"), "torch-graph": ("tab:purple", "-D")}


def plot_workload(results: list[dict], path: Path, title: str) -> None:
    """One workload's first run: medians (with the interquartile band) per mode, speedups beside."""
    ok = [r for r in results if r["run"] == 0 and not r["error"]]
    fig, (ax, sp) = plt.subplots(1, 2, figsize=(10, 3.8), layout="constrained")
    for mode in MODES:
        rs = sorted((r for r in ok if r["mode"] == mode), key=lambda r: r["size"])
        if not rs:
            continue
        color, fmt = STYLE[mode]
        x = [r["size"] for r in rs]
        ax.plot(x, [r["median_s"] for r in rs], fmt, color=color, label=mode, ms=4)
        ax.fill_between(x, [r["q25_s"] for r in rs], [r["q75_s"] for r in rs], color=color, alpha=0.15)
    ax.set(xscale="log", yscale="log", xlabel=ok[0]["size_name"] if ok else "size",
           ylabel="seconds per call (median)", title=title)
    ax.grid(True, which="both", alpha=0.3)
    if ok:
        ax.legend(fontsize=7)
    med = {(r["mode"], r["size"]): r["median_s"] for r in ok}
    for label, (slow, fast) in SPEEDUPS.items():
        sizes = sorted({s for m, s in med if m == fast and (slow, s) in med})
        if sizes:
            sp.plot(sizes, [med[slow, s] / med[fast, s] for s in sizes], "-o", ms=4,
                    label=f"{label} ({slow} / {fast})", color=STYLE[fast][0])
    sp.axhline(1.0, color="gray", lw=0.8)
    sp.set(xscale="log", yscale="log", xlabel=ok[0]["size_name"] if ok else "size",
           ylabel="speedup (×)", title="speedup of compiled over eager")
    sp.grid(True, which="both", alpha=0.3)
    if sp.get_legend_handles_labels()[0]:
        sp.legend(fontsize=7)
    sizes = sorted({r["size"] for r in ok})
    for a in (ax, sp):
        a.set_xticks(sizes, [str(s) for s in sizes], minor=False)
        a.xaxis.set_minor_locator(NullLocator())
    write_bytes_atomic(path, lambda f: fig.savefig(f, format="png", dpi=72))
    plt.close(fig)


def plot_all(results: list[dict], outdir: Path, device: str) -> list[Path]:
    """One PNG per workload, named `<device>-<workload>.png`."""
    outdir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in dict.fromkeys(r["workload"] for r in results):
        path = outdir / f"{device}-{name}.png"
        plot_workload([r for r in results if r["workload"] == name], path, f"{name} ({device})")
        paths.append(path)
    return paths
