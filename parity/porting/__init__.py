"""Parity for your own models: point the comparer at a stock `torch.nn` model and its Flax NNX port
(or the project's twins) and learn whether the port computes the same thing, and if not, where it
first parts.

    from parity import compare
    report = compare(torch_model, flax_model, x)   # x: NumPy, in torch's layout (NCHW)
    print(report.summary()); rich.print(report.table()); report.write_json("port.json")

The rules, in the order they apply:

* Inputs are given once, as NumPy, in torch's layout. The Flax side gets the same arrays, except that
  with `layout="nhwc"` (the default) every 4-D floating input goes NCHW → NHWC (docs/traps.md, trap 3);
  `layout="nchw"` declares a Flax model that takes torch's layout at its boundary (it may transpose
  inside), and then nothing is transposed. Floating inputs are cast to `dtype` and must be finite
  (NaN would compare equal to NaN); integer inputs (token ids) become int64. When comparing, each
  4-D Flax activation or output is read as NHWC or NCHW from its shape against torch's (the layout
  setting decides where the shape cannot, C = H = W), input gradients come back the way their
  input went, and a vector flattened in (H, W, C) order is reordered to torch's (C, H, W) (trap 4).
* Both models are copied (the caller's objects are never changed), cast to `dtype` and moved to
  `device`; eval mode by default (Dropout the identity, BatchNorm on its running statistics), or
  `train=True`: BatchNorm on batch statistics with its running statistics compared after the pass,
  and each paired Dropout given one mask on both sides (trap 18).
* Layers are paired (parity/porting/pairing.py: by name when the names agree, else in execution
  order) and the weights converted `torch->flax` (default) or `flax->torch` by the rules of
  parity/convert.py, a Flatten→Linear after convolutions included; `weights=` may instead be a
  {torch_name: flax_path} mapping or a callable doing the conversion (state_dict of NumPy arrays → nested
  pure dict, or the reverse with direction="flax->torch"): then its result is what is tested.
* One recorded pass per side captures every leaf layer's input and output (parity/porting/trace.py);
  paired calls are compared; then outputs, and gradients with respect to every floating input and every
  parameter, for one fixed random cotangent (a VJP, as parity/runner.py does).
* Everything is judged by `parity.tolerances.lookup(dtype, device, mode)`; the first divergence is
  the first paired layer, in execution order, whose input, output or running statistics part (an input
  that parts while every earlier layer agrees puts the cause in the code between the two layers).
* Models that cannot be compared as given raise `PortingError` (a ValueError) with one line saying why.
"""
from __future__ import annotations

from parity.porting.core import compare
from parity.porting.pairing import Pairing, PortingError
from parity.porting.report import Divergence, Report, Row, Stats
from parity.porting.training import TrainingReport, compare_training
from parity.porting.api import assert_models_close, pair_models
from parity.porting.kind_record import Note
from parity.porting.kinds import Array, Kind, NoteContext
from parity.porting.kinds import register as register_kind

__all__ = ["compare", "assert_models_close", "compare_training", "pair_models", "Report", "Row", "Stats",
           "Divergence", "Pairing", "PortingError", "TrainingReport", "Kind", "Array", "Note", "NoteContext",
           "register_kind"]
