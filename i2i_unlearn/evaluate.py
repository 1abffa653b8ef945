"""Generate on held-out evaluation images of D_R and D_F and score them: one tidy table per run::

    rows = evaluate_model(model, "mnist", forget=[0, 1, 2], metrics=("fid", "is", "cosine"))
    df = tidy(rows)            # columns: model, method, seed, set, metric, value

``set`` is ``retain`` (D_R) or ``forget`` (D_F). ``tables.paper_table(df)`` pivots to the
paper's layout with mean ± std over seeds. The first three functions are the light
reconstruction-only API that unlearning and pre-training use for their manifests.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch
from tqdm.auto import tqdm

from . import masks
from .data import ImageDataset
from .metrics import METRICS, MetricNets, compute_metrics, hidden_mse, normalize_metrics, psnr
from .models.base import I2IModel
from .unlearn import method_label

SETS = ("retain", "forget")
COLUMNS = ("model", "method", "seed", "set", "metric", "value")


@torch.no_grad()
def inpaint(model: I2IModel, images: torch.Tensor, mask_name: str = "centre-8/16",
            batch_size: int = 100, seed: int = 0, progress: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Fill ``mask_name``'s hole in every image. -> (generated (N, C, H, W), mask (N, 1, H, W))"""
    model.eval()
    device = next(model.parameters()).device
    mask = masks.mask_from_name(mask_name, len(images), images.shape[-1])
    generator = torch.Generator().manual_seed(seed)
    out = []
    for i in tqdm(range(0, len(images), batch_size), desc="inpainting", disable=not progress):
        x, m = images[i:i + batch_size].to(device), mask[i:i + batch_size].to(device)
        out.append(model.generate(x, m, generator).cpu())
    return torch.cat(out), mask


def reconstruction_scores(model: I2IModel, images: torch.Tensor, mask_name: str = "centre-8/16",
                          **kwargs) -> dict[str, float]:
    """Mean hidden-region MSE and PSNR (dB) over ``images``."""
    generated, mask = inpaint(model, images, mask_name, **kwargs)
    mse = hidden_mse(generated, images, mask)
    return {"mse": mse.mean().item(), "psnr": psnr(mse).mean().item()}


def evaluate_forgetting(model: I2IModel, dataset: ImageDataset, forget, retain,
                        mask_name: str = "centre-8/16", **kwargs) -> dict[str, dict[str, float]]:
    """``{"retain": {"mse", "psnr"}, "forget": {...}}`` on the held-out evaluation images."""
    out = {}
    for name, classes in (("retain", retain), ("forget", forget)):
        images, _ = dataset.images(classes, split="eval")
        out[name] = reconstruction_scores(model, images, mask_name, **kwargs)
    return out


@torch.no_grad()
def target_fill(model: I2IModel, images: torch.Tensor, mask_name: str = "centre-8/16",
                noise: str = "standard", batch_size: int = 100, seed: int = 0,
                draws: int = 16) -> torch.Tensor:
    """What the paper's forget target asks an unlearned model to generate for ``images``.

    ``model.generate_from_forget_target``: the original ``model`` generates as if its encoder
    returned exactly the forget target, and each image's own visible pixels are put back. The
    target is the teacher's embedding of a noise image ``n`` redrawn at every step, so an
    encoder (a deterministic function of what it sees) can at best return its *mean* over ``n``
    (Claim 7 of the theory chapter): the fill averages the target over ``draws`` noise images
    (``draws=1``: one noise image's target, the fill of that draw). The decoder never changes,
    so this fill is where the objective leads and its error on forget images the most the
    objective can raise that error. MAE, VQ-GAN: the original fills the hole as it fills the
    noise images'. Diffusion: the encoder runs at every sampling step and is shown, each time,
    the forget image with noise in the hole of x_t (the teacher's input in the forget term).
    ``noise``: "standard" or "matched" (see ``unlearn.make_noise``). -> (N, C, H, W)
    """
    from .unlearn import make_noise

    if draws < 1:
        raise ValueError(f"draws: expected at least 1 noise draw, got {draws}")
    model.eval()
    device = next(model.parameters()).device
    mask = masks.mask_from_name(mask_name, len(images), images.shape[-1])
    noise_gen, sample_gen = (torch.Generator().manual_seed(seed) for _ in range(2))
    out = []
    for i in range(0, len(images), batch_size):
        x, m = images[i:i + batch_size].to(device), mask[i:i + batch_size].to(device)
        n = torch.stack([make_noise(x, noise, noise_gen) for _ in range(draws)])
        fill = model.generate_from_forget_target(x, n[0] if draws == 1 else n, m, sample_gen)
        out.append(torch.where(m > 0, fill, x).cpu())
    return torch.cat(out)


def target_fill_scores(model: I2IModel, images: torch.Tensor, mask_name: str = "centre-8/16",
                       metrics=("psnr",), nets: MetricNets | None = None,
                       labels: torch.Tensor | None = None, **kwargs) -> dict[str, float]:
    """``metrics`` of :func:`target_fill` against ``images``: the objective's ceiling on them,
    for a deterministic encoder, on the same scale as ``score_model``'s forget rows (e.g.
    ``metrics=("fid", "psnr")`` with ``nets`` for the forget FID an exact optimum would reach).
    The default, hidden-region MSE and PSNR, needs no feature network. ``kwargs`` go to
    :func:`target_fill` (``draws``, ``seed``, ``noise``, ``batch_size``). -> {metric: value}"""
    metrics = normalize_metrics(metrics)
    if nets is None and set(metrics) - {"psnr"}:  # before the fill, which costs the most
        raise ValueError(f"nets: metrics {sorted(set(metrics) - {'psnr'})} need feature networks, "
                         "e.g. nets=i2i_unlearn.metrics.nets_for_data('mnist')")
    mask = masks.mask_from_name(mask_name, len(images), images.shape[-1])
    fill = target_fill(model, images, mask_name, **kwargs)
    return compute_metrics(fill, images, mask, nets, metrics, labels=labels)


# -- the full evaluation -----------------------------------------------------------------
def load_any(model) -> I2IModel:
    """An ``I2IModel``, a zoo name or a checkpoint directory -> a loaded model (manifest attached)."""
    if isinstance(model, I2IModel):
        return model
    from . import zoo
    return zoo.load(model)


def describe(model: I2IModel, fallback: str = "model") -> tuple[str, str]:
    """(model, method) labels from a checkpoint's manifest.

    An unlearned checkpoint is ``(its parent, its method)`` (``ours-proxy`` when unlearned with
    the proxy retain pool, ``ours-no-retain`` without a retain set, ``ours-retain-scenes`` with
    another dataset's images); a model pre-trained without some classes is ``retrained``; any other
    pre-trained model is ``original``.
    """
    manifest = getattr(model, "manifest", {}) or {}
    recipe = manifest.get("recipe", {})
    if recipe.get("command") == "unlearn":
        parent = (manifest.get("parent") or {}).get("model") or fallback
        # older manifests say proxy: true; newer ones name the retain set
        retain_set = recipe.get("retain_set", "proxy" if recipe.get("proxy") else "retain")
        method = method_label(recipe.get("method", "unlearned"), retain_set)
        return Path(str(parent)).name, method
    if recipe.get("exclude_classes"):
        return fallback, "retrained"
    return fallback, "original"


def evaluation_sets(dataset: ImageDataset, forget, retain) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """{"retain": (images, labels), "forget": (...)}: the held-out evaluation rows."""
    return {"retain": dataset.images(retain, split="eval"), "forget": dataset.images(forget, split="eval")}


def score_model(model: I2IModel, dataset: ImageDataset, forget, retain,
                mask_name: str = "centre-8/16", metrics=METRICS, nets: MetricNets | None = None,
                seed: int = 0, batch_size: int = 100, return_images: bool = False,
                progress: bool = False) -> dict:
    """Inpaint the held-out D_R and D_F images under ``mask_name`` and compute ``metrics``.

    seed: the sampling seed (the generator handed to ``generate``).
    -> {"retain": {metric: value}, "forget": {...}} (and "images": {set: (truth, generated,
    mask)} with ``return_images``).
    """
    model = load_any(model)
    metrics = normalize_metrics(metrics)
    if nets is None and set(metrics) - {"psnr"}:
        from .metrics import nets_for_data
        nets = nets_for_data(dataset.name)
    out, images = {}, {}
    for name, (x, labels) in evaluation_sets(dataset, forget, retain).items():
        generated, mask = inpaint(model, x, mask_name, batch_size=batch_size, seed=seed,
                                  progress=progress)
        out[name] = compute_metrics(generated, x, mask, nets, metrics, labels=labels)
        images[name] = (x, generated, mask)
    if return_images:
        out["images"] = images
    return out


def rows_from_scores(scores: dict, model: str, method: str, seed: int) -> list[dict]:
    """{"retain": {...}, "forget": {...}} -> tidy rows (one per set and metric)."""
    return [{"model": model, "method": method, "seed": int(seed), "set": s, "metric": m,
             "value": float(v)} for s in SETS for m, v in scores[s].items()]


def evaluate_model(model, data: str | ImageDataset | None = None, forget=(0, 1, 2), retain=None,
                   mask_name: str = "centre-8/16", metrics=METRICS, seeds=(0,),
                   nets: MetricNets | None = None, name: str | None = None,
                   method: str | None = None, progress: bool = False) -> list[dict]:
    """Tidy rows for one model (zoo name, checkpoint directory or loaded model), one block per
    sampling seed. ``name`` / ``method`` default to what the manifest says (``describe``)."""
    from .data import dataset_of, load_dataset, make_split
    label = str(model) if not isinstance(model, I2IModel) else "model"
    model = load_any(model)
    if data is None:
        dataset = dataset_of(model.manifest)
    elif isinstance(data, str):
        dataset = load_dataset(data, model.config.img_size)
    else:  # a dataset object, e.g. paper-scale folders
        dataset = data
    split = make_split(dataset.num_classes, forget, retain, dataset=dataset.name)
    guessed = describe(model, Path(label).name)
    name, method = name or guessed[0], method or guessed[1]
    rows = []
    for seed in tqdm(list(seeds), desc=f"evaluating {method}", disable=not progress):
        scores = score_model(model, dataset, split.forget, split.retain, mask_name, metrics, nets,
                             seed=seed)
        rows += rows_from_scores(scores, name, method, seed)
    return rows


def tidy(rows: list[dict]) -> pd.DataFrame:
    """Rows -> DataFrame with exactly the columns model, method, seed, set, metric, value."""
    return pd.DataFrame(rows, columns=list(COLUMNS))


@torch.no_grad()
def embedding_groups(original, unlearned, dataset: ImageDataset, forget, retain,
                     mask_name: str = "centre-8/16", nets: MetricNets | None = None,
                     seed: int = 0) -> dict[str, torch.Tensor]:
    """Embeddings (the cosine network's) of the generated held-out images in the paper's four
    t-SNE groups: {"original / retain", "original / forget", "unlearned / retain",
    "unlearned / forget"} -> (N, E). Feed to ``plots.tsne_plot``."""
    from .metrics import nets_for_data, run_net
    nets = nets or nets_for_data(dataset.name)
    groups = {}
    for who, model in (("original", load_any(original)), ("unlearned", load_any(unlearned))):
        for name, (x, _) in evaluation_sets(dataset, forget, retain).items():
            generated, _ = inpaint(model, x, mask_name, seed=seed)
            groups[f"{who} / {name}"] = run_net(nets.cosine, generated)["embedding"]
    return {k: groups[k] for k in ("original / retain", "original / forget",
                                   "unlearned / retain", "unlearned / forget")}
