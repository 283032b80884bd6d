"""The precision/device policy: switches, reports, determinism; GPU cases marked `gpu`."""
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from conftest import HAS_CUDA
from parity import audit, precision, registry, runner
from parity.cli import main
from parity.tolerances import FP32_SEEN, TF32_SEEN

gpu = [pytest.mark.gpu, pytest.mark.skipif(not HAS_CUDA, reason="needs CUDA visible to both JAX and PyTorch")]


def test_policy_switches_and_restores():
    before = (jax.config.jax_default_matmul_precision, torch.backends.cudnn.allow_tf32)
    with precision.policy("strict"):
        assert jax.config.jax_default_matmul_precision == "highest"
        assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32
    with precision.policy("defaults"):
        assert jax.config.jax_default_matmul_precision is None
        assert torch.backends.cudnn.allow_tf32  # torch's own default for cuDNN convolutions
    assert (jax.config.jax_default_matmul_precision, torch.backends.cudnn.allow_tf32) == before
    with pytest.raises(ValueError, match="precision must be one of"):
        with precision.policy("fast"):
            pass


_IMPORT_WATCH = """
import builtins, os, sys
seen = {}
real_import = builtins.__import__
def watch(name, *args, **kwargs):
    if name.split(".")[0] == "jax" and "jax" not in seen:
        seen["jax"] = os.environ.get("XLA_PYTHON_CLIENT_PREALLOCATE")
    return real_import(name, *args, **kwargs)
builtins.__import__ = watch
import parity.precision
print(seen.get("jax"), os.environ.get("XLA_PYTHON_CLIENT_PREALLOCATE"))
"""


@pytest.mark.parametrize("user_value,want", [(None, "false"), ("true", "true")])
def test_trap28_preallocation_is_off_before_jax_is_first_imported(user_value, want):
    """docs/traps.md, trap 28: in a fresh process, the setting is already in the environment when JAX
    is first imported (JAX reads it when its GPU backend starts), and a user's own value is kept."""
    env = {k: v for k, v in os.environ.items() if k != "XLA_PYTHON_CLIENT_PREALLOCATE"}
    if user_value is not None:
        env["XLA_PYTHON_CLIENT_PREALLOCATE"] = user_value
    r = subprocess.run([sys.executable, "-c", _IMPORT_WATCH], capture_output=True, text=True, check=True, env=env)
    assert r.stdout.split() == [want, want]


def test_deterministic_switches_in_a_fresh_process():
    code = ("from parity import precision; precision.deterministic(); import os, torch; "
            "print(precision.deterministic_enabled(), os.environ['XLA_FLAGS'])")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert r.stdout.split()[0] == "True" and "--xla_gpu_deterministic_ops=true" in r.stdout


def test_unknown_device_is_a_clear_error():
    with pytest.raises(ValueError, match="device must be one of"):
        precision.jax_device("tpu")


@pytest.mark.skipif(HAS_CUDA, reason="checks the message shown where CUDA is absent")
def test_cuda_request_without_cuda_is_a_usage_error(capsys):
    assert main(["check", "activations.relu", "--device", "cuda"]) == 2
    assert "CUDA is not available" in capsys.readouterr().err


def test_audit_report_on_cpu(tmp_path):
    """The audit runs both modes and both dtypes, checks determinism, and writes JSON + markdown."""
    rc = main(["audit", "activations.softmax", "tensors.matmul", "--device", "cpu", "--out", str(tmp_path)])
    assert rc == 0
    a = json.loads((tmp_path / "audit-cpu.json").read_text())
    assert {(r["dtype"], r["precision"]) for r in a["parity"]} == {
        (d, m) for d in precision.DTYPES for m in precision.MODES}
    assert all(r["passed"] for r in a["parity"])
    assert len(a["determinism"]) == 2 * 2 * 2  # concepts × dtypes × frameworks
    assert all(r["ok"] for r in a["determinism"]), a["determinism"]  # the CPU kernels are repeatable
    md = (tmp_path / "audit-cpu.md").read_text()
    assert "| tensors.matmul | float32 | defaults |" in md and a["environment"]["torch"] in md


def test_determinism_check_detects_a_moving_result(monkeypatch):
    """A run-to-run change is reported with its size, not hidden."""
    calls = {"n": 0}
    real = runner.run_jax

    def drifting(concept, s, device, cts=None):
        out, grads = real(concept, s, device, cts)
        calls["n"] += 1
        return tuple(o + calls["n"] * 1e-3 for o in out), grads

    monkeypatch.setattr(runner, "run_jax", drifting)
    r = audit._self_compare(registry.get("activations.tanh"), "float64", "jax", "cpu", "cpu", "strict", True)
    assert not r["ok"] and r["max_abs"] == pytest.approx(1e-3)


@pytest.mark.parametrize("dummy", [pytest.param(0, marks=gpu)])
def test_trap01_tf32_on_gpu(dummy):
    """JAX's default float32 matmul uses TF32 on Ampere/Hopper; strict precision restores float32."""
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((1024, 1024)), rng.standard_normal((1024, 1024))
    ref = a @ b
    dev = precision.jax_device("cuda")
    ja, jb = (jax.device_put(x.astype(np.float32), dev) for x in (a, b))
    rel = lambda y: np.linalg.norm(np.asarray(y, np.float64) - ref) / np.linalg.norm(ref)
    with precision.policy("defaults"):
        default_err = rel(jnp.matmul(ja, jb))
    with precision.policy("strict"):
        strict_err = rel(jnp.matmul(ja, jb))
    assert default_err > TF32_SEEN, f"JAX's default matmul did not use TF32 ({default_err:.2g})"
    assert strict_err < FP32_SEEN, f"strict JAX matmul is not full float32 ({strict_err:.2g})"


@pytest.mark.parametrize("dummy", [pytest.param(0, marks=gpu)])
def test_trap01_torch_cudnn_convolutions_allow_tf32_by_default(dummy):
    """torch's matmul default is full float32, but its cuDNN convolutions allow TF32; strict turns it off."""
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((8, 64, 32, 32)), rng.standard_normal((64, 64, 3, 3))
    ref = torch.nn.functional.conv2d(torch.from_numpy(x), torch.from_numpy(w)).numpy()
    dev = precision.torch_device("cuda")
    tx, tw = (torch.from_numpy(v.astype(np.float32)).to(dev) for v in (x, w))
    rel = lambda y: np.linalg.norm(y.double().cpu().numpy() - ref) / np.linalg.norm(ref)
    with precision.policy("defaults"):
        default_err = rel(torch.nn.functional.conv2d(tx, tw))
    with precision.policy("strict"):
        strict_err = rel(torch.nn.functional.conv2d(tx, tw))
    assert default_err > TF32_SEEN, f"torch's default cuDNN convolution did not use TF32 ({default_err:.2g})"
    assert strict_err < FP32_SEEN, f"strict torch convolution is not full float32 ({strict_err:.2g})"


@pytest.mark.parametrize("dummy", [pytest.param(0, marks=gpu)])
def test_both_frameworks_share_one_gpu(dummy):
    x = jax.device_put(np.ones((1024, 1024), np.float32), precision.jax_device("cuda"))
    jax.block_until_ready(x @ x)
    t = torch.ones((4096, 4096), device="cuda")  # would fail if JAX had taken 75% of the memory
    assert float((t @ t)[0, 0]) == 4096.0


@pytest.mark.parametrize("concept", [pytest.param(c, marks=gpu) for c in registry.all_concepts()],
                         ids=[c.name for c in registry.all_concepts()])
@pytest.mark.parametrize("framework", ["jax", "torch"])
def test_gpu_agrees_with_cpu(concept, framework):
    """Each framework's CUDA results agree with its own CPU results (strict mode, float32)."""
    r = audit._self_compare(concept, "float32", framework, "cuda", "cpu", "strict", False)
    assert r["ok"], r
