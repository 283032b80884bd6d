"""The report's site in a real browser (headless Chromium through selenium): every page loads without
console errors, every link resolves, the index's filter and sort work, and screenshots at 1280×800
are not blank.

Without Chromium these tests FAIL (they do not skip) with the command that installs it:
`sudo apt-get install -y chromium chromium-driver` (Debian/Ubuntu; .ci/run does this).
"""
import re
import time
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

from parity.cli import main
from parity.site import browser

ROOT = Path(__file__).resolve().parents[1]
CONCEPTS = ["activations.relu", "activations.softmax", "layers.max_pool2d", "tensors.matmul", "losses.mse"]


def _require_browser():
    problem = browser.missing()
    if problem:
        pytest.fail(f"the report's browser tests need headless Chromium: {problem}", pytrace=False)


def test_a_missing_chromium_fails_with_the_install_command(monkeypatch):
    monkeypatch.setattr(browser, "chromium_path", lambda: None)
    with pytest.raises(pytest.fail.Exception, match=r"apt-get install -y chromium chromium-driver"):
        _require_browser()


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """A report of five concepts in float32 and float64, with a training run and the committed
    CPU benchmarks."""
    logs = tmp_path_factory.mktemp("runs")
    assert main(["train", "--model", "linear_regression", "--data", "synthetic-linear", "--epochs", "2",
                 "--log-dir", str(logs), "--name", "lin"]) == 0
    out = tmp_path_factory.mktemp("site")
    code = main(["report", "--html", str(out), *CONCEPTS, "--dtype", "float32", "float64", "--jobs", "1", "--no-cache",
                 "--train", str(logs / "lin"), "--bench", str(ROOT / "benchmarks" / "results" / "cpu")])
    assert code in (0, 1)  # 1: a comparison failed; the site is written all the same
    return out


@pytest.fixture(scope="module")
def chrome():
    _require_browser()
    d = browser.driver(1280, 800)
    yield d
    d.quit()


def _load(d, path: Path, fragment: str = ""):
    d.get(path.resolve().as_uri() + (f"#{fragment}" if fragment else ""))
    for _ in range(100):
        if d.execute_script("return document.readyState") == "complete":
            break
        time.sleep(0.05)
    return browser.console_errors(d)


class _Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.hrefs, self.srcs, self.ids = [], [], set()

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "id" in a:
            self.ids.add(a["id"])
        if tag == "a" and a.get("href"):
            self.hrefs.append(a["href"])
        if tag in ("img", "script", "link") and (a.get("src") or a.get("href")):
            self.srcs.append(a.get("src") or a.get("href"))


def _parse(path: Path) -> _Links:
    p = _Links()
    p.feed(path.read_text(encoding="utf-8"))
    return p


def test_every_page_loads_without_console_errors(site, chrome):
    pages = sorted(site.rglob("*.html"))
    assert len(pages) >= len(CONCEPTS) + 5  # index, the concepts, docs, training, benchmarks
    chrome.get_log("browser")  # start clean
    for page in pages:
        errors = _load(chrome, page)
        assert not errors, f"{page.relative_to(site)}: {errors}"
        broken = chrome.execute_script(
            "return Array.from(document.images).filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src)")
        assert not broken, f"{page.relative_to(site)}: images that did not load: {broken}"
        css = chrome.execute_script("return getComputedStyle(document.querySelector('header.top')).backgroundColor")
        assert css != "rgba(0, 0, 0, 0)", f"{page.relative_to(site)}: the stylesheet did not load"


def test_index_links_resolve_and_load(site, chrome):
    _load(chrome, site / "index.html")
    hrefs = [a.get_attribute("href") for a in chrome.find_elements("css selector", "a[href]")]
    local = [h for h in hrefs if h.startswith("file://")]
    assert local and len(local) == len(hrefs), f"links leaving the site: {set(hrefs) - set(local)}"
    seen = set()
    for h in local:
        u = urlparse(h)
        path = Path(unquote(u.path))
        assert path.is_file(), f"index links to a missing file: {h}"
        if (path, u.fragment) in seen:
            continue
        seen.add((path, u.fragment))
        if path.suffix == ".html":
            errors = _load(chrome, path, u.fragment)
            assert not errors, f"{h}: {errors}"
            if u.fragment and "=" not in u.fragment:
                assert chrome.find_elements("id", u.fragment), f"{h}: no element with that id"
    assert any(p.name == "training.html" for p, _ in seen) and any(p.name == "benchmarks.html" for p, _ in seen)
    assert sum(p.parent.name == "concepts" for p, _ in seen) == len(CONCEPTS)


def test_every_link_in_the_site_resolves(site):
    """Each relative href and src of every page names an existing file, and each #fragment an id there."""
    ids = {p: _parse(p).ids for p in site.rglob("*.html")}
    for page in site.rglob("*.html"):
        links = _parse(page)
        for ref in links.hrefs + links.srcs:
            if ref.startswith("data:"):
                continue
            assert not re.match(r"^[a-z]+://", ref), f"{page.relative_to(site)} links outside the site: {ref}"
            target, _, frag = ref.partition("#")
            path = (page.parent / unquote(target)).resolve() if target else page
            assert path.is_file(), f"{page.relative_to(site)}: {ref} does not exist"
            if frag and path.suffix == ".html" and "=" not in frag:
                assert frag in ids[path], f"{page.relative_to(site)}: {ref}: no id {frag!r}"


def test_the_filter_hides_and_shows_rows(site, chrome):
    from selenium.webdriver.support.ui import Select
    _load(chrome, site / "index.html")
    rows = chrome.find_elements("css selector", "#concepts tbody tr")
    assert len(rows) == len(CONCEPTS)
    groups = {r.get_attribute("data-group") for r in rows}
    assert {"activations", "layers", "tensors", "losses"} <= groups
    shown = chrome.find_element("id", "shown")
    for group in ("activations", "layers", ""):
        Select(chrome.find_element("id", "filter-group")).select_by_value(group)
        visible = [r.get_attribute("data-group") for r in rows if r.is_displayed()]
        hidden = [r.get_attribute("data-group") for r in rows if not r.is_displayed()]
        if group:
            assert visible and set(visible) == {group} and group not in hidden, (group, visible, hidden)
        else:
            assert len(visible) == len(CONCEPTS) and not hidden
        assert shown.text == str(len(visible))
    results = Select(chrome.find_element("id", "filter-result"))
    for value in ("fail", "pass"):
        results.select_by_value(value)
        assert all((r.get_attribute("data-result") == value) == r.is_displayed() for r in rows), value
    results.select_by_value("")
    # both filters at once: a group and a result
    Select(chrome.find_element("id", "filter-group")).select_by_value("activations")
    results.select_by_value("pass")
    assert all(r.is_displayed() == (r.get_attribute("data-group") == "activations"
                                    and r.get_attribute("data-result") == "pass") for r in rows)
    # the name box filters too
    Select(chrome.find_element("id", "filter-group")).select_by_value("")
    results.select_by_value("")
    box = chrome.find_element("id", "filter-text")
    box.send_keys("pool")
    assert [r.get_attribute("data-name") for r in rows if r.is_displayed()] == ["layers.max_pool2d"]
    box.clear()
    box.send_keys(" ")  # an input event with an empty query: everything back
    assert all(r.is_displayed() for r in rows)


def test_the_table_sorts_by_a_clicked_column(site, chrome):
    _load(chrome, site / "index.html")
    header = chrome.find_element("xpath", "//table[@id='concepts']/thead/tr/th[2]")
    header.click()
    names = [r.get_attribute("data-name") for r in chrome.find_elements("css selector", "#concepts tbody tr")]
    assert names == sorted(names) and header.get_attribute("aria-sort") == "ascending"
    header.click()
    names = [r.get_attribute("data-name") for r in chrome.find_elements("css selector", "#concepts tbody tr")]
    assert names == sorted(names, reverse=True)
    worst = chrome.find_element("xpath", "//table[@id='concepts']/thead/tr/th[5]")  # worst output error
    worst.click()
    keys = [float(td.get_attribute("data-sort"))
            for td in chrome.find_elements("css selector", "#concepts tbody tr td:nth-child(5)")]
    assert keys == sorted(keys)


def test_screenshots_at_1280x800_are_not_blank(site, chrome, tmp_path):
    from PIL import Image
    for page, name in ((site / "index.html", "index.png"),
                       (site / "concepts" / "layers.max_pool2d.html", "concept.png")):
        assert not _load(chrome, page)
        png = chrome.get_screenshot_as_png()
        out = tmp_path / name
        out.write_bytes(png)
        with Image.open(out) as im:
            assert im.size == (1280, 800), im.size
        std, ink = browser.blankness(png)
        assert std > 20 and ink > 0.03, f"{name} looks blank: grey-level std {std:.1f}, non-white {ink:.1%}"
