"""The built book, opened from disk in a real browser with no network, renders.

Headless Chromium (the system one: Debian's ``chromium``, driven by ``playwright`` with
``executable_path``, no browser download) opens the pages of ``_build/html`` as file:// URLs
while every network address is unreachable: a proxy on a closed port, host names that do not
resolve, and a route that aborts (and records) any request that is not file:, data: or blob:.
It checks the rendered DOM: MathJax typeset the math (``mjx-container``), mermaid drew the diagram
(an ``<svg>``), the Colab launch button is there, and that no page asked the network for
anything, failed to load a file or logged an error. Screenshots go to ``_build/screenshots/``.

It needs the book built first (``bash scripts/quickstart.sh book``) and Chromium
(``apt-get install chromium``); without them it skips, unless NERBOOK_REQUIRE_BROWSER=1 (CI),
which turns a skip into a failure. NERBOOK_CHROMIUM=PATH picks another Chromium or Chrome.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from urllib.parse import urlsplit

import pytest

ROOT = Path(__file__).resolve().parents[1]
HTML = ROOT / "_build" / "html"
SCREENSHOTS = ROOT / "_build" / "screenshots"
REQUIRE = os.environ.get("NERBOOK_REQUIRE_BROWSER") == "1"
COLAB = "https://colab.research.google.com/github/why-chatgpt-wins/nerbook/blob/main/"

LOCAL_SCHEMES = ("file", "data", "blob", "about")
# The chromium flags of an offline browser: no proxy reachable, no host name resolves, nothing
# fetched in the background.
OFFLINE_ARGS = [
    "--proxy-server=127.0.0.1:9",
    "--proxy-bypass-list=<-loopback>",
    "--host-resolver-rules=MAP * ~NOTFOUND",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# A page whose notebook saved widget state (WIDGET_PAGES) loads the widget manager from a CDN
# (myst-nb's nb_ipywidgets_js) to draw the saved widgets; offline the widget output stays empty
# and the chapter's next cell shows the same thing statically. These two requests, and the
# console errors of their failure, are the only network use allowed, on those pages only.
WIDGET_JS = (
    "https://cdnjs.cloudflare.com/ajax/libs/require.js/",
    "https://cdn.jsdelivr.net/npm/@jupyter-widgets/html-manager@",
)
# The pages whose widgets are meant (attention's head explorer, the training chapter's live tagger); on
# any other page widget state would be a stray one's (a progress bar's), stored by accident.
WIDGET_PAGES = {"book/attention.html", "book/ner_training.html"}
# Two errors that have nothing to do with the network, tolerated by their exact text:
KNOWN_ERRORS = (
    # Sphinx 7.4.7 writes twice an inline script that an extension adds after the builder started
    # (prepare_writing re-adds it with filename '' next to None), so sphinx-thebe's
    # `const THEBE_JS_URL = ...` is declared twice on every page and the second copy throws.
    # Thebe is off in this book: nothing depends on it.
    "uncaught: Identifier 'THEBE_JS_URL' has already been declared",
    # pydata-sphinx-theme 0.17 on the first page of a visit (no mode in localStorage yet, and no
    # default_mode in the theme options): it then uses "auto", as intended.
    "console.error: Got invalid theme mode: . Resetting to auto. at ",
)
TIMEOUT_MS = 30_000


def _unavailable(reason: str) -> None:
    if REQUIRE:
        pytest.fail(f"{reason} (NERBOOK_REQUIRE_BROWSER=1 turns this skip into a failure)")
    pytest.skip(reason)


def _chromium() -> str | None:
    for candidate in (os.environ.get("NERBOOK_CHROMIUM"), "chromium", "chromium-browser",
                      "google-chrome", "google-chrome-stable"):
        if candidate and (found := shutil.which(candidate)):
            return found
    return None


def _pages() -> list[str]:
    if not HTML.is_dir():
        return []
    return sorted(p.relative_to(HTML).as_posix() for p in HTML.rglob("*.html")
                  if not p.relative_to(HTML).parts[0].startswith("_")
                  and p.name != "index.html")  # index.html only redirects to book/intro.html


@pytest.fixture(scope="module")
def offline_chromium(tmp_path_factory):
    if not (HTML / "index.html").is_file():
        _unavailable(f"the book is not built ({HTML.relative_to(ROOT)}/index.html is missing: "
                     "run `bash scripts/quickstart.sh book`)")
    executable = _chromium()
    if executable is None:
        _unavailable("Chromium is not installed (`apt-get install chromium`, or set "
                     "NERBOOK_CHROMIUM)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("playwright is not installed (`pip install -c constraints.txt -e .[dev]`)")
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")),  # a fresh --user-data-dir
            executable_path=executable, headless=True, chromium_sandbox=False,
            args=OFFLINE_ARGS, viewport={"width": 1280, "height": 900},
            service_workers="block",
        )
        try:
            yield context
        finally:
            context.close()


class Visit:
    """One page opened offline: what it asked the network for, what failed, what it logged."""

    def __init__(self, context, relpath: str):
        self.relpath = relpath
        self.network: list[str] = []
        self.failed: list[str] = []
        self.errors: list[str] = []
        page = self.page = context.new_page()
        page.route("**/*", self._route)
        page.on("request", self._request)
        page.on("requestfailed", lambda r: self.failed.append(f"{r.url} ({r.failure})"))
        page.on("console", lambda m: m.type == "error" and self.errors.append(
            f"console.error: {m.text} at {m.location.get('url', '')}"))
        page.on("pageerror", lambda e: self.errors.append(f"uncaught: {e}"))
        page.goto((HTML / relpath).as_uri(), wait_until="load", timeout=TIMEOUT_MS)
        self.settle()

    def _request(self, request) -> None:
        if urlsplit(request.url).scheme not in LOCAL_SCHEMES and request.url not in self.network:
            self.network.append(request.url)

    def _route(self, route) -> None:
        if urlsplit(route.request.url).scheme in LOCAL_SCHEMES:
            route.continue_()
        else:
            self._request(route.request)
            route.abort("internetdisconnected")

    def settle(self) -> None:
        """Wait until MathJax has typeset the page, mermaid drew every diagram, fonts loaded."""
        from playwright.sync_api import TimeoutError as PlaywrightTimeout

        page = self.page
        self.typeset_error = page.evaluate("""async () => {
            try {
                if (window.MathJax && MathJax.startup && MathJax.startup.promise)
                    await MathJax.startup.promise;
            } catch (e) { return String(e); }
            return null;
        }""")
        try:
            page.wait_for_function(
                """() => [...document.querySelectorAll('.mermaid')].every(
                    el => el.getAttribute('data-processed') === 'true' || el.querySelector('svg'))""",
                timeout=10_000)
        except PlaywrightTimeout:
            pass  # reported by the assertions
        page.evaluate("async () => { await document.fonts.ready; }")
        page.wait_for_timeout(300)  # late console errors

    @property
    def uses_widgets(self) -> bool:
        return self.count('script[type="application/vnd.jupyter.widget-state+json"]') > 0

    def problems(self) -> list[str]:
        network, errors = self.network, self.errors
        if self.uses_widgets:
            network = [u for u in network if not u.startswith(WIDGET_JS)]
            errors = [e for e in errors if not any(w in e for w in WIDGET_JS)]
        failed_fonts = self.page.evaluate(
            "() => [...document.fonts].filter(f => f.status === 'error').map(f => f.family)")
        local_failures = [f for f in self.failed if urlsplit(f).scheme in LOCAL_SCHEMES]
        out = [f"asked the network for {u}" for u in network]
        out += [f"failed to load {f}" for f in local_failures]
        out += [e for e in errors if not e.startswith(KNOWN_ERRORS)]
        out += [f"font failed to load: {f}" for f in failed_fonts]
        if self.typeset_error:
            out.append(f"MathJax failed: {self.typeset_error}")
        return out

    def count(self, selector: str) -> int:
        return self.page.locator(selector).count()

    def screenshot(self, name: str, at: str | None = None) -> Path:
        """The whole page, or the window scrolled to the first element matching ``at``."""
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / name
        if at and self.count(at):
            self.page.locator(at).first.scroll_into_view_if_needed()
            self.page.evaluate("() => window.scrollBy(0, -200)")
        self.page.screenshot(path=str(path), full_page=at is None)
        return path


@pytest.fixture(scope="module")
def visit(offline_chromium):
    opened: dict[str, Visit] = {}

    def _visit(relpath: str) -> Visit:
        if relpath not in opened:
            if not (HTML / relpath).is_file():
                pytest.fail(f"{relpath} is not in {HTML.relative_to(ROOT)}")
            opened[relpath] = Visit(offline_chromium, relpath)
        return opened[relpath]

    yield _visit
    for v in opened.values():
        v.page.close()


def test_intro_draws_the_mermaid_diagram(visit) -> None:
    v = visit("book/intro.html")
    shot = v.screenshot("intro.png")
    diagrams = v.count("pre.mermaid, div.mermaid")
    assert diagrams >= 1, "book/intro.html has no mermaid block"
    drawn = v.count(".mermaid svg")
    raw = v.page.locator(".mermaid").first.inner_text()[:80]
    assert drawn == diagrams, (
        f"mermaid drew {drawn} of {diagrams} diagrams (still raw: {raw!r}); "
        f"problems: {v.problems()}; screenshot {shot}")
    assert v.count(".mermaid svg g.node") >= 5, "the diagram has no nodes"
    assert not v.problems(), "\n".join([*v.problems(), f"screenshot {shot}"])


def test_chapter_typesets_math_and_has_the_colab_button(visit) -> None:
    v = visit("book/attention.html")
    shot = v.screenshot("attention.png", at="div.math")  # the page is ~20000 px long
    math = v.count("span.math, div.math")
    assert math >= 5, "book/attention.html has almost no math: is it the right page?"
    typeset = v.count("span.math mjx-container, div.math mjx-container")
    raw = v.page.locator("span.math, div.math").first.inner_text()[:80]
    assert typeset == math, (
        f"MathJax typeset {typeset} of {math} formulas (first one: {raw!r}); "
        f"problems: {v.problems()}; screenshot {shot}")
    assert v.count("mjx-merror") == 0, "MathJax reported a TeX error"
    colab = v.page.locator(f'a[href="{COLAB}book/attention.ipynb"]')
    assert colab.count() == 1, "no Colab launch button for book/attention.ipynb"
    assert v.count(".dropdown-launch-buttons button") == 1, "no launch (rocket) button"
    assert v.page.locator(".dropdown-launch-buttons button").is_visible()
    assert not v.problems(), "\n".join([*v.problems(), f"screenshot {shot}"])


@pytest.mark.parametrize("relpath", _pages() or ["book/intro.html"])
def test_page_renders_offline(visit, relpath: str) -> None:
    """Every page: no network, every local file found, no console error, math typeset."""
    v = visit(relpath)
    assert not v.problems(), "\n".join(v.problems())
    assert not v.uses_widgets or relpath in WIDGET_PAGES, f"{relpath} saved widget state (a progress bar?)"
    assert v.count("span.math:not(:has(mjx-container)), div.math:not(:has(mjx-container))") == 0, (
        "math left untypeset")
    assert v.count(".mermaid:not(:has(svg))") == 0, "mermaid diagram left undrawn"
