"""The paper's tables from tidy rows: every method, several seeds, mean ± std. ::

    df = compare_methods("mae-mnist", forget=[0, 1, 2], seeds=(0, 1, 2),
                         retrained="mae-mnist-retrained", workers=2)
    print(paper_table(df))

Seeds: for an unlearned row, seed ``s`` is both the unlearning seed (batches, masks, noise) and the
sampling seed of generation; for ``original`` and ``retrained`` only the sampling seed varies
(a deterministic generator such as the MAE's then shows zero spread, as it should).
"""
from __future__ import annotations

import os
import time

import pandas as pd

from .evaluate import SETS, evaluate_model, rows_from_scores, score_model, tidy
from .metrics import METRICS
from .unlearn import METHODS, split_method

# Rows in the paper's order, with our additions: the proxy variant and the retrained reference.
METHOD_ORDER = ("original", "max-loss", "noisy-label", "retain-label", "random-encoder", "ours",
                "ours-proxy", "retrained")
# The retain-set ablation's rows: ours with the proxy pool, another dataset, or no retain set.
RETAIN_SET_ROWS = ("ours-retain-mnist", "ours-retain-scenes", "ours-retain-imagenet",
                   "ours-retain-places", "ours-no-retain")
METRIC_ORDER = ("fid", "is", "cosine", "acc", "mse", "psnr")
SET_LABELS = {"retain": "D_R", "forget": "D_F"}


def _order(values, order):
    known = [v for v in order if v in set(values)]
    return known + sorted(set(values) - set(order))


def summarize(df: pd.DataFrame) -> pd.DataFrame:
    """Mean, std (over seeds, ddof 1; 0 for one seed) and count per model, method, set, metric."""
    if "mask" in df and df["mask"].nunique() > 1:
        raise ValueError(f"df: rows of several masks {sorted(df['mask'].unique())}; select one "
                         f"first, e.g. df[df['mask'] == 'centre-8/16']")
    g = df.groupby(["model", "method", "set", "metric"], sort=False)["value"]
    out = g.agg(["mean", "std", "count"]).reset_index()
    out["std"] = out["std"].fillna(0.0)
    return out


def paper_table(df: pd.DataFrame, metrics=None, digits: int = 2, numeric: bool = False) -> pd.DataFrame:
    """Pivot tidy rows to the paper's layout: one row per (model, method), columns
    (D_R | D_F) × metric, cells ``mean ± std`` over seeds (``numeric=True``: the means only)."""
    s = summarize(df)
    if metrics is not None:
        s = s[s["metric"].isin(metrics)]
    s = s.assign(set=s["set"].map(SET_LABELS).fillna(s["set"]))
    fmt = f"{{:.{digits}f}} ± {{:.{digits}f}}"
    s["cell"] = s["mean"] if numeric else [fmt.format(m, d) for m, d in zip(s["mean"], s["std"])]
    table = s.pivot_table(index=["model", "method"], columns=["set", "metric"], values="cell",
                          aggfunc="first", sort=False)
    sets = [SET_LABELS[x] for x in SETS if SET_LABELS[x] in table.columns.get_level_values(0)]
    cols = [(st, m) for st in sets
            for m in _order(table[st].columns, METRIC_ORDER)]
    rows = [(mo, me) for mo in _order(table.index.get_level_values(0), ())
            for me in _order(table.loc[mo].index, METHOD_ORDER + RETAIN_SET_ROWS)]
    return table.loc[rows, cols]


# -- running every method ------------------------------------------------------------------
def _unlearn_and_score(job: dict) -> list[dict]:
    """One (method, seed) cell: unlearn (once per configuration, through the experiment cache)
    or load, inpaint, score. Runs in workers."""
    import torch
    torch.set_num_threads(job.get("threads", 1))
    from . import experiments, zoo
    from .data import dataset_of, make_split
    from .evaluate import load_any
    start, cpu = time.time(), time.process_time()
    method, seed = job["method"], job["seed"]
    if method in ("original", "retrained"):
        model = load_any(job["checkpoint"])
    else:
        base, retain_set = split_method(method)
        model = experiments.unlearned(job["model"], job["forget"], base, retain=job["retain"],
                                      retain_set=retain_set, seed=seed,
                                      **job.get("unlearn_kwargs", {}))
    dataset = dataset_of(zoo.read_manifest(job["model"]))  # the original's data, at its size
    split = make_split(dataset.num_classes, job["forget"], job["retain"], dataset=dataset.name)
    rows = []
    for mask in job["masks"]:  # one unlearned model, scored under every evaluation mask
        scores = score_model(model, dataset, split.forget, split.retain, mask, job["metrics"],
                             seed=seed)
        rows += [{**r, "mask": mask} for r in rows_from_scores(scores, job["name"], method, seed)]
    for r in rows:  # wall time, and the CPU time this (single-threaded) worker used
        r["seconds"], r["cpu_seconds"] = time.time() - start, time.process_time() - cpu
    return rows


def compare_methods(model: str = "mae-mnist", forget=(0, 1, 2), retain=None,
                    methods=METHOD_ORDER, seeds=(0, 1, 2), retrained: str | None = None,
                    mask_name: str | tuple[str, ...] = "centre-8/16", metrics=METRICS, workers: int = 1,
                    unlearn_kwargs: dict | None = None, progress: bool = True,
                    done: pd.DataFrame | None = None, on_cell=None) -> pd.DataFrame:
    """Unlearn ``forget`` from ``model`` with every method and seed, evaluate everything.

    model: zoo name or checkpoint directory of the original, or a list of them (their cells then
    share one pool of workers, which keeps both busy). retrained: zoo name or checkpoint
    directory of the model trained without ``forget`` (``pretrain --exclude-classes``); its row is
    skipped when None; with several models, ``{model: reference or None}``. mask_name: one
    evaluation mask or several (each model is unlearned once and scored under each; rows carry a
    ``mask`` column). workers: parallel processes (each single-threaded). done: rows of an
    interrupted run; its (model, method, seed) cells are kept and not run again. on_cell: called
    with each finished cell's rows (e.g. to append them to a file).
    Returns tidy rows plus ``seconds`` and ``cpu_seconds`` columns (wall and CPU time of each
    cell; on a busy machine the CPU time is what the cell costs on an idle core).
    """
    from tqdm.auto import tqdm

    from . import zoo
    from .metrics import normalize_metrics
    unknown = set(methods) - set(METHOD_ORDER) - set(RETAIN_SET_ROWS)
    if unknown:
        raise ValueError(f"methods: unknown {sorted(unknown)}; expected any of "
                         f"{METHOD_ORDER + RETAIN_SET_ROWS}")
    models = [model] if isinstance(model, (str, os.PathLike)) else list(model)
    if isinstance(retrained, dict):
        references = {m: retrained.get(m) for m in models}
    elif retrained is not None and len(models) > 1:
        raise ValueError("retrained: with several models, give {model: reference or None}")
    else:
        references = {models[0]: retrained}
    for reference in filter(None, references.values()):
        excluded = set(zoo.read_manifest(reference)["recipe"].get("exclude_classes") or ())
        if excluded != set(forget):
            raise ValueError(f"retrained: {reference} was trained without classes "
                             f"{sorted(excluded)}, not the forget classes {sorted(forget)}")
    jobs = []
    for original in models:
        name = os.path.basename(str(original).rstrip("/"))
        common = {"model": original, "forget": list(forget), "retain": retain,
                  "masks": [mask_name] if isinstance(mask_name, str) else list(mask_name),
                  "metrics": normalize_metrics(metrics), "name": name,
                  "unlearn_kwargs": unlearn_kwargs or {}}
        for method in methods:
            if method == "retrained" and references[original] is None:
                continue
            checkpoint = {"original": original, "retrained": references[original]}.get(method)
            for seed in seeds:
                if done is not None and ((done["model"] == name) & (done["method"] == method)
                                         & (done["seed"] == seed)).any():
                    continue
                jobs.append({**common, "method": method, "seed": seed, "checkpoint": checkpoint})
    # Longest first: unlearning runs before the cheap evaluation-only rows.
    jobs.sort(key=lambda j: j["method"] in ("original", "retrained"))
    rows = [] if done is None else done.to_dict("records")

    def finished(cell: list[dict]):
        rows.extend(cell)
        if on_cell is not None:
            on_cell(cell)
        bar.update()

    bar = tqdm(total=len(jobs), desc="table cells", disable=not progress)
    if workers <= 1:
        for job in jobs:
            finished(_unlearn_and_score(job))
    else:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor, as_completed
        with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as pool:
            for fut in as_completed([pool.submit(_unlearn_and_score, j) for j in jobs]):
                finished(fut.result())
    bar.close()
    df = pd.DataFrame(rows)
    return df.sort_values(["model", "method", "seed", "set", "metric"], key=lambda c: c.map(
        {m: i for i, m in enumerate(METHOD_ORDER + RETAIN_SET_ROWS)}) if c.name == "method" else c,
        ignore_index=True)


__all__ = ["METHOD_ORDER", "RETAIN_SET_ROWS", "split_method", "summarize", "paper_table",
           "compare_methods", "alpha_sweep", "forget_ceiling", "bars_above_ceiling",
           "evaluate_model", "tidy", "METHODS"]


def alpha_sweep(model: str = "mae-mnist", forget=(0, 1, 2), alphas=(0.05, 0.25, 1.0),
                seeds=(0,), method: str = "ours", **kwargs) -> pd.DataFrame:
    """``compare_methods`` for one method at several forget weights α; rows gain an ``alpha``
    column (for ``plots.tradeoff_curves``)."""
    extra = kwargs.pop("unlearn_kwargs", {})
    parts = []
    for alpha in alphas:
        df = compare_methods(model, forget, methods=(method,), seeds=seeds,
                             unlearn_kwargs={**extra, "alpha": alpha}, **kwargs)
        parts.append(df.assign(alpha=alpha))
    return pd.concat(parts, ignore_index=True)


def forget_ceiling(model, forget, mask_name: str = "centre-8/16", metrics=("fid", "psnr"),
                   draws: int = 16, seed: int = 0, dataset=None, nets=None) -> dict[str, float]:
    """The objective's ceiling on D_F, on the scale of a table's forget columns: ``metrics`` of
    the original ``model``'s target fill (``evaluate.target_fill``: what it generates when its
    encoder returns the forget target exactly, averaged over ``draws`` noise images, as an
    encoder can reach it) on the held-out images of the ``forget`` classes of ``dataset``
    (default: the model's own data), scored with ``nets`` (default: the feature networks of
    that data). -> {metric: value} (``psnr`` adds ``mse``)"""
    from .data import dataset_of, make_split
    from .evaluate import load_any, target_fill_scores
    from .metrics import nets_for_data
    original = load_any(model)
    dataset = dataset if dataset is not None else dataset_of(original.manifest)
    split = make_split(dataset.num_classes, forget, dataset=dataset.name)
    images, labels = dataset.images(split.forget, split="eval")
    if nets is None and set(metrics) - {"psnr"}:
        nets = nets_for_data(dataset.name)
    return target_fill_scores(original, images, mask_name, metrics, nets, labels, seed=seed,
                              draws=draws)


def bars_above_ceiling(ceiling_ratios: dict[str, float], bars: dict[str, float]) -> list[str]:
    """The metrics whose forget bar (a multiple of the original's error) lies above the
    objective's ceiling (``forget_ceiling`` over the original's value): bars no run of the
    method is expected to pass, since an exact optimum of the objective would not."""
    return [metric for metric, bar in bars.items() if ceiling_ratios[metric] < bar]
