"""`parity report --html DIR`: the site's files and contents, its bad-input errors, and the rule that
every concept page shows every function the concept runs (found independently of the report's own
discovery, by tokenizing the sources).

The browser checks (console errors, links, the filter, screenshots) are in test_report_html_browser.py.
"""
import importlib
import inspect
import io
import json
import re
import sys
import tokenize
from html import unescape
from pathlib import Path

import pytest

from parity import registry, runner
from parity.cli import main
from parity import parallel
from parity import sources
from parity.site import build, docs

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks" / "results" / "cpu"


def _text(html: str) -> str:
    return unescape(re.sub(r"<[^>]+>", "", html))


# ---------------------------------------------------------------- every function on its page
def _local(v):
    for _ in range(10):
        w = getattr(v, "__wrapped__", None) or getattr(v, "func", None)
        if w is None or w is v:
            break
        v = w
    if (inspect.isfunction(v) or inspect.isclass(v)) and v.__module__.split(".")[0] in sources.PACKAGES:
        return v
    return None


def _covered_and_called(concept) -> dict[str, object]:
    """Each covered object and every project-local function or class their source names, transitively:
    names (and module attribute chains) looked up in the defining module, read with `tokenize`."""
    queue = []
    for pkg in ("jax_impl", "torch_impl"):
        for name in concept.covers:
            module, _, attr = name.rpartition(".")
            queue.append(_local(getattr(importlib.import_module(f"{pkg}.{module}"), attr)))
    seen: dict[str, object] = {}
    while queue:
        obj = queue.pop()
        key = f"{obj.__module__}.{obj.__qualname__}"
        if key in seen:
            continue
        seen[key] = obj
        scope = vars(sys.modules[obj.__module__])
        toks = list(tokenize.generate_tokens(io.StringIO(inspect.getsource(obj)).readline))
        for i, t in enumerate(toks):
            if t.type != tokenize.NAME or (i and toks[i - 1].string == "."):
                continue
            v, j = scope.get(t.string), i
            while inspect.ismodule(v) and j + 2 < len(toks) and toks[j + 1].string == ".":
                v, j = getattr(v, toks[j + 2].string, None), j + 2
            v = _local(v)
            if v is not None:
                queue.append(v)
    return seen


def test_every_covered_and_called_function_appears_on_its_concept_page():
    site = build.Site(date="test")
    assert len(registry.all_concepts()) > 40  # the whole registry, not a part of it
    for c in registry.all_concepts():
        html = build.concept_page(c, [], site, None, None)
        text = _text(html)
        for name, obj in _covered_and_called(c).items():
            assert f'id="src-{name}"' in html, f"{c.name}: no section for {name}"
            keyword = "class" if inspect.isclass(obj) else "def"
            assert re.search(rf"(?<![A-Za-z_]){keyword} {re.escape(obj.__name__)}\b", text), \
                f"{c.name}: no source of {name}"
        for n in c.covers:
            assert f"jax_impl.{n}" in text and f"torch_impl.{n}" in text, (c.name, n)


def test_known_helpers_are_on_the_max_pool2d_page():
    text = _text(build.concept_page(registry.get("layers.max_pool2d"), [], build.Site(date="t"), None, None))
    for needle in ("def _max_pool2d(", "def _geometry(", "def _check_geometry(", "def pool_out_size(",
                   "def pool_args(", "def check_dtype(", "class MaxPool2d(nnx.Module)", "class MaxPool2d(nn.MaxPool2d)"):
        assert needle in text, needle
    assert "Trap 9: Max-pooling padding value" in text and "[[5, 3], [4, 5]]" in text


# ---------------------------------------------------------------- docs: traps and worked examples
def test_traps_and_worked_examples_are_read_from_docs():
    t = docs.traps()
    # Every numbered heading of docs/traps.md, counted here with a plain regex, is parsed.
    headings = re.findall(r"^## (\d+)\. ", (Path(__file__).parents[1] / "docs" / "traps.md").read_text(),
                          flags=re.M)
    assert sorted(t) == sorted(int(n) for n in headings) and len(t) >= 29
    assert t[9].anchor == "9-max-pooling-padding-value" and "−inf" in t[9].summary
    conv = docs.worked_examples("layers.conv2d")
    assert "[[11, 12], [15, 23]]" in [g for e in conv for g in e.goldens]
    assert conv[0].code_blocks and "kernel" in conv[0].code_blocks[0]
    assert [x.number for x in docs.concept_traps(registry.get("layers.max_pool2d")).primary][:3] == [7, 8, 9]
    html = docs.render("see [trap 9](traps.md#9-max-pooling-padding-value) and [the README](../README.md)",
                       page_dir="concepts")
    assert 'href="../docs/traps.html#9-max-pooling-padding-value"' in html
    assert "README.md" not in re.findall(r'href="([^"]*)"', html)  # outside the site: text, not a dead link


# ---------------------------------------------------------------- bad input
@pytest.fixture(scope="module")
def train_run(tmp_path_factory):
    """A real two-epoch `parity train` run folder (linear regression: a few seconds)."""
    log = tmp_path_factory.mktemp("runs")
    assert main(["train", "--model", "linear_regression", "--data", "synthetic-linear", "--epochs", "2",
                 "--log-dir", str(log), "--name", "lin"]) == 0
    return log / "lin"


def _bad(tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("x")
    empty = tmp_path / "empty"
    empty.mkdir()
    badjson = tmp_path / "badrun"
    badjson.mkdir()
    (badjson / "summary.json").write_text("{not json")
    notrun = tmp_path / "notrun"
    notrun.mkdir()
    (notrun / "summary.json").write_text('{"hello": 1}')
    notbench = tmp_path / "notbench"
    notbench.mkdir()
    (notbench / "bench-cpu.json").write_text('{"schema": "other/1"}')
    return {
        "--html is a file": (["--html", str(afile), "activations.relu"], "is a file"),
        "unknown concept": (["--html", str(tmp_path / "s1"), "activations.rleu"], "did you mean activations.relu"),
        "--train without summary.json": (["--html", str(tmp_path / "s2"), "--train", str(empty)], "no summary.json"),
        "--train a file": (["--html", str(tmp_path / "s3"), "--train", str(afile)], "is a file"),
        "--train bad JSON": (["--html", str(tmp_path / "s4"), "--train", str(badjson)], "cannot read it as JSON"),
        "--train not a run": (["--html", str(tmp_path / "s5"), "--train", str(notrun)], "not a `parity train` summary"),
        "--bench without files": (["--html", str(tmp_path / "s6"), "--bench", str(empty)], "no bench-<device>.json"),
        "--bench missing": (["--html", str(tmp_path / "s7"), "--bench", str(tmp_path / "nope")], "no such folder"),
        "--bench other schema": (["--html", str(tmp_path / "s8"), "--bench", str(notbench)], "not a `parity bench` file"),
        "--jobs 0": (["--html", str(tmp_path / "s9"), "--jobs", "0"], "--jobs must be >= 1"),
        "--results not JSON": (["--html", str(tmp_path / "sa"), "--results", str(afile)], "cannot read it as JSON"),
        "--results not results": (["--html", str(tmp_path / "sb"), "--results", str(notrun / "summary.json")],
                                  "not a results file"),
    }


def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, capsys):
    for case, (argv, needle) in _bad(tmp_path).items():
        assert main(["report", *argv]) == 2, case
        captured = capsys.readouterr()
        lines = captured.err.strip().splitlines()
        assert len(lines) == 1 and needle in lines[0], (case, captured.err)
        assert captured.out == "", case
    assert not any(p.name.startswith("s") and p.is_dir() for p in tmp_path.iterdir()), "a site folder was made"


# ---------------------------------------------------------------- a small site, end to end
def test_small_site_end_to_end(tmp_path, capsys, train_run):
    out = tmp_path / "site"
    names = ["activations.relu", "layers.max_pool2d"]
    assert main(["report", "--html", str(out), *names, "--dtype", "float32", "--jobs", "1",
                 "--no-cache", "--train", str(train_run.parent),
                 "--bench", str(BENCH)]) == 0
    printed = capsys.readouterr().out
    assert "2 passed, 0 failed" in printed and (out / "index.html").as_uri() in printed
    for rel in ("index.html", "assets/site.css", "results.json", "training.html", "benchmarks.html",
                "docs/traps.html", "docs/concepts.html", *[f"concepts/{n}.html" for n in names]):
        assert (out / rel).is_file(), rel
    assert not list(out.rglob("*.tmp")), "a temporary file was left behind"
    index = (out / "index.html").read_text()
    assert all(f'href="concepts/{n}.html"' in index for n in names)
    assert 'href="training.html"' in index and 'href="benchmarks.html"' in index
    assert "http://" not in index and "https://" not in index, "the site loads nothing from the network"
    results = json.loads((out / "results.json").read_text())
    assert results["passed"] == 2 and results["results"][0]["comparisons"]

    page = (out / "concepts" / "layers.max_pool2d.html").read_text()
    samples = registry.get("layers.max_pool2d").samples(__import__("numpy").random.default_rng(runner.SEED),
                                                        __import__("numpy").dtype("float32"))
    for s in samples:  # every sample's label, with per-tensor rows for the output and the gradient
        assert unescape(page).count(s.label) >= 1, s.label
    assert page.count("<svg") >= 1 and "grad[x]" in page and "out[0]" in page
    assert "(2, 2, 7, 7)" in page  # an input shape of the first sample

    train = (out / "training.html").read_text()
    assert "lin" in train and train.count("<svg") >= 3 and "training/lin.png" in train
    assert (out / "training" / "lin.png").read_bytes()[:4] == b"\x89PNG"
    assert "|Δ train loss|" in unescape(train)
    bench = (out / "benchmarks.html").read_text()
    pngs = sorted(BENCH.glob("cpu-*.png"))
    assert pngs and all((out / "benchmarks" / p.name).is_file() for p in pngs)
    assert "How to read them" in bench and "jax-eager / jax-jit" in bench and "<table" in bench


def test_worker_processes_give_the_same_results_as_one_process(tmp_path):
    concepts = [registry.get("activations.tanh"), registry.get("losses.mse")]
    par = parallel.run(concepts, ["float32"], jobs=2, cache_dir=tmp_path / "cache")
    one = [runner.run_concept(c, "float32") for c in concepts]
    assert [r.concept for r in par] == [c.name for c in concepts]
    for a, b in zip(par, one):
        assert a.passed and b.passed
        assert [(c["sample"], c["what"], c["max_abs"]) for c in a.comparisons] == \
               [(c["sample"], c["what"], c["max_abs"]) for c in b.comparisons]


def test_a_failing_and_a_crashing_concept_are_reported_as_such(tmp_path, capsys, monkeypatch):
    """A torch tanh with a wrong gradient fails on grad[x]; a torch relu that raises is a crash: the
    site is still written, the index marks both FAIL and the pages say what failed."""
    import torch

    import torch_impl as T
    monkeypatch.setattr(T.activations, "tanh", lambda x: x - x.detach() + torch.tanh(x).detach())

    def boom(x):
        raise RuntimeError("kaboom in relu")
    monkeypatch.setattr(T.activations, "relu", boom)
    out = tmp_path / "site"
    assert main(["report", "--html", str(out), "activations.tanh", "activations.relu", "activations.sigmoid",
                 "--dtype", "float32", "--jobs", "1", "--no-cache"]) == 1
    assert "1 passed, 2 failed" in capsys.readouterr().out
    index = (out / "index.html").read_text()
    assert len(re.findall(r'data-result="fail"', index)) == 2 and len(re.findall(r'data-result="pass"', index)) == 1
    tanh = unescape((out / "concepts" / "activations.tanh.html").read_text())
    assert "FAIL" in tanh and re.search(r"grad\[x\].*?badge fail", tanh, re.S) and "max abs err" in tanh
    relu = unescape((out / "concepts" / "activations.relu.html").read_text())
    assert "RuntimeError: kaboom in relu" in relu and "FAIL" in relu


def test_results_from_a_file_are_reused_not_run_again(tmp_path, capsys, monkeypatch):
    first = tmp_path / "first"
    assert main(["report", "--html", str(first), "activations.relu", "--dtype", "float32", "--jobs", "1",
                 "--no-cache"]) == 0
    ran = []
    real = runner.run_concept
    monkeypatch.setattr(runner, "run_concept", lambda c, *a, **k: ran.append(c.name) or real(c, *a, **k))
    second = tmp_path / "second"
    assert main(["report", "--html", str(second), "activations.relu", "activations.tanh", "--dtype", "float32",
                 "--jobs", "1", "--no-cache", "--results", str(first / "results.json")]) == 0
    assert ran == ["activations.tanh"]
    assert "reused 1" in capsys.readouterr().out
    page = unescape((second / "concepts" / "activations.relu.html").read_text())
    assert "grad[x]" in page and "random (4,5)" in page  # the per-tensor records came along
    assert "1 from" in unescape((second / "index.html").read_text())
