"""Headless Chromium for checking the site in a real browser (the tests) and for its screenshots.

Uses Debian's `chromium` and `chromium-driver` packages (/usr/bin/chromium, /usr/bin/chromedriver)
through selenium; `missing()` says what to install when either is absent.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

INSTALL = ("install headless Chromium and its driver: `sudo apt-get install -y chromium chromium-driver` "
           "(Debian/Ubuntu; .ci/run does this), and selenium: `.venv/bin/python -m pip install -e '.[test]'`")


def _find(name: str, default: str) -> str | None:
    env = os.environ.get(f"PARITY_{name.upper().replace('-', '_')}")
    for cand in (env, shutil.which(name), default):
        if cand and Path(cand).is_file() and os.access(cand, os.X_OK):
            return cand
    return None


def chromium_path() -> str | None:
    return _find("chromium", "/usr/bin/chromium")


def chromedriver_path() -> str | None:
    return _find("chromedriver", "/usr/bin/chromedriver")


def missing() -> str | None:
    """None when a browser can start here, else one line saying what is missing and how to install it."""
    lacks = [n for n, p in (("chromium", chromium_path()), ("chromedriver", chromedriver_path())) if p is None]
    try:
        import selenium  # noqa: F401
    except ImportError:
        lacks.append("the selenium package")
    return f"{', '.join(lacks)} not found: {INSTALL}" if lacks else None


def driver(width: int = 1280, height: int = 800):
    """A headless Chromium of `width`×`height` CSS pixels that keeps the page's console log."""
    problem = missing()
    if problem:
        raise RuntimeError(problem)
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service
    opts = Options()
    opts.binary_location = chromium_path()
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--hide-scrollbars", "--force-device-scale-factor=1", f"--window-size={width},{height}",
                "--disable-extensions", "--no-first-run", "--allow-file-access-from-files"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    d = webdriver.Chrome(service=Service(chromedriver_path()), options=opts)
    d.set_window_size(width, height)
    # the window's outer size includes nothing in headless mode, but make the viewport exact anyway
    inner = d.execute_script("return [window.innerWidth, window.innerHeight]")
    if inner != [width, height]:
        d.set_window_size(2 * width - inner[0], 2 * height - inner[1])
    return d


def console_errors(d) -> list[dict]:
    """The SEVERE entries of the browser's console log since the last call (errors, failed loads)."""
    return [e for e in d.get_log("browser") if e.get("level") == "SEVERE"]


def blankness(png: bytes) -> tuple[float, float]:
    """(standard deviation of the grey levels, fraction of pixels that are not near-white) of a PNG."""
    import io

    from PIL import Image, ImageStat
    im = Image.open(io.BytesIO(png)).convert("L")
    std = ImageStat.Stat(im).stddev[0]
    hist = im.histogram()
    non_white = sum(hist[:240]) / max(1, im.width * im.height)
    return std, non_white


def small_png(png: bytes, colors: int = 128) -> bytes:
    """`png` quantised to a palette (screenshots of text shrink to a fraction, and stay sharp)."""
    import io

    from PIL import Image
    im = Image.open(io.BytesIO(png)).convert("RGB").quantize(colors=colors, method=Image.Quantize.MEDIANCUT)
    buf = io.BytesIO()
    im.save(buf, format="PNG", optimize=True)
    return buf.getvalue()
