"""The engine stands apart from its applications: `parity show` finds sources without the HTML site
(nor its template library; the terminal's highlighting comes from rich), and `parity check --jobs N` runs concepts in the same worker pool
as `parity report` (parity/parallel.py) with the same results as one process."""
import json
import subprocess
import sys
from pathlib import Path

from parity.cli import main

ROOT = Path(__file__).resolve().parents[1]


def test_show_loads_neither_the_site_nor_jinja2():
    code = ("import sys; from parity.cli import main; rc = main(['show', 'activations.relu']); "
            "print(sorted(m for m in ('jinja2', 'parity.site') if m in sys.modules)); sys.exit(rc)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.strip().splitlines()[-1] == "[]", res.stdout[-500:]


def test_check_with_two_jobs_gives_the_results_of_one(tmp_path, capsys):
    names = ["activations.relu", "activations.sigmoid", "losses.mse"]
    runs = {}
    for jobs in (1, 2):
        path = tmp_path / f"jobs{jobs}.json"
        assert main(["check", *names, "--dtype", "float64", "float32", "--jobs", str(jobs),
                     "--cache-dir", str(tmp_path / "cache"), "--json", str(path)]) == 0
        runs[jobs] = json.loads(path.read_text())["results"]
    capsys.readouterr()
    key = ("concept", "dtype", "passed", "out_abs", "grad_abs")
    assert [tuple(r[k] for k in key) for r in runs[2]] == [tuple(r[k] for k in key) for r in runs[1]]
    assert [(r["concept"], r["dtype"]) for r in runs[1]] == [(n, d) for d in ("float64", "float32") for n in names]


def test_check_refuses_zero_jobs_by_name(capsys):
    assert main(["check", "losses.mse", "--jobs", "0"]) == 2
    assert "--jobs must be >= 1, got 0" in capsys.readouterr().err
