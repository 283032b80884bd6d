"""The pytest helper and the pairing on its own (for converting weights without comparing)."""
from __future__ import annotations

from parity import precision
from parity.porting import core
from parity.porting.conversion import check_flatten
from parity.porting.pairing import Pairing, PortingError, build
from parity.porting.prepare import prepare
from parity.porting.torch_passes import torch_pass


def assert_models_close(torch_model, flax_model, inputs, **kwargs):
    """`compare(...)` for a test suite: returns the report when the port computes the same thing, and
    raises AssertionError carrying the report's summary, the first divergence and the failing rows
    otherwise. Named after torch.testing.assert_close and numpy.testing.assert_allclose, which users'
    suites already call: "close" is the tolerance of parity.tolerances, not equality."""
    report = core.compare(torch_model, flax_model, inputs, **kwargs)
    if not report.passed:
        bad = [r for r in report.rows if r.compared and not r.ok][:5]
        lines = [report.summary()]
        for r in bad:
            s = r.out or r.inp
            lines.append(f"  row {r.index + 1}: torch `{r.torch.name}` ⇄ Flax `{r.flax.name}`: "
                         f"{(s.problem if s and not s.ok else '') or 'differs'}")
        raise AssertionError("\n".join(lines))
    return report


def pair_models(torch_model, flax_model, inputs, *, layout: str = "nhwc", weights: dict | None = None,
                torch_kwargs: dict | None = None, flax_kwargs: dict | None = None) -> Pairing:
    """The layer pairing `compare` would use (one pass of each model on `inputs`, on copies in eval
    mode on the CPU), for converting weights yourself:

        pairing = pair_models(torch_model, flax_model, x)
        sd = {k: v.numpy().copy() for k, v in torch_model.state_dict().items()}
        pairing.load_flax(flax_model, sd)          # in place, in the Flax model's own dtypes
        back = pairing.flax_to_torch(pairing.torch_to_flax(sd))   # == sd (bit for bit)
    """
    ref = next(iter(torch_model.parameters()), None)
    dtype = str(ref.dtype).removeprefix("torch.") if ref is not None and ref.is_floating_point() else "float32"
    if dtype not in precision.DTYPES:
        raise PortingError(f"the torch model's parameters are {dtype}; pairing works in float32 or float64")
    p = prepare(torch_model, flax_model, inputs, dtype=dtype, device="cpu", mode="strict", layout=layout, train=False,
                torch_kwargs=torch_kwargs, flax_kwargs=flax_kwargs, seed=0, notes=[])
    with p.patched():
        d_t, _ = torch_pass(p.torch_model, p.torch_leaves, p.inputs, p.torch_kwargs)
        d_f, _, _, _ = p.runner.run(None, abstract=True)
        pairing = build(p.torch_model, p.flax_model, p.torch_leaves, p.flax_leaves, d_t, d_f, mapping=weights,
                        layout=layout)
        if any(q.flatten_candidate for q in pairing.pairs):  # confirm the flatten order in the Flax model's data
            f_calls, _, _, _ = p.runner.run(pairing)
            check_flatten(p, pairing, f_calls, "torch->flax", None)
    return pairing


__all__ = ["assert_models_close", "pair_models"]
