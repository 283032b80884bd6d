"""`parity train`: per-epoch output, TensorBoard event files for both frameworks under one log
directory, a PNG of both loss curves, checkpoints in each framework's format, and cross-loading."""
import json

import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from parity import checkpoints, data, training
from parity.cli import main
from parity.tolerances import lookup


def _scalars(folder, tag):
    acc = EventAccumulator(str(folder))
    acc.Reload()
    return [e.value for e in acc.Scalars(tag)]


def _train(tmp_path, *args):
    return main(["train", *args, "--epochs", "1", "--log-dir", str(tmp_path), "--name", "t"])


@pytest.mark.parametrize("model,data_spec,batch", [("simple_net", "digits", "64"), ("small_cnn", "synthetic", "256")])
def test_train_writes_events_plot_checkpoints_and_cross_loads(tmp_path, capsys, model, data_spec, batch):
    assert _train(tmp_path, "--model", model, "--data", data_spec, "--batch-size", batch) == 0
    out = capsys.readouterr().out
    assert "epoch   1: jax train loss" in out and "| torch train loss" in out and "test accuracy" in out
    assert "loss curve: AGREE" in out and "test accuracy: AGREE" in out
    run = tmp_path / "t"
    summary = json.loads((run / "summary.json").read_text())
    steps = summary["steps"]
    for fw in ("jax", "torch"):  # runs/<name>/jax and runs/<name>/torch
        assert len(_scalars(run / fw, "loss/train_step")) == steps
        assert _scalars(run / fw, "epoch/test_accuracy") == [np.float32(summary["epochs"][0][fw]["test_accuracy"])]
    cfg = training.Config(model=model).resolved()
    assert summary["loss_curve"]["ok"] and summary["test_accuracy"]["ok"]
    assert 0 <= summary["loss_curve"]["margin"] <= 1 and summary["loss_curve"]["rule"]
    assert set(summary["first_step_seconds_with_compile"]) == {"jax", "torch"}
    assert (run / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(run.rglob(".*.tmp")), "temporary file left behind"

    # checkpoints: torch's own format and Flax's msgpack; each loads into the other framework
    ds = data.load(data_spec)
    tol = lookup("float32", "cpu")
    kwargs = training.model_kwargs(model, ds)
    x = ds.x_test
    for ckpt in (run / "torch" / "model.pt", run / "jax" / "model.msgpack"):
        jm, tm = training.build(model, kwargs, "jax", cfg.dtype), training.build(model, kwargs, "torch", cfg.dtype)
        checkpoints.load_checkpoint(ckpt, jm)
        checkpoints.load_checkpoint(ckpt, tm)
        pj, pt = training.predict(jm, x), training.predict(tm, x)
        np.testing.assert_allclose(pj, pt, rtol=tol.rtol, atol=tol.atol, err_msg=f"{ckpt}: {tol.source}")
        assert np.mean(pj.argmax(-1) == ds.y_test) == np.mean(pt.argmax(-1) == ds.y_test)
    for k, rec in summary["cross_load"].items():
        assert rec["test_accuracy_src"] == rec["test_accuracy_dst"], k


def test_train_one_framework_and_linear_regression(tmp_path, capsys):
    assert _train(tmp_path, "--model", "linear_regression", "--framework", "torch", "--optimizer", "sgd") == 0
    out = capsys.readouterr().out
    assert "torch: w = [" in out and "jax loss" not in out and "jax: w" not in out
    assert "cross-load torch->jax" in out  # a torch checkpoint still loads into the JAX twin
    run = tmp_path / "t"
    assert (run / "torch" / "model.pt").is_file() and not (run / "jax").exists()
    assert len(_scalars(run / "torch", "loss/train_step")) == 80  # 800 examples, batch 10, one epoch


@pytest.mark.parametrize("args,match", [
    (["--data", "mnist:/no/such/folder"], "MNIST folder not found"),
    (["--model", "linear_regression", "--data", "digits"], "linear_regression trains on feature vectors"),
    (["--data", "cifar"], "unknown data"),
    (["--batch-size", "100000"], "batch_size must lie in"),
])
def test_bad_options_are_usage_errors(tmp_path, capsys, args, match):
    assert _train(tmp_path, *args) == 2
    assert match in " ".join(capsys.readouterr().err.split())  # rich wraps long lines


def test_missing_or_foreign_checkpoint(tmp_path):
    model = training.build("simple_net", {"in_features": 64}, "torch", "float32")
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        checkpoints.load_checkpoint(tmp_path / "absent.pt", model)
    (tmp_path / "x.ckpt").write_bytes(b"")
    with pytest.raises(ValueError, match="unknown checkpoint format"):
        checkpoints.load_checkpoint(tmp_path / "x.ckpt", model)


def test_a_second_run_gets_a_fresh_folder(tmp_path, capsys):
    """Re-running into the same log folder must not append a second event file to the first run's
    (TensorBoard would show every step twice): the second run gets `t-2`."""
    args = ("--model", "linear_regression", "--framework", "torch", "--optimizer", "sgd")
    assert _train(tmp_path, *args) == 0 and _train(tmp_path, *args) == 0
    assert len(list((tmp_path / "t" / "torch").glob("events.*"))) == 1
    assert len(list((tmp_path / "t-2" / "torch").glob("events.*"))) == 1
    assert "t-2" in capsys.readouterr().out


def test_interrupt_keeps_the_finished_epochs_marked_incomplete(tmp_path, monkeypatch, capsys):
    """Ctrl-C in epoch 3: one line, exit 130, and summary.json holds epochs 1–2 and their step losses."""
    real, calls = training.TorchSide.evaluate, []

    def evaluate_then_interrupt(self):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(self)
    monkeypatch.setattr(training.TorchSide, "evaluate", evaluate_then_interrupt)
    code = main(["train", "--model", "linear_regression", "--data", "synthetic-linear", "--epochs", "4",
                 "--log-dir", str(tmp_path), "--name", "cut"])
    assert code == 130
    doc = json.loads((tmp_path / "cut" / "summary.json").read_text())
    assert doc["complete"] is False and [e["epoch"] for e in doc["epochs"]] == [1, 2]
    steps_per_epoch = len(doc["step_losses"]["jax"]) // 2
    assert steps_per_epoch > 0 and len(doc["step_losses"]["torch"]) == 2 * steps_per_epoch
    for fw in ("jax", "torch"):  # the kept losses are the ones the epoch records summarise
        first = np.mean(np.asarray(doc["step_losses"][fw][:steps_per_epoch], np.float32))  # as recorded
        assert float(first) == doc["epochs"][0][fw]["train_loss"]
    assert sorted(p.name for p in (tmp_path / "cut").iterdir()) == ["summary.json"]
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and err[0].startswith("parity: interrupted; wrote the 2 finished epochs")


def test_interrupt_in_the_first_epoch_writes_nothing(tmp_path, monkeypatch, capsys):
    def interrupt(self):
        raise KeyboardInterrupt
    monkeypatch.setattr(training.TorchSide, "evaluate", interrupt)
    assert main(["train", "--model", "linear_regression", "--data", "synthetic-linear", "--epochs", "2",
                 "--log-dir", str(tmp_path), "--name", "cut"]) == 130
    assert list(tmp_path.iterdir()) == []
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert err == ["parity: interrupted; no epoch had finished; nothing written"]


def test_the_html_report_shows_an_interrupted_run_from_its_kept_losses(tmp_path):
    from parity.site.build import train_context
    summary = {"complete": False, "config": {"model": "linear_net", "epochs": 5},
               "epochs": [{"epoch": 1, "jax": {"train_loss": 1.0, "test_accuracy": 0.5},
                           "torch": {"train_loss": 1.0, "test_accuracy": 0.5}}],
               "step_losses": {"jax": [1.5, 0.5], "torch": [1.5, 0.25]}}
    ctx = train_context(tmp_path, summary, tmp_path / "site", "run0")
    assert any("Interrupted run: 1 of 5 epochs" in n for n in ctx["notes"])
    assert not any("no TensorBoard events" in n for n in ctx["notes"])  # the kept per-step losses are drawn
    assert "1 of 2 steps equal" in ctx["charts"][1]  # drawn from the step losses, not the epoch means
