"""`parity compare` given hostile or careless input: a model file that exits or prints while it is
imported, learning rates and seeds out of range, inputs too large for the machine, training a model
without parameters, very long runs, narrow terminals, integer outputs, and advice given in the
spelling of the interface in use. Bad input exits 2 with one line before any work; nothing passes
silently."""
import io
import json
import re
from collections.abc import Sequence

import jax
import numpy as np
import optax
import pytest
import torch
from flax import nnx
from rich.console import Console
from torch import nn

from parity import curves
from parity.cli import build_parser, main
from parity.commands import compare as compare_cmd
from parity.porting import PortingError, compare, compare_training

MODELS = '''
import sys
import jax
import torch
from torch import nn
from flax import nnx


class T(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)  # the same weights in every run
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        return self.fc(x)


class F(nnx.Module):
    def __init__(self, *, rngs):
        self.fc = nnx.Linear(4, 3, rngs=rngs)

    def __call__(self, x):
        return self.fc(x)


class TNoParams(nn.Module):
    def forward(self, x):
        return torch.relu(x)


class FNoParams(nnx.Module):
    def __call__(self, x):
        return jax.nn.relu(x)


class TExits(T):
    def __init__(self):
        super().__init__()
        sys.exit(0)


class TExitsInForward(T):
    def forward(self, x):
        sys.exit(0)
'''


@pytest.fixture
def models(tmp_path):
    path = tmp_path / "models.py"
    path.write_text(MODELS)
    return path


def _run(argv, capsys):
    """main(argv) → (exit code, stdout, the non-blank lines of stderr)."""
    capsys.readouterr()
    code = main(argv)
    cap = capsys.readouterr()
    return code, cap.out, [ln for ln in cap.err.splitlines() if ln.strip()]


def _usage(argv, capsys, says, tmp_path=None, quiet=True):
    """Exit 2, one line saying `says`, no traceback, no --json file written, and (`quiet`: refused before
    any work) nothing on stdout."""
    json_path = tmp_path / "out.json" if tmp_path is not None else None
    code, out, err = _run(argv + (["--json", str(json_path)] if json_path else []), capsys)
    assert code == 2, (code, out, err)
    assert len(err) == 1 and "Traceback" not in err[0], err
    assert says in err[0], err[0]
    assert out == "" or not quiet, f"work was done (or printed) before the refusal:\n{out}"
    assert json_path is None or not json_path.exists()
    return err[0]


# ---------------------------------------------------------------- 1. a model file that exits or prints
@pytest.mark.parametrize("call, shown", [("sys.exit(0)", "sys.exit(0)"), ("sys.exit(3)", "sys.exit(3)"),
                                         ("sys.exit()", "sys.exit(None)"), ("raise SystemExit('bye')",
                                                                            "sys.exit('bye')")])
def test_a_model_file_that_exits_while_imported_is_bad_input_naming_file_and_line(call, shown, models, tmp_path,
                                                                                  capsys):
    bad = tmp_path / "exits.py"
    bad.write_text(f"import sys\n\n{call}\n")
    line = _usage(["compare", f"{bad}:T", f"{models}:F", "--input-shape", "2,4"], capsys,
                  f"{bad}: importing it called {shown} (line 3)", tmp_path)
    assert "if __name__ == '__main__':" in line


@pytest.mark.parametrize("code, says", [
    ("x = 1\nprint('hello from the model file')\n", "printed to stdout at line 2 ('hello from the model file')"),
    ("import sys\n\n\nsys.stderr.write('to stderr\\n')\n", "printed to stderr at line 4 ('to stderr')"),
    ("import sys\ndef f():\n    print('inside', file=sys.stderr)\nf()\n", "printed to stderr at line 3 ('inside')"),
    ("import os\nos.write(1, b'raw bytes\\n')\n", "printed to stdout ('raw bytes')"),  # below Python's streams
])
def test_a_model_file_that_prints_while_imported_is_bad_input(code, says, models, tmp_path, capsys):
    bad = tmp_path / "noisy.py"
    bad.write_text(code + MODELS)
    _usage(["compare", f"{bad}:T", f"{models}:F", "--input-shape", "2,4"], capsys,
           f"{bad}: importing it {says}", tmp_path)


def test_a_library_warning_or_log_line_while_importing_is_shown_not_held_against_the_file(models, tmp_path, capsys):
    """What the libraries a model file imports write to stderr (warnings, log lines) is theirs: the file
    still loads and the text still reaches the user."""
    (tmp_path / "noisylib.py").write_text("import logging, sys, warnings\nwarnings.warn('lib says careful')\n"
                                          "sys.stderr.write('lib log line\\n')\n")
    ok = tmp_path / "uses_lib.py"
    ok.write_text("import noisylib  # noqa: F401\n" + MODELS)
    with pytest.warns(UserWarning, match="lib says careful"):
        code, out, err = _run(["compare", f"{ok}:T", f"{models}:F", "--input-shape", "2,4"], capsys)
    assert code == 0 and "SAME" in out
    assert any("lib log line" in line for line in err)


def test_a_quiet_model_file_still_loads_and_an_exception_names_its_line(models, tmp_path, capsys):
    code, out, err = _run(["compare", f"{models}:T", f"{models}:F", "--input-shape", "2,4"], capsys)
    assert code == 0 and not err and "SAME" in out
    bad = tmp_path / "raises.py"
    bad.write_text("x = 1\n\nraise RuntimeError('no GPU here')\n")
    _usage(["compare", f"{bad}:T", f"{models}:F", "--input-shape", "2,4"], capsys,
           f"{bad}: importing it failed (line 3): RuntimeError: no GPU here")


def test_sys_exit_in_a_constructor_or_a_forward_pass_is_bad_input_not_a_pass(models, capsys):
    _usage(["compare", f"{models}:TExits", f"{models}:F", "--input-shape", "2,4"], capsys,
           "called sys.exit(0)")
    _usage(["compare", f"{models}:TExitsInForward", f"{models}:F", "--input-shape", "2,4"], capsys,
           "the torch model failed on inputs of shape (2, 4): SystemExit: 0", quiet=False)


# ---------------------------------------------------------------- 2. and 4.: numbers checked up front
@pytest.mark.parametrize("flags, says", [
    (["--steps", "2", "--lr", "nan"], "--lr must be a finite number > 0; got nan"),
    (["--steps", "2", "--lr", "inf"], "--lr must be a finite number > 0; got inf"),
    (["--steps", "2", "--lr", "-1"], "--lr must be a finite number > 0; got -1.0"),
    (["--steps", "2", "--lr", "0"], "--lr must be a finite number > 0; got 0.0"),
    (["--lr", "0"], "--lr must be a finite number > 0"),
    (["--seed", "-1"], "--seed must be an integer >= 0; got -1"),
    (["--steps", "-1"], "--steps must be an integer >= 0; got -1"),
    (["--input-int", "0"], "--input-int must be an integer in [1, 2**63]"),
    (["--input-int", str(2**64)], "--input-int must be an integer in [1, 2**63]"),
])
def test_numbers_out_of_range_are_refused_before_any_work(flags, says, models, tmp_path, capsys):
    _usage(["compare", f"{models}:T", f"{models}:F", "--input-shape", "2,4", *flags], capsys, says, tmp_path)


def test_the_learning_rate_wording_is_that_of_parity_train(tmp_path, capsys):
    code, _, err = _run(["train", "--epochs", "1", "--log-dir", str(tmp_path / "runs"), "--lr", "0"], capsys)
    assert code == 2 and err[0].endswith("lr must be a finite number > 0; got 0.0")


def test_an_input_too_large_for_the_machine_is_refused_naming_flag_and_size(models, tmp_path, capsys, monkeypatch):
    # a machine of 64 MiB, so that a regression allocates megabytes, not the 298 GiB of a real example
    monkeypatch.setattr(compare_cmd, "_physical_memory", lambda: 64 * 2**20)
    line = _usage(["compare", f"{models}:T", f"{models}:F", "--input-shape", "1000,1000,4"], capsys,
                  "--input-shape 1000,1000,4: 15.3 MiB of float32 input, more than 1/8 of this machine's 64 MiB of "
                  "memory", tmp_path)
    assert "give a smaller shape" in line
    _usage(["compare", f"{models}:T", f"{models}:F", "--input-shape", "1000,1000,2", "--dtype", "float32", "float64"],
           capsys, "15.3 MiB of float64 input")  # the widest dtype asked for counts
    code, out, _ = _run(["compare", f"{models}:T", f"{models}:F", "--input-shape", "1000,4"], capsys)
    assert code == 0 and "SAME" in out


def test_the_size_of_a_huge_input_is_named_in_gib():
    with pytest.raises(compare_cmd.UsageError, match="--input-shape 100000,100000,4: 298 GiB of float64 input"):
        compare_cmd._check_input_size(["100000,100000,4"], [(100000, 100000, 4)], None, ["float64"], 64 * 2**30)


def test_the_input_size_limit_is_one_eighth_of_memory():
    memory = 8 * 4000
    compare_cmd._check_input_size(["1000"], [(1000,)], None, ["float32"], memory)  # 4000 bytes: the limit
    with pytest.raises(compare_cmd.UsageError, match="--input-shape 1001: 3.91 KiB of float32 input"):
        compare_cmd._check_input_size(["1001"], [(1001,)], None, ["float32"], memory)
    with pytest.raises(compare_cmd.UsageError, match="int64"):  # token ids are int64, whatever --dtype says
        compare_cmd._check_input_size(["600"], [(600,)], 50, ["float32"], memory)
    with pytest.raises(compare_cmd.UsageError, match="--input-shape 500 500"):  # inputs add up
        compare_cmd._check_input_size(["500", "500"], [(500,), (500,)], None, ["float64"], memory)


def test_steps_on_a_model_without_parameters_is_refused_before_the_comparison(models, tmp_path, capsys):
    _usage(["compare", f"{models}:TNoParams", f"{models}:FNoParams", "--input-shape", "2,4", "--steps", "2"],
           capsys, "--steps 2: the torch model (TNoParams) has no parameters, so there is nothing to train",
           tmp_path)
    code, out, _ = _run(["compare", f"{models}:TNoParams", f"{models}:FNoParams", "--input-shape", "2,4"], capsys)
    assert code == 0 and "SAME" in out  # without --steps the same pair compares


def test_compare_training_refuses_a_model_without_parameters_and_a_failing_optimiser_factory():
    class TNone(nn.Module):
        def forward(self, x):
            return x * 2

    class FNone(nnx.Module):
        def __call__(self, x):
            return x * 2
    x = np.ones((2, 4), np.float32)
    with pytest.raises(PortingError, match="has no parameters: there is nothing to train"):
        compare_training(TNone(), FNone(), [(x, x)], lambda ps: torch.optim.SGD(ps, lr=0.1), optax.sgd(0.1))
    lin_t, lin_f = nn.Linear(4, 3), nnx.Linear(4, 3, rngs=nnx.Rngs(0))
    with pytest.raises(PortingError, match="torch_optimizer_factory failed: ValueError: Invalid learning rate"):
        compare_training(lin_t, lin_f, [(x, np.ones((2, 3), np.float32))], lambda ps: torch.optim.SGD(ps, lr=-1),
                         optax.sgd(0.1))


# ---------------------------------------------------------------- 2. equal non-finite curves agree
def test_curves_count_equal_non_finite_values_as_agreement_and_nothing_else():
    nan, inf = np.nan, np.inf
    t = np.array([1.0, nan, inf, -inf, nan, inf, 2.0])
    f = np.array([1.0, nan, inf, -inf, inf, -inf, nan])
    d = curves.drift(t, f, "float32")
    assert list(d[:4]) == [0, 0, 0, 0]
    assert list(d[4:]) == [inf, inf, inf]  # a kind that differs, or only one side non-finite
    assert curves.curve_verdict(t[:4], f[:4], 20, "float32").ok
    assert not curves.curve_verdict(t, f, 20, "float32").ok


def _lin():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 3)), nnx.Sequential(nnx.Linear(4, 3, rngs=nnx.Rngs(0)))


def test_training_that_overflows_alike_in_both_frameworks_agrees():
    t, f = _lin()
    rng = np.random.default_rng(0)
    batches = [(rng.standard_normal((2, 4)).astype(np.float32), rng.standard_normal((2, 3)).astype(np.float32))
               for _ in range(3)]
    r = compare_training(t, f, batches, lambda ps: torch.optim.SGD(ps, lr=1e30), optax.sgd(1e30), dtype="float32")
    assert not np.isfinite(r.torch_losses).all() and not np.isfinite(r.flax_losses).all()
    assert r.passed, r.summary()
    assert "SAME" in r.summary() and "nan" not in r.summary().split("SAME")[1]
    assert any("counts as agreement" in n for n in r.notes)
    # a NaN learning rate (the Python API leaves it to the optimisers, and torch takes it): all NaN alike
    r = compare_training(t, f, batches, lambda ps: torch.optim.SGD(ps, lr=float("nan")), optax.sgd(float("nan")))
    assert r.passed and np.isnan(r.torch_losses[1:]).all() and np.isnan(r.flax_losses[1:]).all()
    # a real difference still parts: the Flax side at another learning rate
    r = compare_training(t, f, batches, lambda ps: torch.optim.SGD(ps, lr=0.1), optax.sgd(0.2), dtype="float32")
    assert not r.passed


def test_cli_training_with_a_huge_learning_rate_on_identical_models_is_same(models, capsys):
    code, out, _ = _run(["compare", f"{models}:T", f"{models}:F", "--input-shape", "2,4", "--steps", "2", "--lr",
                         "1e30"], capsys)
    assert code == 0, out
    assert "2 steps, float32 on cpu" in out and "DIFFERENT" not in out


# ---------------------------------------------------------------- 4. long runs: batches made as used
def test_long_runs_make_each_batch_when_it_is_used(monkeypatch, models, capsys):
    import parity.porting
    real = parity.porting.compare_training
    seen = {}

    def spy(t, f, batches, opt, tx, steps, **kw):
        seen.update(batches=batches, steps=steps)
        return real(t, f, batches, opt, tx, 3, **kw)  # three of them, to finish quickly
    monkeypatch.setattr(parity.porting, "compare_training", spy)
    n = 1_000_000  # (a regression that builds them all costs a few hundred MB, not gigabytes)
    code, out, _ = _run(["compare", f"{models}:T", f"{models}:F", "--input-shape", "2,4", "--steps", str(n)], capsys)
    assert code == 0 and "3 steps" in out
    b = seen["batches"]
    assert seen["steps"] == n and isinstance(b, Sequence) and not isinstance(b, (list, tuple))
    assert len(b) == n
    x, y = b[n - 1]  # made on demand, the same each time
    x2, y2 = b[n - 1]
    assert x.shape == (2, 4) and y.shape == (2, 3) and np.array_equal(x, x2) and np.array_equal(y, y2)
    assert not np.array_equal(b[0][0], b[1][0])


def test_compare_training_indexes_a_lazy_sequence_only_for_the_steps_it_runs():
    class Counting(Sequence):
        def __init__(self):
            self.asked = []

        def __len__(self):
            return 10**12

        def __getitem__(self, k):
            assert k < 100, f"batch {k} asked for: beyond the steps run"  # list() of it would never end
            self.asked.append(k)
            rng = np.random.default_rng(k)
            return rng.standard_normal((2, 4)).astype(np.float32), rng.standard_normal((2, 3)).astype(np.float32)
    t, f = _lin()
    b = Counting()
    done = []
    r = compare_training(t, f, b, lambda ps: torch.optim.SGD(ps, lr=0.1), optax.sgd(0.1), 4, on_step=done.append)
    assert r.passed and len(r.torch_losses) == 4
    assert sorted(set(b.asked)) == [0, 1, 2, 3]
    assert done == [1, 2, 3, 4]


def test_training_steps_show_a_progress_bar_on_stderr(models):
    args = build_parser().parse_args(["compare", f"{models}:T", f"{models}:F", "--input-shape", "2,4",
                                      "--steps", "3"])
    out, err_file = io.StringIO(), io.StringIO()
    code = compare_cmd.run(args, Console(file=out, width=100), Console(file=err_file, force_terminal=True,
                                                                       width=100))
    assert code == 0
    assert "training 3 steps, float32" in err_file.getvalue() and "3/3" in err_file.getvalue()
    assert "training 3 steps" not in out.getvalue()  # stdout keeps only results


# ---------------------------------------------------------------- 5. the table at 100 and 80 columns
class _LongNames(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder_stage_with_a_rather_long_name = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 8))
        self.projection_head_for_the_final_logits = nn.Linear(8, 3)

    def forward(self, x):
        return self.projection_head_for_the_final_logits(self.encoder_stage_with_a_rather_long_name(x))


class _FlaxLongNames(nnx.Module):
    def __init__(self, *, rngs):
        self.encoder_stage_with_a_rather_long_name = nnx.Sequential(
            nnx.Linear(4, 8, rngs=rngs), jax.nn.relu, nnx.Linear(8, 8, rngs=rngs))
        self.projection_head_for_the_final_logits = nnx.Linear(8, 3, rngs=rngs)

    def __call__(self, x):
        return self.projection_head_for_the_final_logits(self.encoder_stage_with_a_rather_long_name(x))


@pytest.fixture(scope="module")
def long_report():
    x = np.random.default_rng(0).standard_normal((5, 4)).astype(np.float32)
    return compare(_LongNames(), _FlaxLongNames(rngs=nnx.Rngs(0)), x)


def _table_rows(text: str):
    """A rendered rich table: its headers, and each row (spanning one or more lines) as its cells."""
    lines = text.splitlines()
    head = next(i for i, ln in enumerate(lines) if ln.startswith("┏"))
    top = next(i for i, ln in enumerate(lines) if ln.startswith("┡"))
    end = next(i for i, ln in enumerate(lines) if ln.startswith("└"))
    parts = [ln.split("┃")[1:-1] for ln in lines[head + 1:top]]
    header = [" ".join(p[i].strip() for p in parts if p[i].strip()) for i in range(len(parts[0]))]
    rows = []
    for ln in lines[top + 1:end]:
        cells = ln.split("│")[1:-1]
        if cells[0].strip():
            rows.append([[c.strip()] for c in cells])
        else:
            for acc, c in zip(rows[-1], cells):
                acc.append(c.strip())
    return header, [["".join(p for p in cell if p) for cell in row] for row in rows]


@pytest.mark.parametrize("width", [100, 80])
def test_the_table_never_cuts_numbers_or_names(long_report, width):
    from parity.porting.table_layout import fmt as _fmt
    con = Console(record=True, width=width)
    con.print(long_report.table())
    text = con.export_text()
    assert "…" not in text
    assert all(len(ln) <= width for ln in text.splitlines())
    header, rows = _table_rows(text)
    assert header[:3] == ["#", "torch layer", "Flax layer"] and "max abs" in header
    numbers = [i for i, h in enumerate(header) if h in ("max abs", "max rel", "mean abs", "SQNR dB", "cosine",
                                                         "grad max abs")]
    assert [int(r[0]) for r in rows] == list(range(1, len(long_report.rows) + 1))  # the # column is whole
    for row, r in zip(rows, long_report.rows):
        names = [f"{s.name} ({s.cls})" if s else "—" for s in (r.torch, r.flax)]
        assert [row[1].replace(" ", ""), row[2].replace(" ", "")] == [n.replace(" ", "") for n in names]  # whole
        if r.out is not None:
            assert row[header.index("max abs")] == _fmt(r.out.max_abs)  # complete
            for i in numbers:
                assert re.fullmatch(r"—|∞|-∞|0|1|1−\de-\d\d|\d\.\d{6}|-?\d+\.\d|\d\.\de[+-]\d\d", row[i]), row[i]
    left_out = re.search(r"left out to fit (\d+) columns: ([^(]*)", text.replace("\n", " "))
    if width == 80:
        assert left_out and left_out.group(1) == "80" and "mean abs" in left_out.group(2)


def test_a_wide_table_keeps_every_column(long_report):
    con = Console(record=True, width=250)
    con.print(long_report.table())
    text = con.export_text()
    for head in ("kind", "shape", "max abs", "max rel", "mean abs", "SQNR dB", "cosine", "grad max abs"):
        assert head in text
    assert "left out" not in text


@pytest.mark.parametrize("width", [100, 80])
def test_the_training_table_never_cuts_numbers(width):
    t, f = _lin()
    rng = np.random.default_rng(0)
    batches = [(rng.standard_normal((2, 4)).astype(np.float32), rng.standard_normal((2, 3)).astype(np.float32))]
    r = compare_training(t, f, batches * 3, lambda ps: torch.optim.SGD(ps, lr=0.1), optax.sgd(0.1))
    con = Console(record=True, width=width)
    con.print(r.table())
    text = con.export_text()
    assert "…" not in text
    for a in r.torch_losses:
        assert f"{a:.9g}" in text


# ---------------------------------------------------------------- 6. advice in the CLI's spelling; integers
def test_the_cli_advises_its_own_flags(models, capsys):
    code, out, _ = _run(["compare", f"{models}:T", f"{models}:F", "--input-shape", "2,4"], capsys)
    assert code == 0
    assert "pass --train to compare training-mode passes" in out and "train=True" not in out


def test_layers_that_cannot_be_paired_point_the_cli_user_at_map(tmp_path, capsys):
    a = tmp_path / "a.py"
    a.write_text("from torch import nn\n"
                 "def model():\n    return nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))\n")
    b = tmp_path / "b.py"
    b.write_text("from flax import nnx\n"
                 "class One(nnx.Module):\n"
                 "    def __init__(self, *, rngs):\n        self.fc = nnx.Linear(4, 2, rngs=rngs)\n"
                 "    def __call__(self, x):\n        return self.fc(x)\n")
    line = _usage(["compare", f"{a}:model", f"{b}:One", "--input-shape", "5,4"], capsys, "cannot pair the layers",
                  quiet=False)
    assert "pass weights=" not in line
    assert "pass --map '{\"torch_name\": \"flax.path\", ...}' to pair them yourself" in line


def _advice_the_comparer_gives() -> list[str]:
    """The comparer's notes and errors that advise a Python-API argument."""
    from parity.porting.core import EVAL_NOTE

    class TMask(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 3)

        def forward(self, x, mask):
            return self.fc(x) * mask

    x = np.ones((2, 4), np.float32)
    out = [EVAL_NOTE]
    for t, f in ((TMask(), nnx.Linear(4, 3, rngs=nnx.Rngs(0))),
                 (nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2)), nnx.Linear(4, 2, rngs=nnx.Rngs(0)))):
        with pytest.raises(PortingError) as e:
            compare(t, f, x)
        out.append(str(e.value))
    for arg in ("rngs", "mask"):
        class FArg(nnx.Module):
            def __init__(self, *, rngs):
                self.fc = nnx.Linear(4, 3, rngs=rngs)
        exec(f"def call(self, x, *, {arg}):\n    return self.fc(x)", globals(), ns := {})
        FArg.__call__ = ns["call"]
        with pytest.raises(PortingError) as e:
            compare(nn.Linear(4, 3), FArg(rngs=nnx.Rngs(0)), x)
        out.append(str(e.value))
    return out


def test_every_python_spelling_the_cli_rewrites_is_one_the_comparer_writes():
    from pathlib import Path

    import parity.porting
    said = _advice_the_comparer_gives()
    comparer_source = "".join(p.read_text() for p in Path(parity.porting.__file__).parent.glob("*.py"))
    for python, cli in compare_cmd.CLI_SPELLING.items():
        layout = python.replace("'nhwc'", "{layout!r}").replace("'nchw'", "{layout!r}")
        assert any(python in m for m in said) or (layout != python and layout in comparer_source), python
        assert python not in cli
    for m in said:
        assert all(p not in compare_cmd.cli_spelling(m) for p in compare_cmd.CLI_SPELLING)


class _TInt(nn.Module):
    def __init__(self, k):
        super().__init__()
        self.k = k

    def forward(self, x):
        return x * self.k


class _FInt(nnx.Module):
    def __init__(self, k):
        self.k = k

    def __call__(self, x):
        return x * self.k


def test_integer_outputs_report_how_far_apart_they_are():
    x = np.array([1, 2, 4])
    r = compare(_TInt(2), _FInt(3), x)
    s = r.outputs[0]
    assert not s.ok and (s.max_abs, s.max_rel) == (4.0, 0.5)
    assert "3 of 3 elements differ; int64 compared exactly, max abs 4" in s.problem
    assert "max abs 4, max rel 0.5 — 3 of 3 elements differ" in r.lines()[0]
    same = compare(_TInt(2), _FInt(2), x).outputs[0]
    assert same.ok and (same.max_abs, same.max_rel, same.sqnr_db) == (0.0, 0.0, np.inf)


def test_the_json_report_of_an_overflowing_run_is_strict(models, tmp_path, capsys):
    path = tmp_path / "r.json"
    code, _, _ = _run(["compare", f"{models}:T", f"{models}:F", "--input-shape", "2,4", "--steps", "2", "--lr",
                       "1e30", "--json", str(path)], capsys)
    assert code == 0

    def no_constants(name):
        raise AssertionError(f"non-standard JSON constant {name}")
    data = json.loads(path.read_text(), parse_constant=no_constants)
    assert data["passed"] is True and data["training"][0]["steps"] == 2
