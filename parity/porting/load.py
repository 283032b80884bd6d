"""Loading a model from `path/to/file.py:NameOrFactory`, as `parity compare` is given them, and the
other Python files it is given (`--kinds FILE.py`): each imported once, quietly, and refused with one
line if importing it does anything but define."""
from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import inspect
import io
import os
import sys
import tempfile
import warnings
from pathlib import Path

import jax
import numpy as np
import torch
from flax import nnx

from parity.porting import kinds
from parity.porting.pairing import PortingError

_MODULES: dict[str, object] = {}


class _Recorder(io.TextIOBase):
    """A stand-in for sys.stdout or sys.stderr that keeps what is written and the line of `key` (the
    user's file) that wrote first."""

    def __init__(self, key: str, stream: str):
        self.key, self.stream, self.text, self.line = key, stream, [], None
        self.own = False  # written by the user's file itself (print, sys.stderr.write), not a library

    def writable(self) -> bool:
        return True

    def write(self, text) -> int:
        text = str(text)
        if text and sys._getframe(1).f_code.co_filename == self.key:
            self.own = True
        if text and self.line is None:
            frame = sys._getframe(1)
            while frame is not None and frame.f_code.co_filename != self.key:
                frame = frame.f_back
            self.line = frame.f_lineno if frame is not None else 0
        self.text.append(text)
        return len(text)


@contextlib.contextmanager
def _fd_captured(fd: int, sink: list):
    """What is written to file descriptor `fd` (C code, a subprocess, a logging handler holding the
    real stream) while the block runs, appended to `sink` as text."""
    try:
        saved = os.dup(fd)
    except OSError:  # not open: nothing can be written there
        yield
        return
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), fd)
        try:
            yield
        finally:
            os.dup2(saved, fd)
            os.close(saved)
            tmp.seek(0)
            sink.append(tmp.read().decode(errors="replace"))


def _exec_quietly(spec, module, key: str) -> tuple[str, str, int | None]:
    """Run the module's code with stdout and stderr recorded (Python streams and file descriptors);
    returns (which stream, the text, the line of the user's file that wrote it) for output the file
    made itself: anything on stdout, and what its own code wrote to stderr; ("", "", None) when none.
    Warnings and what libraries it imports write to stderr are passed on after the import."""
    py = {"stdout": _Recorder(key, "stdout"), "stderr": _Recorder(key, "stderr")}
    raw: dict[str, list] = {"stdout": [], "stderr": []}
    for s in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        with contextlib.suppress(Exception):
            s.flush()
    with _fd_captured(1, raw["stdout"]), _fd_captured(2, raw["stderr"]), \
            contextlib.redirect_stdout(py["stdout"]), contextlib.redirect_stderr(py["stderr"]), \
            warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        try:
            spec.loader.exec_module(module)
        finally:
            for s in (sys.__stdout__, sys.__stderr__):
                with contextlib.suppress(Exception):
                    s.flush()
    # a library's warnings and log lines on stderr are its own business: shown, not held against the file
    for w in caught:  # under the caller's own warning filters
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    library_err = "".join(raw["stderr"]) + ("" if py["stderr"].own else "".join(py["stderr"].text))
    if library_err.strip():
        sys.stderr.write(library_err)
    text = "".join(py["stdout"].text)
    if text.strip():
        return "stdout", text, py["stdout"].line or None
    text = "".join(py["stderr"].text)
    if py["stderr"].own and text.strip():
        return "stderr", text, py["stderr"].line or None
    text = "".join(raw["stdout"])
    if text.strip():
        return "stdout", text, None
    return "", "", None


def _line_in(tb, key: str) -> str:
    where = ""
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == key:
            where = f" (line {tb.tb_lineno})"
        tb = tb.tb_next
    return where


def _only_define(what: str) -> str:
    return f"a {what} may only define things (put script code under `if __name__ == '__main__':`)"


def _file_of(module) -> str | None:
    try:
        return str(Path(module.__file__).resolve())
    except (AttributeError, TypeError, OSError):
        return None


def load_module(path: str, what: str = "model file", fresh: bool = False):
    """Import a Python file once (the same file named twice gives one module); its folder is on
    sys.path while it runs, so it may import its neighbours. Importing it must do nothing but define:
    an exception, a SystemExit (sys.exit(0) included) or any output on stdout or stderr while it
    runs is a PortingError naming the file (`what` says what it is for: "model file", "kinds
    file") and, where it can be told, the line. `fresh`: run it again even if loaded before (a
    kinds file, whose registrations `parity compare` undoes after each run).

    One file is one module, however it is reached, so that its classes keep one identity (a kinds
    file's `from models import Scale` must be the very class the model file's model holds): a file
    that an earlier file imported by its plain name (`import models` beside models.py) is that
    module, not a second copy; and while a file runs, the files loaded here before from its folder
    are importable by their plain names as the modules already loaded."""
    p = Path(path)
    if not p.exists():
        raise PortingError(f"{path}: no such file")
    if not p.is_file() or p.suffix != ".py":
        raise PortingError(f"{path}: expected a Python file (.py)")
    key = str(p.resolve())
    if key in _MODULES and not fresh:
        return _MODULES[key]
    plain = sys.modules.get(p.stem)
    if plain is not None and _file_of(plain) == key:  # imported by a neighbour already
        _MODULES[key] = plain
        return plain
    name = f"_parity_user_{p.stem}_{hashlib.sha1(key.encode()).hexdigest()[:8]}"
    spec = importlib.util.spec_from_file_location(name, key)
    module = importlib.util.module_from_spec(spec)
    folder = str(p.resolve().parent)
    # the files loaded before from this folder, under the names `import` would find them by
    aliases = {Path(k).stem: m for k, m in _MODULES.items()
               if k != key and str(Path(k).parent) == folder and Path(k).stem not in sys.modules}
    sys.path.insert(0, folder)
    sys.modules[name] = module
    sys.modules.update(aliases)
    try:
        stream, text, line = _exec_quietly(spec, module, key)
    except SystemExit as e:
        sys.modules.pop(name, None)
        raise PortingError(f"{path}: importing it called sys.exit({e.code!r}){_line_in(e.__traceback__, key)}; "
                           f"{_only_define(what)}") from None
    except Exception as e:  # noqa: BLE001 - any error in the user's file is bad input here
        sys.modules.pop(name, None)
        where = f" (line {e.lineno})" if isinstance(e, SyntaxError) else _line_in(e.__traceback__, key)
        first = str(e).strip().splitlines()
        raise PortingError(f"{path}: importing it failed{where}: {type(e).__name__}: "
                           f"{first[0] if first else ''}") from None
    finally:
        if sys.path and sys.path[0] == folder:
            sys.path.pop(0)
        for stem, m in aliases.items():
            if sys.modules.get(stem) is m:
                del sys.modules[stem]
    if stream:
        sys.modules.pop(name, None)
        shown = text.strip().splitlines()[0]
        shown = shown if len(shown) <= 80 else shown[:77] + "..."
        where = f" at line {line}" if line else ""
        raise PortingError(f"{path}: importing it printed to {stream}{where} ({shown!r}); {_only_define(what)}")
    _MODULES[key] = module
    return module


def load_target(target: str):
    """'file.py:Name' → the object named Name in file.py (a class, a factory or a model)."""
    path, sep, name = target.rpartition(":")
    if not sep or not path or not name:
        raise PortingError(f"{target!r}: expected FILE.py:NAME (a model class, a factory or a model)")
    module = load_module(path)
    obj = module
    for part in name.split("."):
        if not hasattr(obj, part):
            here = sorted(k for k, v in vars(module).items()
                          if not k.startswith("_") and (inspect.isclass(v) or inspect.isfunction(v))
                          and getattr(v, "__module__", "") == module.__name__)
            raise PortingError(f"{path}: no {name!r} in it (defined there: {', '.join(here) or 'nothing'})")
        obj = getattr(obj, part)
    return obj


def abstract_model(make):
    """The NNX model `make()` builds, traced with nnx.eval_shape so that no random initialiser runs
    (op by op, each compiles: seconds for a small ResNet on a CPU), then given zeros for its
    parameters and batch statistics and a fixed key for its RNG streams; None when it holds any
    other state (a precomputed table, say), whose values only a real build can give, or when it
    cannot be built abstractly. For a model whose weights are about to be overwritten by torch's
    (parity/training.py builds its Flax models the same way)."""
    try:
        graphdef, state = nnx.split(nnx.eval_shape(make))
    except (Exception, SystemExit):  # noqa: BLE001 - anything that needs concrete values, or fails (the
        return None                  # real build then reports it): build it for real instead
    key = jax.random.key(0)

    def fill(v):
        if not isinstance(v, (nnx.Param, nnx.BatchStat, nnx.RngKey, nnx.RngCount)):
            raise LookupError
        if isinstance(v, nnx.RngKey):
            if v.shape != () or v.dtype != key.dtype:
                raise LookupError
            return v.replace(key)
        return v.replace(jax.device_put(np.zeros(v.shape, v.dtype)))
    try:
        filled = jax.tree.map(fill, state, is_leaf=lambda x: isinstance(x, nnx.Variable))
    except LookupError:
        return None
    return nnx.merge(graphdef, filled)


def is_rngs_spec(value) -> bool:
    """Whether a JSON value spells an nnx.Rngs: a seed (an integer in [0, 2**63)) or an object of
    named streams and their seeds ({"params": 0, "dropout": 1})."""
    def seed(v):
        return isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 2**63
    return seed(value) or (isinstance(value, dict) and bool(value)
                           and all(isinstance(k, str) and k and seed(v) for k, v in value.items()))


def make_rngs(spec) -> nnx.Rngs:
    """nnx.Rngs(seed) for a seed, nnx.Rngs(**streams) for an object of streams (`is_rngs_spec`)."""
    return nnx.Rngs(**spec) if isinstance(spec, dict) else nnx.Rngs(spec)


def rngs_text(spec) -> str:
    if isinstance(spec, dict):
        return "nnx.Rngs(" + ", ".join(f"{k}={v}" for k, v in spec.items()) + ")"
    return f"nnx.Rngs({spec})"


def call_text(kwargs: dict, side: str = "flax") -> str:
    """Keyword arguments as a call shows them (a Flax `rngs` spec as the nnx.Rngs it becomes)."""
    def shown(k, v):
        return rngs_text(v) if side == "flax" and k == "rngs" and is_rngs_spec(v) else repr(v)
    return ", ".join(f"{k}={shown(k, v)}" for k, v in kwargs.items())


def build(obj, kwargs: dict, side: str, notes: list, label: str, abstract: bool = False):
    """The model `obj` names: itself if it is one, else obj(**kwargs) (plus rngs=nnx.Rngs(0) for a Flax
    class or factory whose signature has `rngs`; a Flax `rngs` given as a seed or an object of
    streams, `is_rngs_spec`, becomes that nnx.Rngs); `abstract`: a Flax model through
    `abstract_model` when it can be (its weights will be overwritten)."""
    want = torch.nn.Module if side == "torch" else nnx.Module
    if isinstance(obj, want):
        if kwargs:
            raise PortingError(f"{label} is a model already; --args cannot be applied to it")
        notes.append(f"{side}: {label} (a model instance)")
        return obj
    if not callable(obj):
        raise PortingError(f"{label} is a {type(obj).__name__}, not a model, class or factory")
    kwargs = dict(kwargs)
    spec = kwargs.pop("rngs") if side == "flax" and is_rngs_spec(kwargs.get("rngs")) else None
    shown = call_text({**kwargs, **({"rngs": spec} if spec is not None else {})}, side)
    if side == "flax" and spec is None and "rngs" not in kwargs:
        try:  # NNX's metaclass hides a class's own signature: read __init__'s
            params = inspect.signature(obj.__init__ if inspect.isclass(obj) else obj).parameters
        except (TypeError, ValueError):
            params = {}
        if "rngs" in params:
            spec = 0
            shown = ", ".join(filter(None, [shown, "rngs=nnx.Rngs(0)"]))
    if spec is not None:
        kwargs["rngs"] = make_rngs(spec)

    def make():  # a fresh nnx.Rngs for each build: one made outside nnx.eval_shape cannot be used inside
        return obj(**{**kwargs, **({"rngs": make_rngs(spec)} if spec is not None else {})})
    model = abstract_model(make) if abstract and side == "flax" else None
    how = "built abstractly (nnx.eval_shape; its weights come from torch) by" if model is not None else "built by"
    if model is None:
        try:
            model = obj(**kwargs)
        except SystemExit as e:  # sys.exit(0) in a constructor must not end the run as a pass
            raise PortingError(f"building {label}({shown}) called sys.exit({e.code!r})") from None
        except Exception as e:  # noqa: BLE001 - a constructor failing on these arguments is bad input
            raise PortingError(f"building {label}({shown}) failed: {type(e).__name__}: {e}") from None
    if not isinstance(model, want):
        raise PortingError(f"{label}({shown}) returned a {type(model).__name__}, expected a "
                           f"{'torch.nn.Module' if side == 'torch' else 'flax.nnx.Module'}")
    notes.append(f"{side}: {type(model).__name__} {how} {label}({shown})")
    return model


def rel_target(target: str) -> str:
    path, _, name = target.rpartition(":")
    try:
        return f"{os.path.relpath(path)}:{name}"
    except ValueError:
        return target


# ---------------------------------------------------------------- kinds files (`--kinds FILE.py`)
@contextlib.contextmanager
def kinds_scope():
    """The layer-kind registry as it was before the block, restored when it ends (the kinds a kinds
    file registers last for one run), in its order: later records are asked first."""
    before = kinds.all_kinds()
    try:
        yield
    finally:
        if [id(k) for k in kinds.all_kinds()] != [id(k) for k in before]:
            for k in kinds.all_kinds():
                kinds.unregister(k.name)
            for k in before:
                kinds.register(k, replace=True)


def load_kinds_file(path: str) -> tuple[list, bool]:
    """Import a kinds file afresh (its register_kind calls run again): the kinds it registered that
    were not registered before, and whether a model file had imported it already (so that its
    kinds were registered then). PortingError if importing it fails."""
    before = {k.name: k for k in kinds.all_kinds()}
    already = sys.modules.get(Path(path).stem)
    module = load_module(path, what="kinds file", fresh=True)
    return [k for k in kinds.all_kinds() if before.get(k.name) is not k], module is already
