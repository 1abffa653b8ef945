"""Execute every notebook with papermill into a build copy, then build the HTML book with -W.

    python tools/build_book.py [--scale tiny|paper] [--executed DIR] [--workers N] [--cdn]

The build copy (``_build/src``) keeps the committed layout (``notebooks/<name>.ipynb``), so the
Colab button of each page points at the committed notebook. Papermill's injected-parameters cell
is tagged ``remove-cell``; each notebook shows the scale of its numbers in a visible banner.
``--executed DIR`` reuses notebooks already executed into DIR (the tests do this). MathJax and
the widget scripts are served from the book itself (``tools/vendor_js.py``), so it works offline;
``--cdn`` (or no access to the npm registry) leaves them on their CDNs.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from i2i_unlearn.experiments import CACHE_ENV  # noqa: E402
from i2i_unlearn import reproduce  # noqa: E402
# What the notebooks run at each scale lives in the package (``i2i-unlearn reproduce`` uses it
# too); re-exported here for the tests.
from i2i_unlearn.reproduce import (PAPER_PARAMETERS, TINY_ONLY, execute,  # noqa: E402,F401
                                   hide_injected_parameters, paper_models_named, parameters_for)
import vendor_js  # noqa: E402  (tools/, next to this file)

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "_build"
SOURCES = ("_config.yml", "_toc.yml", "_static", "_ext", "book", "notebooks")


def check_paper_inputs() -> None:
    """Every paper-scale page's data folders and hand-fetched weights, before any work."""
    try:
        reproduce.check_paper_inputs()
    except (ValueError, FileNotFoundError) as err:
        raise SystemExit(str(err)) from None


def notebooks() -> list[Path]:
    return reproduce.notebooks(ROOT / "notebooks")


def use_vendored_scripts(src: Path) -> None:
    """Copy MathJax and the widget scripts into the book at src and point src/_config.yml at them;
    on failure (no registry, bad checksum) say so and keep the CDNs."""
    import yaml

    try:
        settings = vendor_js.vendor(src)
    except (OSError, ValueError) as err:
        print(f"warning: MathJax and the widget scripts stay on their CDNs (the book needs network "
              f"access to show equations and widgets): {err}", flush=True)
        return
    config_file = src / "_config.yml"
    config = yaml.safe_load(config_file.read_text())
    config.setdefault("sphinx", {}).setdefault("config", {}).update(settings)
    config_file.write_text(yaml.safe_dump(config, sort_keys=False, allow_unicode=True))


def build(scale: str = "tiny", executed: Path | None = None, out: Path = BUILD,
          vendor: bool = True, workers: int | None = None) -> Path:
    src = out / "src"
    shutil.rmtree(src, ignore_errors=True)
    src.mkdir(parents=True)
    for name in SOURCES:
        (shutil.copytree if (ROOT / name).is_dir() else shutil.copy)(ROOT / name, src / name)
    if vendor:
        use_vendored_scripts(src)
    if scale == "paper":
        check_paper_inputs()
    # Notebooks share unlearned models and tables through one cache per scale (never in git).
    os.environ.setdefault(CACHE_ENV, str(out / "cache" / scale))
    if executed is not None:
        for nb in notebooks():
            shutil.copy(executed / nb.name, src / "notebooks" / nb.name)
            hide_injected_parameters(src / "notebooks" / nb.name)
    else:
        workers = workers or reproduce.default_workers(scale)
        plan = {nb: parameters_for(nb, scale) for nb in notebooks()}
        print(f"executing {len(plan)} notebooks at {scale} scale, {workers} at a time ...", flush=True)
        rows = reproduce.run_notebooks(plan, src / "notebooks", workers, stop_on_failure=True,
                                       log=lambda text: print("  " + text, flush=True))
        failed = [r for r in rows if r["status"] == "failed"]
        if failed:
            raise SystemExit(f"{failed[0]['notebook']} failed: {failed[0]['error']} (its executed "
                             f"cells and traceback: {failed[0]['path']})")
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
    parser.add_argument("--workers", type=int, default=None,
                        help="notebooks executed side by side (default: 2 at tiny scale on two "
                             "cores or more, else 1)")
    parser.add_argument("--cdn", action="store_true",
                        help="load MathJax and the widget scripts from their CDNs instead of "
                             "copying them into the book (needs no npm registry)")
    args = parser.parse_args()
    build(args.scale, args.executed, vendor=not args.cdn, workers=args.workers)
