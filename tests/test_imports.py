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
