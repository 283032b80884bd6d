"""Shared test settings: devices, dtypes, markers and hypothesis profiles, set in one place."""
import os

import pytest
from hypothesis import settings

import torch

from parity import precision  # noqa: F401  (x64 on, GPU memory policy: before any JAX use)

# One intra-op thread per test process: CI runs `-n 2` workers on 2 cores, and torch's default
# (one thread per core in every worker) oversubscribes them, which made the small finite-difference
# checks 20-30x slower. Results do not depend on it (tests never assert on wall time).
torch.set_num_threads(1)

settings.register_profile("ci", max_examples=40, deadline=None, derandomize=True)
settings.register_profile("long", max_examples=1000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

HAS_CUDA = precision.cuda_available()
DTYPES = ("float32", "float64")
DEVICES = [pytest.param("cpu", id="cpu"),
           pytest.param("cuda", id="cuda", marks=[pytest.mark.gpu, pytest.mark.skipif(
               not HAS_CUDA, reason="needs CUDA visible to both JAX and PyTorch")])]
