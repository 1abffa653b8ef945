"""Serve the book's browser scripts from its own ``_static`` folder instead of CDNs.

A Jupyter Book page loads MathJax (the equations), RequireJS and the ipywidgets embedder (the
theory and explorer pages' sliders and menus) from CDNs. Without network access the equations
show as raw ``\\(x^2\\)`` and the widgets stay empty, for a reader of a copied book and for the
browser test alike. :func:`vendor` fetches pinned releases of the three from the npm registry,
checks each tarball against the registry's sha512 ``integrity``, caches it under
``_build/vendor`` and copies the files the pages need into ``<book>/_vendor/``, which Sphinx
copies into the built book's ``_static/vendor/``. It returns the Sphinx settings that point the
pages at those copies. (Not into ``<book>/_static`` itself: Jupyter Book adds every ``.js`` file
found there to every page.)

    python tools/vendor_js.py DIR      # fetch (or reuse the cache) into DIR/_vendor
"""
from __future__ import annotations

import base64
import hashlib
import io
import os
import shutil
import sys
import tarfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

REGISTRY = os.environ.get("NPM_REGISTRY", "https://registry.npmjs.org").rstrip("/")
CACHE = Path(__file__).resolve().parents[1] / "_build" / "vendor"


@dataclass(frozen=True)
class Package:
    name: str        # npm name
    version: str
    integrity: str   # the registry's dist.integrity of that version
    keep: tuple      # paths inside the package (a trailing / keeps a whole folder)
    folder: str      # where under _static/vendor/ the kept files go

    @property
    def tarball_url(self) -> str:
        return f"{REGISTRY}/{self.name}/-/{self.name.split('/')[-1]}-{self.version}.tgz"


PACKAGES = (
    # the combined TeX + MathML → HTML component Sphinx uses, and what it loads on demand
    Package("mathjax", "3.2.2",
            "sha512-Bt+SSVU8eBG27zChVewOicYs7Xsdt40qm4+UpHyX7k0/O9NliPc+x77k1/FEsPsjKPZGJvtRZM1vO+geW0OhGw==",
            ("es5/tex-mml-chtml.js", "es5/a11y/", "es5/adaptors/", "es5/input/", "es5/output/",
             "es5/sre/", "es5/ui/"), "mathjax"),
    # the versions myst-nb 1.4 loads from CDNs
    Package("requirejs", "2.3.4",
            "sha512-qPD5gRrj6kGQ0ZySAJgqbArkaDqPMbQIT0zSZDkIv1mfA17w/tR2Faq5l2qqRf2CdQx6FWln9nUrgd2UDzb19A==",
            ("require.js",), "requirejs"),
    Package("@jupyter-widgets/html-manager", "1.0.6",
            "sha512-+Mn+Ra8wyIHrYaUpfmf9A3dsLkt/NuwzPQN8sthdxBD35VV5cOJbpmgMhNR27n/rmP3mKyEe0PWCJrtZrXTXDQ==",
            ("dist/",), "html-manager"),
)

# Relative paths are read from _static by Sphinx (mathjax_path) and myst-nb (nb_ipywidgets_js);
# html_extra_path copies _vendor/ over the built book's root, so _vendor/_static/x is _static/x.
EXTRA_PATH = "_vendor"
SPHINX_CONFIG = {
    "html_extra_path": [EXTRA_PATH],
    "mathjax_path": "vendor/mathjax/es5/tex-mml-chtml.js",
    "nb_ipywidgets_js": {
        "vendor/requirejs/require.js": {},
        # widget libraries beyond the bundled base / controls / output would still come from here
        "vendor/html-manager/dist/embed-amd.js": {"data-jupyter-widgets-cdn": "https://cdn.jsdelivr.net/npm/"},
    },
}


def check_integrity(data: bytes, integrity: str, what: str) -> None:
    algorithm, _, expected = integrity.partition("-")
    got = base64.b64encode(hashlib.new(algorithm, data).digest()).decode()
    if got != expected:
        raise ValueError(f"{what}: {algorithm} is {got}, expected {expected} (corrupt download "
                         f"or a registry that serves other bytes)")


def tarball(package: Package, cache: Path = CACHE, timeout: float = 60) -> bytes:
    """The package's npm tarball, from the cache or the registry, checked against its integrity."""
    path = cache / f"{package.folder}-{package.version}.tgz"
    if path.exists():
        data = path.read_bytes()
    else:
        with urllib.request.urlopen(package.tarball_url, timeout=timeout) as response:
            data = response.read()
    check_integrity(data, package.integrity, package.tarball_url)
    if not path.exists():
        cache.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".part")
        tmp.write_bytes(data)
        tmp.replace(path)  # never a half-written cache entry
    return data


def extract(data: bytes, package: Package, dest: Path) -> int:
    """Copy the kept files (no source maps) out of an npm tarball into dest; -> files written."""
    written = 0
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        for member in tar.getmembers():
            inner = member.name.partition("/")[2]  # npm tarballs wrap everything in package/
            wanted = any(inner == k or (k.endswith("/") and inner.startswith(k)) for k in package.keep)
            if not member.isfile() or not wanted or inner.endswith(".map") or ".." in inner.split("/"):
                continue
            target = dest / inner
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(tar.extractfile(member).read())
            written += 1
    missing = [k for k in package.keep if not (dest / k).exists()]
    if missing:
        raise ValueError(f"{package.name}@{package.version}: the tarball has no {missing}")
    return written


def vendor(book_dir: Path, cache: Path = CACHE) -> dict:
    """Put every package into ``book_dir/_vendor``; -> the Sphinx settings that use them.

    Raises OSError (no registry) or ValueError (integrity) and leaves no partial copy behind.
    """
    root = Path(book_dir) / EXTRA_PATH / "_static" / "vendor"
    shutil.rmtree(root.parents[1], ignore_errors=True)
    try:
        for package in PACKAGES:
            extract(tarball(package, cache), package, root / package.folder)
    except BaseException:
        shutil.rmtree(root.parents[1], ignore_errors=True)
        raise
    return SPHINX_CONFIG


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__.strip().splitlines()[-1].strip())
    print(vendor(Path(sys.argv[1])))
