"""The side-by-side report: a static HTML site of every concept (`parity report --html DIR`).

`sources` finds every function a concept runs (shared with `parity show`), `docs` reads the traps and
worked examples out of docs/ and renders its Markdown, `runs` runs the concepts (in worker processes,
with JAX's compilation cache), `svg` draws the small charts, `pages` holds the templates, `build`
writes the site, and `browser` drives headless Chromium for the tests and scripts/screenshots.py.
"""
