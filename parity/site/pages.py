"""The site's pages as HTML strings: jinja2 templates (autoescaped) fed with plain data.

Every page is static and self-contained: one stylesheet (assets/site.css) beside it, the index's
filter and sort script inline, charts as inline SVG, no request leaves the folder.
"""
from __future__ import annotations

import math
import re
from functools import cache

import jinja2
from markupsafe import Markup
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import PythonLexer

from parity import sources
from parity.site import assets, docs, svg

BASE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>{{ title }} · twin-dl-parity report</title>
<link rel="stylesheet" href="{{ root }}assets/site.css">
</head>
<body>
<header class="top">
<a href="{{ root }}index.html"{% if active == 'index' %} aria-current="page"{% endif %}>Concepts</a>
{% if site.has_train %}<a href="{{ root }}training.html"{% if active == 'train' %} aria-current="page"{% endif %}>Training</a>{% endif %}
{% if site.has_bench %}<a href="{{ root }}benchmarks.html"{% if active == 'bench' %} aria-current="page"{% endif %}>Benchmarks</a>{% endif %}
<a href="{{ root }}docs/traps.html"{% if active == 'traps.md' %} aria-current="page"{% endif %}>Traps</a>
<a href="{{ root }}docs/concepts.html"{% if active == 'concepts.md' %} aria-current="page"{% endif %}>Worked examples</a>
<a href="{{ root }}docs/measurements.html"{% if active == 'measurements.md' %} aria-current="page"{% endif %}>Measurements</a>
</header>
<main>
{% block main %}{% endblock %}
</main>
<footer>twin-dl-parity · generated {{ site.date }} by <code>parity report --html</code></footer>
</body>
</html>
"""

INDEX = """{% extends "base" %}{% block main %}
<h1>JAX + Flax NNX vs PyTorch: every concept, side by side</h1>
<p class="lead">Each concept runs in both frameworks on the same inputs; outputs and gradients (vector-Jacobian
products with one random cotangent) are compared elementwise: a tensor passes when
|jax − torch| ≤ atol + rtol·|torch| everywhere.</p>
<div class="cards">
<div class="card"><b>{{ concepts|length }}</b> concepts</div>
<div class="card"><b>{{ n_pass }}</b> pass</div>
<div class="card"><b>{{ n_fail }}</b> fail</div>
<div class="card">dtypes <b>{{ dtypes|join(', ') }}</b></div>
<div class="card">device <b>{{ device }}</b>, precision <b>{{ precision }}</b></div>
<div class="card">ran in <b>{{ '%.0f'|format(run_seconds) }} s</b>{% if jobs > 1 %} ({{ jobs }} workers){% endif %}</div>
</div>
<p>
{% if site.has_train %}<a href="training.html">Training runs</a> · {% endif %}
{% if site.has_bench %}<a href="benchmarks.html">Benchmarks</a> · {% endif %}
<a href="docs/traps.html">The 29 traps</a> · <a href="docs/concepts.html">Worked examples</a> ·
<a href="results.json">results.json</a></p>
<form class="filters" onsubmit="return false">
<label>group <select id="filter-group"><option value="">all groups</option>
{% for g in groups %}<option value="{{ g }}">{{ g }}</option>{% endfor %}</select></label>
<label>result <select id="filter-result"><option value="">all</option><option value="pass">pass</option>
<option value="fail">fail</option></select></label>
<label>name <input id="filter-text" type="search" placeholder="e.g. pool" size="14"></label>
<span class="small muted">showing <b id="shown">{{ concepts|length }}</b> of {{ concepts|length }}; click a column heading to sort</span>
</form>
<table class="data" id="concepts">
<thead><tr>
<th data-type="text">group</th><th data-type="text">concept</th><th data-type="text">dtypes</th>
<th data-type="text">device</th><th data-type="num" class="num">worst output error</th>
<th data-type="num" class="num">worst gradient error</th><th data-type="num" class="num">tolerance (rtol / atol)</th>
<th data-type="num" class="num">samples</th><th data-type="text">result</th>
</tr></thead>
<tbody>
{% for c in concepts %}<tr data-group="{{ c.group }}" data-result="{{ c.result }}" data-name="{{ c.name|lower }}">
<td>{{ c.group }}</td>
<td><a href="concepts/{{ c.name }}.html">{{ c.name }}</a><div class="small muted">{{ c.summary }}</div></td>
<td>{{ c.dtypes|join(', ') }}</td>
<td>{{ c.device }}</td>
<td class="num mono" data-sort="{{ c.out_sort }}">{% for l in c.out_cells %}{{ l }}<br>{% endfor %}</td>
<td class="num mono" data-sort="{{ c.grad_sort }}">{% for l in c.grad_cells %}{{ l }}<br>{% endfor %}</td>
<td class="num mono" data-sort="{{ c.tol_sort }}">{% for l in c.tol_cells %}{{ l }}<br>{% endfor %}</td>
<td class="num" data-sort="{{ c.n_samples }}">{{ c.n_samples }}</td>
<td data-sort="{{ c.result }}"><span class="badge {{ c.result }}">{{ c.result|upper }}</span>{% if c.failing %}<div class="small">{{ c.failing }}</div>{% endif %}</td>
</tr>
{% endfor %}</tbody>
</table>
<p class="small muted">Errors are the largest |jax − torch| over every compared tensor (per dtype); "0" is bitwise
equal, "n/a" nothing of that kind compared (not differentiable, or integer outputs compared exactly: "equal").
float16 and bfloat16 arrays (a concept's float16 and bfloat16 runs) compare at their own tolerance, 8 ulps of (1 + |torch|).</p>
<h2>Environment</h2>
<dl class="env">
<dt>generated</dt><dd>{{ site.date }}</dd>
{% for k, v in env %}<dt>{{ k }}</dt><dd>{{ v }}</dd>
{% endfor %}</dl>
<script>{{ script }}</script>
{% endblock %}"""

CONCEPT = """{% extends "base" %}{% block main %}
<p class="small"><a href="../index.html#group={{ c.group }}">{{ c.group }}</a>
{% if prev %} · previous: <a href="{{ prev }}.html">{{ prev }}</a>{% endif %}
{% if next %} · next: <a href="{{ next }}.html">{{ next }}</a>{% endif %}</p>
<h1>{{ c.name }} <span class="badge {{ result }}">{{ result|upper }}</span></h1>
<p class="lead">{{ c.summary }}</p>
<p class="small">covers: {% for n in c.covers %}<code>{{ n }}</code>{% if not loop.last %}, {% endif %}{% endfor %}
({{ n_functions }} functions and classes run, listed below)</p>

<h2>The framework difference</h2>
<div class="traps">
{% for t in traps.primary %}<p><a href="../docs/traps.html#{{ t.anchor }}"><b>Trap {{ t.number }}: {{ t.title }}</b></a>. {{ md(t.summary) }}</p>
{% endfor %}
{% for n in traps.notes %}<p><a href="../docs/traps.html#other-differences-found-along-the-way"><b>{{ n.title }}</b></a>. {{ md(n.text) }}</p>
{% endfor %}
{% if not traps.primary and not traps.notes %}<p>No numbered trap is specific to this concept: with the twins'
settings both frameworks compute the same function, and the comparison below measures only rounding.</p>{% endif %}
{% if traps.related %}<p class="small">Also cited by the covered modules: {% for t in traps.related %}<a href="../docs/traps.html#{{ t.anchor }}">trap {{ t.number }} ({{ t.title }})</a>{% if not loop.last %}, {% endif %}{% endfor %}.</p>{% endif %}
</div>

{% if examples %}<h2>Worked example{% if examples|length > 1 %}s{% endif %} (docs/concepts.md)</h2>
{% for section, rows_ in examples|groupby('section', default='') %}<div class="example">
<p class="small"><a href="../docs/concepts.html#{{ rows_[0].anchor }}">§{{ section }}</a></p>
{% for b in rows_[0].code_blocks %}<pre class="block">{{ b }}</pre>{% endfor %}
<table class="data"><thead><tr>{% for k in rows_[0].cells %}<th>{{ k }}</th>{% endfor %}</tr></thead><tbody>
{% for e in rows_ %}<tr>{% for k, v in e.cells.items() %}<td>{{ md(v) }}</td>{% endfor %}</tr>{% endfor %}
</tbody></table>
{% set goldens = rows_|map(attribute='goldens')|sum(start=[]) %}
{% if goldens %}<p>Golden value{% if goldens|length > 1 %}s{% endif %}: {% for g in goldens %}<span class="golden">{{ g }}</span>{% if not loop.last %}; {% endif %}{% endfor %}</p>{% endif %}
</div>{% endfor %}{% endif %}

<h2 id="results">Results</h2>
{% if not results %}<p class="muted">Not run in this report.</p>{% endif %}
<div class="charts">{% for r in results %}{{ r.histogram|safe }}{% endfor %}</div>
{% for r in results %}
<h3 id="results-{{ r.dtype }}">{{ r.dtype }} on {{ r.device }}, precision {{ r.precision }}:
<span class="badge {{ 'pass' if r.passed else 'fail' }}">{{ 'PASS' if r.passed else 'FAIL' }}</span></h3>
<p class="small">tolerance rtol {{ '%.2g'|format(r.rtol) }}, atol {{ '%.2g'|format(r.atol) }}: {{ r.tol_source }}
· {{ r.n_samples }} samples · {{ '%.2f'|format(r.seconds) }} s{% if r.half %} · float16 arrays at rtol = atol = {{ '%.2g'|format(r.half) }} (8 ulps){% endif %}</p>
{% if r.error %}<pre class="block">{{ r.failures|join('\\n') }}</pre>{% elif r.failures %}<ul>{% for f in r.failures %}<li class="small">{{ f }}</li>{% endfor %}</ul>{% endif %}
{% if r.samples %}<table class="data">
<thead><tr><th>sample</th><th>inputs</th><th>tensor</th><th>shape</th><th class="num">max |jax − torch|</th>
<th class="num">max rel</th><th class="num">÷ atol</th><th>result</th></tr></thead><tbody>
{% for s in r.samples %}{% for t in s.tensors %}<tr>
{% if loop.first %}<td rowspan="{{ s.tensors|length }}">{{ s.label }}</td><td rowspan="{{ s.tensors|length }}" class="small mono">{% for i in s.inputs %}{{ i }}<br>{% endfor %}</td>{% endif %}
<td class="mono">{{ t.what }}</td><td class="mono">{{ t.shape }}</td>
<td class="num mono">{{ t.abs }}</td><td class="num mono">{{ t.rel }}</td><td class="num mono">{{ t.ratio }}</td>
<td>{% if t.ok %}<span class="badge pass">ok</span>{% else %}<span class="badge fail">fail</span> <span class="small">{{ t.problem }}</span>{% endif %}</td>
</tr>{% endfor %}{% endfor %}
</tbody></table>{% elif not r.error %}<p class="muted small">No per-tensor records (results loaded from a file written without them).</p>{% endif %}
{% endfor %}

<h2 id="code">The code: every function it runs</h2>
<p class="small">JAX (<code>jax_impl</code>, Flax NNX, NHWC) on the left, PyTorch (<code>torch_impl</code>, NCHW) on the
right. Found from <code>covers</code> by reading the source: each name that resolves to a function or class of
<code>jax_impl</code>, <code>torch_impl</code> or <code>shape_rules</code>, followed until nothing new turns up.</p>
<ul class="toc">{% for row in rows %}{% for s in row.sources() %}<li><a href="#{{ s.anchor }}"><code>{{ s.name }}</code></a></li>{% endfor %}{% endfor %}</ul>
{% for row in display %}
{% if loop.first or row.kind != display[loop.index0 - 1].kind %}<p class="kind">{{ kinds[row.kind] }}</p>{% endif %}
{% if row.kind == 'shared' %}<div class="code-row shared">{{ cell(row.shared, 'shared', 'called by ' ~ (row.callers|map('label')|join(' and '))) }}</div>
{% else %}<div class="code-row">
<div class="code-col">{% for s in row.left %}{{ cell(s, 'jax', '') }}{% else %}<div class="code-cell empty">{{ row.left_empty }}</div>{% endfor %}</div>
<div class="code-col">{% for s in row.right %}{{ cell(s, 'torch', '') }}{% else %}<div class="code-cell empty">{{ row.right_empty }}</div>{% endfor %}</div>
</div>{% endif %}
{% endfor %}
{% endblock %}"""

DOC = """{% extends "base" %}{% block main %}
<p class="small muted">Rendered from <code>{{ source }}</code>.</p>
<article class="doc">{{ body|safe }}</article>
{% endblock %}"""

TRAIN = """{% extends "base" %}{% block main %}
<h1>Training runs</h1>
<p class="lead">From <code>parity train</code> run folders: both frameworks start from the same weights and see the
same batches. The curves are the per-step training losses (TensorBoard events), the difference is
|jax − torch| per step on a log scale (steps where the two are equal are not drawn).</p>
{% for run in runs %}
<h2 id="{{ run.id }}">{{ run.name }}</h2>
<p class="small">{% for k, v in run.config %}<b>{{ k }}</b> {{ v }}{% if not loop.last %} · {% endif %}{% endfor %}</p>
{% for v in run.verdicts %}<p><span class="badge {{ 'pass' if v.ok else 'fail' }}">{{ 'AGREE' if v.ok else 'DIFFER' }}</span>
<b>{{ v.name }}</b>: {{ v.summary }}</p>{% endfor %}
<div class="charts">{% for chart in run.charts %}{{ chart|safe }}{% endfor %}</div>
{% if run.png %}<p><img class="plot" src="{{ run.png }}" alt="loss curves of {{ run.name }} (parity train's loss.png)"></p>{% endif %}
<table class="data"><thead><tr><th>epoch</th>{% for h in run.epoch_headers %}<th class="num">{{ h }}</th>{% endfor %}</tr></thead>
<tbody>{% for row in run.epoch_rows %}<tr>{% for v in row %}<td class="num mono">{{ v }}</td>{% endfor %}</tr>{% endfor %}</tbody></table>
<table class="data"><thead><tr><th>framework</th><th class="num">steps</th><th class="num">first step s (compile)</th>
<th class="num">other steps s</th><th class="num">s per epoch (after the first step)</th><th class="num">ms per step</th></tr></thead>
<tbody>{% for t in run.times %}<tr><td>{{ t.fw }}</td><td class="num">{{ t.steps }}</td><td class="num">{{ t.first }}</td>
<td class="num">{{ t.rest }}</td><td class="num">{{ t.per_epoch }}</td><td class="num">{{ t.per_step }}</td></tr>{% endfor %}</tbody></table>
{% if run.cross %}<table class="data"><thead><tr><th>cross-load</th><th class="num">max output difference</th>
<th class="num">test accuracy before → after</th></tr></thead><tbody>
{% for k, v in run.cross %}<tr><td>{{ k }}</td><td class="num mono">{{ v.diff }}</td><td class="num mono">{{ v.acc }}</td></tr>{% endfor %}
</tbody></table>{% endif %}
{% if run.notes %}<p class="small muted">{{ run.notes|join(' ') }}</p>{% endif %}
{% endfor %}
{% endblock %}"""

BENCH = """{% extends "base" %}{% block main %}
<h1>Benchmarks</h1>
<p class="lead">From <code>parity bench</code> ({{ sources|join(', ') }}).</p>
<h2>How to read them</h2>
<ul>
<li><b>Plots</b>, one per workload: on the left, the median seconds per call against the size (log-log), one line
per mode, the interquartile range shaded; on the right, the speedup of jit over JAX op by op
(<code>jit×</code> = jax-eager / jax-jit) and of torch.compile over torch eager (<code>compile×</code>), with 1× marked.
Lower is faster on the left, higher is faster on the right. A workload with modes of its own (named above its
table, with what each one's ratio is against) shows on the right each mode's time relative to the mode it is
compared with, the 95 % interval shaded: there, below 1 is faster.</li>
<li><b>Table</b>: {{ legend }}</li>
{% if ratio_legend %}<li><b>Ratios</b>, under each table: {{ ratio_legend }}. The suite's modes are compared with
<code>{{ reference }}</code>; a column headed <code>a / b</code> is mode a's time over mode b's.</li>{% endif %}
<li><b>Modes</b>:<dl class="env">{% for k, v in modes %}<dt><code>{{ k }}</code></dt><dd>{{ v }}</dd>{% endfor %}</dl></li>
</ul>
{% for b in benches %}
<h2 id="{{ b.id }}">{{ b.title }}</h2>
{% if b.env %}<dl class="env">{% for k, v in b.env %}<dt>{{ k }}</dt><dd>{{ v }}</dd>{% endfor %}</dl>{% endif %}
<div class="charts">{% for p in b.pngs %}<figure><img class="plot" src="{{ p.src }}" alt="{{ p.name }}"><figcaption class="small">{{ p.name }}</figcaption></figure>{% endfor %}</div>
{% if b.table %}<div class="doc bench">{{ b.table|safe }}</div>{% endif %}
{% endfor %}
{% endblock %}"""


def code_html(src: sources.Source) -> Markup:
    return _highlighted(src.text, src.line, src.name)


@cache  # a shared helper appears on many pages: highlighted once (most of the pages' writing time)
def _highlighted(text: str, line: int, name: str) -> Markup:
    # one span per line (linespans), so that a wrapped line hangs indented after its line number
    fmt = HtmlFormatter(style=assets.STYLE, cssclass="hl", linenos="inline", linenostart=line,
                        linespans="L-" + re.sub(r"[^A-Za-z0-9_-]", "-", name))
    return Markup(highlight(text, PythonLexer(), fmt))


def _cell(src: sources.Source, kind: str, note: str) -> Markup:
    label = {"jax": "JAX", "torch": "PyTorch", "shared": "shared"}[kind]
    head = (f'<h3 id="{Markup.escape(src.anchor)}"><span class="muted small">{label}</span> '
            f'<code>{Markup.escape(src.name)}</code><span class="where">{Markup.escape(src.path)}:{src.line}'
            f'{" · " + Markup.escape(note) if note else ""}</span></h3>')
    return Markup(f'<div class="code-cell {kind}">{head}{code_html(src)}</div>')


@cache
def env() -> jinja2.Environment:
    e = jinja2.Environment(loader=jinja2.DictLoader({"base": BASE, "index": INDEX, "concept": CONCEPT, "doc": DOC,
                                                     "train": TRAIN, "bench": BENCH}),
                           autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=False)
    e.filters["label"] = lambda pkg: sources.LABELS.get(pkg, pkg)
    e.globals["cell"] = _cell
    e.globals["kinds"] = sources.KINDS
    return e


def fmt_err(x: float) -> str:
    if x == 0:
        return "0"
    if not math.isfinite(x):
        return "∞"
    return f"{x:.2e}"


def render(template: str, **ctx) -> str:
    return env().get_template(template).render(**ctx)


def markdown_inline(page_dir: str):
    return lambda text: Markup(docs.render_inline(text, page_dir=page_dir))


def histogram(result, atol: float) -> str:
    """The per-tensor errors of one result as a small SVG histogram (a dashed line at `atol`)."""
    errs = []
    for c in result.comparisons:
        if c.get("exact"):
            errs.append((0.0, c["what"], True) if c["ok"] else (math.inf, c["what"], False))
        elif not math.isfinite(c["max_abs"]):
            errs.append((math.inf, c["what"], False))
        else:
            errs.append((c["max_abs"], c["what"], True))
    return svg.histogram(errs, atol, f"{result.dtype}: {len(errs)} tensors compared")
