"""Reproduce the paper's tables and figures: run the book's notebooks with papermill::

    i2i-unlearn reproduce                                  # every notebook, tiny scale
    i2i-unlearn reproduce 02 03b --scale paper --out runs/paper
    i2i-unlearn reproduce 06 -p 'alphas=[0.1, 1.0]' -p seeds='[0, 1, 2]'

Each notebook is executed into ``OUT/<name>.ipynb`` with its tables and figures in it, and
``OUT/summary.csv`` says which ran, how long each took and why any failed; a notebook that fails
keeps its executed cells and the traceback, and the others still run. Notebooks share unlearned
models and tables through one experiment cache per scale (``OUT/cache/<scale>``), so a run
unlearns each configuration once. ``make book`` does the same and then builds the HTML book
(``tools/build_book.py``).
"""
from __future__ import annotations

import ast
import concurrent.futures as futures
import multiprocessing
import os
import time
from pathlib import Path

import pandas as pd

from .experiments import CACHE_ENV

# Paper scale: the official MAE ViT-L (downloaded once), MAGE ViT-B and Palette Places2 (files
# downloaded by hand, named by $I2I_UNLEARN_WEIGHTS_MAGE_VITB / _PALETTE_PLACES2) on
# $I2I_UNLEARN_IMAGENET / $I2I_UNLEARN_PLACES, one GPU, the family's default unlearning steps, no
# retrained reference (none is published). Notebooks that have no paper-scale version run at tiny
# scale and say so.
PAPER_COMMON = {"scale": "paper", "steps": None, "workers": 1, "with_retrained": False}
PAPER_PARAMETERS = {
    "02_table1_imagenet": {"models": ["mae-vit-large", "mage-vitb"]},
    "03_table_places": {"models": ["mae-vit-large", "palette-places2"]},
    "03b_table_families": {"models": ["mage-vitb", "palette-places2", "mae-vit-large"],
                           "ceiling_images": 500},
    "04_figure_qualitative": {"models": ["mae-vit-large"]},
    "05_figure_tsne": {"models": ["mae-vit-large"], "extra_rows": ["max-loss", "random-encoder"]},
    "06_ablation_alpha": {"model": "mae-vit-large"},
    "07_ablation_proxy": {"model": "mae-vit-large"},
    "08_appendix_masks": {"models": ["mae-vit-large"], "with_context": False},
    "10_explorer": {"grid": [("mae-vit-large", list(range(100)), m, None)
                             for m in ("ours", "ours-proxy", "max-loss", "noisy-label")]},
}
TINY_ONLY = ("00_quickstart", "01_theory", "09_audit", "11_own_model")  # the reasons are on each page
# Pages that reuse another page's experiments (unlearned models, tables) through the cache: when
# pages run side by side, each waits for the pages it reuses, so that work is done once. A missing
# entry costs time, never correctness (the cache is safe under concurrent writers).
NEEDS = {"03b_table_families": ("02_table1_imagenet", "03_table_places"),
         **{stem: ("02_table1_imagenet",) for stem in (
             "04_figure_qualitative", "05_figure_tsne", "06_ablation_alpha", "07_ablation_proxy",
             "08_appendix_masks", "09_audit", "10_explorer")}}
# About how many minutes each page takes at tiny scale on 2 cores, alone (a schedule hint only:
# the longest chains start first, so two workers finish together).
TINY_MINUTES = {"00_quickstart": 1.2, "01_theory": 0.8, "02_table1_imagenet": 2.5,
                "03_table_places": 2.2, "03b_table_families": 6.3, "04_figure_qualitative": 0.5,
                "05_figure_tsne": 2.3, "06_ablation_alpha": 1.3, "07_ablation_proxy": 1.3,
                "08_appendix_masks": 3.9, "09_audit": 3.1, "10_explorer": 0.6,
                "11_own_model": 3.2}
# The paper dataset a page runs on, where it is not the data of the models it names.
PAPER_DATA_OF_PAGE = {"02_table1_imagenet": "imagenet", "03_table_places": "places"}


def notebook_folder(folder: str | Path | None = None) -> Path:
    """``folder``, else ``./notebooks``, else the ``notebooks/`` of the checkout this package
    was installed from: the notebooks live in the repository, not in the wheel."""
    candidates = [Path(folder)] if folder is not None else [
        Path.cwd() / "notebooks", Path(__file__).resolve().parents[1] / "notebooks"]
    for path in candidates:
        if any(path.glob("*.ipynb")):
            return path
    raise FileNotFoundError(
        f"notebooks: no .ipynb files in {', '.join(map(str, candidates))}; the notebooks live in "
        "the repository's notebooks/ folder: clone it and run from there, or pass --notebooks-dir DIR")


def notebooks(folder: str | Path | None = None) -> list[Path]:
    return sorted(notebook_folder(folder).glob("*.ipynb"))


def select(names, folder: str | Path | None = None) -> list[Path]:
    """The notebooks ``names`` picks, in book order: a number ("03b"), a stem
    ("03b_table_families") or a file name; none or empty: all of them."""
    every = notebooks(folder)
    if not names:
        return every
    picked = []
    for name in names:
        key = Path(name).stem
        match = [nb for nb in every if nb.stem == key or nb.stem.split("_")[0] == key]
        if not match:
            raise ValueError(f"notebooks: no notebook {name!r}; expected one of "
                             f"{', '.join(nb.stem for nb in every)} (or its number)")
        picked += [nb for nb in match if nb not in picked]
    return [nb for nb in every if nb in picked]


def parameters_for(notebook: Path, scale: str) -> dict:
    """Papermill parameters of ``notebook`` at ``scale`` (of the common ones, those it has)."""
    import papermill
    if scale not in ("tiny", "paper"):
        raise ValueError(f"scale: expected 'tiny' or 'paper', got {scale!r}")
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
    from .zoo import PAPER_MODELS
    if isinstance(value, str):
        return [value] if value in PAPER_MODELS else []
    items = value.values() if isinstance(value, dict) else value if isinstance(
        value, (list, tuple)) else ()
    return sorted({name for item in items for name in paper_models_named(item)})


def check_paper_inputs(stems=None) -> None:
    """Fail before an hour of GPU work, not after: the data folders and the hand-fetched weights
    that the paper-scale pages ``stems`` (default: all) need. Raises FileNotFoundError /
    ValueError naming what is missing and where to get it."""
    from . import zoo
    from .data import DATA_ENV, paper_data_root
    params = {s: p for s, p in PAPER_PARAMETERS.items() if stems is None or s in stems}
    models = paper_models_named(params)
    data = {PAPER_DATA_OF_PAGE[s] for s in params if s in PAPER_DATA_OF_PAGE}
    data |= {zoo.PAPER_MODELS[m]["data"] for m in models}
    for name in sorted(data & set(DATA_ENV)):
        paper_data_root(name)
    missing = zoo.missing_paper_weights(models)
    if missing:
        raise FileNotFoundError("paper scale needs these checkpoints, downloaded by hand: " + "; ".join(
            f"{n} from {zoo.PAPER_MODELS[n]['page']} -> export {zoo.weights_env(n)}=FILE"
            for n in missing))


def hide_injected_parameters(path: Path) -> None:
    """Tag papermill's injected-parameters cell ``remove-cell`` (the page shows a banner)."""
    import nbformat
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        tags = cell.metadata.setdefault("tags", [])
        if "injected-parameters" in tags and "remove-cell" not in tags:
            tags.append("remove-cell")
    nbformat.write(nb, path)


def execute(notebook: Path, out: Path, parameters: dict | None = None, timeout: int = 1800,
            progress: bool = False) -> Path:
    """Run one notebook with papermill (cwd = its folder) and hide the injected cell."""
    import papermill
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        papermill.execute_notebook(str(notebook), str(out), parameters=parameters or {},
                                   kernel_name="python3", cwd=str(notebook.parent),
                                   execution_timeout=timeout, progress_bar=progress)
    finally:  # a failed run's notebook keeps its cells and traceback, with the cell hidden too
        if out.exists():
            hide_injected_parameters(out)
    return out


def default_workers(scale: str) -> int:
    """Pages run side by side: two at tiny scale on two cores or more (a tiny model barely uses a
    second thread), else one (a paper-scale page has the GPU to itself)."""
    return 2 if scale == "tiny" and (os.cpu_count() or 1) >= 2 else 1


def _priority(stem: str, stems: set[str]) -> float:
    """Minutes of ``stem`` plus those of the chosen pages that wait for it: the longer, the sooner."""
    waiting = [s for s in stems if stem in NEEDS.get(s, ())]
    return TINY_MINUTES.get(stem, 1.0) + sum(TINY_MINUTES.get(s, 1.0) for s in waiting)


def _execute_timed(notebook: Path, out: Path, parameters: dict, timeout: int,
                   env: dict | None = None) -> tuple[float, str]:
    """Run one page; -> (seconds, error: "" or the failure's last line). Errors are returned as
    text so that a worker process never has to pickle papermill's exception."""
    os.environ.update(env or {})  # a worker's threads and cache, inherited by the kernel
    start = time.time()
    try:
        execute(notebook, out, parameters, timeout)
        error = ""
    except Exception as err:  # noqa: BLE001 -- reported by the caller
        lines = str(err).strip().splitlines()
        error = lines[-1] if lines else type(err).__name__
    return round(time.time() - start, 1), error


def run_notebooks(plan: dict, out: str | Path, workers: int = 1, timeout: int = 1800,
                  stop_on_failure: bool = False, log=None, on_finish=None) -> list[dict]:
    """Execute ``plan`` (notebook path -> papermill parameters) into ``out``, ``workers`` at once.

    With one worker the pages run in ``plan``'s order in this process. With more, each runs in a
    worker process once the pages it reuses (``NEEDS``) are done, the ready page that heads the
    most work (``TINY_MINUTES``) first, and each kernel gets ``cpu_count // workers`` threads
    (unless ``OMP_NUM_THREADS`` is set). ``log(text)`` hears of each start and finish, and
    ``on_finish(rows)`` gets the rows so far (in ``plan``'s order) as each page ends.

    Returns one row per page, in ``plan``'s order: ``notebook, status ("ok" | "failed" |
    "skipped"), seconds, path, error``. A failure does not stop the others unless
    ``stop_on_failure``: then no new page starts and the rest are "skipped".
    """
    if workers < 1:
        raise ValueError(f"workers: expected at least 1, got {workers}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    log = log or (lambda text: None)
    order = list(plan)
    rows = {nb: {"notebook": nb.stem, "status": "skipped", "seconds": 0.0,
                 "path": str(out / nb.name), "error": ""} for nb in order}

    def finish(nb, seconds, error):
        rows[nb].update(status="failed" if error else "ok", seconds=seconds, error=error)
        log(f"{nb.stem}: {'failed: ' + error if error else 'done'} in {seconds:.0f} s")
        if on_finish is not None:
            on_finish([rows[n] for n in order if rows[n]["status"] != "skipped"])

    if workers == 1:
        for nb in order:
            log(f"executing {nb.stem} ...")
            finish(nb, *_execute_timed(nb, out / nb.name, plan[nb], timeout))
            if stop_on_failure and rows[nb]["status"] == "failed":
                break
        return [rows[nb] for nb in order]

    threads = os.environ.get("OMP_NUM_THREADS") or str(max(1, (os.cpu_count() or 1) // workers))
    env = {"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
    if CACHE_ENV in os.environ:
        env[CACHE_ENV] = os.environ[CACHE_ENV]
    stems = {nb.stem for nb in order}
    waiting, done, running = list(order), set(), {}
    failed = False
    with futures.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        while waiting or running:
            ready = [] if failed and stop_on_failure else [
                nb for nb in waiting
                if all(n not in stems or n in done for n in NEEDS.get(nb.stem, ()))]
            for nb in sorted(ready, key=lambda nb: -_priority(nb.stem, stems)):
                if len(running) == workers:
                    break
                waiting.remove(nb)
                log(f"executing {nb.stem} ...")
                running[pool.submit(_execute_timed, nb, out / nb.name, plan[nb], timeout, env)] = nb
            if not running:
                break  # stopped after a failure: the rest stay "skipped"
            finished, _ = futures.wait(running, return_when=futures.FIRST_COMPLETED)
            for future in finished:
                nb = running.pop(future)
                finish(nb, *future.result())
                done.add(nb.stem)
                failed = failed or rows[nb]["status"] == "failed"
    return [rows[nb] for nb in order]


def parse_overrides(pairs) -> dict:
    """``["steps=50", "seeds=[0, 1]", "model=mae-mnist"]`` -> {"steps": 50, "seeds": [0, 1],
    "model": "mae-mnist"}: values are Python literals, or strings where they are not."""
    out = {}
    for pair in pairs or ():
        key, sep, text = pair.partition("=")
        if not sep or not key.strip().isidentifier():
            raise ValueError(f"parameter: expected NAME=VALUE, got {pair!r}")
        try:
            out[key.strip()] = ast.literal_eval(text.strip())
        except (ValueError, SyntaxError):
            out[key.strip()] = text.strip()
    return out


def reproduce(names=None, scale: str = "tiny", out: str | Path = "runs/reproduce",
              overrides: dict | None = None, folder: str | Path | None = None,
              timeout: int = 1800, progress: bool = True,
              workers: int | None = None) -> pd.DataFrame:
    """Execute the notebooks ``names`` (default: all) at ``scale`` into ``out``, ``workers`` at
    a time (default: :func:`default_workers`; see :func:`run_notebooks`).

    ``overrides`` set papermill parameters on top of the scale's (each goes to the notebooks
    that have it; one that no selected notebook has is an error). Returns, and writes to
    ``out/summary.csv``, one row per notebook: ``notebook, scale, status ("ok" | "failed"),
    seconds, path, error``. A failure does not stop the others.
    """
    try:
        import papermill
    except ImportError:
        raise ImportError("reproduce needs papermill and a Jupyter kernel with the book's "
                          "packages: pip install 'i2i-unlearn[book]'") from None
    from tqdm.auto import tqdm
    chosen = select(names, folder)
    overrides = dict(overrides or {})
    known = {nb.stem: set(papermill.inspect_notebook(str(nb))) for nb in chosen}
    unused = [k for k in overrides if not any(k in params for params in known.values())]
    if unused:
        raise ValueError(f"parameters: no selected notebook has {', '.join(unused)} "
                         f"({', '.join(known)})")
    plan = {nb: {**parameters_for(nb, scale),
                 **{k: v for k, v in overrides.items() if k in known[nb.stem]}} for nb in chosen}
    if scale == "paper":
        check_paper_inputs([nb.stem for nb in chosen if nb.stem not in TINY_ONLY])
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    previous = os.environ.get(CACHE_ENV)
    os.environ[CACHE_ENV] = previous or str((out / "cache" / scale).resolve())
    bar = tqdm(total=len(plan), desc=f"notebooks ({scale} scale)", disable=not progress)

    def table(rows) -> pd.DataFrame:
        scales = {nb.stem: params.get("scale", "tiny") for nb, params in plan.items()}
        frame = pd.DataFrame(rows, columns=["notebook", "status", "seconds", "path", "error"])
        frame.insert(1, "scale", frame["notebook"].map(scales))
        return frame

    def finished(rows):
        bar.update(len(rows) - bar.n)
        table(rows).to_csv(out / "summary.csv", index=False)  # kept as it grows

    try:
        rows = run_notebooks(plan, out, workers or default_workers(scale), timeout,
                             log=bar.set_postfix_str, on_finish=finished)
    finally:
        bar.close()
        if previous is None:
            os.environ.pop(CACHE_ENV, None)
    return table(rows)
