"""Execute every notebook with papermill into a build copy, then build the HTML book with -W.

    python tools/build_book.py [--scale tiny|paper] [--executed DIR]

The build copy (``_build/src``) keeps the committed layout (``notebooks/<name>.ipynb``), so the
Colab button of each page points at the committed notebook. Papermill's injected-parameters cell
is tagged ``remove-cell``; each notebook shows the scale of its numbers in a visible banner.
``--executed DIR`` reuses notebooks already executed into DIR (the tests do this).
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import papermill

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from i2i_unlearn.experiments import CACHE_ENV  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "_build"
SOURCES = ("_config.yml", "_toc.yml", "book", "notebooks")
PAPER_PARAMETERS = {"scale": "paper"}


def notebooks() -> list[Path]:
    return sorted((ROOT / "notebooks").glob("*.ipynb"))


def execute(notebook: Path, out: Path, parameters: dict | None = None, timeout: int = 1800) -> Path:
    """Run one notebook with papermill (cwd = its folder) and hide the injected cell."""
    out.parent.mkdir(parents=True, exist_ok=True)
    papermill.execute_notebook(str(notebook), str(out), parameters=parameters or {},
                               kernel_name="python3", cwd=str(notebook.parent),
                               execution_timeout=timeout, progress_bar=False)
    hide_injected_parameters(out)
    return out


def hide_injected_parameters(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        tags = cell.metadata.setdefault("tags", [])
        if "injected-parameters" in tags and "remove-cell" not in tags:
            tags.append("remove-cell")
    nbformat.write(nb, path)


def build(scale: str = "tiny", executed: Path | None = None, out: Path = BUILD) -> Path:
    src = out / "src"
    shutil.rmtree(src, ignore_errors=True)
    src.mkdir(parents=True)
    for name in SOURCES:
        (shutil.copytree if (ROOT / name).is_dir() else shutil.copy)(ROOT / name, src / name)
    parameters = PAPER_PARAMETERS if scale == "paper" else {}
    # Notebooks share unlearned models and tables through one cache per scale (never in git).
    os.environ.setdefault(CACHE_ENV, str(out / "cache" / scale))
    for nb in notebooks():
        target = src / "notebooks" / nb.name
        if executed is not None:
            shutil.copy(executed / nb.name, target)
            hide_injected_parameters(target)
            continue
        start = time.time()
        print(f"executing {nb.relative_to(ROOT)} ({scale} scale) ...", flush=True)
        execute(nb, target, parameters)
        print(f"  done in {time.time() - start:.0f} s", flush=True)
    subprocess.run([str(Path(sys.executable).with_name("jupyter-book")), "build", str(src), "-W", "-n",
                    "--keep-going", "--all"], check=True)
    html = src / "_build" / "html"
    print(f"\nThe book is in {html.relative_to(ROOT) if html.is_relative_to(ROOT) else html}"
          f"/index.html")
    return html


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", choices=["tiny", "paper"], default="tiny")
    parser.add_argument("--executed", type=Path, default=None,
                        help="folder of already executed notebooks to reuse")
    args = parser.parse_args()
    build(args.scale, args.executed)
