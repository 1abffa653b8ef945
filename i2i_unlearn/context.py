"""What the visible context tells: how far *any* encoder-only unlearning can go under a mask.

The paper's method trains only the encoder, and the encoder sees only the visible pixels. So an
unlearned model can treat a forget image differently from a retain image only as far as the
visible part shows which of the two it is. This module measures that limit directly:

1. ``context_classifier``: a small CNN (the tiny metrics' ``SmallCNN``) trained on the training
   images of the forget and retain classes with the mask's hole blanked out, as the encoder sees
   them; ``forget_probability`` scores held-out images with it (ROC AUC, accuracy).
2. ``switch_estimate``: an unlearned model that, image by image, produced the objective's target
   fill (``evaluate.target_fill``, the most the objective can raise the error) when that
   classifier says "forget" and the original fill otherwise. Its threshold is the one that raises
   the forget error most while the retain error stays within ``retain_tol`` of the original's.

The estimate is empirical, not a theorem: a better classifier would raise it, and an encoder may
change an embedding part of the way. But it shows what the *context* allows, separately from what
the method reaches: where the visible pixels carry no class (the classifier at chance, ROC AUC
near 0.5), no encoder-only method can both keep the retain classes and destroy the forget
classes under that mask; where the estimate is high and the method stays low, the limit is the
method.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from . import masks
from .classifiers import ClassifierRecipe, SmallCNN, fit_classifier
from .data import ImageDataset, make_split
from .models.base import I2IModel


# The context classifier's recipe: the tiny metrics' classifier recipe, with fewer steps (it
# sees six classes, not ten, and is trained once per mask).
CONTEXT_RECIPE = ClassifierRecipe(steps=300)


def blank_hole(images: torch.Tensor, mask_name: str) -> torch.Tensor:
    """(N, C, H, W) -> the same with ``mask_name``'s hole set to 0, as the encoder is shown them."""
    mask = masks.mask_from_name(mask_name, len(images), images.shape[-1])
    return torch.where(mask > 0, torch.zeros_like(images), images)


def context_classifier(dataset: ImageDataset, classes, mask_name: str,
                       recipe: ClassifierRecipe | None = None) -> SmallCNN:
    """A classifier of ``classes`` (logit k = ``classes[k]``) that sees only the visible pixels.

    Trained on the training rows of those classes, each with ``mask_name``'s hole blanked
    (``CONTEXT_RECIPE`` by default; deterministic on CPU).
    """
    recipe = recipe or CONTEXT_RECIPE
    if recipe.steps < 1:
        raise ValueError(f"recipe.steps: expected at least 1, got {recipe.steps}")
    classes = list(classes)
    images, labels = dataset.images(classes, split="train")
    target = torch.as_tensor([classes.index(int(y)) for y in labels])
    model = fit_classifier(images, target, len(classes), recipe,
                           transform=lambda x: blank_hole(x, mask_name))
    model.classes = classes
    return model


@torch.no_grad()
def forget_probability(classifier: SmallCNN, images: torch.Tensor, mask_name: str,
                       forget) -> torch.Tensor:
    """(N, C, H, W) -> (N,): the classifier's probability that each image is of a forget class."""
    is_forget = torch.tensor([c in set(forget) for c in classifier.classes])
    probs = torch.cat([classifier(blank_hole(images[i:i + 500], mask_name)).softmax(1)
                       for i in range(0, len(images), 500)])
    return probs[:, is_forget].sum(1)


def switch_estimate(original_mse: np.ndarray, target_mse: np.ndarray, p_forget: np.ndarray,
                    is_forget: np.ndarray, retain_tol: float = 0.10) -> dict[str, float]:
    """The image-level switch: target fill where ``p_forget > threshold``, the original's elsewhere.

    All arrays (N,) over the same held-out images. Returns the threshold that raises the forget
    error most with the retain error at most ``1 + retain_tol`` times the original's, and the
    resulting ``forget_ratio`` / ``retain_ratio`` (mean MSE over the original's, per set).
    """
    arrays = [np.asarray(a, dtype=float) for a in (original_mse, target_mse, p_forget, is_forget)]
    if len({a.shape for a in arrays}) > 1:
        raise ValueError("original_mse, target_mse, p_forget, is_forget: expected arrays of one "
                         f"shape, got {[a.shape for a in arrays]}")
    original_mse, target_mse, p_forget, is_forget = arrays
    is_forget = is_forget.astype(bool)
    if is_forget.all() or not is_forget.any():
        raise ValueError("is_forget: needs both forget and retain images")
    if retain_tol < 0:
        raise ValueError(f"retain_tol: expected >= 0, got {retain_tol}")
    base_f, base_r = original_mse[is_forget].mean(), original_mse[~is_forget].mean()
    best = {"threshold": 1.0, "forget_ratio": 1.0, "retain_ratio": 1.0}  # never switch
    for t in np.unique(np.concatenate([p_forget, [0.0]])):
        mse = np.where(p_forget > t, target_mse, original_mse)
        f, r = mse[is_forget].mean() / base_f, mse[~is_forget].mean() / base_r
        if r <= 1 + retain_tol and f > best["forget_ratio"]:
            best = {"threshold": float(t), "forget_ratio": float(f), "retain_ratio": float(r)}
    return best


def context_accuracy(dataset: ImageDataset, forget, retain, mask_name: str = "centre-8/16",
                     recipe: ClassifierRecipe | None = None) -> dict[str, float]:
    """Held-out accuracy of context classifiers on the audit's two linear-probe tasks.

    ``"forget classes"``: which forget class (a classifier of the forget classes; skipped with
    one forget class); ``"forget vs retain"``: a classifier of all of them, read as forget when
    the forget classes' probability exceeds one half. What the visible pixels alone tell under
    ``mask_name``: an encoder sees no more, so a linear probe of its embeddings that reaches this
    level has kept what the image shows, not necessarily what the model learned.
    """
    forget, retain = list(forget), list(retain)
    out = {}
    f_images, f_labels = dataset.images(forget, split="eval")
    if len(forget) > 1:
        clf = context_classifier(dataset, forget, mask_name, recipe)
        with torch.no_grad():
            pred = clf(blank_hole(f_images, mask_name)).argmax(1)
        out["forget classes"] = float((torch.as_tensor(forget)[pred] == f_labels).float().mean())
    r_images, _ = dataset.images(retain, split="eval")
    clf = context_classifier(dataset, forget + retain, mask_name, recipe)
    p = forget_probability(clf, torch.cat([f_images, r_images]), mask_name, forget)
    truth = torch.arange(len(p)) < len(f_images)
    out["forget vs retain"] = float(((p > 0.5) == truth).float().mean())
    return out


def context_limits(model: I2IModel, forget, retain=None, mask_names=("centre-8/16",),
                   dataset: ImageDataset | None = None, recipe: ClassifierRecipe | None = None,
                   retain_tol: float = 0.10, seed: int = 0, draws: int = 16,
                   progress: bool = False) -> pd.DataFrame:
    """Per mask, what the visible context allows an encoder-only unlearning of ``model``.

    Scores the held-out images of the forget and retain classes. One row per mask: ``auc`` and
    ``accuracy`` of the context classifier (forget vs retain), the target fill's MSE as a
    multiple of the original's (``target_fill_forget``, ``target_fill_retain``: the objective's
    ceiling, its target averaged over ``draws`` noise images) and the switch estimate
    (``switch_forget``, ``switch_retain``, ``threshold``).
    """
    from sklearn.metrics import roc_auc_score
    from tqdm.auto import tqdm

    from .data import dataset_of
    from .evaluate import inpaint, target_fill
    from .metrics import hidden_mse

    dataset = dataset if dataset is not None else dataset_of(model.manifest)
    split = make_split(dataset.num_classes, forget, retain, dataset=dataset.name)
    f_images, _ = dataset.images(split.forget, split="eval")
    r_images, _ = dataset.images(split.retain, split="eval")
    images = torch.cat([f_images, r_images])
    is_forget = np.r_[np.ones(len(f_images), bool), np.zeros(len(r_images), bool)]
    rows = []
    for mask_name in tqdm(list(mask_names), desc="context limits", disable=not progress):
        mask = masks.mask_from_name(mask_name, len(images), images.shape[-1])
        original = hidden_mse(inpaint(model, images, mask_name, seed=seed)[0], images, mask).numpy()
        target = hidden_mse(target_fill(model, images, mask_name, seed=seed,
                                       draws=draws), images, mask).numpy()
        clf = context_classifier(dataset, split.forget + split.retain, mask_name, recipe)
        p = forget_probability(clf, images, mask_name, split.forget).numpy()
        switch = switch_estimate(original, target, p, is_forget, retain_tol)
        rows.append({"mask": mask_name, "auc": float(roc_auc_score(is_forget, p)),
                     "accuracy": float(((p > 0.5) == is_forget).mean()),
                     "target_fill_forget": target[is_forget].mean() / original[is_forget].mean(),
                     "target_fill_retain": target[~is_forget].mean() / original[~is_forget].mean(),
                     "switch_forget": switch["forget_ratio"],
                     "switch_retain": switch["retain_ratio"], "threshold": switch["threshold"]})
    return pd.DataFrame(rows)


__all__ = ["CONTEXT_RECIPE", "blank_hole", "context_classifier", "forget_probability",
           "switch_estimate", "context_accuracy", "context_limits"]
