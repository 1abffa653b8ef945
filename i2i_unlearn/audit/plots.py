"""Figures of the audit (matplotlib); every title ends with the scale the numbers come from.

The two references keep one look everywhere: the original in black, the retrained model in grey
dashes; audited models take the default colour cycle in the order given.
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from .verdict import PROBES


def _styles(names, original: str, reference: str) -> dict[str, dict]:
    cycle = iter(plt.rcParams["axes.prop_cycle"].by_key()["color"] * 4)
    out = {}
    for name in names:
        if name == original:
            out[name] = dict(color="black", linestyle="-", linewidth=2)
        elif name == reference:
            out[name] = dict(color="0.5", linestyle="--", linewidth=2)
        else:
            out[name] = dict(color=next(cycle), linestyle="-", linewidth=1.3)
    return out


def _title(fig, text: str, scale: str):
    fig.suptitle(f"{text} ({scale} scale)", fontsize=10)
    fig.tight_layout()
    return fig


def plot_probe(rows: pd.DataFrame, original: str = "original", reference: str = "retrained",
               scale: str = "tiny", ceilings: dict[str, float] | None = None):
    """Linear-probe accuracy per model (bars, ±2 se), one panel per task, chance dotted.

    ceilings: {task: accuracy} of a classifier of the visible pixels alone
    (``context.context_accuracy``), drawn dashed: what the masked image itself tells.
    """
    tasks = list(dict.fromkeys(rows["task"]))
    names = list(dict.fromkeys(rows["model"]))
    st = _styles(names, original, reference)
    fig, axes = plt.subplots(1, len(tasks), figsize=(4.2 * len(tasks), 3.2), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        g = rows[rows["task"] == task].set_index("model").loc[names]
        ax.bar(range(len(names)), g["value"], yerr=2 * g["se"], capsize=3,
               color=[st[n]["color"] for n in names])
        ax.axhline(g["chance"].iloc[0], color="0.3", linestyle=":", label="chance")
        if ceilings and task in ceilings:
            ax.axhline(ceilings[task], color="k", linestyle="--", lw=1,
                       label="visible pixels alone")
        ax.set_xticks(range(len(names)), names, rotation=40, ha="right", fontsize=8)
        ax.set_ylim(0, 1.02)
        ax.set_ylabel("held-out accuracy")
        ax.set_title(task, fontsize=9)
        ax.legend(fontsize=8.5, loc="lower right")
    return _title(fig, "Linear probe on encoder embeddings", scale)


def plot_membership(scores: pd.DataFrame, metrics: pd.DataFrame, statistic: str = "calibrated",
                    original: str = "original", reference: str = "retrained", scale: str = "tiny"):
    """Left: ROC curves (log axes) of one attack statistic; right: AUC of every statistic."""
    from sklearn.metrics import roc_curve
    names = list(dict.fromkeys(scores["model"]))
    st = _styles(names, original, reference)
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(9, 3.6))
    for name in names:
        g = scores[(scores["model"] == name) & (scores["statistic"] == statistic)]
        f, t, _ = roc_curve(g["member"], g["score"])
        ax.plot(np.maximum(f, 1e-3), np.maximum(t, 1e-3), label=name, **st[name])
    ax.plot([1e-3, 1], [1e-3, 1], color="0.8", linewidth=0.8)
    ax.set_xscale("log"), ax.set_yscale("log")
    ax.set_xlabel("false-positive rate (held-out called member)")
    ax.set_ylabel("true-positive rate")
    ax.set_title(f"ROC, {statistic} attack", fontsize=9)
    ax.legend(fontsize=8.5)
    stats = list(dict.fromkeys(metrics["statistic"]))
    auc = metrics[metrics["metric"] == "auc"]
    width = 0.8 / len(names)
    for i, name in enumerate(names):
        g = auc[auc["model"] == name].set_index("statistic").loc[stats]
        bx.bar(np.arange(len(stats)) + (i - (len(names) - 1) / 2) * width, g["value"], width,
               yerr=2 * g["se"], capsize=2, color=st[name]["color"], label=name)
    bx.axhline(0.5, color="0.3", linestyle=":")
    bx.set_xticks(range(len(stats)), stats, fontsize=8)
    bx.set_ylabel("ROC AUC (0.5: no signal)")
    bx.set_title("AUC of each attack statistic (±2 se)", fontsize=9)
    return _title(fig, "Membership inference on the forget classes", scale)


def plot_relearn(rows: pd.DataFrame, original: str = "original", reference: str = "retrained",
                 scale: str = "tiny"):
    """Held-out forget (left) and retain (right) hidden-region MSE against relearning steps."""
    names = list(dict.fromkeys(rows["model"]))
    st = _styles(names, original, reference)
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for ax, metric in zip(axes, ("forget_mse", "retain_mse")):
        for name in names:
            g = rows[(rows["model"] == name) & (rows["metric"] == metric)]
            ax.plot(g["step"], g["value"], marker="o", markersize=3, label=name, **st[name])
        ax.set_xlabel("fine-tuning steps on the forget images")
        ax.set_ylabel("hidden-region MSE (held-out)")
        ax.set_title(metric.replace("_mse", " classes"), fontsize=9)
    axes[0].legend(fontsize=8.5)
    return _title(fig, "Relearning: forget reconstruction after fine-tuning", scale)


def plot_context(rows: pd.DataFrame, original: str = "original", reference: str = "retrained",
                 scale: str = "tiny"):
    """Forget/retain MSE ratio against the hidden share of the image, one panel per mask kind."""
    rows = rows[rows["metric"] == "mse"]
    names = list(dict.fromkeys(rows["model"]))
    kinds = list(dict.fromkeys(rows["kind"]))
    st = _styles(names, original, reference)
    fig, axes = plt.subplots(1, len(kinds), figsize=(4.5 * len(kinds), 3.4), squeeze=False,
                             sharey=True)
    for ax, kind in zip(axes[0], kinds):
        for name in names:
            g = rows[(rows["model"] == name) & (rows["kind"] == kind)]
            f = g[g["set"] == "forget"].set_index("hidden_area")
            r = g[g["set"] == "retain"].set_index("hidden_area").loc[f.index]
            ax.plot(f["hidden_fraction"], f["value"] / r["value"], marker="o", markersize=3,
                    label=name, **st[name])
        ax.axhline(1, color="0.8", linewidth=0.8)
        ax.set_xlabel("hidden share of the image")
        ax.set_title("centre box" if kind == "centre" else "outpainting (hidden border)", fontsize=9)
    axes[0, 0].set_ylabel("forget MSE / retain MSE")
    axes[0, 0].legend(fontsize=8.5)
    return _title(fig, "Context sweep: forget vs retain reconstruction", scale)


def plot_verdict(table: pd.DataFrame, scale: str = "tiny"):
    """The position of every model on every probe: 0 = the retrained model, 1 = the original."""
    names = list(dict.fromkeys(table["model"]))
    probes = [p for p in PROBES if p in set(table["probe"])]
    pos = table.pivot(index="model", columns="probe", values="position").loc[names, probes]
    fig, ax = plt.subplots(figsize=(1.3 * len(probes) + 2.5, 0.42 * len(names) + 1.4))
    im = ax.imshow(pos.to_numpy(dtype=float), cmap="coolwarm", vmin=-0.5, vmax=1.5, aspect="auto")
    for i, name in enumerate(names):
        for j, probe in enumerate(probes):
            v = pos.loc[name, probe]
            ax.text(j, i, "n/a" if np.isnan(v) else f"{v:+.2f}", ha="center", va="center", fontsize=8)
    ax.set_xticks(range(len(probes)), probes)
    ax.set_yticks(range(len(names)), names)
    fig.colorbar(im, ax=ax, label="position: 0 retrained, 1 original")
    return _title(fig, "Where each model sits between retrained and original", scale)
