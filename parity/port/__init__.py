"""`parity port`: write the Flax NNX port of a torch model and prove it with the comparer.

    from parity.port import port
    result = port(torch_model, (x,), "out/")      # x in torch's layout; see parity/port/api.py
    print(result.summary())                       # out/<name>.py, weights.safetensors, PROOF.md

The source is written by parity/port/generate.py (tracing in graph.py, one record per torch op in
ops.py, the module file in emit.py); the weights by weights.py; the proof by proof.py.
"""
from parity.port.api import PortResult, port
from parity.port.generate import GeneratedPort, generate

__all__ = ["port", "PortResult", "generate", "GeneratedPort"]
