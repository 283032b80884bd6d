"""`parity … | head`: a reader that closes the pipe early ends the output quietly (no traceback,
nothing on stderr) and the exit code is still what the run computed (parity/cli.py, `_Stdout`).

Before, `parity list --json | head` died of BrokenPipeError (exit 1 with a traceback) and
`parity check … | head -1` exited 1, the code of a failed comparison, whatever the results.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _run_into_closed_pipe(args, read: int = 0, python=("-m", "parity.cli")):
    """Run `parity ARGS` with stdout into a pipe whose reader takes `read` bytes (0: none) and then
    closes its end while the command still runs; (exit code, bytes read, stderr)."""
    r, w = os.pipe()
    p = subprocess.Popen([sys.executable, *python, *args], cwd=REPO, stdout=w, stderr=subprocess.PIPE)
    os.close(w)
    got = b""
    try:
        while len(got) < read:
            chunk = os.read(r, read - len(got))
            if not chunk:
                break
            got += chunk
    finally:
        os.close(r)  # the reader goes away; what the command writes from now on has nowhere to go
    _, err = p.communicate(timeout=300)
    return p.returncode, got, err.decode(errors="replace")


def test_list_json_into_a_pipe_closed_before_any_output():
    code, _, err = _run_into_closed_pipe(["list", "--json"])
    assert (code, err) == (0, "")


def test_list_read_in_part_like_head_c_10():
    code, got, err = _run_into_closed_pipe(["list"], read=10)
    assert (code, err) == (0, "") and len(got) == 10


def test_check_into_a_closed_pipe_exits_0_when_everything_passed_and_writes_its_file(tmp_path):
    """Like `parity check activations.relu --json F | head -1`: the results file is written in full
    and the exit code is the comparison's. (stderr may hold the blank line every run's transient
    progress bar leaves when stderr is not a terminal, nothing else.)"""
    path = tmp_path / "r.json"
    code, _, err = _run_into_closed_pipe(["check", "activations.relu", "--dtype", "float32", "--json", str(path)])
    assert code == 0 and err.strip() == "", err
    doc = json.loads(path.read_text())
    assert doc["complete"] is True and [r["concept"] for r in doc["results"]] == ["activations.relu"]


def test_a_failed_comparison_into_a_closed_pipe_still_exits_1():
    """The exit code is computed, not assumed: a planted failure gives 1 with the pipe closed too."""
    code = """if True:
        import sys
        from parity import runner
        real = runner.run_concept

        def failing(*a, **kw):
            r = real(*a, **kw)
            r.passed = False
            return r
        runner.run_concept = failing
        from parity.cli import main
        sys.exit(main())
    """
    rc, _, err = _run_into_closed_pipe(["check", "activations.relu", "--dtype", "float32"], python=("-c", code))
    assert rc == 1 and err.strip() == "", err
