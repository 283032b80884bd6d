"""Where a port first parts from torch: the first divergence, read from the rows in execution order,
then the outputs and the gradients (parity/porting/report.py's Divergence)."""
from __future__ import annotations

from parity.porting.kind_record import bears_on
from parity.porting.report import Divergence, Row


def _bearing(row: Row, what: str) -> list[str]:
    """The row's notes on settings that bear on `what` ("output" or "statistics": kind_record.Note)."""
    return [n for n in row.notes if bears_on(n, what)]


def first_divergence(rows: list[Row], outputs, input_grads, param_grads, loose_names) -> Divergence | None:
    """The first place the port parts, in the order a reader should look: a missing call; the first
    paired layer whose input, output or running statistics differ (an input that differs while every
    earlier layer agrees puts the cause in the code between); a model output; the last layer whose
    parameter gradients differ (gradients flow backwards); a loose parameter's gradient; an input's
    gradient. None when everything agrees."""
    last_ok, between_t, between_f = None, [], []
    for r in rows:
        if r.missing:
            return Divergence("calls", r.index, r.torch, r.flax,
                              f"torch {r.torch} and Flax {r.flax}: {r.missing}", last_ok)
        if not (r.torch and r.flax) or not r.compared:
            (between_t if r.torch else between_f).append(r)
            continue
        pair_name = f"torch `{r.torch.name}` ⇄ Flax `{r.flax.name}`"
        if r.inp is not None and not r.inp.ok:
            t_named = between_t[0].torch if len(between_t) == 1 else None
            f_named = between_f[0].flax if len(between_f) == 1 else None
            where = f"after {last_ok}" if last_ok else "before any layer (from the model inputs)"
            ran = "; torch runs " + ", ".join(str(b.torch) for b in between_t) + " there" if between_t \
                else "; torch runs no layer there"
            fran = "; Flax runs " + ", ".join(str(b.flax) for b in between_f) + " there" if between_f else \
                f"; Flax runs no layer there: read its code up to the call at {r.flax.called_at}"
            msg = (f"the input of {pair_name} differs ({r.inp.problem}) though every earlier layer agrees: "
                   f"the divergence lies in the code {where} and before `{r.torch.name}`{ran}{fran}")
            return Divergence("input", r.index, t_named, f_named, msg, last_ok, r.torch.name)
        if r.out is not None and not r.out.ok:
            return Divergence("output", r.index, r.torch, r.flax,
                              f"the output of torch {r.torch} ⇄ Flax {r.flax} differs ({r.out.problem}); "
                              f"its input agrees" + ("" if r.inp else " (input not compared)") +
                              (f"; settings that differ: {'; '.join(ns)}" if (ns := _bearing(r, "output")) else ""),
                              last_ok)
        if r.state is not None and not r.state.ok:
            return Divergence("running statistics", r.index, r.torch, r.flax,
                              f"the running statistics of torch {r.torch} ⇄ Flax {r.flax} differ after the "
                              f"pass ({r.state.problem})" + (f"; {'; '.join(ns)}" if (ns := _bearing(r, "statistics"))
                                                             else ""), last_ok)
        last_ok, between_t, between_f = pair_name, [], []
    for i, s in enumerate(outputs):
        if not s.ok:
            where = f"after the last layer that agrees ({last_ok})" if last_ok else "(no layer was compared)"
            return Divergence("model output", None, None, None,
                              f"model output {i} differs ({s.problem}) though every layer agrees: the divergence "
                              f"lies in the code {where}", last_ok)
    bad = [r for r in rows if r.grad is not None and not r.grad.ok]
    if bad:  # gradients flow backwards: the last layer (in execution order) whose gradients part is nearest the cause
        r = bad[-1]
        return Divergence("gradient", r.index, r.torch, r.flax,
                          f"every output agrees but the parameter gradients of torch {r.torch} ⇄ Flax {r.flax} "
                          f"differ ({r.grad.problem}); it is the last layer in execution order whose gradients "
                          f"part (gradients flow backwards)", None)
    for name in loose_names:
        s = param_grads.get(name)
        if s is not None and not s.ok:
            return Divergence("gradient", None, None, None, f"the gradient of parameter `{name}` differs "
                                                            f"({s.problem})")
    for name, s in input_grads.items():
        if not s.ok:
            return Divergence("input gradient", None, None, None,
                              f"the gradient wrt {name} differs ({s.problem}) though outputs and parameter "
                              f"gradients agree")
    return None
