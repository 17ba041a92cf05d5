"""Draw the book's mermaid diagrams with the vendored mermaid.js, with no network.

sphinxcontrib-mermaid (2.1.1) draws diagrams with a ``<script type="module">`` that starts with
``import mermaid from URL``: the CDN by default, or the file named by ``mermaid_use_local``.
A module import of a local file is refused by Chromium on a page opened from disk (file://
has no origin, so the import is blocked by CORS), so a local ESM build would still leave raw
mermaid source on an offline page. This extension instead loads the vendored UMD build
(``mermaid_use_local``, book/_static/vendor/, see scripts/vendor_js.py) as a classic
``<script>``, which defines ``window.mermaid``, and makes the extension's module script use
that global in place of the import. Everything else of the extension (themes, the full-screen
button) is unchanged. The build fails if the pinned extension no longer has that import.
"""

from __future__ import annotations

from sphinx.errors import ExtensionError

IMPORT = "import mermaid from {{ mermaid_js_url }};"
GLOBAL = "const mermaid = window.mermaid;  // the vendored UMD build, see book/_ext/local_mermaid.py"


def add_mermaid_script(app, pagename, templatename, context, doctree) -> None:
    from sphinxcontrib.mermaid import mermaid

    # The same pages as sphinxcontrib.mermaid.install_js writes its module script for.
    if app.config.mermaid_output_format != "raw":
        return
    if doctree and not doctree.next_node(mermaid):
        return
    app.add_js_file(app.config.mermaid_use_local, priority=app.config.mermaid_js_priority - 1)


def setup(app):
    app.setup_extension("sphinxcontrib.mermaid")
    import sphinxcontrib.mermaid as extension

    if IMPORT not in extension._MERMAID_JS:
        raise ExtensionError(
            "local_mermaid: sphinxcontrib.mermaid's script no longer starts with "
            f"{IMPORT!r}; check how this version loads mermaid.js before using it")
    extension._MERMAID_JS = extension._MERMAID_JS.replace(IMPORT, GLOBAL)
    app.connect("config-inited", _check_config)
    app.connect("html-page-context", add_mermaid_script)
    return {"parallel_read_safe": True, "parallel_write_safe": True}


def _check_config(app, config) -> None:
    url = config.mermaid_use_local
    if not url or url.startswith(("http:", "https:", "//")):
        raise ExtensionError(
            "local_mermaid: set mermaid_use_local to the vendored mermaid.min.js under "
            f"_static (book/_static/vendor/), not {url!r}")
