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
SOURCES = ("_config.yml", "_toc.yml", "_static", "book", "notebooks")
# Paper scale: the official MAE ViT-L (downloaded once), MAGE ViT-B and Palette Places2 (files
# downloaded by hand, named by $I2I_UNLEARN_WEIGHTS_MAGE_VITB / _PALETTE_PLACES2) on
# $I2I_UNLEARN_IMAGENET / $I2I_UNLEARN_PLACES, one GPU, the family's default unlearning steps, no
# retrained reference (none is published). Notebooks that have no paper-scale version run at tiny
# scale and say so.
PAPER_COMMON = {"scale": "paper", "steps": None, "workers": 1, "with_retrained": False}
PAPER_PARAMETERS = {
    "02_table1_imagenet": {"models": ["mae-vit-large", "mage-vitb"]},
    "03_table_places": {"models": ["mae-vit-large", "palette-places2"]},
    "03b_table_families": {"models": ["mage-vitb", "palette-places2", "mae-vit-large"]},
    "04_figure_qualitative": {"models": ["mae-vit-large"]},
    "05_figure_tsne": {"models": ["mae-vit-large"], "extra_rows": ["max-loss", "random-encoder"]},
    "06_ablation_alpha": {"model": "mae-vit-large"},
    "07_ablation_proxy": {"model": "mae-vit-large"},
    "08_appendix_masks": {"models": ["mae-vit-large"]},
    "10_explorer": {"grid": [("mae-vit-large", list(range(100)), m, None)
                             for m in ("ours", "ours-proxy", "max-loss", "noisy-label")]},
}
TINY_ONLY = ("00_quickstart", "01_theory", "09_audit")  # the reasons are on each page


def parameters_for(notebook: Path, scale: str) -> dict:
    """Papermill parameters of ``notebook`` at ``scale`` (of the common ones, those it has)."""
    if scale == "tiny" or notebook.stem in TINY_ONLY:
        return {}
    if notebook.stem not in PAPER_PARAMETERS:
        raise ValueError(f"{notebook.stem}: no paper-scale parameters; add them to "
                         f"PAPER_PARAMETERS or to TINY_ONLY")
    known = papermill.inspect_notebook(str(notebook))
    return {**{k: v for k, v in PAPER_COMMON.items() if k in known},
            **PAPER_PARAMETERS[notebook.stem]}


def paper_models_named(value=PAPER_PARAMETERS) -> list[str]:
    """The official models that ``value`` (any nesting; default ``PAPER_PARAMETERS``) mentions."""
    from i2i_unlearn.zoo import PAPER_MODELS
    if isinstance(value, str):
        return [value] if value in PAPER_MODELS else []
    items = value.values() if isinstance(value, dict) else value if isinstance(
        value, (list, tuple)) else ()
    return sorted({name for item in items for name in paper_models_named(item)})


def check_paper_inputs() -> None:
    """Fail before an hour of GPU work, not after: the data folders and hand-fetched weights."""
    from i2i_unlearn import zoo
    from i2i_unlearn.data import DATA_ENV, paper_data_root
    for name in DATA_ENV:
        paper_data_root(name)
    missing = zoo.missing_paper_weights(paper_models_named())
    if missing:
        raise SystemExit("paper scale needs these checkpoints, downloaded by hand: " + "; ".join(
            f"{n} from {zoo.PAPER_MODELS[n]['page']} -> export {zoo.weights_env(n)}=FILE"
            for n in missing))


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
    if scale == "paper":
        check_paper_inputs()
    # Notebooks share unlearned models and tables through one cache per scale (never in git).
    os.environ.setdefault(CACHE_ENV, str(out / "cache" / scale))
    for nb in notebooks():
        target = src / "notebooks" / nb.name
        if executed is not None:
            shutil.copy(executed / nb.name, target)
            hide_injected_parameters(target)
            continue
        start = time.time()
        parameters = parameters_for(nb, scale)
        print(f"executing {nb.relative_to(ROOT)} ({parameters.get('scale', 'tiny')} scale) ...",
              flush=True)
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
