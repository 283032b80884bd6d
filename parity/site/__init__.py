"""The side-by-side report: a static HTML site of every concept (`parity report --html DIR`).

`sources` finds every function a concept runs (shared with `parity show`), `docs` reads the traps and
worked examples out of docs/, `runs` runs the concepts (in worker processes, with JAX's compilation
cache), `svg` draws the small charts, `pages` renders the pages and `build` writes the site.
"""
