"""The README keeps up with the code: its measured figures come from scripts/readme_figures.py and
must describe the current registry, and every subcommand is documented."""
import re
from pathlib import Path

from parity import registry
from parity.commands import COMMANDS
from parity.concepts import optim

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def _figures() -> str:
    m = re.search(r"<!-- figures:start.*?-->(.*?)<!-- figures:end -->", README, re.S)
    assert m, "README.md lacks the figures block written by scripts/readme_figures.py"
    return m.group(1)


def test_figures_describe_the_current_registry():
    block = _figures()
    want = f"{len(registry.all_concepts())} concepts in {len(registry.groups())} groups"
    assert want in block, f"README figures are stale (want {want!r}): run scripts/readme_figures.py"
    assert f"after {optim.STEPS} steps" in block
    for g in registry.groups():
        assert f"| {g} |" in block, f"group {g} missing from the figures: run scripts/readme_figures.py"
    counts = {}
    for c in registry.all_concepts():
        for dt in c.dtypes:
            counts[dt] = counts.get(dt, 0) + 1
    assert f"{sum(counts.values())} rows in {len(counts)} dtypes" in block
    for dt, n in counts.items():  # the concepts that declare each dtype
        assert f"| {dt} | {n} |" in block, f"dtype {dt}: want {n} concepts: run scripts/readme_figures.py"
    assert "failing:" not in block, "the README records failing concepts"


def test_every_subcommand_is_documented():
    names = [c.__name__.rsplit(".", 1)[1] for c in COMMANDS]
    missing = [n for n in names if f"parity {n}" not in README]
    assert not missing, f"README.md does not document: {missing}"
