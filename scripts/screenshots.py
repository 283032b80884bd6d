#!/usr/bin/env python
"""Regenerate the README's two screenshots of the HTML report (docs/img/report-index.png and
docs/img/report-concept.png): 1280×800, headless Chromium, quantised to a palette (< 200 KB each).

    .venv/bin/python scripts/screenshots.py                 # builds the report of every concept first
    .venv/bin/python scripts/screenshots.py --site out/     # reuses a report already written there

Needs Debian's `chromium` and `chromium-driver` packages and selenium (the test extras).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from parity.console import write_bytes_atomic  # noqa: E402
from parity.site import browser  # noqa: E402

LIMIT = 200_000  # bytes per PNG


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--site", type=Path, help="an existing `parity report --html` folder (default: build one)")
    p.add_argument("--concept", default="layers.max_pool2d", help="the concept page to show (default: %(default)s)")
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "img", help="where the PNGs go (default: docs/img)")
    args = p.parse_args(argv)
    problem = browser.missing()
    if problem:
        print(f"screenshots.py: {problem}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        site = args.site
        if site is None:
            from parity.cli import main as parity
            site = Path(tmp) / "site"
            code = parity(["report", "--html", str(site), "--dtype", "float32", "float64"])
            if code not in (0, 1):
                return code
        pages = {"report-index.png": (site / "index.html", None),
                 # the concept page at its code: JAX on the left, PyTorch on the right
                 "report-concept.png": (site / "concepts" / f"{args.concept}.html", "p.kind")}
        for page, _ in pages.values():
            if not page.is_file():
                print(f"screenshots.py: {page} is missing (run `parity report --html {site}` first)", file=sys.stderr)
                return 2
        d = browser.driver(1280, 800)
        try:
            for name, (page, scroll_to) in pages.items():
                d.get(page.resolve().as_uri())
                if scroll_to:
                    d.execute_script("document.querySelector(arguments[0]).scrollIntoView()", scroll_to)
                errors = browser.console_errors(d)
                if errors:
                    print(f"screenshots.py: {page}: console errors {errors}", file=sys.stderr)
                    return 1
                png = browser.small_png(d.get_screenshot_as_png())
                if len(png) > LIMIT:
                    png = browser.small_png(d.get_screenshot_as_png(), colors=48)
                path = write_bytes_atomic(args.out / name, lambda f, b=png: f.write(b))
                print(f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path} "
                      f"({len(png) / 1000:.0f} KB)")
        finally:
            d.quit()
    return 0


if __name__ == "__main__":
    sys.exit(main())
