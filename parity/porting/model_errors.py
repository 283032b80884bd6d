"""A framework error raised while running the user's model, turned into one PortingError line that
names the side, the input shapes and the last leaf layer that ran."""
from __future__ import annotations

import contextlib

from parity.porting.pairing import PortingError


def first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}"[:300]


@contextlib.contextmanager
def framework_errors(side: str, shapes, calls=None):
    """A framework error while running a model → PortingError naming the side, the input shapes and
    the last leaf layer that ran before it (from `calls`, a list of trace.Call filled as it runs)."""
    try:
        yield
    except PortingError:
        raise
    except (Exception, SystemExit) as e:  # noqa: BLE001 - any error the user's model raises on these inputs
        # (sys.exit(0) in a forward pass included: it must not end the run as a pass)
        last = ""
        if calls:
            c = calls[-1]
            last = (f"; the last layer it ran was `{c.leaf.label}` ({c.leaf.cls}, called at {c.called_at}), "
                    f"which returned shape {c.out_shape}")
        raise PortingError(f"the {side} model failed on inputs of shape {', '.join(map(str, shapes))}: "
                           f"{first_line(e)}{last}") from e
