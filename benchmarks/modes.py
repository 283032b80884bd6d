"""The timing modes, by name, and the sampling settings (light to import: the CLI and the site read
them from here).

Most workloads offer the suite's modes, MODES (those that apply: harness.modes_for), each timed also
as a ratio to REFERENCE. A workload that times other implementations carries its own modes and, per
mode, the mode its ratio is taken against (benchmarks/workloads.py, Workload.modes and .vs).
"""
from dataclasses import dataclass

# name → what it runs; a workload offers the ones that apply to it (harness.modes_for)
MODES = {
    "jax-jit": "jax.jit of the whole function (donated state for training steps)",
    "jax-eager": "a debugging mode: the same JAX code op by op under jax.disable_jit(), which also "
                 "un-jits the inner jitted functions; for the training steps (train.*) the state is put "
                 "back before every call, so only the op-by-op dispatch is timed, not a compilation per "
                 "step count (the data-parallel dp.* steps go on from state to state)",
    "jax-scan": "a whole epoch of training steps in one jitted lax.scan (time per step)",
    "torch-eager": "PyTorch eager (inference_mode for single ops)",
    "torch-compile": "torch.compile, default mode",
    "torch-compile-ro": "torch.compile(mode='reduce-overhead'): CUDA graphs (CUDA only)",
    "torch-graph": "the whole training step captured in one torch.cuda.CUDAGraph (CUDA only)",
}

REFERENCE = "torch-eager"  # the suite's modes: each one's time is also given as a ratio to this one

# train.<model>.adam.trainer_vs_minimal: each framework's Trainer against the least code that trains
# the same model, driven as `parity train` drives it (index rows of a dataset on the device)
TRAINER_VS_MINIMAL = {
    "torch-minimal": "the minimal torch step: zero_grad, forward, F.cross_entropy, backward, fused Adam",
    "torch-trainer": "torch_impl's Trainer.step (eager, foreach Adam), as parity train drives it",
    "jax-minimal": "the minimal JAX step: jax.jit over plain dicts of arrays, optax.adam, donated buffers, "
                   "index rows already on the device",
    "jax-trainer": "jax_impl's Trainer.step_at over the epoch's rows, put on the device once per epoch "
                   "(parity train's path for small_cnn on the CPU)",
    "jax-trainer-scan": "jax_impl's Trainer.epoch: the epoch in one lax.scan, time per step (parity train's "
                        "path where the model allows, training.scan_allowed)",
}
# mode → the mode its ratio is taken against (torch-minimal, the reference of the reference, has none)
TRAINER_VS_MINIMAL_VS = {"torch-trainer": "torch-minimal", "jax-minimal": "torch-minimal",
                         "jax-trainer": "jax-minimal", "jax-trainer-scan": "jax-minimal"}

# layers.max_pool2d.fwd_bwd adds one mode: the plain lax.reduce_window pooling, which jax_impl's
# MaxPool2d (jax-jit) is measured against
REDUCE_WINDOW = {"jax-reduce-window": "jax.jit of a plain max pool: lax.reduce_window forward, JAX's own "
                                      "VJP of it (select_and_scatter_add) backward"}

ALL_MODES = {**MODES, **TRAINER_VS_MINIMAL, **REDUCE_WINDOW}  # every mode any workload offers


@dataclass
class Settings:
    repeats: int = 25
    warmup: int = 3
    min_sample_s: float = 0.01  # calls per sample grow until a sample lasts this long
    max_time_s: float = 5.0  # stop sampling after this long (at least `min_repeats` samples)
    min_repeats: int = 3
