"""Outputs go where the user asked and nowhere else: symlinks are written through, devices and FIFOs
get a plain write (never renamed over), unusable paths are refused before any work, and `report
--html` never spreads a site over a folder of other files.

Every destructive case runs in a temporary folder, with a symlink and a FIFO standing in for device
files; /dev/null and /dev/full are used as they are (writing to them is harmless; the old code
renamed over them only when run as root, so on another account these tests pass either way)."""
import json
import os
import stat
import threading
from pathlib import Path

import pytest

from parity import console
from parity.cli import main

def _run(capsys, *args):
    capsys.readouterr()
    try:
        code = main(list(args))
    except SystemExit as e:
        code = e.code
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def _one_line_exit_2(code, err, says):
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2, err
    assert len(lines) == 1, err
    assert "Traceback" not in err
    assert says in lines[0], lines[0]


# ---------------------------------------------------------------- writing through links and devices
def test_symlink_to_a_file_elsewhere_is_written_through(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    target = elsewhere / "real.json"
    target.write_text("old")
    link = tmp_path / "link.json"
    link.symlink_to(target)
    console.write_json_atomic({"a": 1}, link)
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert json.loads(target.read_text()) == {"a": 1}
    assert sorted(p.name for p in elsewhere.iterdir()) == ["real.json"]  # no temporary file left


def test_dangling_symlink_creates_its_target(tmp_path):
    target = tmp_path / "sub" / "new.json"
    (tmp_path / "sub").mkdir()
    link = tmp_path / "link.json"
    link.symlink_to(target)
    assert console.writable_file(link, "--json") == link
    console.write_json_atomic([1, 2], link)
    assert link.is_symlink()
    assert json.loads(target.read_text()) == [1, 2]


def test_replaced_file_keeps_its_mode(tmp_path):
    f = tmp_path / "r.json"
    f.write_text("{}")
    f.chmod(0o640)
    console.write_json_atomic({"b": 2}, f)
    assert stat.S_IMODE(f.stat().st_mode) == 0o640


def test_fifo_gets_a_plain_write_and_stays_a_fifo(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()))
    reader.start()
    assert console.writable_file(fifo, "--json") == fifo
    console.write_json_atomic({"c": 3}, fifo)
    reader.join(timeout=10)
    assert json.loads(got[0]) == {"c": 3}
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pipe"]


def test_dev_null_stays_a_device():
    console.writable_file("/dev/null", "--json")
    console.write_json_atomic({"d": 4}, "/dev/null")
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full on this system")
def test_dev_full_is_one_clean_error():
    with pytest.raises(console.OutputError, match="/dev/full: No space left"):
        console.write_json_atomic({"e": 5}, "/dev/full")
    assert stat.S_ISCHR(os.stat("/dev/full").st_mode)


def test_check_json_through_a_symlink_and_to_dev_null(tmp_path, capsys):
    """The command end to end: the link survives and holds the results; /dev/null survives."""
    target = tmp_path / "t.json"
    link = tmp_path / "link.json"
    link.symlink_to(target)
    code, out, err = _run(capsys, "check", "activations.relu", "--dtype", "float32", "--json", str(link))
    assert code == 0, err
    assert link.is_symlink()
    assert json.loads(target.read_text())["complete"] is True
    code, out, err = _run(capsys, "check", "activations.relu", "--dtype", "float32", "--json", "/dev/null")
    assert code == 0, err
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


def test_check_json_dev_full_exits_2_with_one_line(capsys):
    code, out, err = _run(capsys, "check", "activations.relu", "--dtype", "float32", "--json", "/dev/full")
    _one_line_exit_2(code, err, "No space left")


# ---------------------------------------------------------------- paths refused before any work
def _loop(tmp_path):
    (tmp_path / "a").symlink_to(tmp_path / "b")
    (tmp_path / "b").symlink_to(tmp_path / "a")
    return tmp_path / "a"


EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "resnet_block.py"
LONG = "x" * 251 + ".json"  # 256 bytes: one more than ext4, tmpfs and most file systems allow
FITS = "y" * 245 + ".json"  # 250 bytes: fits, though ".<name>.XXXXXXXX.tmp" would not

REFUSED = {
    # (args given tmp_path, what the line says); each must exit 2 before running anything
    "check --json under /proc": (lambda t: ["check", "activations.relu", "--json", "/proc/parity.json"],
                                 "cannot write in /proc"),
    "check --json under /sys": (lambda t: ["check", "activations.relu", "--json", "/sys/parity.json"],
                                "cannot write in /sys"),
    "check --json in a symlink loop": (lambda t: ["check", "activations.relu", "--json", str(_loop(t))],
                                       "symlink loop"),
    "check --json name too long": (lambda t: ["check", "activations.relu", "--json", str(t / LONG)], "bytes"),
    "check --json empty": (lambda t: ["check", "activations.relu", "--json", ""], "empty path"),
    "report --html empty": (lambda t: ["report", "activations.relu", "--html", ""], "empty path"),
    "report --html under /proc": (lambda t: ["report", "activations.relu", "--html", "/proc/site"],
                                  "cannot write in /proc"),
    "report --html a symlink loop": (lambda t: ["report", "activations.relu", "--html", str(_loop(t))],
                                     "symlink loop"),
    "train --log-dir under /sys": (lambda t: ["train", "--epochs", "1", "--log-dir", "/sys/runs"],
                                   "cannot write in /sys"),
    "train --name too long": (lambda t: ["train", "--epochs", "1", "--log-dir", str(t / "runs"), "--name", LONG],
                              "bytes"),
    "bench --out empty": (lambda t: ["bench", "activations.relu", "--out", ""], "empty path"),
    "audit --out under /proc": (lambda t: ["audit", "activations.relu", "--device", "cpu", "--out", "/proc/a"],
                                "cannot write in /proc"),
    "compare --json under /proc": (lambda t: ["compare", f"{EXAMPLE}:torch_model", f"{EXAMPLE}:flax_model",
                                              "--input-shape", "2,3,8,8", "--json", "/proc/c.json"],
                                   "cannot write in /proc"),
}


def _tree(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.mark.parametrize("case", list(REFUSED))
def test_unusable_output_is_refused_up_front(case, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # an empty path must not fall back to the current folder
    make_args, says = REFUSED[case]
    args = make_args(tmp_path)
    before = _tree(tmp_path)
    code, out, err = _run(capsys, *args)
    _one_line_exit_2(code, err, says)
    assert _tree(tmp_path) == before, "files were written"


def test_long_name_that_fits_is_written(tmp_path):
    """The temporary name is shortened when the final name leaves no room for it."""
    console.writable_file(tmp_path / FITS, "--json")
    console.write_json_atomic({"f": 6}, tmp_path / FITS)
    assert json.loads((tmp_path / FITS).read_text()) == {"f": 6}
    assert [p.name for p in tmp_path.iterdir()] == [FITS]


def test_writable_dir_creates_nothing(tmp_path):
    console.writable_dir(tmp_path / "a" / "b" / "c", "--out")
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- report --html and other files
def test_report_refuses_a_folder_of_other_files(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("mine")
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "thesis.md").write_text("mine too")
    before = [(p, p.read_bytes() if p.is_file() else None) for p in sorted(tmp_path.rglob("*"))]
    code, out, err = _run(capsys, "report", "activations.relu", "--dtype", "float32", "--no-cache",
                          "--jobs", "1", "--html", str(tmp_path))
    _one_line_exit_2(code, err, "--force")
    assert "notes.txt" in err
    assert [(p, p.read_bytes() if p.is_file() else None) for p in sorted(tmp_path.rglob("*"))] == before


def test_report_writes_into_new_empty_or_own_site_folders(tmp_path, capsys):
    site = tmp_path / "site"
    code, out, err = _run(capsys, "report", "activations.relu", "--dtype", "float32", "--no-cache",
                          "--jobs", "1", "--html", str(site))
    assert code == 0, err
    assert (site / "index.html").is_file()
    # a second run over the site this command wrote is allowed (it replaces the site's own files)
    code, out, err = _run(capsys, "report", "activations.relu", "--dtype", "float32", "--no-cache",
                          "--jobs", "1", "--html", str(site))
    assert code == 0, err
    # --force writes among other files and leaves them alone
    other = tmp_path / "other"
    other.mkdir()
    (other / "keep.txt").write_text("keep")
    code, out, err = _run(capsys, "report", "activations.relu", "--dtype", "float32", "--no-cache",
                          "--jobs", "1", "--html", str(other), "--force")
    assert code == 0, err
    assert (other / "keep.txt").read_text() == "keep" and (other / "index.html").is_file()
