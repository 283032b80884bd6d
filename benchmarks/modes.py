"""The timing modes, by name (light to import: the CLI builds its choices from this)."""

# name → what it runs; a workload offers the ones that apply to it (harness.modes_for)
MODES = {
    "jax-jit": "jax.jit of the whole function (donated state for training steps)",
    "jax-eager": "the same JAX code op by op, under jax.disable_jit()",
    "jax-scan": "a whole epoch of training steps in one jitted lax.scan (time per step)",
    "torch-eager": "PyTorch eager (inference_mode for single ops)",
    "torch-compile": "torch.compile, default mode",
    "torch-compile-ro": "torch.compile(mode='reduce-overhead'): CUDA graphs (CUDA only)",
    "torch-graph": "the whole training step captured in one torch.cuda.CUDAGraph (CUDA only)",
}
