"""Small inline SVG charts for the report (no plotting library, nothing loaded at view time)."""
from __future__ import annotations

import math
from html import escape

COLORS = {"out": "#2b6cb0", "grad": "#dd6b20", "jax": "#2b6cb0", "torch": "#c53030", "diff": "#2f855a"}
_PALETTE = ("#2b6cb0", "#c53030", "#2f855a", "#6b46c1", "#b7791f", "#319795")


def _fmt_decade(k: int) -> str:
    return "1" if k == 0 else f"1e{k}"


def histogram(errors: list[tuple[float, str, bool]], atol: float, title: str, width: int = 380,
              height: int = 150) -> str:
    """Per-tensor maximum absolute errors, one bar per decade, stacked by kind ("out", "grad").

    `errors` holds (max_abs, kind, finite_match); a zero error goes to the "0" bar (bitwise equal),
    a mismatch that has no size (shape, dtype, non-finite or integer values) to the "≠" bar. The
    dashed line marks atol.
    """
    kinds = ("out", "grad")
    zero = {k: 0 for k in kinds}
    bad = {k: 0 for k in kinds}
    logs: list[tuple[int, str]] = []
    for v, kind, sized in errors:
        kind = "grad" if kind.startswith("grad") else "out"
        if not sized or not math.isfinite(v):
            bad[kind] += 1
        elif v == 0:
            zero[kind] += 1
        else:
            logs.append((math.floor(math.log10(v)), kind))
    la = math.floor(math.log10(atol)) if atol > 0 else -8
    lo = min([d for d, _ in logs] + [la - 1])
    hi = max([d for d, _ in logs] + [la + 1])
    decades = list(range(lo, hi + 1))
    labels = ["0", *[_fmt_decade(d) for d in decades], "≠"]
    counts = [zero] + [{k: sum(1 for d, kk in logs if d == dd and kk == k) for k in kinds} for dd in decades] + [bad]
    left, right, top, bottom = 30, 8, 22, 34
    pw, ph = width - left - right, height - top - bottom
    n = len(labels)
    bw = pw / n
    peak = max(1, max(sum(c.values()) for c in counts))
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}">',
             f'<text x="{left}" y="14" class="chart-title">{escape(title)}</text>',
             f'<line x1="{left}" y1="{top + ph}" x2="{left + pw}" y2="{top + ph}" class="axis"/>',
             f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + ph}" class="axis"/>',
             f'<text x="{left - 4}" y="{top + 8}" class="tick" text-anchor="end">{peak}</text>',
             f'<text x="{left - 4}" y="{top + ph}" class="tick" text-anchor="end">0</text>']
    for i, (label, c) in enumerate(zip(labels, counts)):
        x, y = left + i * bw, top + ph
        for k in kinds:
            if c[k]:
                h = ph * c[k] / peak
                y -= h
                parts.append(f'<rect x="{x + 1:.1f}" y="{y:.1f}" width="{bw - 2:.1f}" height="{h:.1f}" '
                             f'fill="{COLORS[k]}"><title>{escape(label)}: {c[k]} {k} tensor(s)</title></rect>')
        step = max(1, math.ceil(n / 10))
        if i % step == 0 or i in (0, n - 1):
            parts.append(f'<text x="{x + bw / 2:.1f}" y="{top + ph + 12}" class="tick" '
                         f'text-anchor="middle">{escape(label)}</text>')
    if atol > 0:
        xa = left + (1 + decades.index(la) + (math.log10(atol) - la)) * bw
        parts.append(f'<line x1="{xa:.1f}" y1="{top}" x2="{xa:.1f}" y2="{top + ph}" class="limit"/>'
                     f'<text x="{xa + 3:.1f}" y="{top + 9}" class="tick">atol {atol:.0e}</text>')
    parts.append(f'<text x="{left + pw / 2:.1f}" y="{height - 4}" class="tick" text-anchor="middle">'
                 f'max |jax − torch| per tensor (decades)</text>')
    lx = width - right - 118
    for j, k in enumerate(kinds):
        parts.append(f'<rect x="{lx + j * 64}" y="6" width="9" height="9" fill="{COLORS[k]}"/>'
                     f'<text x="{lx + j * 64 + 12}" y="14" class="tick">{"outputs" if k == "out" else "gradients"}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return [lo]
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = min((m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw), default=10 * mag)
    start = math.ceil(lo / step) * step
    ticks, t = [], start
    while t <= hi + step * 1e-9:
        ticks.append(round(t, 12))
        t += step
    return ticks


def _tick_label(v: float) -> str:
    return f"{v:.0e}" if v != 0 and (abs(v) < 1e-3 or abs(v) >= 1e5) else f"{v:g}"


def lines(series: dict[str, tuple[list[float], list[float]]], title: str, xlabel: str, ylabel: str,
          log_y: bool = False, width: int = 560, height: int = 260, colors: dict | None = None) -> str:
    """A line chart of several (xs, ys) series; log_y plots log10 of the positive values only."""
    colors = colors or {}
    pts = {}
    for name, (xs, ys) in series.items():
        keep = [(float(x), float(y)) for x, y in zip(xs, ys)
                if math.isfinite(float(y)) and (not log_y or float(y) > 0)]
        if len(keep) > 1500:  # a few hundred points per pixel column add nothing
            stride = math.ceil(len(keep) / 1500)
            keep = keep[::stride] + ([keep[-1]] if (len(keep) - 1) % stride else [])
        pts[name] = [(x, math.log10(y) if log_y else y) for x, y in keep]
    allp = [p for v in pts.values() for p in v]
    left, right, top, bottom = 58, 12, 24, 40
    pw, ph = width - left - right, height - top - bottom
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}">',
             f'<text x="{left}" y="15" class="chart-title">{escape(title)}</text>']
    if not allp:
        parts.append(f'<text x="{left + pw / 2}" y="{top + ph / 2}" class="tick" text-anchor="middle">'
                     f'nothing to plot (all values {"zero" if log_y else "missing"})</text></svg>')
        return "".join(parts)
    x0, x1 = min(p[0] for p in allp), max(p[0] for p in allp)
    y0, y1 = min(p[1] for p in allp), max(p[1] for p in allp)
    if x1 == x0:
        x1 = x0 + 1
    if y1 == y0:
        y0, y1 = y0 - (1 if log_y else abs(y0) * 0.1 + 1e-12), y1 + (1 if log_y else abs(y1) * 0.1 + 1e-12)

    def sx(x):
        return left + (x - x0) / (x1 - x0) * pw

    def sy(y):
        return top + ph - (y - y0) / (y1 - y0) * ph

    parts.append(f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" class="plot-area"/>')
    if log_y:
        yt = list(range(math.ceil(y0), math.floor(y1) + 1)) or [round(y0)]
        ylabels = [_fmt_decade(int(t)) for t in yt]
    else:
        yt = _nice_ticks(y0, y1)
        ylabels = [_tick_label(t) for t in yt]
    for t, lab in zip(yt, ylabels):
        if y0 <= t <= y1:
            parts.append(f'<line x1="{left}" y1="{sy(t):.1f}" x2="{left + pw}" y2="{sy(t):.1f}" class="grid"/>'
                         f'<text x="{left - 4}" y="{sy(t) + 3:.1f}" class="tick" text-anchor="end">{lab}</text>')
    for t in _nice_ticks(x0, x1, 6):
        if x0 <= t <= x1:
            parts.append(f'<text x="{sx(t):.1f}" y="{top + ph + 13}" class="tick" text-anchor="middle">'
                         f'{_tick_label(t)}</text>')
    legend = []
    for i, (name, p) in enumerate(pts.items()):
        color = colors.get(name, _PALETTE[i % len(_PALETTE)])
        if len(p) == 1:
            parts.append(f'<circle cx="{sx(p[0][0]):.1f}" cy="{sy(p[0][1]):.1f}" r="2.5" fill="{color}"/>')
        else:
            d = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in p)
            dash = ' stroke-dasharray="5,3"' if i % 2 else ""
            parts.append(f'<polyline points="{d}" fill="none" stroke="{color}" stroke-width="1.4"{dash}/>')
        legend.append((name, color))
    lx = width - right - sum(26 + 6.2 * len(n) for n, _ in legend)
    for name, color in legend:  # in the title line, right-aligned: never over the data
        parts.append(f'<line x1="{lx:.1f}" y1="11" x2="{lx + 16:.1f}" y2="11" stroke="{color}" stroke-width="2"/>'
                     f'<text x="{lx + 20:.1f}" y="15" class="tick">{escape(name)}</text>')
        lx += 26 + 6.2 * len(name)
    parts.append(f'<text x="{left + pw / 2:.1f}" y="{height - 6}" class="tick" text-anchor="middle">'
                 f'{escape(xlabel)}</text>'
                 f'<text x="12" y="{top + ph / 2:.1f}" class="tick" text-anchor="middle" '
                 f'transform="rotate(-90 12 {top + ph / 2:.1f})">{escape(ylabel)}</text></svg>')
    return "".join(parts)
