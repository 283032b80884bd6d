"""What docs/ says about a concept: its traps (docs/traps.md) and worked examples (docs/concepts.md),
and the Markdown renderer that turns docs/*.md into the site's pages.

A concept's traps are its `traps` field (tests/test_concept_traps.py checks it against
docs/traps.md and docs/concepts.md); the traps of the other concepts that cover a function of the
same modules are "related". docs/concepts.md's tables give the worked examples: each row naming the
concept in its "concept" column, with the golden values (the bold parts of "expected result").
"""
from __future__ import annotations

import functools
import posixpath
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

from markdown_it import MarkdownIt

from parity import sources

ROOT = sources.ROOT
DOCS = ROOT / "docs"
TRAPS_MD, CONCEPTS_MD = DOCS / "traps.md", DOCS / "concepts.md"

def slug(text: str) -> str:
    """GitHub's heading anchor: lower case, punctuation dropped, spaces to hyphens."""
    text = unicodedata.normalize("NFKC", text).strip().lower()
    text = "".join(ch for ch in text if ch.isalnum() or ch in " -_")
    return text.replace(" ", "-")


def _sections(path: Path) -> list[tuple[str, str]]:
    """(heading, body) for each `## ` section of a Markdown file."""
    out, title, body = [], None, []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("## "):
            if title is not None:
                out.append((title, "\n".join(body)))
            title, body = line[3:].strip(), []
        elif title is not None:
            body.append(line)
    if title is not None:
        out.append((title, "\n".join(body)))
    return out


def _sentences(text: str, n: int) -> str:
    """The first `n` sentences of `text` (a sentence ends at '. ' before a capital or a backtick)."""
    parts = re.split(r"(?<=[.!?])\s+(?=[A-Z`(])", " ".join(text.split()))
    return " ".join(parts[:n])


@dataclass(frozen=True)
class Trap:
    number: int
    title: str
    anchor: str
    differs: str  # the "What differs." bullet, whole
    body: str

    @property
    def summary(self) -> str:
        """The framework difference in one or two sentences."""
        return _sentences(self.differs, 2)


@functools.cache
def traps() -> dict[int, Trap]:
    out = {}
    for title, body in _sections(TRAPS_MD):
        m = re.match(r"(\d+)\.\s+(.*)", title)
        if not m:
            continue
        differs = re.search(r"^- \*\*What differs\.\*\*(.*?)(?=^- \*\*|\Z)", body, re.S | re.M)
        out[int(m.group(1))] = Trap(int(m.group(1)), m.group(2), slug(title),
                                    " ".join((differs.group(1) if differs else "").split()), body)
    return out


@dataclass(frozen=True)
class Note:
    """An unnumbered difference from docs/traps.md's last section ("Other differences...")."""

    title: str
    text: str


@functools.cache
def other_differences() -> list[Note]:
    for title, body in _sections(TRAPS_MD):
        if title.lower().startswith("other differences"):
            items = re.findall(r"^- \*\*(.+?)\*\*(.*?)(?=^- \*\*|\Z)", body, re.S | re.M)
            return [Note(t.rstrip("."), " ".join(b.split())) for t, b in items]
    return []


@dataclass
class ConceptTraps:
    primary: list[Trap] = field(default_factory=list)
    related: list[Trap] = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)


def _modules(concept) -> set[str]:
    """The modules of the leaf names a concept covers ("activations.relu" -> "activations")."""
    return {name.rpartition(".")[0] for name in concept.covers}


def concept_traps(concept, concepts=None) -> ConceptTraps:
    """The traps a concept belongs to (its `traps`) and those related to it (see the module docstring);
    `concepts`: the concepts to look for related ones in (default: the registry's)."""
    if concepts is None:
        from parity import registry
        concepts = registry.all_concepts()
    table = traps()
    primary = [n for n in concept.traps if n in table]
    mine = _modules(concept)
    related = [n for c in concepts if c.name != concept.name and _modules(c) & mine for n in c.traps]
    related = [n for n in dict.fromkeys(related) if n in table and n not in primary]
    # unnumbered differences that name one of the concept's functions ("jax_impl/activations.py: relu")
    every = sources.all_sources(concept)  # the unnumbered notes are matched by the functions' names
    keys = {f"{s.path}: {s.qualname}" for s in every} | {f"`{concept.name}`"}
    notes = [n for n in other_differences() if any(k in n.text for k in keys)]
    return ConceptTraps([table[n] for n in primary], [table[n] for n in related], notes)


# ---------------------------------------------------------------- worked examples (docs/concepts.md)
@dataclass(frozen=True)
class WorkedExample:
    section: str  # "4. Layers"
    anchor: str  # "4-layers"
    cells: dict  # column header -> Markdown of the cell
    row_md: str
    code_blocks: tuple[str, ...]  # the section's fenced blocks (the §4 input and kernel)

    @property
    def goldens(self) -> list[str]:
        """The known answers: the bold parts of the expected result."""
        return re.findall(r"\*\*(.+?)\*\*", self.cells.get("expected result", ""))


def _split_row(line: str) -> list[str]:
    cells, cur, code = [], "", False
    body = line.strip()[1:-1] if line.strip().endswith("|") else line.strip()[1:]
    i = 0
    while i < len(body):
        ch = body[i]
        if ch == "`":
            code = not code
        if ch == "\\" and i + 1 < len(body) and body[i + 1] == "|":
            cur += "\\|"
            i += 2
            continue
        if ch == "|" and not code:
            cells.append(cur.strip())
            cur = ""
        else:
            cur += ch
        i += 1
    cells.append(cur.strip())
    return cells


@functools.cache
def _examples() -> tuple[WorkedExample, ...]:
    out = []
    for title, body in _sections(CONCEPTS_MD):
        blocks = tuple(re.findall(r"^```[^\n]*\n(.*?)^```", body, re.S | re.M))
        lines = body.splitlines()
        for i, line in enumerate(lines):
            if not (line.startswith("|") and i + 1 < len(lines) and re.match(r"^\|(\s*:?-+:?\s*\|)+\s*$", lines[i + 1])):
                continue
            header = [h.lower() for h in _split_row(line)]
            if "concept" not in header:
                continue
            for row in lines[i + 2:]:
                if not row.startswith("|"):
                    break
                cells = dict(zip(header, _split_row(row)))
                out.append(WorkedExample(title, slug(title), cells, row, blocks))
    return tuple(out)


def worked_examples(name: str) -> list[WorkedExample]:
    """docs/concepts.md's rows whose "concept" column names `name` (in backticks)."""
    return [e for e in _examples() if f"`{name}`" in e.cells.get("concept", "")]


# ---------------------------------------------------------------- Markdown to HTML
DOC_PAGES = ("README.md", "concepts.md", "traps.md", "measurements.md")  # rendered under DIR/docs/


def doc_files() -> list[Path]:
    return [DOCS / n for n in DOC_PAGES if (DOCS / n).is_file()]


def site_path_of(repo_path: str) -> str | None:
    """Where a repository file lives in the site ("docs/traps.md" -> "docs/traps.html"), or None."""
    p = posixpath.normpath(repo_path)
    if posixpath.dirname(p) == "docs" and posixpath.basename(p) in DOC_PAGES:
        return p[:-3] + ".html"
    return None


def _link_rule(page_dir: str, source_dir: str):
    """A link rewriter for Markdown from `source_dir` (repo-relative) shown on a page in `page_dir`
    (site-relative): docs become their pages, other repository files plain text, web links stay."""
    def rewrite(href: str) -> str | None:
        if re.match(r"^[a-z]+:", href) or href.startswith("#"):
            return href
        target, _, frag = href.partition("#")
        site = site_path_of(posixpath.join(source_dir, target))
        if site is None:
            return None
        rel = posixpath.relpath(site, page_dir or ".")
        return rel + (f"#{frag}" if frag else "")
    return rewrite


@functools.cache
def _md() -> MarkdownIt:
    return MarkdownIt("commonmark", {"html": False, "typographer": False}).enable("table")


def _fix_tokens(tokens, rewrite) -> None:
    for i, tok in enumerate(tokens):
        if tok.type == "heading_open" and i + 1 < len(tokens):
            text = "".join(c.content for c in tokens[i + 1].children or [] if c.type in ("text", "code_inline"))
            tok.attrSet("id", slug(text))
        for c in (tok.children or []):
            if c.type == "link_open":
                href = rewrite(c.attrGet("href") or "")
                if href is None:  # a repository file outside the site: keep the text, say what it is
                    repo = c.attrGet("href")
                    c.tag, c.attrs = "span", {"class": "repo-file", "title": f"repository file {repo}"}
                    depth = 0
                    for d in tokens[i].children[tokens[i].children.index(c) + 1:]:
                        if d.type == "link_open":
                            depth += 1
                        if d.type == "link_close":
                            if depth == 0:
                                d.tag = "span"
                                break
                            depth -= 1
                else:
                    c.attrSet("href", href)


def render(text: str, page_dir: str = "", source_dir: str = "docs") -> str:
    """Markdown (GitHub's tables and heading anchors) as HTML for a page in `page_dir`."""
    md = _md()
    tokens = md.parse(text)
    _fix_tokens(tokens, _link_rule(page_dir, source_dir))
    return md.renderer.render(tokens, md.options, {})


def render_inline(text: str, page_dir: str = "", source_dir: str = "docs") -> str:
    """One line of Markdown (a table cell) as inline HTML."""
    md = _md()
    tokens = md.parseInline(text)
    _fix_tokens(tokens, _link_rule(page_dir, source_dir))
    return md.renderer.render(tokens, md.options, {})
