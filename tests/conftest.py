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


# ---------------------------------------------------------------- the quick inner loop: pytest --quick
# `pytest -q -n 2 --quick` runs every test file except the browser's and data-parallel's, in one dtype
# (float32: parametrisations naming another dtype left out), with 5 hypothesis examples instead of 40, and without the tests
# named in SLOW (the whole-model ones: real models, ResNet-50, Hugging Face ports). Every module is
# still imported and exercised (tests/test_imports.py imports them all). The full command, which CI
# runs, leaves nothing out. Measured times are in docs/measurements.md.
settings.register_profile("quick", max_examples=5, deadline=None, derandomize=True)
QUICK_SKIPS_FILES = {
    "test_report_html_browser.py": "drives headless Chromium",
    "test_data_parallel.py": "starts gloo process groups",
    "test_data_parallel_cli.py": "starts gloo process groups",
}
SLOW = (  # node-id fragments of the slowest tests (measured in docs/measurements.md)
    "test_compare_real_examples.py::test_resnet50",
    "test_compare_real_examples.py::test_the_correct_port_computes_the_same[resnet50",
    "test_compare_real_examples.py::test_the_planted_bug_is_named_where_it_was_planted[resnet50",
    "test_port_generate.py::test_hugging_face",
    "test_port.py::test_the_command_ports_and_proves",
)


OTHER_DTYPES = {"float64", "float16", "bfloat16", "complex64", "complex128", "int8", "int16", "int32", "int64",
                "uint8", "bool"}


def pytest_addoption(parser):
    parser.addoption("--quick", action="store_true",
                     help="the inner loop: one dtype, 5 hypothesis examples, no browser, no data-parallel, "
                          "no whole-model tests (tests/conftest.py)")


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: a whole-model test that `--quick` leaves out")
    if config.getoption("--quick"):
        settings.load_profile("quick")


def _left_out(item) -> bool:
    name = os.path.basename(str(item.fspath))
    if name in QUICK_SKIPS_FILES or item.get_closest_marker("slow") is not None:
        return True
    if any(fragment in item.nodeid for fragment in SLOW):
        return True
    callspec = getattr(item, "callspec", None)
    # one dtype: float32 (a parametrisation naming any other dtype is left out)
    return callspec is not None and any(part in OTHER_DTYPES for part in callspec.id.split("-"))


def pytest_collection_modifyitems(config, items):
    if not config.getoption("--quick"):
        return
    dropped = [item for item in items if _left_out(item)]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = [item for item in items if not _left_out(item)]
