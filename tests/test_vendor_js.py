"""tools/vendor_js.py: npm tarballs checked against their integrity, only the kept files copied.

Offline, on tarballs made here; the real fetch runs in every book build (test_notebooks)."""
import base64
import hashlib
import io
import sys
import tarfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
import vendor_js  # noqa: E402


def npm_tarball(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(f"package/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def integrity(data: bytes) -> str:
    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()


def package(data: bytes, keep=("dist/", "main.js")) -> vendor_js.Package:
    return vendor_js.Package("@scope/demo", "1.2.3", integrity(data), keep, "demo")


def test_tarball_from_cache_is_checked_and_a_corrupt_one_rejected(tmp_path):
    data = npm_tarball({"main.js": b"ok"})
    pkg = package(data)
    (tmp_path / "demo-1.2.3.tgz").write_bytes(data)
    assert vendor_js.tarball(pkg, cache=tmp_path) == data
    (tmp_path / "demo-1.2.3.tgz").write_bytes(data[:-1] + b"x")
    with pytest.raises(ValueError, match=r"demo-1\.2\.3\.tgz: sha512 is .*, expected"):
        vendor_js.tarball(pkg, cache=tmp_path)


def test_tarball_url_follows_the_registry_layout_for_scoped_names():
    assert vendor_js.Package("@jupyter-widgets/html-manager", "1.0.6", "", (), "x").tarball_url \
        .endswith("/@jupyter-widgets/html-manager/-/html-manager-1.0.6.tgz")


def test_extract_keeps_the_named_files_and_folders_without_source_maps(tmp_path):
    data = npm_tarball({"main.js": b"m", "dist/a.js": b"a", "dist/a.js.map": b"{}",
                        "dist/fonts/f.woff": b"f", "src/b.ts": b"b", "README.md": b"r"})
    written = vendor_js.extract(data, package(data), tmp_path)
    got = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file())
    assert got == ["dist/a.js", "dist/fonts/f.woff", "main.js"] and written == 3


def test_extract_names_what_the_tarball_lacks(tmp_path):
    data = npm_tarball({"dist/a.js": b"a"})
    with pytest.raises(ValueError, match=r"@scope/demo@1\.2\.3: the tarball has no \['main\.js'\]"):
        vendor_js.extract(data, package(data), tmp_path)


def test_vendor_leaves_nothing_behind_when_a_package_fails(tmp_path, monkeypatch):
    good = npm_tarball({"main.js": b"m", "dist/a.js": b"a"})
    bad = npm_tarball({"other.js": b"o"})
    monkeypatch.setattr(vendor_js, "PACKAGES", (package(good), vendor_js.Package(
        "bad", "0.1.0", integrity(bad), ("main.js",), "bad")))
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "demo-1.2.3.tgz").write_bytes(good)
    (cache / "bad-0.1.0.tgz").write_bytes(bad)
    with pytest.raises(ValueError, match="bad@0.1.0"):
        vendor_js.vendor(tmp_path / "book", cache=cache)
    assert not (tmp_path / "book" / vendor_js.EXTRA_PATH).exists()
    monkeypatch.setattr(vendor_js, "PACKAGES", (package(good),))
    settings = vendor_js.vendor(tmp_path / "book", cache=cache)
    assert (tmp_path / "book" / "_vendor" / "_static" / "vendor" / "demo" / "dist" / "a.js").is_file()
    assert settings["html_extra_path"] == ["_vendor"]
