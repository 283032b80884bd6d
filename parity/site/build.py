"""Writes the site: index.html, one page per concept, docs/, and the training and benchmark pages.

Inputs are checked before anything runs (`check_train`, `check_bench`: UsageError naming the flag);
every file is written atomically (parity.console), so a reader never sees half a page.
"""
from __future__ import annotations

import datetime
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from parity import report, runner
from parity.concept import np_dtype
from parity.console import UsageError, write_bytes_atomic, write_json_atomic, write_text_atomic
from parity import sources
from parity.site import assets, docs, pages, svg

HALF_DTYPES = ("float16", "bfloat16")


@dataclass
class Site:
    date: str
    has_train: bool = False
    has_bench: bool = False


# ---------------------------------------------------------------- inputs: --train and --bench
def check_train(path: str | Path) -> list[tuple[Path, dict]]:
    """The `parity train` runs in `path`: the run folder itself, or the folders in it holding one."""
    p = Path(path)
    if not p.is_dir():
        raise UsageError(f"--train {p}: {'is a file' if p.exists() else 'no such folder'}, expected a "
                         f"`parity train` run folder (summary.json, loss.png) or the folder holding several")
    folders = [p] if (p / "summary.json").is_file() else sorted(d for d in p.iterdir() if (d / "summary.json").is_file())
    if not folders:
        raise UsageError(f"--train {p}: no summary.json in it or in its subfolders; expected a `parity train` "
                         f"run folder (summary.json, loss.png) or the --log-dir holding several")
    runs = []
    for f in folders:
        try:
            summary = json.loads((f / "summary.json").read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise UsageError(f"--train {f / 'summary.json'}: cannot read it as JSON ({e})") from None
        if not isinstance(summary, dict) or not isinstance(summary.get("config"), dict) \
                or not isinstance(summary.get("epochs"), list):
            raise UsageError(f"--train {f / 'summary.json'}: not a `parity train` summary (no config and epochs)")
        runs.append((f, summary))
    return runs


@dataclass
class Bench:
    device: str
    json: dict | None
    md: str | None
    pngs: list[Path] = field(default_factory=list)


def check_bench(path: str | Path) -> list[Bench]:
    """The `parity bench --out` results in `path`: bench-<device>.json and/or .md, and the plots."""
    p = Path(path)
    if not p.is_dir():
        raise UsageError(f"--bench {p}: {'is a file' if p.exists() else 'no such folder'}, expected a "
                         f"`parity bench --out` folder (bench-<device>.json, .md and PNG plots)")
    devices = sorted({f.name[len("bench-"):].rsplit(".", 1)[0] for f in (*p.glob("bench-*.json"), *p.glob("bench-*.md"))})
    if not devices:
        raise UsageError(f"--bench {p}: no bench-<device>.json or bench-<device>.md in it; expected a "
                         f"`parity bench --out` folder")
    out = []
    for dev in devices:
        doc, md = None, None
        if (p / f"bench-{dev}.json").is_file():
            try:
                doc = json.loads((p / f"bench-{dev}.json").read_text(encoding="utf-8"))
            except (OSError, ValueError) as e:
                raise UsageError(f"--bench {p / f'bench-{dev}.json'}: cannot read it as JSON ({e})") from None
            if not isinstance(doc, dict) or not str(doc.get("schema", "")).startswith("parity-bench/"):
                raise UsageError(f"--bench {p / f'bench-{dev}.json'}: not a `parity bench` file "
                                 f"(schema {doc.get('schema') if isinstance(doc, dict) else None!r})")
            problem = _bench_problem(doc)
            if problem:
                raise UsageError(f"--bench {p / f'bench-{dev}.json'}: {problem}")
        if (p / f"bench-{dev}.md").is_file():
            try:
                md = (p / f"bench-{dev}.md").read_text(encoding="utf-8")
            except (OSError, ValueError) as e:
                raise UsageError(f"--bench {p / f'bench-{dev}.md'}: cannot read it as UTF-8 text ({e})") from None
        out.append(Bench(dev, doc, md, sorted(f for f in p.glob(f"{dev}-*.png") if f.is_file())))
    return out


def _bench_problem(doc: dict) -> str:
    """What is wrong with the fields of a bench JSON file that the benchmarks page reads (`bench_context`),
    or "" (checked before anything runs, so a bad file never ends a report half written)."""
    def shown(v) -> str:
        text = json.dumps(v) if isinstance(v, (str, int, float, bool, type(None))) else type(v).__name__
        return text if len(text) <= 40 else text[:39] + "…"

    for name in ("environment", "settings", "modes"):  # modes may be null (older files: named by benchmarks/modes.py)
        if name in doc and not isinstance(doc[name], dict) and not (name == "modes" and doc[name] is None):
            return f"field {name!r} is {shown(doc[name])}, expected an object"
    if "modes" in doc and isinstance(doc["modes"], dict):
        for k, v in doc["modes"].items():
            if not isinstance(v, str):
                return f"field 'modes'[{k!r}] is {shown(v)}, expected a string describing the mode"
    if "seconds" in doc and (not isinstance(doc["seconds"], (int, float)) or isinstance(doc["seconds"], bool)
                             or not math.isfinite(doc["seconds"])):
        return f"field 'seconds' is {shown(doc['seconds'])}, expected a number of seconds"
    results = doc.get("results", [])
    if not isinstance(results, list):
        return f"field 'results' is {shown(results)}, expected a list of measurements"
    for i, r in enumerate(results):
        if not isinstance(r, dict):
            return f"field 'results'[{i}] is {shown(r)}, expected an object (one measurement)"
        if r.get("mode") is not None and not isinstance(r["mode"], str):
            return f"field 'results'[{i}].mode is {shown(r['mode'])}, expected a mode's name"
    return ""


def load_results(path: str | Path, concepts, dtypes, device: str, mode: str) -> dict:
    """Results to reuse from a `parity check --json` file or a report's results.json: those of the
    selected concepts, dtypes, device and precision, by (concept, dtype).

    Every record's fields are type-checked (UsageError naming the file and the field: exit 2 before
    anything runs or is written), and each reused verdict is recomputed from the recorded errors and
    tolerance (`report.recheck`): a file's `passed: true` beside errors the tolerance does not allow,
    or beside figures that disagree with its per-tensor comparisons, is a FAIL, with the reason among
    the result's failures."""
    p = Path(path)
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise UsageError(f"--results {p}: cannot read it as JSON ({e})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("results"), list):
        raise UsageError(f"--results {p}: not a results file (`parity check --json` or a report's results.json)")
    records = []
    for i, rec in enumerate(doc["results"]):
        try:
            records.append(report.result_from_record(rec, f"results[{i}]"))
        except report.RecordError as e:
            raise UsageError(f"--results {p}: {e}") from None
    by_name = {c.name: c for c in concepts}
    out = {}
    for r in records:
        if r.concept in by_name and r.dtype in dtypes and r.dtype in by_name[r.concept].dtypes \
                and r.device == device and r.precision == mode:
            out[(r.concept, r.dtype)] = _rechecked(r, by_name[r.concept], p)
    return out


def _rechecked(r: runner.Result, c, path: Path) -> runner.Result:
    """`r` with its verdict recomputed from its recorded figures (`report.recheck`)."""
    from parity import tolerances
    samples = _samples(c, r.dtype)
    half = _half_dtypes(r.dtype, samples)
    base, shown = runner.run_tolerance(r.dtype, r.device, r.precision)
    loosest = [shown, base] + [tolerances.HALF[h] for h in half]
    loose = tolerances.Tolerance(max(t.rtol for t in loosest), max(t.atol for t in loosest), "")
    c = c.at(r.dtype) if r.dtype in c.dtypes else c
    differentiable = c.differentiable and bool(c.grad_inputs or any(s.params for s in samples or ()))
    problems = report.recheck(r, shown, loose, differentiable)
    if r.passed and problems:  # a pass its figures do not support: FAIL, and why, among the failures
        r.failures = r.failures + [f"the results file {path} {p}" for p in problems]
        r.passed = False
    elif not (r.passed or r.error or r.failures):  # a failure the file gives no reason for
        r.failures = [f"the results file {path} records passed: false"]
    return r


def _samples(c, dtype: str):
    """The concept's samples as the runner generated them (seeded), or None where the generator fails."""
    try:
        return c.at(dtype).samples(np.random.default_rng(runner.SEED), np_dtype(dtype))
    except Exception:  # noqa: BLE001  (a generator that fails is reported by the run itself)
        return None


def _half_dtypes(dtype: str, samples) -> set[str]:
    """The float16/bfloat16 dtypes a run's comparisons may hold (they compare at tolerances.HALF): the
    run's own, those of its samples' arrays and dtype options; both where the samples cannot be generated."""
    if samples is None:
        return set(HALF_DTYPES)
    found = {dtype} & set(HALF_DTYPES)
    for s in samples:
        for v in (*s.inputs.values(), *s.params.values(), *s.kwargs.values()):
            if hasattr(v, "dtype") and not isinstance(v, type):  # an array
                v = v.dtype
            elif not isinstance(v, (str, np.dtype, type)) and not type(v).__module__.startswith("torch"):
                continue
            name = str(getattr(v, "__name__", v)).rsplit(".", 1)[-1]  # "bfloat16", torch.float16, np.float16
            if name in HALF_DTYPES:
                found.add(name)
    return found


# ---------------------------------------------------------------- the index
def _short(dtype: str) -> str:
    return {"float32": "f32", "float64": "f64", "float16": "f16", "bfloat16": "bf16", "complex64": "c64",
            "complex128": "c128"}.get(dtype, dtype)


def _cell(r: runner.Result, which: str) -> tuple[str, float]:
    n = getattr(r, f"n_{which}")
    if n:
        v = getattr(r, f"{which}_abs")
        return pages.fmt_err(v), (v if math.isfinite(v) else 1e300)
    if which == "out" and r.exact_out:
        return ("equal" if not r.exact_differ else f"{r.exact_differ} differ"), (0.0 if not r.exact_differ else 1e300)
    return "n/a", -1.0


def index_row(c, results: list[runner.Result]) -> dict:
    row = {"name": c.name, "group": c.group, "summary": c.summary, "dtypes": [r.dtype for r in results],
           "device": ", ".join(dict.fromkeys(r.device for r in results)) or "—",
           "n_samples": max((r.n_samples for r in results), default=0)}
    for which in ("out", "grad"):
        cells = [(_short(r.dtype), *_cell(r, which)) for r in results]
        row[f"{which}_cells"] = [f"{d} {text}" for d, text, _ in cells]
        row[f"{which}_sort"] = max((v for *_, v in cells), default=-1.0)
    row["tol_cells"] = [f"{_short(r.dtype)} {r.rtol:.2g} / {r.atol:.2g}" for r in results]
    row["tol_sort"] = max((r.atol for r in results), default=0.0)
    failing = [r.dtype for r in results if not r.passed]
    row["result"] = "fail" if failing else ("pass" if results else "na")
    row["failing"] = f"fails in {', '.join(failing)}" if failing else ""
    return row


def environment_rows(env: dict, extra: dict) -> list[tuple[str, str]]:
    rows = [(k, ", ".join(map(str, v)) if isinstance(v, (list, tuple)) else str(v)) for k, v in env.items()]
    return rows + [(k, str(v)) for k, v in extra.items()]


# ---------------------------------------------------------------- concept pages
def _sample_inputs(c, dtype: str) -> dict[str, list[str]]:
    """Each sample's inputs and parameters as "name shape dtype", regenerated from the runner's seed
    (the sample generators are seeded, so these are the arrays that were compared)."""
    samples = _samples(c, dtype)
    if samples is None:  # a generator that fails is reported by the run itself
        return {}
    out = {}
    for s in samples:
        out[s.label] = ([f"{k} {tuple(np.shape(v))} {np.asarray(v).dtype}" for k, v in s.inputs.items()] +
                        [f"{k} {tuple(np.shape(v))} {np.asarray(v).dtype} (param)" for k, v in s.params.items()])
    return out


def _half_tolerance(inputs: dict[str, list[str]]) -> float | None:
    from parity.tolerances import HALF
    for lines in inputs.values():
        for line in lines:
            for dt in HALF_DTYPES:
                if f" {dt}" in line and dt in HALF:
                    return HALF[dt].atol
    return None


def result_context(c, r: runner.Result) -> dict:
    inputs = _sample_inputs(c, r.dtype)
    half = _half_tolerance(inputs)
    atol = half or r.atol
    samples: dict[str, dict] = {}
    for comp in r.comparisons:
        s = samples.setdefault(comp["sample"], {"label": comp["sample"], "inputs": inputs.get(comp["sample"], []),
                                                "tensors": []})
        if comp.get("exact"):
            abs_, rel, ratio = ("equal" if not comp["differ"] else f"{comp['differ']} differ"), "exact", "—"
        else:
            abs_, rel = pages.fmt_err(comp["max_abs"]), pages.fmt_err(comp["max_rel"])
            ratio = "—" if not math.isfinite(comp["max_abs"]) else (
                "0" if comp["max_abs"] == 0 else f"{comp['max_abs'] / atol:.2g}")
        s["tensors"].append({"what": comp["what"], "shape": str(tuple(comp["shape"])), "abs": abs_, "rel": rel,
                             "ratio": ratio, "ok": comp["ok"], "problem": comp.get("problem", "")})
    ctx = {k: getattr(r, k) for k in ("dtype", "device", "precision", "passed", "error", "failures", "rtol",
                                      "atol", "tol_source", "n_samples", "seconds")}
    ctx.update(samples=list(samples.values()), half=half, histogram=pages.histogram(r, atol))
    return ctx


def concept_page(c, results: list[runner.Result], site: Site, prev: str | None, next_: str | None) -> str:
    rows = sources.rows(c)
    result = "fail" if any(not r.passed for r in results) else ("pass" if results else "na")
    return pages.render("concept", title=c.name, root="../", active="concept", site=site, c=c, rows=rows,
                        display=sources.display_rows(rows),
                        n_functions=sum(len(r.sources()) for r in rows), result=result,
                        traps=docs.concept_traps(c), examples=docs.worked_examples(c.name),
                        results=[result_context(c, r) for r in results], prev=prev, next=next_,
                        md=pages.markdown_inline("concepts"))


# ---------------------------------------------------------------- training
def _events(folder: Path, tag: str) -> list[float] | None:
    if not folder.is_dir():
        return None
    try:
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
        acc = EventAccumulator(str(folder), size_guidance={"scalars": 0})
        acc.Reload()
        if tag not in acc.Tags().get("scalars", []):
            return None
        return [e.value for e in sorted(acc.Scalars(tag), key=lambda e: e.step)]
    except Exception:  # noqa: BLE001  (unreadable events: the page says so and uses the epochs)
        return None


def _f(x, spec=".4f") -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


def train_context(folder: Path, summary: dict, out: Path, key: str) -> dict:
    cfg = summary["config"]
    fws = [fw for fw in ("jax", "torch") if any(fw in e for e in summary["epochs"])]
    notes = []
    losses = {fw: _events(folder / fw, "loss/train_step") for fw in fws}
    if summary.get("complete") is False:  # `parity train` interrupted: finished epochs only, no events
        notes.append(f"Interrupted run: {len(summary['epochs'])} of {cfg.get('epochs', '?')} epochs finished; "
                     "no verdict, checkpoints or events were written.")
        losses = {fw: summary.get("step_losses", {}).get(fw) for fw in fws}
    if any(v is None for v in losses.values()):
        notes.append("Per-step losses: no TensorBoard events found for "
                     f"{', '.join(fw for fw, v in losses.items() if v is None)}; the curves show per-epoch means.")
        losses = {fw: [e[fw]["train_loss"] for e in summary["epochs"] if fw in e] for fw in fws}
    charts = [svg.lines({fw: (list(range(1, len(v) + 1)), v) for fw, v in losses.items()},
                        "training loss per step", "step", "loss", colors=svg.COLORS)]
    if len(fws) == 2:
        a, b = (np.asarray(losses[fw], np.float64) for fw in fws)
        n = min(len(a), len(b))
        d = np.abs(a[:n] - b[:n])
        charts.append(svg.lines({"|jax − torch|": (list(range(1, n + 1)), d.tolist())},
                                f"per-step loss difference ({int(np.sum(d == 0))} of {n} steps equal)",
                                "step", "absolute difference (log)", log_y=True, colors={"|jax − torch|": svg.COLORS["diff"]}))
    metric = "test_loss" if cfg.get("model") == "linear_regression" else "test_accuracy"
    epochs = summary["epochs"]
    if epochs:
        label = metric.replace("_", " ")
        per = {fw: [e[fw].get(metric, math.nan) for e in epochs if fw in e] for fw in fws}
        charts.append(svg.lines({fw: (list(range(1, len(v) + 1)), v) for fw, v in per.items()},
                                f"{label} per epoch", "epoch", label, colors=svg.COLORS))
    headers = [f"{fw} {h}" for fw in fws for h in ("train loss", metric.replace("_", " "))]
    if len(fws) == 2:
        headers += ["|Δ train loss|", f"|Δ {metric.replace('_', ' ')}|"]
    rows = []
    for e in epochs:
        row = [str(e.get("epoch", ""))]
        for fw in fws:
            row += [_f(e.get(fw, {}).get("train_loss"), ".6f"), _f(e.get(fw, {}).get(metric))]
        if len(fws) == 2:
            ja, to = e.get("jax", {}), e.get("torch", {})
            for k in ("train_loss", metric):
                row.append(_f(abs(ja[k] - to[k]), ".2e") if k in ja and k in to else "—")
        rows.append(row)
    steps = summary.get("steps")
    times = []
    for fw in fws:
        rest = summary.get("train_seconds_after_first_step", {}).get(fw)
        first = summary.get("first_step_seconds_with_compile", {}).get(fw)
        n_epochs = max(len(epochs), 1)
        times.append({"fw": fw, "steps": steps if steps is not None else "—", "first": _f(first, ".2f"),
                      "rest": _f(rest, ".2f"), "per_epoch": _f(rest / n_epochs if rest is not None else None, ".2f"),
                      "per_step": _f(1000 * rest / (steps - 1) if rest is not None and steps and steps > 1 else None,
                                     ".2f")})
    verdicts = [{"name": k.replace("_", " "), "ok": bool(summary[k].get("ok")), "summary": summary[k].get("summary", "")}
                for k in ("loss_curve", "test_accuracy") if isinstance(summary.get(k), dict)]
    cross = []
    for k, rec in (summary.get("cross_load") or {}).items():
        acc = (f"{rec['test_accuracy_src']:.4f} → {rec['test_accuracy_dst']:.4f}"
               if "test_accuracy_src" in rec else "—")
        cross.append((k, {"diff": pages.fmt_err(rec.get("max_abs_output_diff", math.nan)), "acc": acc}))
    png = None
    if (folder / "loss.png").is_file():
        data = (folder / "loss.png").read_bytes()
        write_bytes_atomic(out / "training" / f"{key}.png", lambda f: f.write(data))
        png = f"training/{key}.png"
    else:
        notes.append("No loss.png in the run folder.")
    shown = ("model", "optimizer", "data", "dtype", "device", "epochs", "batch_size", "lr", "momentum",
             "weight_decay", "seed", "framework")
    return {"id": key, "name": folder.name, "config": [(k, cfg[k]) for k in shown if k in cfg],
            "charts": charts, "png": png, "epoch_headers": headers, "epoch_rows": rows, "times": times,
            "verdicts": verdicts, "cross": cross, "notes": notes}


# ---------------------------------------------------------------- benchmarks
def bench_context(benches: list[Bench], out: Path) -> dict:
    try:
        from benchmarks.modes import ALL_MODES, REFERENCE
        from benchmarks.suite import LEGEND, RATIO_LEGEND
    except Exception:  # noqa: BLE001  (an older benchmarks package: the table's own legend still shows)
        ALL_MODES, REFERENCE, LEGEND, RATIO_LEGEND = {}, "torch-eager", "see the line under the table", ""
    items, modes = [], {}
    for b in benches:
        # the modes measured, as the file describes them (older files: by name, from benchmarks/modes.py)
        doc_modes = (b.json or {}).get("modes") or {}
        for r in (b.json or {}).get("results", []):
            m = r.get("mode")
            if m and m not in modes:
                modes[m] = doc_modes.get(m) or ALL_MODES.get(m, "")
        pngs = []
        for p in b.pngs:
            data = p.read_bytes()
            write_bytes_atomic(out / "benchmarks" / p.name, lambda f, d=data: f.write(d))
            pngs.append({"src": f"benchmarks/{p.name}", "name": p.stem})
        envd = (b.json or {}).get("environment", {})
        settings = (b.json or {}).get("settings", {})
        keys = ("cpu", "cuda_device", "torch", "jax", "flax", "torch_threads", "python", "platform")
        env_rows = [(k, envd[k]) for k in keys if k in envd]
        env_rows += [(k, settings[k]) for k in ("dtype", "precision", "repeats", "max_time_s", "repeat_runs", "full")
                     if k in settings]
        if b.json and "seconds" in b.json:
            env_rows.append(("took", f"{b.json['seconds']:.0f} s"))
        table = docs.render(b.md, page_dir="", source_dir="docs") if b.md else None
        items.append({"id": f"bench-{b.device}", "title": f"{b.device}", "env": env_rows, "table": table, "pngs": pngs})
    return {"benches": items, "legend": LEGEND, "ratio_legend": RATIO_LEGEND, "reference": REFERENCE,
            "modes": list((modes or ALL_MODES).items()),
            "sources": [f"bench-{b.device}.{'json' if b.json else 'md'}" for b in benches]}


# ---------------------------------------------------------------- the whole site
def write_site(out: Path, concepts, results: list[runner.Result], *, dtypes, device: str, precision: str,
               jobs: int, run_seconds: float, train=None, bench=None, extra_env: dict | None = None,
               on_page=None) -> list[Path]:
    """Every page of the site under `out`; returns the files written."""
    site = Site(date=datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
                has_train=bool(train), has_bench=bool(bench))
    written: list[Path] = []

    def put(rel: str, text: str):
        written.append(write_text_atomic(text, out / rel))

    put("assets/site.css", assets.css())
    by_concept: dict[str, list[runner.Result]] = {c.name: [] for c in concepts}
    for r in results:
        by_concept.setdefault(r.concept, []).append(r)
    env = report.environment()
    rows = [index_row(c, by_concept[c.name]) for c in concepts]
    put("index.html", pages.render(
        "index", title="Concepts", root="", active="index", site=site, concepts=rows,
        groups=sorted({c.group for c in concepts}), dtypes=list(dtypes), device=device, precision=precision,
        n_pass=sum(r["result"] == "pass" for r in rows), n_fail=sum(r["result"] == "fail" for r in rows),
        run_seconds=run_seconds, jobs=jobs, env=environment_rows(env, extra_env or {}),
        script=pages.Markup(assets.INDEX_JS)))
    written.append(write_json_atomic({**report.results_json(results), "dtypes": list(dtypes)}, out / "results.json"))
    names = [c.name for c in concepts]
    for i, c in enumerate(concepts):
        put(f"concepts/{c.name}.html", concept_page(c, by_concept[c.name], site,
                                                    names[i - 1] if i else None,
                                                    names[i + 1] if i + 1 < len(names) else None))
        if on_page:
            on_page(c.name)
    for md in docs.doc_files():
        body = docs.render(md.read_text(encoding="utf-8"), page_dir="docs", source_dir="docs")
        title = next((ln[2:].strip() for ln in md.read_text(encoding="utf-8").splitlines() if ln.startswith("# ")),
                     md.stem)
        put(f"docs/{md.stem}.html", pages.render("doc", title=title, root="../", active=md.name, site=site,
                                                  source=f"docs/{md.name}", body=pages.Markup(body)))
    if train:
        used: set[str] = set()
        runs = []
        for folder, summary in train:
            key = re.sub(r"[^A-Za-z0-9_.-]+", "_", folder.name) or "run"
            while key in used:
                key += "_"
            used.add(key)
            runs.append(train_context(folder, summary, out, key))
        put("training.html", pages.render("train", title="Training", root="", active="train", site=site, runs=runs))
    if bench:
        put("benchmarks.html", pages.render("bench", title="Benchmarks", root="", active="bench", site=site,
                                            **bench_context(bench, out)))
    return written
