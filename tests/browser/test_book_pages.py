"""The built book in a real browser, offline: every page's math is typeset, its images load, its
console shows no errors, no output line or table is cut off, at a phone's width and a
desktop's, and each chapter ends by saying how long its execution took.

Runs after the book is built (``make test`` builds it first): ``GMLIB_BOOK_HTML`` names the HTML
folder. Headless Chromium (Debian's ``chromium`` and ``chromium-driver``) reads the pages from a
local HTTP server while every other host fails to resolve, as on a reader's machine with no
network. The one remote resource allowed is the Colab badge, a link out by design.
"""

from __future__ import annotations

import functools
import http.server
import os
import threading
from pathlib import Path
from typing import Iterator

import pytest

BOOK_HTML = os.environ.get("GMLIB_BOOK_HTML")
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
# Remote on purpose: the badge that opens a chapter in Colab needs Colab anyway.
ALLOWED_REMOTE = ("https://colab.research.google.com/assets/colab-badge.svg",)
# Console errors that are not the page's: the browser's own request for /favicon.ico, and
# pydata-sphinx-theme's note on a first visit (no colour mode stored yet), which it then repairs.
BENIGN_CONSOLE = ("favicon.ico", "Got invalid theme mode: . Resetting to auto.")
MATHJAX_WAIT_S = 30
WIDTHS = {"phone": (390, 844), "desktop": (1280, 900)}

if not BOOK_HTML:
    pytest.skip("GMLIB_BOOK_HTML is not set: build the book first (make test does)", allow_module_level=True)

# What the page reports once MathJax has finished (or failed to arrive): its math elements, how
# many were typeset, the images that did not load, and remote scripts and stylesheets.
PAGE_REPORT_JS = """
const done = arguments[arguments.length - 1];
const report = () => {
  const math = Array.from(document.querySelectorAll('.math'));
  done({
    math: math.length,
    typeset: math.filter(m => m.querySelector('mjx-container') !== null).length,
    mathjax: typeof window.MathJax !== 'undefined' && window.MathJax.startup !== undefined,
    broken_images: Array.from(document.images).filter(i => !i.complete || i.naturalWidth === 0).map(i => i.src),
    remote: Array.from(document.querySelectorAll('script[src], link[rel=stylesheet]'))
      .map(e => e.src || e.href).filter(u => !u.startsWith(location.origin)),
    // Output lines wider than their box (to be scrolled sideways, or cut), and tables wider than
    // their box that do not scroll.
    cut_off: Array.from(document.querySelectorAll('div.cell_output pre'))
      .filter(e => e.scrollWidth > e.clientWidth + 1).map(e => e.textContent.slice(0, 60))
      .concat(Array.from(document.querySelectorAll('table'))
        .filter(t => t.scrollWidth > t.clientWidth + 1 && !['auto', 'scroll'].includes(getComputedStyle(t).overflowX))
        .map(t => 'table: ' + t.textContent.trim().slice(0, 60))),
  });
};
// MathJax may still be starting when the page has loaded: wait for it (10 s at most; a MathJax
// that never arrives, e.g. from a blocked CDN, is then reported as not loaded).
const started = Date.now();
const wait = () => {
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
    MathJax.startup.promise.then(report, report);
  } else if (Date.now() - started < 10000 && document.querySelector('.math')) {
    setTimeout(wait, 100);
  } else {
    report();
  }
};
wait();
"""


def book_pages(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.html") if "_static" not in p.parts and p.name not in ("genindex.html", "search.html"))


@pytest.fixture(scope="module")
def site() -> Iterator[str]:
    root = Path(BOOK_HTML)
    if not (root / "index.html").is_file():
        raise FileNotFoundError(f"GMLIB_BOOK_HTML={BOOK_HTML} holds no built book (index.html)")
    handler = functools.partial(QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # one line per request would drown pytest's output
        pass


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-sync",
                 "--disable-background-networking", "--disable-component-update", "--disable-dev-shm-usage",
                 # Offline: every host but this machine fails to resolve.
                 "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
                 f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    driver.set_script_timeout(MATHJAX_WAIT_S)
    yield driver
    driver.quit()


def page_problems(browser, url: str) -> list[str]:
    """What is wrong with one page, in words (empty when nothing is)."""
    browser.get(url)
    report = browser.execute_async_script(PAGE_REPORT_JS)
    problems = []
    if report["math"] and report["typeset"] < report["math"]:
        problems.append(f"{report['math'] - report['typeset']} of {report['math']} formulas not typeset"
                        + ("" if report["mathjax"] else " (MathJax did not load)"))
    problems += [f"image did not load: {src}" for src in report["broken_images"] if src not in ALLOWED_REMOTE]
    problems += [f"remote script or stylesheet: {src}" for src in report["remote"]]
    problems += [f"cut off at {browser.get_window_size()['width']} px: {text!r}" for text in report["cut_off"]]
    if "/notebooks/" in url and "This page was executed at profile" not in browser.find_element("tag name", "main").text:
        problems.append("the chapter does not say how long its execution took")
    for entry in browser.get_log("browser"):
        if entry["level"] == "SEVERE" and not any(known in entry["message"] for known in ALLOWED_REMOTE + BENIGN_CONSOLE):
            problems.append(f"console error: {entry['message']}")
    return problems


@pytest.mark.parametrize("width", WIDTHS)
def test_every_page_typesets_its_math_loads_its_images_and_logs_no_errors(site, browser, width) -> None:
    pages = book_pages(Path(BOOK_HTML))
    assert len(pages) >= 8, f"expected the chapters' pages under {BOOK_HTML}, found {len(pages)} pages"
    browser.set_window_size(*WIDTHS[width])
    problems = {}
    for page in pages:
        found = page_problems(browser, f"{site}/{page.relative_to(BOOK_HTML).as_posix()}")
        if found:
            problems[page.relative_to(BOOK_HTML).as_posix()] = found
    assert not problems, "\n".join(f"{page}: {'; '.join(found)}" for page, found in problems.items())


def test_the_check_fails_when_mathjax_comes_from_a_cdn(site, browser, tmp_path) -> None:
    """The test above can fail: a page that loads MathJax from the network is caught offline."""
    page = Path(BOOK_HTML) / "_static" / "cdn_mathjax_probe.html"
    page.write_text('<html><head><script async src="https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-mml-chtml.js">'
                    '</script></head><body><span class="math notranslate nohighlight">\\(x^2\\)</span></body></html>')
    try:
        problems = page_problems(browser, f"{site}/_static/cdn_mathjax_probe.html")
    finally:
        page.unlink()
    assert any("1 of 1 formulas not typeset (MathJax did not load)" in p for p in problems), problems
    assert any("remote script or stylesheet: https://cdn.jsdelivr.net" in p for p in problems), problems
