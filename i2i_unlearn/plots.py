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


def _draw_grid(fig, rows: dict[str, torch.Tensor], col_labels: list[str] | None, n: int):
    """Draw ``rows`` (label -> (N, C, H, W)) as a row of ``n`` images each into ``fig`` (a
    figure or subfigure)."""
    axes = fig.subplots(len(rows), n, squeeze=False)
    for r, (label, images) in enumerate(rows.items()):
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


def image_grid(rows: dict[str, torch.Tensor], title: str = "", scale: str = "tiny",
               col_labels: list[str] | None = None, cell: float = 1.0):
    """One row per entry of ``rows`` (label -> (N, C, H, W)), N images per row.

    Returns the matplotlib figure; the title ends with the scale the images come from.
    """
    n = max(len(t) for t in rows.values())
    fig = plt.figure(figsize=(cell * n + 1.6, cell * len(rows) + 0.6))
    _draw_grid(fig, rows, col_labels, n)
    fig.suptitle(f"{title} ({scale} scale)" if title else f"({scale} scale)", fontsize=10)
    fig.tight_layout()
    return fig


def image_grids(grids: dict[str, dict[str, torch.Tensor]], title: str = "", scale: str = "tiny",
                ncols: int = 1, cell: float = 1.0):
    """Several :func:`image_grid` panels in one figure (one numbered figure on a page).

    grids: panel title -> rows (label -> (N, C, H, W)). Panels fill the columns top to bottom,
    so grids given in dataset order put one dataset per column. The figure's title ends with
    the scale the images come from.
    """
    if not grids or ncols < 1:
        raise ValueError(f"grids, ncols: expected at least one grid and column, got "
                         f"{len(grids)} grids, ncols={ncols}")
    names = list(grids)
    nrows = -(-len(names) // ncols)
    n = max(len(t) for rows in grids.values() for t in rows.values())
    at = {name: divmod(i, nrows)[::-1] for i, name in enumerate(names)}  # name -> (row, col)
    heights = [cell * max(len(grids[m]) for m in names if at[m][0] == r) + 0.45
               for r in range(nrows)]
    fig = plt.figure(figsize=(min(len(names), ncols) * (cell * n + 1.6), sum(heights) + 0.4),
                     layout="constrained")
    panels = fig.subfigures(nrows, min(len(names), ncols), squeeze=False, height_ratios=heights)
    for name in names:
        panel = panels[at[name]]
        _draw_grid(panel, grids[name], None, n)
        panel.suptitle(name, fontsize=9.5)
    fig.suptitle(f"{title} ({scale} scale)" if title else f"({scale} scale)", fontsize=10.5)
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


# -- the evaluation figures ------------------------------------------------------------------
GROUP_STYLE = {  # the paper's Figure 4 groups: original/unlearned × forget/retain
    "original / retain": ("tab:blue", "o"), "original / forget": ("tab:orange", "o"),
    "unlearned / retain": ("tab:green", "^"), "unlearned / forget": ("tab:red", "^"),
}


def tsne_points(groups: dict[str, torch.Tensor], seed: int = 0, perplexity: float = 30.0):
    """Joint 2-d t-SNE of every group's embeddings (label -> (N, E)). -> {label: (N, 2) array}"""
    from sklearn.manifold import TSNE
    labels = list(groups)
    stacked = torch.cat([groups[k].detach().cpu().double() for k in labels]).numpy()
    perplexity = min(perplexity, (len(stacked) - 1) / 3)
    xy = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(stacked)
    out, start = {}, 0
    for k in labels:
        out[k] = xy[start:start + len(groups[k])]
        start += len(groups[k])
    return out


def tsne_plot(groups: dict[str, torch.Tensor], title: str = "", scale: str = "tiny",
              seed: int = 0, points: dict | None = None):
    """Scatter of a joint t-SNE of embedding groups (e.g. ``evaluate.embedding_groups``)."""
    points = points or tsne_points(groups, seed)
    fig, ax = plt.subplots(figsize=(4.6, 4))
    for i, (label, xy) in enumerate(points.items()):
        color, marker = GROUP_STYLE.get(label, (f"C{i}", "o"))
        ax.scatter(xy[:, 0], xy[:, 1], s=9, alpha=0.7, c=color, marker=marker, label=label)
    ax.set_xticks([]), ax.set_yticks([])
    ax.legend(fontsize=8.5, markerscale=1.5)
    ax.set_title(f"{title} ({scale} scale)" if title else f"t-SNE ({scale} scale)", fontsize=10)
    fig.tight_layout()
    return fig


def tradeoff_curves(df, x: str = "alpha", metrics=("fid", "cosine"), title: str = "",
                    scale: str = "tiny", reference: dict | None = None):
    """Retain and forget metrics (mean ± std over seeds) against ``x`` (a column of tidy rows,
    e.g. from ``tables.alpha_sweep``); one panel per metric. ``reference``: {(set, metric):
    value} drawn as dotted lines (e.g. the original model's)."""
    metrics = [m for m in metrics if m in set(df["metric"])]
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.6 * len(metrics), 3), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        sub = df[df["metric"] == metric]
        for i, s in enumerate(("retain", "forget")):
            g = sub[sub["set"] == s].groupby(x)["value"]
            mean, std = g.mean(), g.std().fillna(0)
            ax.errorbar(mean.index, mean.values, yerr=std.values, marker="o", capsize=3,
                        color=f"C{i}", label=f"D_{s[0].upper()} ({s})")
            if reference and (s, metric) in reference:
                ax.axhline(reference[(s, metric)], color=f"C{i}", ls=":", lw=1)
        ax.set_xlabel(x)
        ax.set_ylabel(metric)
        ax.legend(fontsize=8.5)
    fig.suptitle(f"{title} ({scale} scale)" if title else f"trade-off ({scale} scale)", fontsize=10)
    fig.tight_layout()
    return fig
