"""Arguments and checks that several commands share (concept names, device, dtype, precision)."""
from __future__ import annotations

from parity import parallel
from parity.console import UsageError, esc, writable_dir
from parity.names import DEVICES, MODES


def add_concept_names(p, help_text: str = "concepts or groups (default: all)") -> None:
    p.add_argument("names", nargs="*", metavar="NAME", help=help_text)


def add_device(p, default: str = "cpu") -> None:
    p.add_argument("--device", choices=DEVICES, default=default)


def add_precision(p) -> None:
    p.add_argument("--precision", choices=MODES, default="strict",
                   help="strict: TF32 off in both; defaults: each framework's own (matters on GPU)")


def select_concepts(names):
    """The named concepts (all when none), or UsageError with close names."""
    from parity import registry  # imports both frameworks: only once a command runs
    try:
        return registry.select(names)
    except registry.UnknownConcept as e:
        raise UsageError(str(e)) from None


def check_device(device: str) -> None:
    if device != "cuda":
        return
    from parity import precision
    if not precision.cuda_available():
        raise UsageError("--device cuda: CUDA is not available to both JAX and PyTorch here")


def input_shape(text: str) -> tuple[int, ...]:
    """One --input-shape value ("8,3,32,32") as a tuple of positive integers, else UsageError."""
    try:
        shape = tuple(int(s) for s in text.split(","))
    except ValueError:
        shape = ()
    if not shape or any(s < 1 for s in shape):
        raise UsageError(f"--input-shape {text!r}: expected comma-separated positive integers, e.g. 8,3,32,32")
    return shape


def add_jobs(p, default: int) -> None:
    p.add_argument("--jobs", type=int, default=default,
                   help="processes running the concepts: this one and jobs-1 workers (parity/parallel.py; "
                        f"default {default}; the usable cores, at most 4, are {parallel.default_jobs()})")


def add_cache(p) -> None:
    p.add_argument("--cache-dir", metavar="DIR", default=str(parallel.default_cache_dir()),
                   help="JAX's persistent compilation cache (default: %(default)s, shared by check, compare and "
                        "report); the programs are the same, only their compile time is saved")
    p.add_argument("--no-cache", action="store_true", help="compile every program afresh")


def check_jobs(jobs: int) -> None:
    if jobs < 1:
        raise UsageError(f"--jobs must be >= 1, got {jobs}")


def cache_dir(args, err):
    """The compilation cache's folder, or None (--no-cache; or the default one cannot be written)."""
    if args.no_cache:
        return None
    try:
        return writable_dir(args.cache_dir, "--cache-dir")
    except UsageError:
        if args.cache_dir != str(parallel.default_cache_dir()):
            raise
        err.print(f"parity: note: cannot write the default cache {esc(args.cache_dir)}; compiling afresh",
                  highlight=False)
        return None
