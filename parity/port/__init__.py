"""`parity port`: write the Flax NNX port of a torch model and prove it with the comparer.

    from parity.port import port
    result = port(torch_model, (x,), "out/")      # x in torch's layout; see parity/port/api.py
    print(result.summary())                       # out/<name>.py, weights.safetensors, PROOF.md

The source is written by parity/port/generate.py (tracing in graph.py, one record per torch op in
ops.py, the module file in emit.py); the weights by weights.py; the proof by proof.py. The cases
that need more than a record each have a module of their own:
    attrs.py         a module reading a sub-module's parameter or buffer directly
    constants.py     buffers and graph constants: the formula that makes them, or their values
    parametrized.py  torch.nn.utils.parametrize layers (weight norm): the weight computed each call
    resample.py      avg_pool with ceil_mode, interpolate (linear, nearest) with torch's index rules
    subclass.py      a layer kind's subclass whose forward computes something else: traced
    ties.py          one torch module or parameter at several paths: one nnx module
    widen.py         the float64 proof of a model that casts to float32 itself
"""
from parity.port.api import PortResult, port
from parity.port.generate import GeneratedPort, generate

__all__ = ["port", "PortResult", "generate", "GeneratedPort"]
