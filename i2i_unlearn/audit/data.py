"""What an audit looks at: the images of the forget and retain classes, and the models to compare.

Every probe works on plain tensors, so the same code audits the tiny datasets and paper-scale
folders alike; :meth:`AuditData.from_dataset` cuts them from a tiny ``ImageDataset``.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch

from .. import masks
from ..metrics import hidden_mse
from ..models.base import Embedding, I2IModel


@dataclass
class AuditData:
    """Images of one class split, each (N, C, H, W) in [-1, 1] with (N,) int64 labels.

    forget_train: the forget classes' *training* images (the members the original model saw).
    forget_eval, retain_eval: held-out images of the forget / retain classes (never trained on).
    """

    forget_train: torch.Tensor
    forget_train_labels: torch.Tensor
    forget_eval: torch.Tensor
    forget_eval_labels: torch.Tensor
    retain_eval: torch.Tensor
    retain_eval_labels: torch.Tensor

    def __post_init__(self):
        for name in ("forget_train", "forget_eval", "retain_eval"):
            x, y = getattr(self, name), getattr(self, f"{name}_labels")
            if x.ndim != 4 or len(x) == 0:
                raise ValueError(f"{name}: expected a non-empty (N, C, H, W) tensor, got "
                                 f"{tuple(x.shape)}")
            if len(y) != len(x):
                raise ValueError(f"{name}_labels: expected {len(x)} labels, got {len(y)}")
        if set(self.forget_eval_labels.tolist()) & set(self.retain_eval_labels.tolist()):
            raise ValueError("forget_eval_labels, retain_eval_labels: forget and retain classes "
                             "must be disjoint")

    @classmethod
    def from_dataset(cls, dataset, forget, retain, members_per_class: int | None = None,
                     eval_per_class: int | None = None) -> "AuditData":
        """Cut the audit's images from a tiny ``ImageDataset`` (``i2i_unlearn.data``).

        members_per_class: keep the first N training images of each forget class (None: all).
        eval_per_class: keep the first N held-out images of each class (None: all).
        """
        ft = dataset.images(forget, split="train", per_class=members_per_class)
        fe = dataset.images(forget, split="eval", per_class=eval_per_class)
        re = dataset.images(retain, split="eval", per_class=eval_per_class)
        return cls(ft[0], ft[1], fe[0], fe[1], re[0], re[1])


# -- what every probe needs from a model ------------------------------------------------------
def pool_embedding(e: Embedding) -> torch.Tensor:
    """One vector per image from ``encode``'s output: tokens (B, T, D) and maps (B, C, H, W) are
    averaged over tokens / positions; a tuple of feature maps is pooled map by map and the
    pooled vectors concatenated. -> (B, F)"""
    if isinstance(e, (tuple, list)):
        return torch.cat([pool_embedding(t) for t in e], dim=1)
    if e.ndim == 2:
        return e
    if e.ndim == 3:
        return e.mean(dim=1)
    return e.flatten(2).mean(dim=2)


@torch.no_grad()
def embed(model: I2IModel, images: torch.Tensor, mask_name: str = "centre-8/16",
          batch_size: int = 100) -> np.ndarray:
    """Pooled E(T(x)) of every image under the deterministic corruption of ``mask_name``."""
    model.eval()
    device = next(model.parameters()).device
    mask = masks.mask_from_name(mask_name, len(images), images.shape[-1])
    out = [pool_embedding(model.encode(images[i:i + batch_size].to(device),
                                       mask[i:i + batch_size].to(device))).float().cpu()
           for i in range(0, len(images), batch_size)]
    return torch.cat(out).numpy()


@torch.no_grad()
def hidden_errors(model: I2IModel, images: torch.Tensor, mask: torch.Tensor, seed: int = 0,
                  batch_size: int = 100) -> torch.Tensor:
    """Per-image hidden-region MSE of ``model.generate`` (a seeded generator: the same draws for
    every model, so stochastic samplers are compared on equal terms). mask: (1 or N, 1, H, W)."""
    model.eval()
    device = next(model.parameters()).device
    mask = mask.expand(len(images), -1, -1, -1)
    generator = torch.Generator().manual_seed(seed)
    out = []
    for i in range(0, len(images), batch_size):
        x, m = images[i:i + batch_size].to(device), mask[i:i + batch_size].to(device)
        out.append(hidden_mse(model.generate(x, m, generator).cpu(), x.cpu(), m.cpu()))
    return torch.cat(out)


def trainable_copy(model: I2IModel) -> I2IModel:
    """A copy of ``model`` whose parameters all train, except those its family freezes by design
    (e.g. MAE's fixed position tables). Unlearned models come back with some parts frozen
    (the decoder, for encoder-only methods); relearning trains the whole model."""
    fresh = copy.deepcopy(model)
    try:
        with torch.device("meta"):
            design = type(model)(model.config)
    except Exception:  # a family whose constructor cannot run on the meta device
        design = type(model)(model.config)
    frozen = {n for n, p in design.named_parameters() if not p.requires_grad}
    for name, p in fresh.named_parameters():
        p.requires_grad_(name not in frozen)
    return fresh


def method_of(model: I2IModel, default: str = "?") -> str:
    """What made a model, from its manifest: an unlearning method, 'retrained' or 'original'."""
    recipe = getattr(model, "manifest", {}).get("recipe", {})
    if recipe.get("command") == "unlearn":
        return recipe.get("method", default)
    if recipe.get("command") == "pretrain":
        return "retrained" if recipe.get("exclude_classes") else "original"
    return default
