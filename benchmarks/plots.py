"""PNG plots of benchmark results: time per call against size (log-log), and the speedups (or, for
a workload with modes of its own, each mode's ratio to the mode it is compared with)."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import NullLocator  # noqa: E402

from benchmarks.harness import SPEEDUPS  # noqa: E402
from benchmarks.modes import MODES, REFERENCE  # noqa: E402
from parity.console import write_bytes_atomic  # noqa: E402

STYLE = {"jax-jit": ("tab:blue", "-o"), "jax-eager": ("tab:blue", ":o"), "jax-scan": ("tab:cyan", "-s"),
         "torch-eager": ("tab:red", ":^"), "torch-compile": ("tab:red", "-^"),
         "torch-compile-ro": ("tab:orange", "-v"), "torch-graph": ("tab:purple", "-D"),
         "torch-minimal": ("tab:red", ":^"), "torch-trainer": ("tab:red", "-^"),
         "jax-minimal": ("tab:blue", ":o"), "jax-trainer": ("tab:blue", "-o"), "jax-trainer-scan": ("tab:cyan", "-s"),
         "jax-reduce-window": ("tab:green", "--x")}
OTHER = ("tab:gray", "-.")  # a mode without a style of its own


def plot_workload(results: list[dict], path: Path, title: str) -> None:
    """One workload's first run: medians (with the interquartile band) per mode, speedups beside."""
    ok = [r for r in results if r["run"] == 0 and not r["error"]]
    fig, (ax, sp) = plt.subplots(1, 2, figsize=(10, 3.8), layout="constrained")
    for mode in dict.fromkeys(r["mode"] for r in ok):
        rs = sorted((r for r in ok if r["mode"] == mode), key=lambda r: r["size"])
        color, fmt = STYLE.get(mode, OTHER)
        x = [r["size"] for r in rs]
        ax.plot(x, [r["median_s"] for r in rs], fmt, color=color, label=mode, ms=4)
        ax.fill_between(x, [r["q25_s"] for r in rs], [r["q75_s"] for r in rs], color=color, alpha=0.15)
    ax.set(xscale="log", yscale="log", xlabel=ok[0]["size_name"] if ok else "size",
           ylabel="seconds per call (median)", title=title)
    ax.grid(True, which="both", alpha=0.3)
    if ok:
        ax.legend(fontsize=7)
    med = {(r["mode"], r["size"]): r["median_s"] for r in ok}
    # a workload with modes of its own, or ratios to other modes than the suite's reference
    own = any(r["mode"] not in MODES or r.get("vs", REFERENCE) != REFERENCE for r in ok)
    if not own:
        for label, (slow, fast) in SPEEDUPS.items():
            sizes = sorted({s for m, s in med if m == fast and (slow, s) in med})
            if sizes:
                sp.plot(sizes, [med[slow, s] / med[fast, s] for s in sizes], "-o", ms=4,
                        label=f"{label} ({slow} / {fast})", color=STYLE[fast][0])
    else:  # modes of its own: each one's paired ratio to the mode it is compared with, with its interval
        for mode in dict.fromkeys(r["mode"] for r in ok if "vs_ratio" in r):
            rs = sorted((r for r in ok if r["mode"] == mode and "vs_ratio" in r), key=lambda r: r["size"])
            color, fmt = STYLE.get(mode, OTHER)
            x = [r["size"] for r in rs]
            sp.plot(x, [r["vs_ratio"]["ratio"] for r in rs], fmt, color=color, ms=4, label=f"{mode} / {rs[0]['vs']}")
            sp.fill_between(x, [r["vs_ratio"]["ci_low"] for r in rs], [r["vs_ratio"]["ci_high"] for r in rs],
                            color=color, alpha=0.15)
    sp.axhline(1.0, color="gray", lw=0.8)
    sp.set(xscale="log", yscale="log", xlabel=ok[0]["size_name"] if ok else "size",
           ylabel="ratio (×)" if own else "speedup (×)",
           title="ratio to the compared mode (below 1: faster)" if own else "speedup of compiled over eager")
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
