#!/usr/bin/env python3
"""The JavaScript the built book loads, served from the book itself (no CDN, no network).

MathJax 3 (math) and mermaid (diagrams) are committed under book/_static/vendor/NAME-VERSION/:
only the files a page loads, with the package's LICENSE, exactly as published on npm. The
pinned versions, the npm tarballs with their integrity (sha512) and the sha256 of every
committed file are in book/_static/vendor/manifest.json.

    python scripts/vendor_js.py           # re-fetch the pinned tarballs, check them, write the files
    python scripts/vendor_js.py --check   # offline: the committed files match the manifest
    python scripts/vendor_js.py --update  # after editing a version in the manifest: fetch it and
                                          # rewrite its integrity and sha256s (review the diff!)

Only the standard library is used. The book loads these files through _config.yml
(`mathjax_path`, `mermaid_use_local`) and book/_ext/local_mermaid.py.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import json
import shutil
import sys
import tarfile
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VENDOR = ROOT / "book" / "_static" / "vendor"
MANIFEST = VENDOR / "manifest.json"
REGISTRY = "https://registry.npmjs.org"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def npm_integrity(data: bytes) -> str:
    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode("ascii")


def load_manifest() -> dict:
    return json.loads(MANIFEST.read_text(encoding="utf-8"))


def package_dir(name: str, pkg: dict) -> Path:
    return VENDOR / f"{name}-{pkg['version']}"


def check(manifest: dict) -> list[str]:
    """Differences between the committed files and the manifest (empty: all good)."""
    problems = []
    expected_dirs = {package_dir(name, pkg) for name, pkg in manifest["packages"].items()}
    for child in sorted(VENDOR.iterdir()):
        if child != MANIFEST and child not in expected_dirs:
            problems.append(f"not in the manifest: {child.relative_to(ROOT)}")
    for name, pkg in manifest["packages"].items():
        base = package_dir(name, pkg)
        if "LICENSE" not in pkg["files"]:
            problems.append(f"{name}: the manifest lists no LICENSE")
        for rel, digest in pkg["files"].items():
            path = base / rel
            if not path.is_file():
                problems.append(f"missing: {path.relative_to(ROOT)}")
            elif sha256(path.read_bytes()) != digest:
                problems.append(f"sha256 differs from the manifest: {path.relative_to(ROOT)}")
        if base.is_dir():
            for path in sorted(p for p in base.rglob("*") if p.is_file()):
                if path.relative_to(base).as_posix() not in pkg["files"]:
                    problems.append(f"not in the manifest: {path.relative_to(ROOT)}")
    return problems


def fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=120) as response:
        return response.read()


def tarball_files(data: bytes, wanted: list[str]) -> dict[str, bytes]:
    """The files ``wanted`` (paths inside the npm package) from an npm tarball."""
    out = {}
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        for rel in wanted:
            member = tar.getmember(f"package/{rel}")
            if not member.isfile():
                raise SystemExit(f"package/{rel} is not a regular file in the tarball")
            out[rel] = tar.extractfile(member).read()
    return out


def vendor(manifest: dict, update: bool) -> dict:
    for name, pkg in manifest["packages"].items():
        version = pkg["version"]
        url = f"{REGISTRY}/{name}/-/{name}-{version}.tgz"
        print(f"vendor_js: {name}@{version} from {url}")
        data = fetch(url)
        integrity = npm_integrity(data)
        if update:
            meta = json.loads(fetch(f"{REGISTRY}/{name}/{version}"))
            if meta["dist"]["integrity"] != integrity:
                raise SystemExit(f"{name}@{version}: the tarball does not match the registry's "
                                 f"integrity {meta['dist']['integrity']}")
            pkg.update(tarball=url, integrity=integrity, license=meta.get("license", ""))
        elif pkg["integrity"] != integrity or pkg["tarball"] != url:
            raise SystemExit(f"{name}@{version}: the tarball is not the pinned one "
                             f"(got {integrity}, manifest says {pkg['integrity']})")
        files = tarball_files(data, sorted(pkg["files"]))
        for rel, content in files.items():
            if update:
                pkg["files"][rel] = sha256(content)
            elif sha256(content) != pkg["files"][rel]:
                raise SystemExit(f"{name}@{version}: {rel} does not match its sha256 in the manifest")
        base = package_dir(name, pkg)
        shutil.rmtree(base, ignore_errors=True)
        for rel, content in files.items():
            (base / rel).parent.mkdir(parents=True, exist_ok=True)
            (base / rel).write_bytes(content)
        size = sum(len(c) for c in files.values())
        print(f"vendor_js: wrote {len(files)} files, {size / 1e6:.2f} MB, to {base.relative_to(ROOT)}")
    return manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true",
                      help="only check the committed files against the manifest (offline)")
    mode.add_argument("--update", action="store_true",
                      help="fetch the versions in the manifest and rewrite its hashes")
    args = parser.parse_args(argv)
    manifest = load_manifest()
    if not args.check:
        manifest = vendor(manifest, update=args.update)
        if args.update:
            MANIFEST.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    problems = check(manifest)
    for problem in problems:
        print(f"vendor_js: {problem}", file=sys.stderr)
    if not problems:
        print(f"vendor_js: {MANIFEST.relative_to(ROOT)} matches the committed files")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
