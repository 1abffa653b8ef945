"""The Tables 1-2 pages (02 on object classes, 03 on scene classes): from a table's rows to the
paper's four claims, the numbers the page's text quotes and its ratio figure.

Both pages build their table with ``tables.compare_methods`` on their own models and data, then
hand it to :class:`TablePage`; the page's text reads the values of :meth:`TablePage.glued`::

    page = TablePage(df, models, masks, methods, forget_classes, seeds, ...)
    for name, value in page.glued().items():
        glue(name, value, display=False)
    fig = page.ratio_figure()
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from . import masks as masks_module
from . import tables, unlearn, zoo
from .data import dataset_of, make_split
from .metrics import hidden_mse, mean_fill

# Thresholds of the paper's qualitative claims (ours; the paper states none).
RETAIN_FID_TOL, RETAIN_MSE_TOL = 0.15, 0.10  # D_R at most 15 % (FID), 10 % (MSE) above original
FORGET_FID_MIN, FORGET_MSE_MIN = 3.0, 2.0  # D_F FID at least 3x, MSE at least 2x original
PROXY_RETAIN_TOL, PROXY_FORGET_TOL = 0.05, 0.20  # ours-proxy vs ours, as on the proxy page
CLAIMS = ["1 ours keeps D_R", "2 ours forgets D_F", "3 proxy ≈ ours", "4 no baseline beats ours"]
WORD = {True: "holds", False: "does not hold"}
RATIO_COLUMNS = [f"{which} {metric}" for which in ("retain", "forget")
                 for metric in ("fid", "is", "cosine", "mse")]


def keeps_retain(r) -> bool:
    # One-sided: a retain error below the original's is no loss (the retrained model often has one).
    return r["retain fid"] - 1 <= RETAIN_FID_TOL and r["retain mse"] - 1 <= RETAIN_MSE_TOL


def forgets(r) -> bool:
    return r["forget fid"] >= FORGET_FID_MIN and r["forget mse"] >= FORGET_MSE_MIN


def beats_ours(v: pd.DataFrame, row: str) -> bool:
    """``row`` keeps D_R within the bar and pushes forget FID and MSE at least as far as ours."""
    return bool(v.loc[row, "keeps D_R"] and v.loc[row, "forget fid"] >= v.loc["ours", "forget fid"]
                and v.loc[row, "forget mse"] >= v.loc["ours", "forget mse"])


def against_ceiling(ceiling: dict[str, float]) -> str:
    """Whether the forget bars lie within the objective's reach (``ceiling``: forget FID and MSE
    of the target fill over the original's), in words."""
    if math.isnan(ceiling["fid"]):
        return "(not measured in this run: ceiling_draws=0)"
    above = tables.bars_above_ceiling(ceiling, {"fid": FORGET_FID_MIN, "mse": FORGET_MSE_MIN})
    if not above:
        return "Both forget bars lie within the objective's reach here."
    return (f"Here the forget bar on {' and '.join(m.upper() for m in above)} lies above the "
            "objective's ceiling: even an exact optimum of the objective would fall short of it "
            "at this scale.")


@dataclass
class TablePage:
    """One Tables 1-2 page's run: ``df`` the rows of ``tables.compare_methods`` (model, method,
    seed, set, metric, value, mask) for ``models`` x ``masks``, with the other arguments the
    page's parameters. The verdicts are computed once, on construction."""

    df: pd.DataFrame
    models: list[str]
    masks: list[str]
    methods: list[str]
    forget_classes: list[int]
    seeds: list[int]
    steps: int | None = None
    with_retrained: bool = True
    ceiling_draws: int = 16
    scale: str = "tiny"
    verdicts: pd.DataFrame = field(init=False)
    claims: pd.DataFrame = field(init=False)

    def __post_init__(self):
        self.rows = ["original"] + list(self.methods) + (["retrained"] if self.with_retrained else [])
        self.main_mask = "centre-8/16" if "centre-8/16" in self.masks else self.masks[0]
        self.means = self.df.groupby(["model", "mask", "method", "set", "metric"])["value"].mean()
        self.verdicts, self.claims = self._judge()

    def ratio(self, model: str, mask: str, row: str, which: str, metric: str) -> float:
        """The row's mean metric on ``which`` as a multiple of the original's (nan: not run)."""
        try:
            return float(self.means[(model, mask, row, which, metric)]
                         / self.means[(model, mask, "original", which, metric)])
        except KeyError:  # row not computed (e.g. no retrained reference)
            return math.nan

    def mean_fill_ratio(self, name: str, mask: str) -> float:
        """Forget MSE of the trivial inpainter (hole = mean visible pixel) / the original's."""
        ds = dataset_of(zoo.read_manifest(name))
        split = make_split(ds.num_classes, self.forget_classes, dataset=ds.name)
        images, _ = ds.images(split.forget, split="eval")
        m = masks_module.mask_from_name(mask, len(images), images.shape[-1])
        return float(hidden_mse(mean_fill(images, m), images, m).mean()
                     / self.means[(name, mask, "original", "forget", "mse")])

    def ceiling_ratios(self, name: str, mask: str) -> dict[str, float]:
        """The objective's ceiling on D_F (tables.forget_ceiling): forget FID and MSE of the
        original's target fill as multiples of the original's; nan with ceiling_draws=0."""
        if not self.ceiling_draws:
            return {"fid": math.nan, "mse": math.nan}
        fill = tables.forget_ceiling(name, self.forget_classes, mask, draws=self.ceiling_draws,
                                     seed=self.seeds[0])
        return {m: float(fill[m] / self.means[(name, mask, "original", "forget", m)])
                for m in ("fid", "mse")}

    def _judge(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        verdicts, claims = [], []
        for name in self.models:
            for mask in self.masks:
                block = []
                for row in self.rows[1:]:
                    r = {"model": name, "mask": mask, "method": row}
                    for col in RATIO_COLUMNS:
                        r[col] = self.ratio(name, mask, row, *col.split())
                    r["keeps D_R"], r["forgets D_F"] = keeps_retain(r), forgets(r)
                    block.append(r)
                verdicts += block
                v = pd.DataFrame(block).set_index("method")
                proxy_retain = abs(v.loc["ours-proxy", "retain mse"] / v.loc["ours", "retain mse"] - 1)
                proxy_forget = abs(v.loc["ours-proxy", "forget mse"] / v.loc["ours", "forget mse"] - 1)
                baselines = [m for m in self.methods if not m.startswith("ours")]
                claims.append({
                    "model": name, "mask": mask,
                    CLAIMS[0]: bool(v.loc["ours", "keeps D_R"]),
                    CLAIMS[1]: bool(v.loc["ours", "forgets D_F"]),
                    CLAIMS[2]: bool(proxy_retain <= PROXY_RETAIN_TOL
                                    and proxy_forget <= PROXY_FORGET_TOL),
                    CLAIMS[3]: not any(beats_ours(v, b) for b in baselines if b in v.index),
                    "proxy retain gap": proxy_retain, "proxy forget gap": proxy_forget,
                    "mean-fill forget mse": self.mean_fill_ratio(name, mask),
                    **{f"ceiling forget {m}": x for m, x in self.ceiling_ratios(name, mask).items()},
                })
        return pd.DataFrame(verdicts), pd.DataFrame(claims)

    def claims_shown(self) -> pd.DataFrame:
        """The four claims per model and mask (columns), "holds" / "does not hold"."""
        index = ["model", "mask"] if len(self.models) > 1 else ["mask"]
        return self.claims.set_index(index)[CLAIMS].replace(WORD).T

    def glued(self, styles=None) -> dict[str, object]:
        """name -> value of everything the page's text and the scorecard read, for the first
        model under the main mask (``styles``: the tables' CSS)."""
        from IPython.display import Markdown

        pad = styles or []
        out = {"retain_fid_tol": 100 * RETAIN_FID_TOL, "retain_mse_tol": 100 * RETAIN_MSE_TOL,
               "proxy_retain_tol": 100 * PROXY_RETAIN_TOL,
               "proxy_forget_tol": 100 * PROXY_FORGET_TOL,
               "forget_fid_min": FORGET_FID_MIN, "forget_mse_min": FORGET_MSE_MIN,
               "main_mask": self.main_mask, "scale": self.scale}
        shown = self.verdicts.set_index(["model", "mask", "method"] if len(self.models) > 1
                                        else ["mask", "method"])
        shown = shown.drop(columns=[c for c in ("model",) if c in shown.columns])
        out["ratio_table"] = shown.replace({True: "yes", False: "no"}).style.format(
            "{:.3f}", subset=[c for c in shown.columns if c not in ("keeps D_R", "forgets D_F")]
        ).set_table_styles(pad)
        out["claims_table"] = self.claims_shown().style.set_table_styles(pad)

        out["prose_model"] = self.models[0]
        first = self.verdicts[(self.verdicts["model"] == self.models[0])
                              & (self.verdicts["mask"] == self.main_mask)].set_index("method")
        c = self.claims[(self.claims["model"] == self.models[0])
                        & (self.claims["mask"] == self.main_mask)].iloc[0]
        for row in tables.METHOD_ORDER[1:]:  # rows not computed in this run are glued as nan
            tag = row.replace("-", "_")
            for col in ("retain fid", "retain mse", "forget fid", "forget mse", "forget cosine",
                        "forget is"):
                value = float(first.loc[row, col]) if row in first.index else math.nan
                out[f"{tag}_{col.replace(' ', '_')}_ratio"] = value
        for i, col in enumerate(CLAIMS, start=1):
            out[f"claim{i}_holds"] = bool(c[col])
            out[f"claim{i}_verdict"] = WORD[bool(c[col])]
            held = self.claims[self.claims["model"] == self.models[0]].set_index("mask")[col]
            others = "; ".join(f"it {WORD[bool(v)]} under {m}" for m, v in held.items()
                               if m != self.main_mask)
            out[f"claim{i}_both_masks"] = (
                ("under every mask" if held.all() else "under any mask") if held.nunique() == 1
                else f"under {self.main_mask}; {others}")
        out["proxy_retain_gap"] = 100 * float(c["proxy retain gap"])
        out["proxy_forget_gap"] = 100 * float(c["proxy forget gap"])
        out["mean_fill_forget_mse_ratio"] = float(c["mean-fill forget mse"])
        out["ceiling_forget_fid_ratio"] = float(c["ceiling forget fid"])
        out["ceiling_forget_mse_ratio"] = float(c["ceiling forget mse"])
        out["ceiling_draws"] = self.ceiling_draws
        out["ceiling_verdict"] = against_ceiling({m: c[f"ceiling forget {m}"] for m in ("fid", "mse")})
        for col in ("forget is", "forget cosine"):  # the paper reads both going down on D_F
            v = float(first.loc["ours", col])
            out[f"ours_{col.replace(' ', '_')}_direction"] = (
                "falls" if v < 0.99 else "rises" if v > 1.01 else "stays level")
        family = zoo.read_manifest(self.models[0])["family"]  # for the scorecard page
        default_steps = unlearn.FAMILY_DEFAULTS[family]["steps"]
        out["steps_note"] = (f"the {family} default of {default_steps} unlearning steps"
                             if self.steps is None else
                             f"{self.steps} unlearning steps (the {family} default is "
                             f"{default_steps})")

        others = [m for m in first.index if m not in ("ours", "ours-proxy", "retrained")]
        out["rows_summary"] = Markdown("\n".join(_describe(first, m) for m in others))
        out["rows_doing_both"] = ", ".join(
            m for m in first.index if first.loc[m, "keeps D_R"] and first.loc[m, "forgets D_F"]
        ) or "none"
        out["rows_beating_ours"] = ", ".join(
            m for m in others if m in self.methods and beats_ours(first, m)) or "none"
        out.update(_against_retrained(first) if self.with_retrained else {
            "retrained_note": "This run has no retrained reference (with_retrained=False).",
            "ours_over_retrained_forget_fid": math.nan,
            "ours_over_retrained_forget_mse": math.nan, "ours_vs_retrained": "(not measured)"})
        return out

    def ratio_figure(self):
        """Each row's error on D_R and D_F as a multiple of the original's: one row of panels
        (MSE, FID) per model and mask, with the bars and the objective's ceiling."""
        import matplotlib.pyplot as plt
        from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

        bars = [m for m in self.rows if m != "original"]
        ceilings = self.claims.set_index(["model", "mask"])
        panels = [(name, mask) for name in self.models for mask in self.masks]
        fig, axes = plt.subplots(len(panels), 2, figsize=(8.5, 3 * len(panels)), squeeze=False)
        for i, (name, mask) in enumerate(panels):
            for ax, metric in zip(axes[i], ["mse", "fid"]):
                x = np.arange(len(bars))
                for k, (which, colour) in enumerate([("retain", "tab:blue"), ("forget", "tab:red")]):
                    values = np.array([self.ratio(name, mask, b, which, metric) for b in bars])
                    ax.bar(x + (k - 0.5) * 0.38, values - 1, 0.38, bottom=1,  # grow from "as original"
                           label=f"D_{which[0].upper()} ({which} classes)", color=colour)
                ax.axhline(1, color="k", lw=0.8)
                tol = RETAIN_MSE_TOL if metric == "mse" else RETAIN_FID_TOL
                ax.axhline(FORGET_MSE_MIN if metric == "mse" else FORGET_FID_MIN, color="tab:red",
                           ls=":", lw=1, label="forget bar")
                top = ceilings.loc[(name, mask), f"ceiling forget {metric}"]
                if math.isfinite(top):  # where the objective leads D_F (ceiling_draws=0: not drawn)
                    ax.axhline(top, color="tab:red", ls="--", lw=1.2,
                               label="objective's ceiling (D_F)")
                ax.set_yscale("log")
                lo, hi = ax.get_ylim()  # the retain bar is one-sided: up to 1 + tol keeps D_R
                ax.axhspan(lo, 1 + tol, color="tab:blue", alpha=0.12, lw=0, label="retain bar")
                ax.set_ylim(lo, hi)
                ax.yaxis.set_major_locator(LogLocator(subs=(1, 2, 5)))
                ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
                ax.yaxis.set_minor_formatter(NullFormatter())
                ax.set_xticks(x, bars, rotation=20, ha="right", fontsize=8)
                ax.set_ylabel(f"{metric.upper()} / original's")
                what = "hidden-region MSE" if metric == "mse" else "FID"
                ax.set_title(f"{name}, {mask}: {what}" if len(self.models) > 1 else
                             f"{mask}: {what}", fontsize=9)
        axes[0, 0].legend(fontsize=8.5)
        fig.suptitle(f"{', '.join(self.models)}: each row's error on D_R and D_F as a multiple "
                     f"of the original's ({self.scale} scale)", fontsize=10)
        fig.tight_layout()
        return fig


def _describe(first: pd.DataFrame, row: str) -> str:
    """Claim 4 in words for one row, computed from its ratios (``first``: rows by method)."""
    r, o = first.loc[row], first.loc["ours"]
    keep = ("within the retain bar" if r["keeps D_R"] else "outside the retain bar") + (
        f" (FID ×{r['retain fid']:.2f}, MSE ×{r['retain mse']:.2f})")
    short = [m.upper() for m, bar in (("fid", FORGET_FID_MIN), ("mse", FORGET_MSE_MIN))
             if not r[f"forget {m}"] >= bar]
    above = ("above the forget bar" if not short
             else f"short of the forget bar on {' and '.join(short)}")
    more = [m.upper() for m in ("fid", "mse") if r[f"forget {m}"] >= o[f"forget {m}"]]
    than = ("more than ours on both" if len(more) == 2 else
            f"more than ours on {more[0]} only" if more else "less than ours on both")
    return (f"- **{row}**: $D_R$ {keep}; $D_F$ FID ×{r['forget fid']:.2f}, MSE "
            f"×{r['forget mse']:.2f}, {above} and {than}.")


def _against_retrained(first: pd.DataFrame) -> dict[str, object]:
    """The retrained reference's row in words, and ours' forget error as a multiple of it."""
    r = first.loc["retrained"]
    fid_vs, mse_vs = (float(first.loc["ours", f"forget {m}"] / r[f"forget {m}"])
                      for m in ("fid", "mse"))
    more = [m for m, v in (("FID", fid_vs), ("MSE", mse_vs)) if v >= 1]
    less = [m for m, v in (("FID", fid_vs), ("MSE", mse_vs)) if v < 1]
    word = ("more" if not less else "less" if not more
            else f"more by {more[0]} and less by {less[0]}")
    removes = (f"by both measures it removes {word} of the forget classes than never having "
               "learned them" if len(more) != 1 else f"by {more[0]} it removes more of the forget "
               f"classes than never having learned them, by {less[0]} less")
    note = (f"Here its retain error is FID ×{r['retain fid']:.2f} and MSE "
            f"×{r['retain mse']:.2f} the original's and its forget error FID ×{r['forget fid']:.2f} "
            f"and MSE ×{r['forget mse']:.2f}, {'above' if r['forgets D_F'] else 'below'} the forget "
            f"bar. Ours ends with {fid_vs:.2f}× the retrained model's forget FID and {mse_vs:.2f}× "
            f"its forget MSE: {removes}.")
    return {"retrained_note": note, "ours_over_retrained_forget_fid": fid_vs,
            "ours_over_retrained_forget_mse": mse_vs, "ours_vs_retrained": word}


__all__ = ["TablePage", "keeps_retain", "forgets", "beats_ours", "against_ceiling",
           "RETAIN_FID_TOL", "RETAIN_MSE_TOL", "FORGET_FID_MIN", "FORGET_MSE_MIN",
           "PROXY_RETAIN_TOL", "PROXY_FORGET_TOL", "CLAIMS"]
