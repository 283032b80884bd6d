"""Hostile result files, narrow terminals, defaults in --help, and warnings on stderr.

* `parity report --results FILE` recomputes each reused verdict from the recorded errors and tolerance
  (a file's `passed: true` is not evidence), and refuses a record or a `--bench` file whose fields
  have the wrong type: exit 2, one line naming the file and the field, before anything runs or is written;
* the results table never cuts a number, at 100 columns or 80 (`parity check`, `parity show`);
* `audit` picks its device by what is there, `bench --help` shows its defaults;
* `parity check` writes no warning to stderr: torch's note on padding='same' with an even kernel is
  expected where the samples use one, and an overflowing difference is an error, not a numpy warning.
"""
import dataclasses
import io
import json
import re
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from parity import parallel, registry, report, runner
from parity.cli import main
from parity.site import build
from parity.tolerances import lookup

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks" / "results" / "cpu"
REUSED = [("activations.relu", "float32"), ("activations.softmax", "bfloat16")]


# ---------------------------------------------------------------- 1. result files are not trusted
@pytest.fixture(scope="module")
def genuine(tmp_path_factory) -> Path:
    """A results file as `parity check --json` writes it, for two concepts (one in bfloat16, compared at
    its tolerance), and a failing third (tanh with a wrong gradient)."""
    import torch

    import torch_impl as T
    results = [runner.run_concept(registry.get(n), dt) for n, dt in REUSED]
    real = T.activations.tanh
    T.activations.tanh = lambda x: x - x.detach() + torch.tanh(x).detach()
    try:
        results.append(runner.run_concept(registry.get("activations.tanh"), "float32"))
    finally:
        T.activations.tanh = real
    assert [r.passed for r in results] == [True, True, False]
    path = tmp_path_factory.mktemp("genuine") / "results.json"
    path.write_text(json.dumps(report.results_json(results), default=float))
    return path


def _load(path, names=("activations.relu", "activations.softmax", "activations.tanh")):
    return build.load_results(path, [registry.get(n) for n in names], ["float32", "bfloat16"], "cpu", "strict")


def _edited(genuine: Path, tmp_path: Path, edit) -> Path:
    doc = json.loads(genuine.read_text())
    edit(doc["results"][0])
    path = tmp_path / "edited.json"
    path.write_text(json.dumps(doc))
    return path


def _no_runs(monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("a concept ran")
    monkeypatch.setattr(runner, "run_concept", refuse)


def test_genuine_results_keep_their_verdicts(genuine):
    reused = _load(genuine)
    assert [reused[k].passed for k in (*REUSED, ("activations.tanh", "float32"))] == [True, True, False]
    tanh = reused[("activations.tanh", "float32")]
    assert not any("results file" in f for f in tanh.failures)  # a failure is not reported twice


def test_edited_errors_with_passed_true_are_a_fail_exit_1(genuine, tmp_path, capsys, monkeypatch):
    """The reported file: out_abs 1e9 beside passed: true showed PASS and exited 0."""
    path = _edited(genuine, tmp_path, lambda r: r.update(out_abs=1e9, passed=True))
    _no_runs(monkeypatch)  # the record is reused, not run again
    site = tmp_path / "site"
    assert main(["report", "--html", str(site), "activations.relu", "--dtype", "float32", "--jobs", "1",
                 "--no-cache", "--results", str(path)]) == 1
    assert "0 passed, 1 failed" in capsys.readouterr().out
    page = (site / "concepts" / "activations.relu.html").read_text()
    assert "out_abs 1e+09" in page and "FAIL" in page
    assert json.loads((site / "results.json").read_text())["failed"] == 1


def _first_tensor(r):
    return r["comparisons"][0]


HOSTILE = {  # each a record claiming passed: true whose recorded figures do not allow it
    "out_abs beyond its comparisons": lambda r: r.update(out_abs=1e9),
    "an error and its comparison both edited, relative error 2": lambda r: (
        r.update(out_abs=1e9, out_rel=2.0), _first_tensor(r).update(max_abs=1e9, max_rel=2.0)),
    "an absolute error with no relative error beyond atol": lambda r: (
        r.update(out_abs=1.0, out_rel=0.0), [c.update(max_abs=1.0 if i == 0 else 0.0, max_rel=0.0)
                                             for i, c in enumerate(r["comparisons"]) if c["what"] == "out[0]"]),
    "a comparison recorded as not ok": lambda r: _first_tensor(r).update(ok=False),
    "an infinite error": lambda r: (r.update(out_abs=float("inf")),
                                    [c.update(max_abs=float("inf")) for c in r["comparisons"]
                                     if c["what"] == "out[0]"]),
    "a widened tolerance": lambda r: r.update(rtol=1e12, atol=1e12),
    "a failure line": lambda r: r.update(failures=["something failed"]),
    "an error": lambda r: r.update(error="RuntimeError: kaboom"),
    "no comparisons": lambda r: r.update(comparisons=[]),
    "no samples": lambda r: r.update(n_samples=0),
    "no gradient for a differentiable concept": lambda r: r.update(
        comparisons=[c for c in r["comparisons"] if not c["what"].startswith("grad")], n_grad=0, grad_abs=0.0,
        grad_rel=0.0),
    "integer elements that differ": lambda r: r["comparisons"].append(
        {"sample": "s", "what": "out[1]", "shape": [3], "max_abs": 0.0, "max_rel": 0.0, "ok": True,
         "exact": True, "differ": 2}),
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_recorded_figures_decide_the_verdict_not_the_flag(genuine, tmp_path, case):
    path = _edited(genuine, tmp_path, lambda r: (HOSTILE[case](r), r.update(passed=True)))
    r = _load(path)[("activations.relu", "float32")]
    assert not r.passed, case
    assert any(str(path) in f for f in r.failures), r.failures


def test_a_file_that_says_failed_stays_failed(genuine, tmp_path):
    path = _edited(genuine, tmp_path, lambda r: r.update(passed=False))
    r = _load(path)[("activations.relu", "float32")]
    assert not r.passed and any("records passed: false" in f for f in r.failures)


WRONG_TYPES = {  # edit, the field the message must name
    'passed "yes"': (lambda r: r.update(passed="yes"), "results[0].passed"),
    'out_abs "abc"': (lambda r: r.update(out_abs="abc"), "results[0].out_abs"),
    "out_abs NaN": (lambda r: r.update(out_abs=float("nan")), "results[0].out_abs"),
    "comparisons null": (lambda r: r.update(comparisons=None), "results[0].comparisons"),
    "rtol null": (lambda r: r.update(rtol=None), "results[0].rtol"),
    "n_out 1.5": (lambda r: r.update(n_out=1.5), "results[0].n_out"),
    "n_samples true": (lambda r: r.update(n_samples=True), "results[0].n_samples"),
    "failures a string": (lambda r: r.update(failures="none"), "results[0].failures"),
    "a comparison's max_abs": (lambda r: _first_tensor(r).update(max_abs="0"), "results[0].comparisons[0].max_abs"),
    "a comparison's ok": (lambda r: _first_tensor(r).update(ok=1), "results[0].comparisons[0].ok"),
    "a comparison's shape": (lambda r: _first_tensor(r).update(shape="4,5"), "results[0].comparisons[0].shape"),
    "a comparison null": (lambda r: r["comparisons"].__setitem__(0, None), "results[0].comparisons[0]"),
    "no passed field": (lambda r: r.pop("passed"), "'passed'"),
    "concept a number": (lambda r: r.update(concept=3), "results[0].concept"),
}


@pytest.mark.parametrize("case", list(WRONG_TYPES))
def test_wrong_types_exit_2_naming_file_and_field_before_anything(genuine, tmp_path, capsys, monkeypatch, case):
    edit, field = WRONG_TYPES[case]
    path = _edited(genuine, tmp_path, edit)
    _no_runs(monkeypatch)
    site = tmp_path / "site"
    assert main(["report", "--html", str(site), "activations.relu", "--dtype", "float32", "--jobs", "1",
                 "--no-cache", "--results", str(path)]) == 2, case
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and str(path) in lines[0] and field in lines[0], (case, captured.err)
    assert captured.out == "" and not site.exists(), case


def test_a_record_that_is_not_an_object_exits_2(tmp_path, capsys):
    path = tmp_path / "r.json"
    path.write_text(json.dumps({"results": ["activations.relu"]}))
    assert main(["report", "--html", str(tmp_path / "site"), "--results", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "results[0]" in err and str(path) in err and not (tmp_path / "site").exists()


BAD_BENCH = {  # edit of bench-cpu.json, the field the message must name
    "results a string": (lambda d: d.update(results="none"), "'results'"),
    "results null": (lambda d: d.update(results=None), "'results'"),
    "a measurement a number": (lambda d: d["results"].__setitem__(0, 3), "'results'[0]"),
    "a mode a list": (lambda d: d["results"][0].update(mode=["jax-jit"]), "'results'[0].mode"),
    "environment null": (lambda d: d.update(environment=None), "'environment'"),
    "settings a list": (lambda d: d.update(settings=[1]), "'settings'"),
    "modes a string": (lambda d: d.update(modes="all"), "'modes'"),
    "seconds a string": (lambda d: d.update(seconds="12"), "'seconds'"),
}


@pytest.mark.parametrize("case", list(BAD_BENCH))
def test_bad_bench_json_exits_2_before_any_page(tmp_path, capsys, monkeypatch, case):
    """Before: `results` as a string ended the report in a traceback after the concept pages were written."""
    edit, field = BAD_BENCH[case]
    bench = tmp_path / "bench"
    shutil.copytree(BENCH, bench)
    doc = json.loads((bench / "bench-cpu.json").read_text())
    edit(doc)
    (bench / "bench-cpu.json").write_text(json.dumps(doc))
    _no_runs(monkeypatch)
    site = tmp_path / "site"
    assert main(["report", "--html", str(site), "activations.relu", "--dtype", "float32", "--jobs", "1",
                 "--no-cache", "--bench", str(bench)]) == 2, case
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and str(bench / "bench-cpu.json") in lines[0] and field in lines[0], captured.err
    assert not site.exists(), case


def test_the_stored_bench_results_pass_the_check():
    assert [b.device for b in build.check_bench(BENCH)] == ["cpu"]


# ---------------------------------------------------------------- 2. numbers are never cut
NUMBER = re.compile(r"^(?:\d+|inf|\d\.\de[-+]\d+|[\d.e+-]+/[\d.e+-]+)$")


def _results() -> list[runner.Result]:
    """Wide rows: the longest concept name, a three-digit exponent, infinities, integer outputs."""
    longest = max((c.name for c in registry.select([])), key=len)
    return [
        runner.Result(longest, "dtypes", "float32", "cpu", "strict", True, out_abs=1.234e-123, out_rel=3.7e-9,
                      grad_abs=2.8e-7, grad_rel=1.1e-5, n_out=3, n_grad=2, rtol=1.3e-6, atol=1e-5, n_samples=14),
        runner.Result("activations.softmax", "activations", "float64", "cpu", "strict", False,
                      out_abs=float("inf"), out_rel=float("inf"), grad_abs=9.9e99, grad_rel=1.0, n_out=1,
                      n_grad=1, rtol=1e-7, atol=1e-7, n_samples=123),
        runner.Result("activations.relu", "activations", "int32", "cpu", "strict", False, exact_out=2, exact_differ=17,
                      rtol=1.3e-6, atol=1e-5, n_samples=2),
    ]


def _expected(r: runner.Result) -> dict[str, str]:
    out, grad = report._cells(r, "out"), report._cells(r, "grad")
    return {"concept": r.concept, "dtype": r.dtype, "device": r.device, "out abs": out[0], "out rel": out[1],
            "grad abs": grad[0], "grad rel": grad[1], "rtol/atol": f"{r.rtol:.2g}/{r.atol:.2g}",
            "cases": str(r.n_samples), "result": "PASS" if r.passed else "FAIL"}


def _parse_table(text: str) -> tuple[list[str], list[dict[str, str]], str]:
    """The header, the rows (a folded concept name joined again) and what follows the table."""
    lines = text.splitlines()
    top = next(i for i, line in enumerate(lines) if re.match(r"┃ concept\s", line))
    header = [c.strip() for c in lines[top].split("┃")[1:-1]]
    rows: list[dict[str, str]] = []
    i = top + 2
    while not lines[i].startswith("└"):
        cells = [c.strip() for c in lines[i].split("│")[1:-1]]
        assert len(cells) == len(header), lines[i]
        if rows and not any(cells[1:]):  # the concept's name folded onto this line
            rows[-1]["concept"] += cells[0]
        else:
            rows.append(dict(zip(header, cells)))
        i += 1
    return header, rows, "\n".join(lines[i + 1:])


def _check_complete(text: str, results: list[runner.Result]) -> None:
    assert "…" not in text, text
    header, rows, after = _parse_table(text)
    assert [row["concept"] for row in rows] == [r.concept for r in results]
    for row, r in zip(rows, results):
        want = _expected(r)
        assert row == {k: want[k] for k in header}, (row, want)
        for k, v in row.items():
            if k != "concept" and v[:1].isdigit():
                assert NUMBER.match(v.removesuffix(" differ")), v  # a whole number, exponent included
    left_out = [k for k in _expected(results[0]) if k not in header]
    if left_out:  # every column left out is named under the table, shared values with their value
        note = " ".join(after.split())
        assert "left out to fit" in note and all(k in note for k in left_out), note
        for k in ("device", "dtype"):
            if k in left_out:
                assert f"{k} {results[0].__dict__[k]}" in note


@pytest.mark.parametrize("width", [100, 80])
def test_results_table_keeps_every_number_whole(width):
    results = _results()
    out = Console(width=width, file=io.StringIO(), color_system=None)
    out.print(report.results_table(results, title="parity check — float32 and float64 on cpu, precision strict"))
    text = out.file.getvalue()
    assert max(len(line) for line in text.splitlines()) <= width
    _check_complete(text, results)


def test_results_table_is_whole_at_every_width_from_60_to_200():
    results = _results()
    for width in range(60, 201, 7):
        out = Console(width=width, file=io.StringIO(), color_system=None)
        out.print(report.results_table(results))
        _check_complete(out.file.getvalue(), results)


def test_results_table_narrower_than_any_table_prints_lines_with_whole_numbers():
    results = _results()
    out = Console(width=40, file=io.StringIO(), color_system=None)
    out.print(report.results_table(results))
    words = {w.rstrip(",:") for w in out.file.getvalue().split()}
    assert "…" not in out.file.getvalue()
    for r in results:
        for k, v in _expected(r).items():
            if k != "concept":
                assert set(v.split()) <= words, (k, v)


def _run_cli(argv, width, monkeypatch) -> tuple[int, str]:
    """`parity ARGV` printing to a console `width` columns wide (as a terminal of that width)."""
    from parity import console
    out = Console(width=width, file=io.StringIO(), color_system=None)
    monkeypatch.setattr(console, "consoles", lambda: (out, Console(file=io.StringIO())))
    return main(argv), out.file.getvalue()


@pytest.mark.parametrize("width", [100, 80])
def test_check_prints_whole_numbers(width, monkeypatch):
    results = _results()

    def run(*a, on_result=None, **k):  # the pool hands each result to the command as it finishes
        for r in results:
            on_result(r)
        return results
    monkeypatch.setattr(parallel, "run", run)
    rc, text = _run_cli(["check", "--dtype", "float32", "float64"], width, monkeypatch)
    assert rc == 1
    assert max(len(line) for line in text.splitlines()) <= width
    _check_complete(text, results)


@pytest.mark.parametrize("width", [100, 80])
def test_show_prints_whole_numbers(width, monkeypatch):
    r = dataclasses.replace(_results()[0], concept="activations.relu", group="activations")
    monkeypatch.setattr(runner, "run_concept", lambda *a, **k: r)
    rc, text = _run_cli(["show", "activations.relu"], width, monkeypatch)
    assert rc == 0
    assert max(len(line) for line in text.splitlines()) <= width
    _check_complete(text, [r])


def test_wide_consoles_keep_the_full_table():
    out = Console(width=200, file=io.StringIO(), color_system=None)
    out.print(report.results_table(_results()))
    header, _, after = _parse_table(out.file.getvalue())
    assert header == list(_expected(_results()[0])) and "left out" not in after


# ---------------------------------------------------------------- 3. defaults in --help
def test_audit_device_defaults_to_what_is_there(tmp_path, monkeypatch, capsys):
    from parity import audit, precision
    from parity.cli import build_parser
    assert build_parser().parse_args(["audit"]).device is None
    with pytest.raises(SystemExit):
        main(["audit", "--help"])
    helptext = " ".join(capsys.readouterr().out.split())
    assert "default: cuda where both JAX and PyTorch see a CUDA GPU, else cpu" in helptext
    seen = []
    monkeypatch.setattr(audit, "run_audit", lambda concepts, device, progress=None: seen.append(device) or
                        {"parity": []})
    monkeypatch.setattr(audit, "markdown", lambda a: "audit")
    for available, device in ((False, "cpu"), (True, "cuda")):
        monkeypatch.setattr(precision, "cuda_available", lambda available=available: available)
        assert main(["audit", "activations.relu", "--out", str(tmp_path)]) == 0
        assert seen[-1] == device and (tmp_path / f"audit-{device}.json").is_file()


def test_bench_help_shows_its_defaults(capsys):
    from benchmarks.modes import Settings
    with pytest.raises(SystemExit):
        main(["bench", "--help"])
    helptext = " ".join(capsys.readouterr().out.split())
    for flag, default in (("--repeats", Settings.repeats), ("--max-time", Settings.max_time_s),
                          ("--out", "bench-out")):
        assert re.search(rf"{flag} \S+ (?:(?!--).)*?\(default: {re.escape(str(default))}\)", helptext), flag


# ---------------------------------------------------------------- 4. no warnings on stderr
def test_check_writes_no_warning_to_stderr():
    """layers.conv2d's samples use padding='same' with even kernels (torch's note), in float16 the same
    through the dtype twins, layers.max_pool2d NaN and −inf inputs."""
    r = subprocess.run([sys.executable, "-m", "parity.cli", "check", "layers.conv2d",
                        "layers.max_pool2d", "--dtype", "float32", "float16"], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Warning" not in r.stderr, r.stderr


@pytest.mark.parametrize("dtype", [np.float64, np.complex128])
def test_an_overflowing_difference_is_an_error_not_a_numpy_warning(dtype):
    big = np.finfo(np.float64).max / 1.1
    a = np.array([big, 1.0]).astype(dtype) * (1 + 1j if dtype == np.complex128 else 1)
    b = -a
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        c = runner.compare(a, b, lookup("float64", "cpu"), "s", "out[0]")
    assert not c.ok and c.max_abs == np.inf and c.max_rel == np.inf and "max abs err inf" in c.problem
