"""Figures: image grids and training curves (matplotlib). Every figure names its scale."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import torch


def to_numpy_image(x: torch.Tensor) -> np.ndarray:
    """(C, H, W) in [-1, 1] -> (H, W) or (H, W, 3) in [0, 1] for imshow."""
    img = ((x.detach().cpu().float().clamp(-1, 1) + 1) / 2).permute(1, 2, 0).numpy()
    return img[..., 0] if img.shape[-1] == 1 else img


def masked_view(x: torch.Tensor, mask: torch.Tensor, fill: float = 0.0) -> torch.Tensor:
    """What the model is shown: hidden pixels replaced by mid-grey (0 in [-1, 1])."""
    return x * (1 - mask) + fill * mask


def image_grid(rows: dict[str, torch.Tensor], title: str = "", scale: str = "tiny",
               col_labels: list[str] | None = None, cell: float = 1.0):
    """One row per entry of ``rows`` (label -> (N, C, H, W)), N images per row.

    Returns the matplotlib figure; the title ends with the scale the images come from.
    """
    labels, tensors = list(rows), list(rows.values())
    n = max(len(t) for t in tensors)
    fig, axes = plt.subplots(len(rows), n, figsize=(cell * n + 1.6, cell * len(rows) + 0.6),
                             squeeze=False)
    for r, (label, images) in enumerate(zip(labels, tensors)):
        for c in range(n):
            ax = axes[r, c]
            ax.set_xticks([]), ax.set_yticks([])
            for side in ax.spines.values():
                side.set_visible(False)
            if c < len(images):
                ax.imshow(to_numpy_image(images[c]), cmap="gray", vmin=0, vmax=1)
            if c == 0:
                ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=9)
            if col_labels and r == 0 and c < len(col_labels):
                ax.set_title(col_labels[c], fontsize=8)
    fig.suptitle(f"{title} ({scale} scale)" if title else f"({scale} scale)", fontsize=10)
    fig.tight_layout()
    return fig


def loss_curves(history: list[dict], keys=("retain", "forget"), title: str = "",
                scale: str = "tiny"):
    """Plot logged loss terms against the step (one line per key present in the history)."""
    fig, ax = plt.subplots(figsize=(5, 3))
    steps = [row["step"] for row in history]
    for key in keys:
        if key in history[0]:
            ax.plot(steps, [row[key] for row in history], label=key)
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("loss term")
    ax.legend()
    ax.set_title(f"{title} ({scale} scale)" if title else f"({scale} scale)", fontsize=10)
    fig.tight_layout()
    return fig
