"""Notebook execution shared by the notebook tests: every notebook run once per session at tiny
scale with papermill, one experiment cache for all (notebooks reuse each other's runs)."""
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import build_book  # noqa: E402
from i2i_unlearn.experiments import CACHE_ENV  # noqa: E402

# Tiny-scale overrides passed by the tests (the notebooks' defaults are already tiny).
TINY = {name: {"scale": "tiny"} for name in (
    "00_quickstart", "01_theory", "02_table1_imagenet", "03_table_places", "03b_table_families", "04_figure_qualitative",
    "05_figure_tsne", "06_ablation_alpha", "07_ablation_proxy", "08_appendix_masks", "09_audit",
    "10_explorer", "11_own_model")}


def glued(path: Path) -> dict[str, object]:
    """name -> text/plain value of every glued output of an executed notebook."""
    out = {}
    for cell in nbformat.read(path, as_version=4).cells:
        for o in cell.get("outputs", []):
            name = o.get("metadata", {}).get("scrapbook", {}).get("name")
            if name:
                prefix = "application/papermill.record/"  # how myst_nb.glue stores mime data
                out[name] = {k.removeprefix(prefix): v for k, v in o.get("data", {}).items()}
    return out


@pytest.fixture(scope="session")
def executed(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("executed")
    # One experiment cache for the session: notebooks reuse each other's unlearned models.
    mp = pytest.MonkeyPatch()
    mp.setenv(CACHE_ENV, str(tmp_path_factory.mktemp("experiments")))
    plan = {nb: TINY.get(nb.stem, {}) for nb in build_book.notebooks()}
    # Two at a time as `make book` does; a failing page keeps its traceback for its own tests.
    build_book.reproduce.run_notebooks(plan, out, workers=2, timeout=900)
    yield out
    mp.undo()


def errors(path: Path) -> list[dict]:
    """The error outputs of an executed notebook (there should be none)."""
    nb = nbformat.read(path, as_version=4)
    return [o for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]


@pytest.fixture(scope="session")
def book_html(executed, tmp_path_factory) -> Path:
    return build_book.build("tiny", executed=executed, out=tmp_path_factory.mktemp("book"))


def page_values(executed: Path, notebook: str, names=(), figures=()) -> dict:
    """The glued values of an executed notebook, after checking it ran without errors, glued
    every name in ``names`` and drew every figure in ``figures`` as a PNG."""
    path = executed / f"{notebook}.ipynb"
    assert not errors(path), f"{notebook}: error outputs"
    values = glued(path)
    missing = (set(names) | set(figures)) - set(values)
    assert not missing, f"{notebook}: nothing glued as {sorted(missing)}"
    assert all("image/png" in values[k] for k in figures), f"{notebook}: a figure without PNG"
    return values
