"""The site's stylesheet and the index page's script (both small; written into the site, no CDN)."""
from __future__ import annotations

from functools import cache

from pygments.formatters import HtmlFormatter

STYLE = "friendly"

_CSS = """
:root { --fg: #1a202c; --muted: #5a6478; --line: #d8dee9; --bg: #ffffff; --panel: #f7f9fc;
        --jax: #2b6cb0; --torch: #c53030; --shared: #2f855a; --pass: #276749; --fail: #c53030; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg);
       background: var(--bg); }
header.top { background: #1a202c; color: #e2e8f0; padding: 8px 20px; font-size: 14px; }
header.top a { color: #e2e8f0; margin-right: 14px; text-decoration: none; }
header.top a:hover, header.top a[aria-current] { text-decoration: underline; }
main { padding: 12px 20px 40px; max-width: 1600px; margin: 0 auto; }
footer { color: var(--muted); font-size: 12px; padding: 10px 20px; border-top: 1px solid var(--line); }
h1 { font-size: 24px; margin: 10px 0 6px; }
h2 { font-size: 19px; margin: 26px 0 8px; border-bottom: 1px solid var(--line); padding-bottom: 3px; }
h3 { font-size: 15px; margin: 0 0 6px; }
a { color: #2b6cb0; }
code, pre, .mono { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 13px; }
p.lead { color: var(--muted); margin-top: 0; }
.muted { color: var(--muted); }
.small { font-size: 13px; }
table.data { border-collapse: collapse; margin: 8px 0 14px; font-size: 13.5px; }
table.data th, table.data td { border: 1px solid var(--line); padding: 3px 8px; text-align: left; vertical-align: top; }
table.data th { background: var(--panel); white-space: nowrap; }
table.data td.num, table.data th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
table.data tr[hidden] { display: none; }
th[data-type] { cursor: pointer; user-select: none; }
th[data-type]::after { content: " \\2195"; color: #a0aec0; font-size: 11px; }
th[aria-sort="ascending"]::after { content: " \\25B2"; color: var(--fg); }
th[aria-sort="descending"]::after { content: " \\25BC"; color: var(--fg); }
.badge { display: inline-block; padding: 0 7px; border-radius: 9px; font-size: 12px; font-weight: 600; color: #fff; }
.badge.pass { background: var(--pass); } .badge.fail { background: var(--fail); }
.badge.na { background: #718096; }
.filters { display: flex; flex-wrap: wrap; gap: 14px; align-items: center; margin: 12px 0 4px;
           padding: 8px 10px; background: var(--panel); border: 1px solid var(--line); border-radius: 6px; }
.filters label { font-size: 13.5px; }
.filters select, .filters input { font: inherit; font-size: 13.5px; padding: 2px 4px; }
dl.env { display: grid; grid-template-columns: max-content 1fr; gap: 2px 14px; font-size: 13px; margin: 6px 0; }
dl.env dt { color: var(--muted); } dl.env dd { margin: 0; }
.cards { display: flex; gap: 12px; flex-wrap: wrap; margin: 8px 0; }
.card { border: 1px solid var(--line); border-radius: 6px; padding: 6px 12px; background: var(--panel); }
.card b { font-size: 18px; }
.traps { border-left: 4px solid #b7791f; background: #fffaf0; padding: 6px 12px; margin: 8px 0; }
.traps p { margin: 4px 0; }
.example { border-left: 4px solid var(--shared); background: #f0fff4; padding: 6px 12px; margin: 8px 0; }
.golden { background: #fefcbf; padding: 0 4px; border-radius: 3px; font-weight: 700; }
.code-row { display: grid; grid-template-columns: minmax(0, 1fr) minmax(0, 1fr); gap: 12px; margin: 10px 0;
            align-items: start; }
.code-col { display: flex; flex-direction: column; gap: 12px; min-width: 0; }
.code-row.shared { grid-template-columns: minmax(0, 1fr); }
.code-cell { border: 1px solid var(--line); border-radius: 6px; overflow: hidden; background: #fff; min-width: 0; }
.code-cell > h3 { padding: 5px 10px; margin: 0; font-size: 13.5px; background: var(--panel);
                  border-bottom: 1px solid var(--line); }
.code-cell.jax > h3 { border-top: 3px solid var(--jax); }
.code-cell.torch > h3 { border-top: 3px solid var(--torch); }
.code-cell.shared > h3 { border-top: 3px solid var(--shared); }
.code-cell.empty { color: var(--muted); padding: 10px; font-size: 13px; background: var(--panel); }
.code-cell .where { font-weight: normal; color: var(--muted); font-size: 12px; margin-left: 6px; }
.code-cell .hl { margin: 0; overflow-x: auto; }
.code-cell .hl pre { margin: 0; padding: 8px 10px; line-height: 1.4; font-size: 12px; white-space: pre-wrap;
                    overflow-wrap: anywhere; }
.hl pre > span[id] { display: block; padding-left: 6ch; text-indent: -6ch; }
.hl .linenos { display: inline-block; width: 5ch; margin-right: 1ch; text-indent: 0; text-align: right;
               color: #a0aec0; user-select: none; }
.kind { font-size: 11px; text-transform: uppercase; letter-spacing: .04em; color: var(--muted); margin: 18px 0 0; }
ul.toc { columns: 3 260px; font-size: 13px; margin: 6px 0; }
.charts { display: flex; flex-wrap: wrap; gap: 16px; margin-bottom: 10px; }
figure { margin: 0; }
svg.chart { background: #fff; border: 1px solid var(--line); border-radius: 4px; }
svg.chart .axis { stroke: #4a5568; stroke-width: 1; }
svg.chart .grid { stroke: #edf2f7; stroke-width: 1; }
svg.chart .limit { stroke: #b7791f; stroke-width: 1.5; stroke-dasharray: 4,3; }
svg.chart .plot-area { fill: #fff; stroke: #cbd5e0; }
svg.chart text { font: 10.5px system-ui, sans-serif; fill: #2d3748; }
svg.chart text.chart-title { font-size: 12px; font-weight: 600; }
pre.block { background: var(--panel); border: 1px solid var(--line); padding: 8px 10px; overflow-x: auto; }
img.plot { max-width: 100%; border: 1px solid var(--line); border-radius: 4px; }
.doc { max-width: 1000px; }
.doc table { border-collapse: collapse; font-size: 13.5px; }
.doc th, .doc td { border: 1px solid var(--line); padding: 3px 8px; vertical-align: top; }
.bench td { white-space: nowrap; }
.doc pre { background: var(--panel); padding: 8px 10px; overflow-x: auto; }
.repo-file { font-family: ui-monospace, monospace; font-size: 13px; }
@media (max-width: 900px) { .code-row { grid-template-columns: minmax(0, 1fr); } }
"""

INDEX_JS = """
(function () {
  "use strict";
  var table = document.getElementById("concepts");
  var tbody = table.tBodies[0];
  var group = document.getElementById("filter-group");
  var result = document.getElementById("filter-result");
  var text = document.getElementById("filter-text");
  var shown = document.getElementById("shown");
  function apply() {
    var n = 0, q = text.value.trim().toLowerCase();
    Array.prototype.forEach.call(tbody.rows, function (tr) {
      var ok = (!group.value || tr.dataset.group === group.value) &&
               (!result.value || tr.dataset.result === result.value) &&
               (!q || tr.dataset.name.indexOf(q) >= 0);
      tr.hidden = !ok;
      if (ok) { n += 1; }
    });
    shown.textContent = String(n);
    var h = [];
    if (group.value) { h.push("group=" + encodeURIComponent(group.value)); }
    if (result.value) { h.push("result=" + encodeURIComponent(result.value)); }
    try { history.replaceState(null, "", h.length ? "#" + h.join("&") : location.pathname); } catch (e) { /* some file:// pages refuse */ }
  }
  function key(tr, i, type) {
    var td = tr.cells[i];
    var v = td.hasAttribute("data-sort") ? td.getAttribute("data-sort") : td.textContent.trim();
    return type === "num" ? parseFloat(v) : v.toLowerCase();
  }
  function sortBy(th) {
    var i = th.cellIndex, type = th.dataset.type;
    var dir = th.getAttribute("aria-sort") === "ascending" ? -1 : 1;
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (h) { h.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", dir === 1 ? "ascending" : "descending");
    var rows = Array.prototype.slice.call(tbody.rows);
    rows.sort(function (a, b) {
      var x = key(a, i, type), y = key(b, i, type);
      return (x < y ? -1 : x > y ? 1 : 0) * dir;
    });
    rows.forEach(function (r) { tbody.appendChild(r); });
  }
  Array.prototype.forEach.call(table.querySelectorAll("th[data-type]"), function (th) {
    th.tabIndex = 0;
    th.addEventListener("click", function () { sortBy(th); });
    th.addEventListener("keydown", function (e) { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); sortBy(th); } });
  });
  location.hash.replace(/^#/, "").split("&").forEach(function (kv) {
    var p = kv.split("="), v = decodeURIComponent(p[1] || "");
    if (p[0] === "group" && group.querySelector("option[value='" + v.replace(/'/g, "") + "']")) { group.value = v; }
    if (p[0] === "result" && (v === "pass" || v === "fail")) { result.value = v; }
  });
  group.addEventListener("change", apply);
  result.addEventListener("change", apply);
  text.addEventListener("input", apply);
  apply();
})();
"""


@cache
def css() -> str:
    return _CSS + HtmlFormatter(style=STYLE).get_style_defs(".hl") + "\n"
