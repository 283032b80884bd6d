"""Every function a concept runs, found from its `covers` (shared by `parity show` and the report).

A concept names its leaf functions and classes (`covers`, dotted, relative to `jax_impl`/`torch_impl`).
What they run besides is found by reading their source: each name or attribute chain in the source's
syntax tree that resolves, in the defining module's globals, to a function or class defined in
`jax_impl`, `torch_impl` or `shape_rules` is a helper, and the helpers' sources are read the same way
until nothing new turns up. Decorators count (a leaf wrapped by `jax_impl.checks.x64_checked` runs
it), names a function binds itself (arguments, assignments) do not. Nothing here is a hand-kept list.
"""
from __future__ import annotations

import ast
import dis
import functools
import importlib
import inspect
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

from parity.concept import TWINS, Concept

PACKAGES = (*TWINS, "shape_rules")
SHARED = "shape_rules"
ROOT = Path(__file__).resolve().parents[1]
LABELS = {"jax_impl": "JAX", "torch_impl": "PyTorch", "shape_rules": "shared"}


def unwrap(obj):
    """The plain function or class behind decorators: `jax.jit` and `functools.wraps` keep it in
    `__wrapped__`, `functools.partial` in `.func`, `jax.custom_vjp`/`custom_jvp` in `.fun`."""
    for _ in range(32):
        if isinstance(obj, functools.partial):
            obj = obj.func
        elif getattr(obj, "__wrapped__", None) is not None:
            obj = obj.__wrapped__
        elif type(obj).__name__ in ("custom_vjp", "custom_jvp") and callable(getattr(obj, "fun", None)):
            obj = obj.fun
        else:
            break
    return obj


def is_local(obj) -> bool:
    """A function or class defined in one of the project's implementation packages."""
    obj = unwrap(obj)
    if not (inspect.isfunction(obj) or inspect.isclass(obj)):
        return False
    return str(getattr(obj, "__module__", "")).split(".")[0] in PACKAGES


def resolve(package: str, dotted: str):
    """The object `package.dotted` ("jax_impl", "pooling.MaxPool2d"), decorators included."""
    module, _, attr = dotted.rpartition(".")
    return getattr(importlib.import_module(f"{package}.{module}" if module else package), attr)


@dataclass(frozen=True)
class Source:
    """One function or class of the project, with its source text."""

    module: str  # "jax_impl.pooling"
    qualname: str  # "_geometry", "MaxPool2d"
    kind: str  # "function" or "class"
    text: str
    path: str  # repository-relative file
    line: int  # first line in that file (decorators included)

    @property
    def package(self) -> str:
        return self.module.split(".")[0]

    @property
    def name(self) -> str:
        """Fully dotted: "jax_impl.pooling._geometry"."""
        return f"{self.module}.{self.qualname}"

    @property
    def short(self) -> str:
        """Relative to the package: "pooling._geometry" (the twins' shared naming)."""
        rest = self.module.partition(".")[2]
        return f"{rest}.{self.qualname}" if rest else self.qualname

    @property
    def anchor(self) -> str:
        return "src-" + self.name


@functools.cache
def source_of(obj) -> Source:
    obj = unwrap(obj)
    kind = "class" if inspect.isclass(obj) else "function"
    try:
        lines, line = inspect.getsourcelines(obj)
        file = Path(inspect.getsourcefile(obj)).resolve()
    except (OSError, TypeError) as e:  # made at run time (a namedtuple, a generated class): no source file
        return Source(obj.__module__, obj.__qualname__, kind, f"# source not available: {e}\n",
                      obj.__module__.replace(".", "/") + ".py", 1)
    try:
        path = file.relative_to(ROOT).as_posix()
    except ValueError:
        path = file.as_posix()
    return Source(obj.__module__, obj.__qualname__, kind, textwrap.dedent("".join(lines)), path, line)


def _bound_names(tree: ast.AST) -> set[str]:
    """Names the source binds itself (arguments, assignment and loop targets, nested defs, imports
    of other modules): a use of one of these is not a use of a module global."""
    bound: set[str] = set()
    top = tree.body[0] if isinstance(tree, ast.Module) and tree.body else None
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
            bound.add(node.id)
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node is not top:
            bound.add(node.name)
        elif isinstance(node, ast.Import):
            bound.update((a.asname or a.name).split(".")[0] for a in node.names)
    globals_declared = {n for node in ast.walk(tree) if isinstance(node, ast.Global) for n in node.names}
    return bound - globals_declared


def _attribute_chain(node: ast.Attribute) -> list[str] | None:
    parts = [node.attr]
    while isinstance(node.value, ast.Attribute):
        node = node.value
        parts.append(node.attr)
    if not isinstance(node.value, ast.Name):
        return None
    parts.append(node.value.id)
    return parts[::-1]


def callees(obj) -> list:
    """The project-local functions and classes `obj`'s source names, in source order, unwrapped."""
    obj = unwrap(obj)
    try:
        tree = ast.parse(source_of(obj).text)
    except SyntaxError:  # a lambda's source is the statement around it, not always parseable alone
        return []
    scope = vars(sys.modules[obj.__module__])
    bound = _bound_names(tree)
    found: list[tuple[tuple[int, int], object]] = []

    def add(node, value):
        if is_local(value) and unwrap(value) is not obj:
            found.append(((node.lineno, node.col_offset), unwrap(value)))

    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load) and node.id not in bound:
            add(node, scope.get(node.id))
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Load):
            chain = _attribute_chain(node)
            if not chain or chain[0] in bound:
                continue
            value = scope.get(chain[0])
            for part in chain[1:]:  # only through modules: J.layers.Linear, shape_rules.dtypes.x
                if not inspect.ismodule(value):
                    value = None
                    break
                value = getattr(value, part, None)
            add(node, value)
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in PACKAGES:
            module = importlib.import_module(node.module)
            for alias in node.names:
                add(node, getattr(module, alias.name, None))
    found.sort(key=lambda t: t[0])
    return list({id(o): o for _, o in found}.values())


def discover(roots) -> list:
    """`roots` and every project-local function or class they reach, breadth first, each once."""
    seen: dict[int, object] = {}
    queue = [unwrap(r) for r in roots]
    while queue:
        obj = queue.pop(0)
        if id(obj) in seen:
            continue
        seen[id(obj)] = obj
        queue += [c for c in callees(obj) if id(c) not in seen]
    return list(seen.values())


@dataclass
class Row:
    """One row of the side-by-side listing.

    `kind` is "covered" (a name in the concept's `covers`), "adapter" (passed in or called by the
    concept's adapter beside the covers, such as the loss and optimiser a training concept hands the
    Trainer), "helper" (a twin's own helper; the other twin's helper of the same package-relative
    name beside it, else None) or "shared" (a `shape_rules` function, shown once; `callers` says
    which twins reach it).
    """

    kind: str
    jax: Source | None = None
    torch: Source | None = None
    shared: Source | None = None
    callers: tuple[str, ...] = field(default_factory=tuple)

    @property
    def title(self) -> str:
        s = self.shared or self.jax or self.torch
        return s.short

    def sources(self) -> list[Source]:
        return [s for s in (self.jax, self.torch, self.shared) if s is not None]


def _adapter_refs(fn, package: str, seen: set[int] | None = None) -> list:
    """Project-local objects of `package` (or `shape_rules`) that a concept's adapter passes in or
    calls besides its covers (a loss, an optimiser), read from the adapter's bytecode, so lambdas
    work too; the adapter's own helpers in `parity.concepts` are followed, nothing else in `parity`."""
    seen = set() if seen is None else seen
    out: list = []
    if id(fn) in seen:
        return out
    seen.add(id(fn))

    def take(value):
        value = unwrap(value) if callable(value) else value
        if is_local(value):
            if value.__module__.split(".")[0] in (package, SHARED):
                out.append(value)
        elif inspect.isfunction(value) and value.__module__.startswith("parity.concepts"):
            out.extend(_adapter_refs(value, package, seen))

    if isinstance(fn, functools.partial):
        for v in (fn.func, *fn.args, *fn.keywords.values()):
            take(v)
        return out
    if not inspect.isfunction(fn):
        return out
    for cell in fn.__closure__ or ():
        try:
            take(cell.cell_contents)
        except ValueError:  # an empty cell
            pass

    def walk(code):
        value = None
        for ins in dis.get_instructions(code):
            if ins.opname == "LOAD_GLOBAL":
                value = fn.__globals__.get(ins.argval)
            elif ins.opname in ("LOAD_ATTR", "LOAD_METHOD") and inspect.ismodule(value):
                value = getattr(value, ins.argval, None)
            else:
                value = None
                continue
            take(value)
        for const in code.co_consts:
            if inspect.iscode(const):
                walk(const)

    walk(fn.__code__)
    return list({id(o): o for o in out}.values())


@functools.cache
def _rows(concept: Concept) -> tuple[Row, ...]:
    covers = tuple(dict.fromkeys(concept.covers))
    roots = {pkg: [unwrap(resolve(pkg, n)) for n in covers] for pkg in TWINS}
    adapters = {"jax_impl": concept.jax, "torch_impl": concept.torch}
    extra = {pkg: [o for o in _adapter_refs(adapters[pkg], pkg) if all(o is not r for r in roots[pkg])]
             for pkg in TWINS}
    sides = {pkg: [source_of(o) for o in discover(roots[pkg] + extra[pkg])] for pkg in TWINS}
    rows = [Row("covered", source_of(j), source_of(t)) for j, t in zip(roots["jax_impl"], roots["torch_impl"])]
    top = {pkg: {source_of(o).name for o in roots[pkg]} for pkg in TWINS}
    # objects the adapters pass in beside the covers (train.*: the loss and the optimiser), then helpers
    for kind, pick in (("adapter", lambda pkg: [source_of(o) for o in extra[pkg] if o.__module__.startswith(pkg)]),
                       ("helper", lambda pkg: [s for s in sides[pkg] if s.package == pkg])):
        jax_list = [s for s in pick("jax_impl") if s.name not in top["jax_impl"]]
        torch_list = [s for s in pick("torch_impl") if s.name not in top["torch_impl"]]
        torch_by_short = {s.short: s for s in torch_list}
        paired: set[str] = set()
        for s in jax_list:
            twin_ = torch_by_short.get(s.short)
            if twin_ is not None:
                paired.add(twin_.name)
            rows.append(Row(kind, s, twin_))
        rows += [Row(kind, None, s) for s in torch_list if s.name not in paired]
        for pkg, lst in (("jax_impl", jax_list), ("torch_impl", torch_list)):
            top[pkg] |= {s.name for s in lst}
    shared: dict[str, Source] = {}
    callers: dict[str, list[str]] = {}
    for pkg in TWINS:
        for s in sides[pkg]:
            if s.package == SHARED:
                shared.setdefault(s.name, s)
                callers.setdefault(s.name, []).append(pkg)
    rows += [Row("shared", shared=s, callers=tuple(callers[n])) for n, s in shared.items()]
    return tuple(rows)


def rows(concept: Concept) -> list[Row]:
    """The side-by-side rows of a concept: covered objects, what the adapters pass in beside them,
    the twins' helpers (paired by package-relative name), then the shared `shape_rules` functions."""
    return list(_rows(concept))


def all_sources(concept: Concept) -> list[Source]:
    return [s for r in rows(concept) for s in r.sources()]


KINDS = {"covered": "covered: the concept's own leaf functions and classes",
         "adapter": "passed in by the concept's adapter beside the covers",
         "helper": "helpers the twins call (paired by name where both have one)",
         "shared": "shared rules both twins call (shape_rules: no framework imported)"}


def display_rows(rows: list[Row]) -> list[dict]:
    """The rows as laid out: per kind, the pairs first (same package-relative name on both sides),
    then one row holding every unpaired JAX source on the left and every unpaired torch one on the
    right, so that a helper one twin lacks costs no empty half row."""
    out: list[dict] = []
    for kind in ("covered", "adapter", "helper"):
        these = [r for r in rows if r.kind == kind]
        for r in these:
            if r.jax and r.torch:
                out.append({"kind": kind, "left": [r.jax], "right": [r.torch]})
        left = [r.jax for r in these if r.jax and not r.torch]
        right = [r.torch for r in these if r.torch and not r.jax]
        if left or right:
            out.append({"kind": kind, "left": left, "right": right,
                        "left_empty": "no further JAX helpers: the functions above do these steps",
                        "right_empty": "no further PyTorch helpers: torch's own layers and kernels do these steps"})
    out += [{"kind": "shared", "shared": r.shared, "callers": r.callers} for r in rows if r.kind == "shared"]
    return out
