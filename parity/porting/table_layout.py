"""The layout of the compare table (parity/porting/report.py's `Report.table`): how numbers are
written, which columns there are, and how wide each is for the terminal it is printed in (columns
left out, in DROP_ORDER, while it would be wider)."""
from __future__ import annotations

import math


def fmt(x, kind="e") -> str:
    """A measured number as the table shows it: "—" for none, dB with ∞, cosines near 1 as their gap."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "—"
    if kind == "db":
        return "∞" if x == math.inf else ("-∞" if x == -math.inf else f"{x:.1f}")
    if kind == "cos":  # near 1, the gap to 1 is what tells
        return "1" if x >= 1.0 else (f"1−{1 - x:.0e}" if x > 0.999999 else f"{x:.6f}")
    return "0" if x == 0 else f"{x:.1e}"


# The compare table's columns (header, justification), and the order in which columns are left out
# when the table would be wider than the terminal (the rest always stay).
COLUMNS = (("#", "right"), ("torch layer", "left"), ("Flax layer", "left"), ("kind", "left"), ("shape", "left"),
           ("max abs", "right"), ("max rel", "right"), ("mean abs", "right"), ("SQNR dB", "right"),
           ("cosine", "right"), ("grad max abs", "right"), ("", "left"))
DROP_ORDER = ("kind", "mean abs", "SQNR dB", "cosine", "shape", "max rel", "grad max abs")  # kind: the names say it
_FLEXIBLE = {"torch layer": 12, "Flax layer": 12, "": 11}  # text that wraps: the narrowest they get


def column_widths(rows: list[list[str]], width: int | None) -> dict[str, int]:
    """Each kept column's width (without padding): numbers and other unbreakable cells as wide as
    their widest cell (a header may wrap between its words), layer names and the verdict as wide as
    they need or as the room left allows, down to `_FLEXIBLE`; columns of `DROP_ORDER` left out while
    the table would be wider than `width` (None: no limit)."""
    from rich.cells import cell_len

    natural, least = {}, {}
    for i, (head, _) in enumerate(COLUMNS):
        cells = [r[i] for r in rows]
        widest = max((cell_len(c) for c in cells), default=0)
        word = max((cell_len(w) for w in head.split()), default=0)
        natural[head] = max(widest, cell_len(head), 1)
        if head in _FLEXIBLE:
            least[head] = min(natural[head], max(_FLEXIBLE[head], word))
        else:
            least[head] = max(widest, word, 1)
    kept = [h for h, _ in COLUMNS]

    def room(cols):  # a box table: 2 spaces of padding per column, a border before, between and after
        return sum(least[h] for h in cols) + 3 * len(cols) + 1
    if width is not None:
        for head in DROP_ORDER:
            if room(kept) <= width:
                break
            kept.remove(head)
    out = {h: least[h] for h in kept}
    spare = (width - room(kept)) if width is not None else math.inf
    # the room left: layer names and the verdict first (one character at a time to the narrowest that
    # is not yet whole), then headers on one line
    flexible = [h for h in kept if h in _FLEXIBLE]
    while spare < 0 and max(out[h] for h in flexible) > 4:  # a very narrow terminal: names fold tighter
        out[max(flexible, key=lambda k: out[k])] -= 1
        spare += 1
    while spare > 0:
        short = [h for h in flexible if out[h] < natural[h]]
        if not short:
            break
        if spare == math.inf:
            out.update({h: natural[h] for h in short})
            break
        out[min(short, key=lambda k: out[k])] += 1
        spare -= 1
    for h in kept:
        if h not in _FLEXIBLE:
            give = max(0, min(natural[h] - out[h], spare))  # none when even the least does not fit
            out[h] += give
            spare -= give
    return out


class Fitted:
    """A renderable that builds its table for the width it is printed in."""

    def __init__(self, build):
        self.build = build

    def __rich_console__(self, console, options):
        yield self.build(options.max_width)

    def __rich_measure__(self, console, options):
        from rich.measure import Measurement
        return Measurement.get(console, options, self.build(options.max_width))
