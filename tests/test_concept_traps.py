"""A concept's `traps` field against the docs: every number is a section of docs/traps.md, and every
section of docs/traps.md or row of docs/concepts.md that names a concept is among that concept's traps.
The docs are read with plain regexes here, not with parity/site/docs.py."""
import re
from pathlib import Path

from parity import registry
from parity.site import docs

DOCS = Path(__file__).resolve().parents[1] / "docs"
TRAPS_MD = (DOCS / "traps.md").read_text(encoding="utf-8")
CONCEPTS = registry.all_concepts()


def _sections() -> dict[int, str]:
    """docs/traps.md's numbered `## N. title` sections, by number."""
    parts = re.split(r"^## ", TRAPS_MD, flags=re.M)[1:]
    return {int(m.group(1)): body for p in parts if (m := re.match(r"(\d+)\.\s[^\n]*\n(.*)", p, re.S))
            for body in [m.group(2)]}


def test_every_trap_number_is_a_section_of_traps_md():
    numbers = set(_sections())
    bad = {c.name: [n for n in c.traps if n not in numbers] for c in CONCEPTS}
    assert not {k: v for k, v in bad.items() if v}, bad
    assert all(len(set(c.traps)) == len(c.traps) for c in CONCEPTS), "a trap listed twice"


def test_every_section_naming_a_concept_is_linked_from_it():
    missing = [(n, c.name) for n, body in _sections().items() for c in CONCEPTS
               if f"`{c.name}`" in body and n not in c.traps]
    assert not missing, f"docs/traps.md names these concepts in these sections, their traps do not: {missing}"


def test_every_trap_link_of_a_worked_example_is_among_its_concept_traps():
    text = (DOCS / "concepts.md").read_text(encoding="utf-8")
    missing = []
    for row in text.splitlines():
        if not row.startswith("|"):
            continue
        linked = {int(n) for n in re.findall(r"traps\.md#(\d+)-", row)}
        for c in CONCEPTS:
            if f"`{c.name}`" in row:
                missing += [(c.name, n) for n in linked if n not in c.traps]
    assert not missing, missing


def test_a_concept_page_shows_its_field():
    """The site's trap list is the field, in its order; related traps are other concepts' fields."""
    pool = registry.get("layers.max_pool2d")
    assert pool.traps[:3] == (7, 8, 9)
    shown = docs.concept_traps(pool)
    assert [t.number for t in shown.primary] == list(pool.traps)
    assert 4 in [t.number for t in docs.concept_traps(registry.get("layers.flatten")).primary]
    related = {t.number for t in docs.concept_traps(registry.get("layers.max_pool2d_indices")).related}
    assert {7, 8, 9} <= related  # max_pool2d's: the same module (pooling)
    assert not docs.concept_traps(registry.get("layers.max_pool2d_indices")).primary
