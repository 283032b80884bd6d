"""The comparer: registry, conversion, tolerances, precision policy, runner, reports, CLI.

For your own models: `compare`, `assert_models_close`, `compare_training` and `pair_models`
(parity/porting), imported on first use so that `import parity` stays light.
"""

_PORTING = ("compare", "assert_models_close", "compare_training", "pair_models", "Report", "TrainingReport",
            "PortingError")


def __getattr__(name):
    if name in _PORTING:
        from parity import porting
        return getattr(porting, name)
    raise AttributeError(f"module 'parity' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_PORTING))
