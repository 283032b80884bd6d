"""`parity show` and the function discovery it shares with the HTML report (parity/sources.py):
every function a concept runs is found from its covers, printed side by side or stacked, and piped
output carries no trailing padding."""
import io
from types import SimpleNamespace

from rich.console import Console

from parity import registry
from parity.cli import main
from parity.commands import show
from parity import sources


def _names(concept):
    return {s.name for s in sources.all_sources(concept)}


def test_max_pool2d_finds_the_helpers_it_runs():
    names = _names(registry.get("layers.max_pool2d"))
    for n in ("jax_impl.pooling.MaxPool2d", "torch_impl.pooling.MaxPool2d",
              "jax_impl.pooling._max_pool2d",  # jitted: found through jax.jit's __wrapped__
              "jax_impl.pooling._geometry", "torch_impl.pooling._check_geometry",
              "jax_impl.checks.check_input", "torch_impl.checks.check_input",
              "shape_rules.pool_out_size", "shape_rules.pool_args", "shape_rules.dtypes.check_dtype"):
        assert n in names, n
    # only the project's own code: torch's nn.MaxPool2d and flax are not listed
    assert all(n.split(".")[0] in sources.PACKAGES for n in names)


def test_decorators_and_transitive_helpers_count():
    names = _names(registry.get("activations.relu"))
    assert "jax_impl.checks.x64_checked" in names  # @x64_checked wraps the leaf: it runs
    assert "jax_impl.checks.check_x64" in names  # called by x64_checked's wrapper
    assert "jax_impl.checks._warn_x64" in names  # called by check_x64


def test_training_concepts_list_the_loss_and_optimiser_their_adapters_pass_in():
    rows = sources.rows(registry.get("train.small_cnn"))
    adapter = {s.name for r in rows if r.kind == "adapter" for s in r.sources()}
    assert {"jax_impl.losses.cross_entropy", "torch_impl.losses.cross_entropy",
            "jax_impl.optim.from_library", "torch_impl.optim.from_library"} <= adapter
    covered = [r for r in rows if r.kind == "covered"]
    assert [r.jax.short for r in covered] == ["models.SmallCNN", "train.Trainer"]
    shared = [r for r in rows if r.kind == "shared"]
    assert shared and all(r.shared.package == "shape_rules" and r.callers for r in shared)


def test_every_concept_resolves_both_twins():
    for c in registry.all_concepts():
        rows = sources.rows(c)
        covered = [r for r in rows if r.kind == "covered"]
        assert len(covered) == len(dict.fromkeys(c.covers)), c.name
        assert all(r.jax and r.torch and r.jax.short == r.torch.short for r in covered), c.name


def test_show_piped_prints_every_function_without_trailing_spaces(capsys):
    assert main(["show", "layers.max_pool2d"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines, "nothing printed"
    padded = [i for i, line in enumerate(lines, 1) if line != line.rstrip()]
    assert not padded, f"lines ending in whitespace: {padded[:10]}"
    for name in _names(registry.get("layers.max_pool2d")):
        assert name in out, name
    assert "def _max_pool2d(" in out and "def pool_out_size(" in out and "PASS" in out
    assert any("╮ ╭" in line for line in lines), "piped output (200 columns) is side by side"


def _run_show(width: int, layout: str = "auto") -> str:
    buf = io.StringIO()
    out = Console(file=buf, width=width)  # not a terminal: the piped path
    err = Console(file=io.StringIO())
    args = SimpleNamespace(name="layers.avg_pool2d", device="cpu", dtype="float32", layout=layout)
    assert show.run(args, out, err) == 0
    return buf.getvalue()


def test_show_stacks_on_a_narrow_console_and_sits_side_by_side_on_a_wide_one():
    narrow, wide = _run_show(100), _run_show(200)
    names = _names(registry.get("layers.avg_pool2d"))
    for text in (narrow, wide):
        assert all(n in text for n in names)
        assert all(line == line.rstrip() for line in text.splitlines())
    assert not any("╮ ╭" in line for line in narrow.splitlines()), "100 columns: stacked"
    assert max(map(len, narrow.splitlines())) <= 100
    assert any("╮ ╭" in line for line in wide.splitlines()), "200 columns: side by side"
    # the JAX source comes first when stacked
    assert narrow.index("jax_impl.pooling.AvgPool2d") < narrow.index("torch_impl.pooling.AvgPool2d")
    assert not any("╮ ╭" in line for line in _run_show(200, "stacked").splitlines())
