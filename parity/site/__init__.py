"""The side-by-side report: a static HTML site of every concept (`parity report --html DIR`).

`docs` reads the traps and worked examples out of docs/ and renders its Markdown, `svg` draws the
small charts, `pages` holds the templates, `build` writes the site, and `browser` drives headless
Chromium for the tests and scripts/screenshots.py. What it builds on lies below it, in the engine:
parity/sources.py finds every function a concept runs (shared with `parity show`), parity/parallel.py
runs the concepts (shared with `parity check`).
"""
