"""The project's modules import each other without cycles (function-level imports included).

A cycle is how a module ends up importing a half-initialised module back (a command importing the
CLI's helpers while the CLI imports the command); the graph below is read from the source with `ast`.
"""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("jax_impl", "torch_impl", "shape_rules", "parity", "benchmarks")


def _modules() -> dict[str, Path]:
    mods = {}
    for pkg in PACKAGES:
        for path in (ROOT / pkg).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            mods[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return mods


def _graph(mods: dict[str, Path]) -> dict[str, set[str]]:
    graph = {}
    for name, path in mods.items():
        edges = set()
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                edges |= {a.name for a in node.names if a.name in mods}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative import
                    base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
                for a in node.names:  # `from pkg import module` names the module, not the package
                    target = f"{base}.{a.name}"
                    edges.add(target if target in mods else base)
        graph[name] = {e for e in edges if e in mods and e != name}
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state, stack = {}, []

    def visit(n):
        state[n] = "open"
        stack.append(n)
        for m in sorted(graph[n]):
            if state.get(m) == "open":
                return stack[stack.index(m):] + [m]
            if m not in state and (found := visit(m)):
                return found
        state[n] = "done"
        stack.pop()
        return None
    for n in sorted(graph):
        if n not in state and (found := visit(n)):
            return found
    return None


def test_the_graph_sees_real_imports():
    graph = _graph(_modules())
    assert "parity.registry" in graph["parity.commands.check"] or "parity.commands.common" in graph["parity.commands.check"]
    assert "parity.concept" in graph["parity.concepts.basics"]
    assert "parity.concepts" in graph["parity.registry"]  # a function-level import counts too


def test_no_import_cycles():
    cycle = _cycle(_graph(_modules()))
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_cycle_finder_finds_a_planted_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]


def test_nothing_below_the_cli_imports_a_command():
    graph = _graph(_modules())
    importers = {n for n, edges in graph.items() if any(e.startswith("parity.commands") or e == "parity.cli"
                                                       for e in edges)}
    assert importers <= {"parity.cli"} | {n for n in graph if n.startswith("parity.commands")}, importers


def test_the_command_line_parser_loads_neither_framework():
    """`parity --help` and every subcommand's flags are built without importing JAX or torch (their
    import takes seconds): the choices come from parity/names.py, parity/train_config.py and
    benchmarks/modes.py, and each command imports the frameworks only when it runs."""
    import subprocess
    import sys
    code = ("import sys; from parity.cli import build_parser; build_parser(); "
            "print(sorted(m for m in ('jax', 'torch', 'flax', 'optax', 'jax_impl', 'torch_impl', 'parity.registry') "
            "if m in sys.modules))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                       cwd=Path(__file__).resolve().parents[1])
    assert r.stdout.strip() == "[]", r.stdout
    helps = subprocess.run([sys.executable, "-m", "parity.cli", "train", "--help"], capture_output=True, text=True,
                           check=True, cwd=Path(__file__).resolve().parents[1])
    text = " ".join(helps.stdout.split())  # argparse wraps the help text
    assert "--model" in text and "default 10 (linear_regression: 3)" in text


def _package(name: str, mods: dict[str, Path]) -> str:
    """The package a module belongs to: its own folder (parity's root modules make the package
    `parity`, the engine; each subpackage and each top-level package is one package)."""
    return name if mods[name].name == "__init__.py" else name.rpartition(".")[0]


def _package_graph() -> tuple[dict[str, set[str]], dict[tuple[str, str], list]]:
    """Package → the packages its modules import, and for each edge the module imports that make it.
    A package's `__init__` naming its own subpackages (parity's lazy `compare` re-export) is the
    package's front door, not a dependency of its modules, and is left out."""
    mods = _modules()
    graph: dict[str, set[str]] = {}
    why: dict[tuple[str, str], list] = {}
    for m, edges in _graph(mods).items():
        a = _package(m, mods)
        graph.setdefault(a, set())
        for e in edges:
            b = _package(e, mods)
            if a == b or (mods[m].name == "__init__.py" and b.startswith(a + ".")):
                continue
            graph[a].add(b)
            why.setdefault((a, b), []).append((m, e))
    return graph, why


def _two_way(graph: dict[str, set[str]]) -> set[tuple[str, str]]:
    return {(a, b) for a in graph for b in graph[a] if a < b and a in graph.get(b, ())}


# Packages that still import each other, each with the imports that make the cycle; the layout this
# moves towards (engine in parity's root modules, applications in subpackages and benchmarks,
# commands above them) removes them by moving the application modules out of parity's root. The
# test fails on any new pair, and on a listed pair that no longer exists (then delete its line).
KNOWN_PACKAGE_CYCLES = {
    ("parity", "parity.concepts"): "parity/registry.py indexes parity/concepts/, whose modules use the engine",
    ("parity", "parity.commands"): "parity/cli.py dispatches to the commands, which use the engine",
    ("parity", "parity.distributed"): "parity/train_run.py launches data-parallel runs, which use parity/training.py",
    ("parity", "parity.porting"): "parity/training.py converts checkpoints with parity/porting/kinds.py",
}


def test_package_cycles_are_only_the_known_ones():
    graph, why = _package_graph()
    found = _two_way(graph)
    new = {p: (why[p][:3], why[p[::-1]][:3]) for p in found - set(KNOWN_PACKAGE_CYCLES)}
    assert not new, f"packages importing each other: {new}"
    gone = set(KNOWN_PACKAGE_CYCLES) - found
    assert not gone, f"no longer a cycle, delete from KNOWN_PACKAGE_CYCLES: {gone}"


def test_benchmarks_and_the_port_sit_above_the_engine():
    """benchmarks imports parity's engine; the parity packages that use benchmarks (the port's timing,
    the site's benchmark page, the bench command) are applications and commands above it."""
    graph, _ = _package_graph()
    assert "parity" in graph["benchmarks"] and "benchmarks" not in graph["parity"]
    assert not {"parity.port", "parity.site"} & graph["benchmarks"]


def test_the_package_cycle_finder_finds_a_planted_pair():
    assert _two_way({"a": {"b"}, "b": {"a", "c"}, "c": set()}) == {("a", "b")}
