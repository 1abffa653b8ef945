"""The audit's verdict: per probe, is a model closer to the retrained model or to the original?

Each probe is reduced to one headline statistic with a standard error (``HEADLINES``). With
``s`` the audited model's value, ``s_o`` the original's and ``s_r`` the retrained model's::

    position = (s - s_r) / (s_o - s_r)        0: like the retrained model, 1: like the original

A probe **flags** a model (it has not forgotten, as far as this probe can tell) when the model is
closer to the original (position >= 0.5) *and* the probe resolves the two references at all:
``|s_o - s_r| > z * se(s_o - s_r)`` (z = 2 by default). ``se(s_o - s_r)`` is the paired standard
error of the difference (``se_paired``: every probe scores all models on the same images) where
the probe's rows carry it, else ``sqrt(se_o² + se_r²)``, which treats the two values as
independent and overstates the noise of their difference. When the references are not resolved,
the verdict is "inconclusive" and the position is left out (NaN). Separately,
``differs_from_retrained`` says whether the model is distinguishable from the retrained model at
the same z -- in either direction: a model that overshoots the retrained one (position < 0) has
not become the retrained model either, and an auditor can see that too.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

PROBES = ("probe", "membership", "relearn", "context")


def _probe_headline(g: pd.DataFrame):
    task = "forget classes" if (g["task"] == "forget classes").any() else "forget vs retain"
    return f"linear-probe accuracy ({task})", g[g["task"] == task].iloc[0]


def _membership_headline(g: pd.DataFrame):
    return "membership AUC (calibrated)", g[(g["statistic"] == "calibrated")
                                            & (g["metric"] == "auc")].iloc[0]


def _relearn_headline(g: pd.DataFrame):
    r = g[(g["metric"] == "forget_mse") & (g["step"] == g["step"].max())].iloc[0]
    return f"forget MSE after {int(r['step'])} relearning steps", r


def _context_headline(g: pd.DataFrame):
    return "forget/retain MSE ratio (pooled over the sweep)", g[g["metric"] == "pooled_ratio"].iloc[0]


HEADLINES = {"probe": _probe_headline, "membership": _membership_headline,
             "relearn": _relearn_headline, "context": _context_headline}


def headlines(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per model and probe: ``statistic``, ``value``, ``se`` and ``se_paired`` (NaN where
    the probe's rows carry none; see ``HEADLINES``)."""
    out = []
    for (probe, name), g in rows.groupby(["probe", "model"], sort=False):
        statistic, r = HEADLINES[probe](g)
        out.append({"model": name, "method": g["method"].iloc[0], "probe": probe,
                    "statistic": statistic, "value": float(r["value"]), "se": float(r["se"]),
                    "se_paired": float(r.get("se_paired", float("nan")))})
    return pd.DataFrame(out)


def _se_vs_reference(r: pd.Series, se_r: float) -> float:
    """se of (value - reference's value): the paired one where the probe gave it."""
    return r["se_paired"] if not math.isnan(r["se_paired"]) else math.hypot(r["se"], se_r)


def verdict(rows: pd.DataFrame, original: str = "original", reference: str = "retrained",
            z: float = 2.0) -> pd.DataFrame:
    """The summary table: per model and probe, the headline, both references' values, the
    position between them, which one the model is closer to, and whether the probe flags it."""
    heads = headlines(rows)
    for arg, name in (("original", original), ("reference", reference)):
        if name not in set(heads["model"]):
            raise ValueError(f"{arg}: no model named {name!r} in the rows; models: "
                             f"{sorted(set(heads['model']))}")
    out = []
    for probe, g in heads.groupby("probe", sort=False):
        g = g.set_index("model")
        s_o, s_r, se_r = g.loc[original, "value"], *g.loc[reference, ["value", "se"]]
        resolved = abs(s_o - s_r) > z * _se_vs_reference(g.loc[original], se_r)
        for name, r in g.iterrows():
            se_diff = _se_vs_reference(r, se_r)
            # unresolved references: the position would only scale noise, so it is left out
            position = (r["value"] - s_r) / (s_o - s_r) if resolved else float("nan")
            closer = "original" if position >= 0.5 else "retrained"
            if not resolved:
                call = "inconclusive (original ≈ retrained)"
            elif closer == "original":
                call = "not forgotten (like the original)"
            elif position < -0.5:
                call = "past the retrained model"
            else:
                call = "forgotten (like the retrained)"
            out.append({"model": name, "method": r["method"], "probe": probe,
                        "statistic": r["statistic"], "value": r["value"], "se": r["se"],
                        "se_vs_retrained": se_diff,
                        "original": s_o, "retrained": s_r, "position": position,
                        "closer_to": closer if resolved else "-",
                        "flagged": bool(resolved and closer == "original"),
                        "differs_from_retrained": bool(abs(r["value"] - s_r) > z * se_diff),
                        "verdict": call})
    order = {p: i for i, p in enumerate(PROBES)}
    table = pd.DataFrame(out)
    return table.sort_values(["model", "probe"], key=lambda c: c.map(order) if c.name == "probe"
                             else c.map({m: i for i, m in enumerate(dict.fromkeys(heads["model"]))}),
                             kind="stable").reset_index(drop=True)


def verdict_matrix(table: pd.DataFrame) -> pd.DataFrame:
    """Models as rows, probes as columns, the verdict (with the position) in each cell."""
    cell = table.apply(lambda r: r["verdict"] if math.isnan(r["position"])
                       else f"{r['verdict']} [{r['position']:+.2f}]", axis=1)
    wide = table.assign(cell=cell).pivot(index="model", columns="probe", values="cell")
    return wide.reindex(index=list(dict.fromkeys(table["model"])),
                        columns=[p for p in PROBES if p in wide.columns])
