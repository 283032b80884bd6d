"""Every `parity` subcommand, given each kind of bad input: exit 2, one line on stderr, no
traceback, and no file written (the check runs before any work starts)."""
import gzip

import numpy as np
import pytest

from parity import data
from parity.cli import main


def _mnist(folder, size=(28, 28), n=(64, 16), images=None):
    """A small MNIST folder of IDX files (the real format); `images` overrides the train images."""
    folder.mkdir()
    rng = np.random.default_rng(0)
    for stem, k in (("train", n[0]), ("t10k", n[1])):
        img = rng.integers(0, 256, (k, *size), dtype=np.uint8) if images is None or stem == "t10k" else images
        data.write_idx(folder / f"{stem}-images-idx3-ubyte", img)
        data.write_idx(folder / f"{stem}-labels-idx1-ubyte", rng.integers(0, 10, len(img)).astype(np.uint8))
    return folder


def _broken_gzip(folder):
    folder = _mnist(folder)
    raw = gzip.compress((folder / "train-images-idx3-ubyte").read_bytes())
    (folder / "train-images-idx3-ubyte").unlink()
    (folder / "train-images-idx3-ubyte.gz").write_bytes(raw[:20] + bytes(40) + raw[60:])  # corrupt deflate
    return folder


def _overflowing_header(folder):
    folder = _mnist(folder)
    header = bytes([0, 0, 0x08, 3]) + np.array([2**31, 2**31, 2**31], ">u4").tobytes()
    (folder / "train-images-idx3-ubyte").write_bytes(header + bytes(100))
    return folder


# (args, setup(tmp_path) -> extra args or None, what the one line must say)
CASES = {
    # check
    "check --json is a folder": (lambda t: ["check", "activations.relu", "--json", str(t)], "is a folder"),
    "check --json under a file": (lambda t: ["check", "activations.relu", "--json",
                                             str(_file(t) / "r.json")], "is a file"),
    "check unknown concept": (lambda t: ["check", "activations.rleu"], "unknown concept"),
    # show
    "show a group": (lambda t: ["show", "layers"], "is a group"),
    "show two names": (lambda t: ["show", "activations.relu", "activations.tanh"], "unrecognized arguments"),
    "show --device cuda": (lambda t: ["show", "activations.relu", "--device", "cuda"], "CUDA is not available"),
    # audit
    "audit --out is a file": (lambda t: ["audit", "activations.relu", "--device", "cpu", "--out", str(_file(t))],
                              "is a file"),
    # train: options
    "train --lr nan": (lambda t: _train(t, "--lr", "nan"), "lr"),
    "train --lr inf": (lambda t: _train(t, "--lr", "inf"), "lr"),
    "train --lr -1": (lambda t: _train(t, "--lr", "-1"), "lr"),
    "train --batch-size 0": (lambda t: _train(t, "--batch-size", "0"), "batch_size"),
    "train --momentum with adam": (lambda t: _train(t, "--optimizer", "adam", "--momentum", "0.9"), "momentum"),
    "train --torch-threads -3": (lambda t: _train(t, "--torch-threads", "-3"), "torch_threads"),
    "train --epochs 0": (lambda t: _train(t, "--epochs", "0"), "epochs"),
    "train --log-dir is a file": (lambda t: ["train", "--epochs", "1", "--log-dir", str(_file(t))], "is a file"),
    "train --name ../../x": (lambda t: _train(t, "--name", "../../x"), "plain folder name"),
    "train --name absolute": (lambda t: _train(t, "--name", str(t / "abs")), "plain folder name"),
    # train: data
    "train mnist broken gzip": (lambda t: _train(t, "--data", f"mnist:{_broken_gzip(t / 'm')}"),
                                "train-images-idx3-ubyte.gz"),
    "train mnist header overflows": (lambda t: _train(t, "--data", f"mnist:{_overflowing_header(t / 'm')}"),
                                     "header says shape"),
    "train mnist empty set": (lambda t: _train(t, "--data", f"mnist:{_mnist(t / 'm', n=(0, 16))}"),
                              "holds no examples"),
    "train cnn images too small": (lambda t: _train(t, "--model", "small_cnn", "--data",
                                                    f"mnist:{_mnist(t / 'm', size=(3, 3))}"), "too small"),
    "train cnn non-square images": (lambda t: _train(t, "--model", "small_cnn", "--data",
                                                     f"mnist:{_mnist(t / 'm', size=(28, 20))}"), "square"),
    "train mnist float images with NaN": (  # IDX type code 0x0D (float32)
        lambda t: _train(t, "--data", f"mnist:{_mnist(t / 'm', images=np.full((64, 28, 28), np.nan, np.float32))}"),
        "train-images-idx3-ubyte: 50176 of 50176 image values are not finite (50176 NaN, 0 infinite)"),
    "train mnist float images with one inf": (
        lambda t: _train(t, "--data", "mnist:" + str(_mnist(t / "m", images=np.where(
            np.arange(64 * 28 * 28).reshape(64, 28, 28) == 5, np.inf, 0.5).astype(np.float32)))),
        "train-images-idx3-ubyte: 1 of 50176 image values are not finite (0 NaN, 1 infinite)"),
    # bench
    "bench --sizes 0": (lambda t: _bench(t, "--sizes", "0"), "--sizes"),
    "bench --sizes -5": (lambda t: _bench(t, "--sizes", "-5"), "--sizes"),
    "bench --sizes 10^8": (lambda t: _bench(t, "--sizes", "100000000"), "--sizes"),
    "bench --repeats 0": (lambda t: _bench(t, "--repeats", "0"), "--repeats"),
    "bench --repeat-runs 0": (lambda t: _bench(t, "--repeat-runs", "0"), "--repeat-runs"),
    "bench --max-time nan": (lambda t: _bench(t, "--max-time", "nan"), "--max-time"),
    "bench mode that does not apply": (lambda t: _bench(t, "--modes", "jax-scan"), "offered by none"),
    "bench --out is a file": (lambda t: ["bench", "activations.relu", "--out", str(_file(t))], "is a file"),
    "bench unknown workload": (lambda t: ["bench", "activations.rleu"], "unknown workload"),
}


def _file(tmp_path):
    f = tmp_path / "a-file"
    f.write_text("x")
    return f


def _train(tmp_path, *args):
    return ["train", "--epochs", "1", "--log-dir", str(tmp_path / "runs"), *args]


def _bench(tmp_path, *args):
    return ["bench", "activations.relu", "--out", str(tmp_path / "bench"), *args]


def _tree(root):
    return sorted((str(p.relative_to(root)), p.stat().st_size) for p in root.rglob("*"))


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_exits_2_with_one_line_and_writes_nothing(case, tmp_path, capsys):
    make_args, says = CASES[case]
    args = make_args(tmp_path)
    capsys.readouterr()
    before = _tree(tmp_path)
    try:
        code = main(args)
    except SystemExit as e:  # argparse's own usage errors
        code = e.code
    cap = capsys.readouterr()
    lines = [line for line in cap.err.splitlines() if line.strip()]
    assert code == 2, f"{case}: exit {code}\n{cap.err}"
    assert len(lines) == 1, f"{case}: expected one line on stderr, got:\n{cap.err}"
    assert "Traceback" not in cap.err + cap.out
    assert says in lines[0], f"{case}: {lines[0]!r} does not say {says!r}"
    assert _tree(tmp_path) == before, f"{case}: files were written"
