"""The `parity` command: exit codes, the table, JSON output, and a deliberately broken twin."""
import json
import subprocess
import sys

import numpy as np
import pytest

import torch_impl as T
from parity import registry
from parity.cli import main


def test_list_and_json(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "activations.softmax" in out and "losses.mse" in out
    assert main(["list", "--json"]) == 0
    items = json.loads(capsys.readouterr().out)
    assert {"name", "group"} <= set(items[0])
    assert [i["name"] for i in items] == [c.name for c in registry.all_concepts()]


def test_check_passes_and_writes_json(tmp_path, capsys):
    path = tmp_path / "sub" / "results.json"
    assert main(["check", "activations", "losses.mse", "--dtype", "float64", "--json", str(path)]) == 0
    out = capsys.readouterr().out
    assert "activations.sigmoid" in out and "PASS" in out and "FAIL" not in out
    data = json.loads(path.read_text())
    assert data["failed"] == 0 and data["passed"] == len(registry.select(["activations", "losses.mse"]))
    r = data["results"][0]
    assert {"concept", "out_abs", "out_rel", "grad_abs", "grad_rel", "rtol", "atol", "tol_source",
            "dtype", "device", "passed"} <= set(r)
    assert r["dtype"] == "float64" and r["device"] == "cpu"
    assert not list(path.parent.glob(".*.tmp")), "temporary file left behind"


def test_check_runs_every_declared_dtype_by_default(tmp_path, capsys):
    path = tmp_path / "results.json"
    assert main(["check", "losses.mse", "--json", str(path)]) == 0
    assert [r["dtype"] for r in json.loads(path.read_text())["results"]] == ["float32", "float64", "float16",
                                                                             "bfloat16"]
    assert "float32, float64, float16, bfloat16 on cpu" in capsys.readouterr().out


def test_check_dtype_selects_rows_and_labels_them_with_the_dtype_run(tmp_path, capsys):
    """`--dtype` picks among the dtypes each concept declares; a row shows the dtype that ran (the
    samples' arrays are in it), and a concept that declares none of them is left out."""
    path = tmp_path / "results.json"
    assert main(["check", "activations.relu", "layers.flatten", "--dtype", "int16", "float32", "bool",
                 "--json", str(path)]) == 0
    rows = [(r["concept"], r["dtype"]) for r in json.loads(path.read_text())["results"]]
    assert rows == [("activations.relu", "int16"), ("activations.relu", "float32"), ("layers.flatten", "bool")]
    by_row = {(r["concept"], r["dtype"]): r["comparisons"] for r in json.loads(path.read_text())["results"]}
    assert all(c["exact"] for c in by_row["activations.relu", "int16"])  # int16 values: compared exactly
    assert not any(c["exact"] for c in by_row["activations.relu", "float32"])
    assert main(["check", "layers.flatten", "--dtype", "float64"]) == 2
    assert "none of the selected concepts runs in it" in capsys.readouterr().err


def test_an_undeclared_dtype_is_a_failed_result_not_a_crash():
    from parity import runner
    r = runner.run_concept(registry.get("layers.flatten"), "float32")
    assert not r.passed and "does not run in float32" in r.error


def test_unknown_name_is_a_usage_error_with_close_names(capsys):
    assert main(["check", "softmx"]) == 2
    cap = capsys.readouterr()
    assert "unknown concept or group 'softmx'" in cap.err and "activations.softmax" in cap.err


def test_unknown_name_message_lists_close_names():
    with pytest.raises(registry.UnknownConcept) as e:
        registry.select(["softmx"])
    assert "activations.softmax" in e.value.close


def test_bad_option_exits_2():
    with pytest.raises(SystemExit) as e:
        main(["check", "--dtype", "float8"])  # no concept declares it
    assert e.value.code == 2


def test_broken_sigmoid_fails_parity_naming_concept_and_error(monkeypatch, capsys):
    """sigmoid replaced by log-sigmoid in the torch twin only: exit 1, concept named, error size shown."""
    monkeypatch.setattr(T.activations, "sigmoid", T.activations.log_sigmoid)
    assert main(["check", "activations.sigmoid", "activations.relu", "--dtype", "float32", "float64"]) == 1
    out = capsys.readouterr().out
    fail_lines = [line for line in out.splitlines() if line.startswith("FAIL")]
    assert fail_lines and all("activations.sigmoid" in line for line in fail_lines)
    assert "max abs err" in fail_lines[0]
    assert "2 passed, 2 failed" in out  # sigmoid fails and relu passes, in float32 and in float64


def test_exception_inside_a_concept_is_a_failure(monkeypatch, capsys):
    def boom(x):
        raise RuntimeError("kaboom in tanh")
    monkeypatch.setattr(T.activations, "tanh", boom)
    assert main(["check", "activations.tanh"]) == 1
    assert "kaboom in tanh" in capsys.readouterr().out


def test_show_prints_both_sources_and_result(capsys):
    assert main(["show", "activations.softmax"]) == 0
    out = capsys.readouterr().out
    assert "jax_impl.activations.softmax" in out and "torch_impl.activations.softmax" in out
    assert "jnp.exp" in out and "torch.exp" in out and "PASS" in out


def test_console_script_runs():
    r = subprocess.run([sys.executable, "-m", "parity.cli", "list"], capture_output=True, text=True)
    assert r.returncode == 0 and "tensors.matmul" in r.stdout


def test_failure_lines_name_the_tensor_through_rich(monkeypatch, capsys):
    """A torch tanh with the right values but the wrong gradient fails on grad[x], and the printed
    line keeps "[x]" and "[float32, cpu]" (rich would read unescaped brackets as markup and drop them)."""
    import torch
    monkeypatch.setattr(T.activations, "tanh", lambda x: x - x.detach() + torch.tanh(x).detach())
    assert main(["check", "activations.tanh", "--dtype", "float32"]) == 1
    fail_lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("FAIL")]
    assert fail_lines and all("grad[x]" in line for line in fail_lines)
    assert all("activations.tanh [float32, cpu]" in line for line in fail_lines)
    assert not any("out[0]" in line for line in fail_lines)  # the values themselves agree


def test_a_concept_that_compares_nothing_fails():
    from parity.concept import Concept, Sample
    from parity import runner
    empty = Concept(name="t.empty", group="t", summary="", samples=lambda rng, dt: [],
                    jax=lambda p, x: x["x"], torch=lambda p, x: x["x"], covers=(), grad_inputs=("x",))
    r = runner.run_concept(empty)
    assert not r.passed and "no samples" in r.failures[0]
    no_grads = Concept(name="t.nograd", group="t", summary="", grad_inputs=(),
                       samples=lambda rng, dt: [Sample("one", {"x": np.ones(3, dt)})],
                       jax=lambda p, x: x["x"] * 2, torch=lambda p, x: x["x"] * 2, covers=())
    r = runner.run_concept(no_grads)
    assert r.passed and r.n_out == 1 and r.n_grad == 0  # nothing to differentiate: outputs only is right
    with_params = Concept(name="t.params", group="t", summary="", grad_inputs=("x",),
                          samples=lambda rng, dt: [Sample("one", {"x": np.ones(3, dt)})],
                          jax=lambda p, x: x["x"] * 2, torch=lambda p, x: x["x"].detach() * 2, covers=())
    r = runner.run_concept(with_params)
    assert not r.passed  # torch's output does not depend on x: its gradient is zero, JAX's is 2


def test_report_says_n_a_where_nothing_was_compared(capsys):
    """Optimiser concepts have no gradients and tensor creation none either: "n/a", not "—" (equal)."""
    assert main(["check", "optim.sgd", "tensors.creation", "tensors.numpy_roundtrip", "--dtype", "float64"]) == 0
    rows = {line.split("│")[1].strip(): [c.strip() for c in line.split("│")[1:-1]]
            for line in capsys.readouterr().out.splitlines() if line.startswith("│")}
    # columns: concept, dtype, device, out abs, out rel, grad abs, grad rel, ...
    assert rows["optim.sgd"][5:7] == ["n/a", "n/a"]
    assert rows["tensors.creation"][5:7] == ["n/a", "n/a"]
    assert rows["tensors.numpy_roundtrip"][3] == "—"  # float values come back bitwise equal


def test_integer_outputs_report_how_many_elements_differ():
    from parity import report, runner
    from parity.tolerances import lookup
    c = runner.compare(np.array([1, 2, 3]), np.array([1, 5, 3]), lookup("float32", "cpu"), "s", "out[0]")
    assert c.exact and c.differ == 1 and not c.ok and c.problem == "1 of 3 elements differ"
    r = runner.Result("x", "g", "float32", "cpu", "strict", False, exact_out=1, exact_differ=1)
    assert report._cells(r, "out") == ("1 differ", "n/a")


def test_result_files_get_the_usual_mode_not_0600(tmp_path, capsys):
    import os
    path = tmp_path / "r.json"
    old = os.umask(0o022)
    try:
        assert main(["check", "losses.mse", "--dtype", "float64", "--json", str(path)]) == 0
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644


def test_interrupt_keeps_the_finished_results_marked_incomplete(tmp_path, monkeypatch, capsys):
    """Ctrl-C during a check: one line, exit 130, and the JSON holds what finished, marked incomplete."""
    from parity import runner
    real, calls = runner.run_concept, []

    def run_then_interrupt(*a, **kw):
        if calls:
            raise KeyboardInterrupt
        calls.append(1)
        return real(*a, **kw)
    monkeypatch.setattr(runner, "run_concept", run_then_interrupt)
    path = tmp_path / "r.json"
    assert main(["check", "activations.relu", "activations.tanh", "--json", str(path)]) == 130
    doc = json.loads(path.read_text())
    assert doc["complete"] is False and [r["concept"] for r in doc["results"]] == ["activations.relu"]
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and err[0].startswith("parity: interrupted; wrote the 1 finished results")
