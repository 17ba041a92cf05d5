"""The vendored JavaScript (MathJax, mermaid) matches its manifest, and the book loads it.

book/_static/vendor/manifest.json pins each npm package (version, tarball, sha512 integrity)
and the sha256 of every committed file; scripts/vendor_js.py re-fetches them. These tests
are offline; tests/test_rendered_book.py checks the built pages in a browser.
"""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "vendor_js.py"


def _load_script():
    spec = importlib.util.spec_from_file_location("vendor_js", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


vendor_js = _load_script()
MANIFEST = vendor_js.load_manifest()


@pytest.fixture(scope="module")
def sphinx_config() -> dict:
    return yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))["sphinx"]


def test_committed_files_match_the_manifest() -> None:
    assert vendor_js.check(MANIFEST) == []


def test_manifest_pins_npm_tarballs() -> None:
    assert set(MANIFEST["packages"]) == {"mathjax", "mermaid"}
    for name, pkg in MANIFEST["packages"].items():
        version = pkg["version"]
        assert version.count(".") == 2 and not version.startswith(("^", "~")), version
        assert pkg["tarball"] == f"https://registry.npmjs.org/{name}/-/{name}-{version}.tgz"
        assert pkg["integrity"].startswith("sha512-")
        assert "LICENSE" in pkg["files"]
        assert all(len(digest) == 64 for digest in pkg["files"].values())


def test_check_catches_a_changed_or_extra_file(tmp_path: Path, monkeypatch) -> None:
    copy = tmp_path / "vendor"
    shutil.copytree(vendor_js.VENDOR, copy)
    monkeypatch.setattr(vendor_js, "ROOT", tmp_path)
    monkeypatch.setattr(vendor_js, "VENDOR", copy)
    monkeypatch.setattr(vendor_js, "MANIFEST", copy / "manifest.json")
    assert vendor_js.check(MANIFEST) == []
    license_file = copy / f"mermaid-{MANIFEST['packages']['mermaid']['version']}" / "LICENSE"
    license_file.write_bytes(license_file.read_bytes() + b"\n")
    (copy / "mathjax-3.2.2" / "es5" / "extra.js").write_text("//", encoding="utf-8")
    problems = vendor_js.check(MANIFEST)
    assert any("sha256 differs" in p and p.endswith("LICENSE") for p in problems), problems
    assert any("not in the manifest" in p and p.endswith("extra.js") for p in problems), problems


def _vendored(url: str) -> str:
    """The path, relative to book/_static, of a config value that must be a vendored file."""
    assert not url.startswith(("http:", "https:", "//", "/")), f"{url} is not local"
    for name, pkg in MANIFEST["packages"].items():
        prefix = f"vendor/{name}-{pkg['version']}/"
        if url.startswith(prefix) and url[len(prefix):] in pkg["files"]:
            return url
    raise AssertionError(f"{url} is not a file of book/_static/vendor/manifest.json")


def test_book_loads_the_vendored_files(sphinx_config: dict) -> None:
    config = sphinx_config["config"]
    assert config["html_static_path"] == ["book/_static"]
    _vendored(config["mathjax_path"])
    _vendored(config["mermaid_use_local"])
    assert sphinx_config["local_extensions"]["local_mermaid"] == "book/_ext"
    # these would load d3, elk or zenuml from a CDN
    assert not config.get("mermaid_d3_zoom") and not config.get("mermaid_include_elk")
    assert not config.get("mermaid_include_zenuml")
    urls = [v for v in config.values() if isinstance(v, str) and "://" in v]
    assert not urls, f"network URLs in sphinx.config: {urls}"


def test_no_static_folder_at_the_book_root() -> None:
    # Jupyter Book adds every .js and .css under html_static_path to every page when the book
    # root has a _static folder: mermaid.js and all of MathJax would then load on every page.
    assert not (ROOT / "_static").exists(), "use book/_static (html_static_path), not _static"
