"""A census of how the Hugging Face zoo (examples/transformers_zoo.py) traces, for `parity port`: for
each architecture, two ways of turning the torch model into a graph are tried.

(a) fx: `torch.fx.symbolic_trace` with a `Tracer` whose `is_leaf_module` keeps as leaves every module
    of a known layer kind (`parity.porting.kinds.all_kinds()`, through `kinds.torch_kind`, so a kind's
    `accepts` test counts) and every parameterless `torch.nn` module (activations, dropout, identity,
    pooling; the containers Sequential / ModuleList / ModuleDict are never leaves). Recorded ops:
    `call_function` targets by qualified name ("torch.matmul", "_operator.add"), `call_method` names
    ("method:view"), leaf module classes ("module:torch.nn.modules.linear.Linear").
(b) export: `torch.export.export(model, inputs, strict=False)` then `torch.export.unflatten(ep)`.
    Recorded ops: the aten ops (call_function targets, "aten.linear.default") of each unflattened
    submodule's own graph, keyed by its path, with the class of the original module at that path;
    and the set of module classes appearing in the unflattened tree.

For each path: whether it works (else the first line of the error), the time it took, the ops, and
whether the traced graph run on the inputs reproduces the model's output (max |diff|).

    .venv/bin/python scripts/port_census.py --out /tmp/port_census.json | tee /tmp/port_census.txt

`--only a,b` limits the census to some architectures. The JSON is written atomically (a temp file
beside it, then os.replace)."""
from __future__ import annotations

import argparse
import collections
import importlib.util
import json
import os
import sys
import tempfile
import time
import traceback
import warnings
from pathlib import Path

import torch
import torch.fx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from parity.porting import kinds  # noqa: E402

CONTAINERS = (torch.nn.Sequential, torch.nn.ModuleList, torch.nn.ModuleDict)


def load_zoo():
    spec = importlib.util.spec_from_file_location("transformers_zoo", ROOT / "examples" / "transformers_zoo.py")
    zoo = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("transformers_zoo", zoo)
    spec.loader.exec_module(zoo)
    return zoo


def qualname(obj) -> str:
    if isinstance(obj, type):
        return f"{obj.__module__}.{obj.__qualname__}"
    try:
        return torch.fx.node._get_qualified_name(obj)
    except Exception:
        return repr(obj)


def where(e: BaseException) -> str | None:
    """The innermost traceback frame outside torch: the line of model code the tracer stopped at."""
    frames = [f for f in traceback.extract_tb(e.__traceback__) if "/torch/" not in f.filename]
    if not frames:
        return None
    f = frames[-1]
    name = f.filename.split("site-packages/")[-1]
    return f"{name}:{f.lineno} ({f.name}): {(f.line or '').strip()}"[:300]


def failure(e: BaseException, t0: float) -> dict:
    return {"ok": False, "error": first_line(e), "where": where(e), "seconds": round(time.perf_counter() - t0, 3)}


def op_name(target) -> str:
    return str(target) if isinstance(target, torch._ops.OpOverload) else qualname(target)


def first_line(e: BaseException) -> str:
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    return f"{type(e).__name__}: {lines[0] if lines else ''}"[:300]


def is_leaf(m: torch.nn.Module) -> bool:
    if isinstance(m, CONTAINERS):
        return False
    if kinds.torch_kind(m) is not None:
        return True
    is_torch_nn = type(m).__module__.startswith("torch.nn")
    parameterless = not any(True for _ in m.parameters()) and not any(True for _ in m.buffers())
    return is_torch_nn and parameterless


class KindTracer(torch.fx.Tracer):
    def is_leaf_module(self, m: torch.nn.Module, module_qualified_name: str) -> bool:
        return is_leaf(m)


def max_diff(a, b) -> float | None:
    if isinstance(b, (tuple, list)) and len(b) == 1:
        b = b[0]
    if not isinstance(b, torch.Tensor) or b.shape != a.shape:
        return None
    return float((a - b).abs().max())


def census_fx(model, inputs, expected) -> dict:
    t = time.perf_counter()
    try:
        tracer = KindTracer()
        graph = tracer.trace(model)
        gm = torch.fx.GraphModule(tracer.root, graph, type(model).__name__)
    except Exception as e:
        return failure(e, t)
    seconds = round(time.perf_counter() - t, 3)
    ops = collections.Counter()
    for node in gm.graph.nodes:
        if node.op == "call_function":
            ops[qualname(node.target)] += 1
        elif node.op == "call_method":
            ops[f"method:{node.target}"] += 1
        elif node.op == "call_module":
            ops[f"module:{qualname(type(gm.get_submodule(node.target)))}"] += 1
    out = {"ok": True, "error": None, "seconds": seconds, "nodes": len(gm.graph.nodes), "ops": dict(sorted(ops.items()))}
    try:
        with torch.no_grad():
            out["max_diff"] = max_diff(expected, gm(*inputs))
    except Exception as e:
        out["max_diff"] = None
        out["run_error"] = first_line(e)
    return out


def _original(model, path: str):
    clean = ".".join(p.split("@")[0] for p in path.split(".")) if path else ""
    try:
        return model.get_submodule(clean)
    except Exception:
        return None


def census_export(model, inputs, expected) -> dict:
    t = time.perf_counter()
    try:
        ep = torch.export.export(model, inputs, strict=False)
        unflat = torch.export.unflatten(ep)
    except Exception as e:
        return failure(e, t)
    seconds = round(time.perf_counter() - t, 3)
    by_module, union, outside, classes = {}, collections.Counter(), collections.Counter(), set()
    for path, sub in unflat.named_modules():
        orig = _original(model, path)
        cls = qualname(type(orig)) if orig is not None else None
        if cls:
            classes.add(cls)
        graph = getattr(sub, "graph", None)
        if graph is None:
            continue
        ops = collections.Counter(op_name(n.target) for n in graph.nodes if n.op == "call_function")
        if ops:
            kind = kinds.torch_kind(orig) if orig is not None else None
            by_module[path or "<root>"] = {"class": cls, "kind": kind, "ops": dict(sorted(ops.items()))}
            union.update(ops)
            if kind is None:
                outside.update(ops)
    out = {"ok": True, "error": None, "seconds": seconds, "ops": dict(sorted(union.items())),
           "ops_outside_kinds": dict(sorted(outside.items())), "ops_by_module": by_module, "module_classes": sorted(classes)}
    try:
        with torch.no_grad():
            out["max_diff"] = max_diff(expected, unflat(*inputs))
    except Exception as e:
        out["max_diff"] = None
        out["run_error"] = first_line(e)
    return out


def unkinded(model) -> dict[str, list[str]]:
    """Classes of the modules that hold parameters or buffers of their own (not through a child) and
    are of no known layer kind, each with its own arrays' names: what a port must handle by hand
    (GPT-2's Conv1D, LlamaRMSNorm, a class token held by an embeddings module, …)."""
    out: dict[str, set] = {}
    for _, m in model.named_modules():
        own = [n for n, _ in m.named_parameters(recurse=False)] + [n for n, _ in m.named_buffers(recurse=False)]
        if own and kinds.torch_kind(m) is None:
            out.setdefault(qualname(type(m)), set()).update(own)
    return {k: sorted(v) for k, v in sorted(out.items())}


def write_json(path: str, data) -> None:
    path = os.path.abspath(path)
    fd, tmp = tempfile.mkstemp(prefix=".census-", suffix=".json", dir=os.path.dirname(path))
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=1, sort_keys=False)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes it 0600; a plain file's mode instead
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def union_by_arch(records: dict, path: str, field: str = "ops") -> list[tuple[str, int]]:
    counts = collections.Counter()
    for rec in records.values():
        r = rec.get(path, {})
        if r.get("ok"):
            counts.update(set(r[field]))
    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))


def fmt_diff(r) -> str:
    if not r.get("ok"):
        return "-"
    d = r.get("max_diff")
    return "run err" if d is None else f"{d:.0e}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="census.json", help="JSON output path (default: census.json)")
    ap.add_argument("--only", default="", help="comma-separated architecture names")
    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore")
    import transformers
    transformers.logging.set_verbosity_error()

    zoo = load_zoo()
    names = [n for n in zoo.ARCHITECTURES if not args.only or n in args.only.split(",")]
    records = {}
    for name in names:
        arch = zoo.ARCHITECTURES[name]
        rec = {"domain": arch.domain}
        t = time.perf_counter()
        model, inputs = arch.build()
        rec["build_seconds"] = round(time.perf_counter() - t, 3)
        times = []
        for _ in range(2):  # the faster of two calls (the first pays one-off set-up)
            t = time.perf_counter()
            with torch.no_grad():
                expected = model(*inputs)
            times.append(time.perf_counter() - t)
        rec["forward_seconds"] = round(min(times), 4)
        rec["unkinded_param_modules"] = unkinded(model)
        rec["fx"] = census_fx(model, inputs, expected)
        model, inputs = arch.build()  # a fresh model: tracing must not leave state behind for export
        rec["export"] = census_export(model, inputs, expected)
        records[name] = rec
        fx, ex = rec["fx"], rec["export"]
        print(f"{name:16s} {arch.domain:6s} fwd {rec['forward_seconds']:6.3f}s | "
              f"fx {'ok ' if fx['ok'] else 'ERR'} {fx['seconds']:6.2f}s {len(fx.get('ops', {})):3d} ops diff {fmt_diff(fx):7s} | "
              f"export {'ok ' if ex['ok'] else 'ERR'} {ex['seconds']:6.2f}s {len(ex.get('ops', {})):3d} ops diff {fmt_diff(ex):7s}",
              flush=True)

    print("\nerrors:")
    for name, rec in records.items():
        for path in ("fx", "export"):
            r = rec[path]
            if not r["ok"]:
                print(f"  {name:16s} {path:6s} {r['error']}\n{'':25s}at {r['where']}")
            elif r.get("run_error"):
                print(f"  {name:16s} {path:6s} traced, but the graph fails to run: {r['run_error']}")
    summary = {}
    for path in ("fx", "export"):
        ok = [n for n, r in records.items() if r[path]["ok"]]
        union = union_by_arch(records, path)
        summary[path] = {"ok": ok, "failed": [n for n in records if n not in ok],
                         "ops_by_arch_count": [{"op": op, "archs": c} for op, c in union]}
        print(f"\n{path}: {len(ok)}/{len(records)} trace: {', '.join(ok)}")
        print(f"{path} op union ({len(union)} ops; op: number of architectures using it):")
        print("  " + "\n  ".join(f"{c:3d}  {op}" for op, c in union))
    outside = union_by_arch(records, "export", "ops_outside_kinds")
    summary["export"]["ops_outside_kinds_by_arch_count"] = [{"op": op, "archs": c} for op, c in outside]
    print(f"\nexport ops outside modules of a known kind ({len(outside)} ops: what remains to map once every "
          "known-kind layer is ported as a layer):")
    print("  " + "\n  ".join(f"{c:3d}  {op}" for op, c in outside))
    un = collections.Counter()
    for rec in records.values():
        un.update(list(rec["unkinded_param_modules"]))
    summary["unkinded_param_modules_by_arch_count"] = [{"class": c, "archs": n} for c, n in
                                                      sorted(un.items(), key=lambda kv: (-kv[1], kv[0]))]
    print(f"\nmodules holding parameters/buffers of their own, of no known kind ({len(un)} classes):")
    for c, n in sorted(un.items(), key=lambda kv: (-kv[1], kv[0])):
        arrays = sorted({a for rec in records.values() for a in rec["unkinded_param_modules"].get(c, [])})
        print(f"  {n:3d}  {c}  [{', '.join(arrays)}]")
    classes = collections.Counter()
    for rec in records.values():
        if rec["export"]["ok"]:
            classes.update(set(rec["export"]["module_classes"]))
    summary["export"]["module_classes_by_arch_count"] = [{"class": c, "archs": n} for c, n in
                                                         sorted(classes.items(), key=lambda kv: (-kv[1], kv[0]))]
    data = {"torch": torch.__version__, "transformers": transformers.__version__,
            "known_kinds": [k.name for k in kinds.all_kinds()], "architectures": records, "summary": summary}
    write_json(args.out, data)
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
