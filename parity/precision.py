"""Precision and device policy, set in one place for both frameworks.

`strict`: JAX matmul/conv precision "highest" and torch TF32 off (matmul and cuDNN), so float32
parity holds at CPU-like tolerances on a GPU. `defaults`: whatever each framework does out of the
box (JAX uses TF32 on Ampere/Hopper, torch's cuDNN convolutions allow TF32; docs/traps.md, trap 1).
JAX's x64 mode is switched on at import so float64 really runs in float64 (docs/traps.md, trap 25); every array
the project creates names its dtype, so float32 runs stay float32.
"""
from __future__ import annotations

import contextlib
import os

# docs/traps.md, trap 28: JAX would grab 75% of GPU memory at first use and starve torch in the same process.
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

import jax  # noqa: E402
import torch  # noqa: E402

jax.config.update("jax_enable_x64", True)

from parity.names import DEVICES, DTYPES, MODES  # noqa: E402,F401  (re-exported)


def cuda_available() -> bool:
    """True when both frameworks see a CUDA GPU."""
    try:
        has_jax = bool(jax.devices("gpu"))
    except RuntimeError:
        has_jax = False
    return has_jax and torch.cuda.is_available()


def jax_device(device: str):
    if device not in DEVICES:
        raise ValueError(f"device must be one of {DEVICES}, got {device!r}")
    try:
        return jax.devices("gpu" if device == "cuda" else "cpu")[0]
    except RuntimeError as e:
        raise RuntimeError(f"JAX has no {device} device here: {e}") from None


def torch_device(device: str) -> torch.device:
    if device not in DEVICES:
        raise ValueError(f"device must be one of {DEVICES}, got {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("PyTorch has no CUDA device here")
    return torch.device(device)


def deterministic() -> None:
    """Ask both frameworks for bit-reproducible kernels (call before JAX first touches a GPU).

    XLA reads `--xla_gpu_deterministic_ops` when its GPU backend starts; torch needs
    `use_deterministic_algorithms` and, for cuBLAS, a fixed workspace configuration.
    """
    flags = os.environ.get("XLA_FLAGS", "")
    if "--xla_gpu_deterministic_ops" not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} --xla_gpu_deterministic_ops=true".strip()
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True)


def deterministic_enabled() -> bool:
    return "--xla_gpu_deterministic_ops=true" in os.environ.get("XLA_FLAGS", "") and \
        torch.are_deterministic_algorithms_enabled()


@contextlib.contextmanager
def policy(mode: str = "strict"):
    """Apply a precision mode to both frameworks for the duration of the block."""
    if mode not in MODES:
        raise ValueError(f"precision must be one of {MODES}, got {mode!r}")
    saved = (jax.config.jax_default_matmul_precision, torch.backends.cuda.matmul.allow_tf32,
             torch.backends.cudnn.allow_tf32)
    if mode == "strict":
        jax.config.update("jax_default_matmul_precision", "highest")
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    else:  # the frameworks' own defaults
        jax.config.update("jax_default_matmul_precision", None)
        torch.backends.cuda.matmul.allow_tf32 = False  # torch's default since 1.12
        torch.backends.cudnn.allow_tf32 = True  # torch's default
    try:
        yield
    finally:
        jax.config.update("jax_default_matmul_precision", saved[0])
        torch.backends.cuda.matmul.allow_tf32 = saved[1]
        torch.backends.cudnn.allow_tf32 = saved[2]
