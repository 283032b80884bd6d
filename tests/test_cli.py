"""The `parity` command: exit codes, the table, JSON output, and a deliberately broken twin."""
import json
import subprocess
import sys

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


def test_check_runs_both_dtypes_by_default(tmp_path, capsys):
    path = tmp_path / "results.json"
    assert main(["check", "losses.mse", "--json", str(path)]) == 0
    assert [r["dtype"] for r in json.loads(path.read_text())["results"]] == ["float32", "float64"]
    assert "float32 and float64" in capsys.readouterr().out


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
        main(["check", "--dtype", "float16"])
    assert e.value.code == 2


def test_broken_sigmoid_fails_parity_naming_concept_and_error(monkeypatch, capsys):
    """sigmoid replaced by log-sigmoid in the torch twin only: exit 1, concept named, error size shown."""
    monkeypatch.setattr(T.activations, "sigmoid", T.activations.log_sigmoid)
    assert main(["check", "activations.sigmoid", "activations.relu"]) == 1
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
