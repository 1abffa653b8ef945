"""The Tables 1-2 pages' verdicts: the four claims follow the ratios of the table they are given."""
import math

import matplotlib
import pandas as pd
import pytest

matplotlib.use("Agg")
from i2i_unlearn.table_pages import CLAIMS, TablePage, against_ceiling  # noqa: E402

# (retain, forget) multiples of the original's error; the same for every metric but IS / cosine.
ROWS = {"original": (1.0, 1.0), "ours": (1.05, 3.5), "ours-proxy": (1.06, 3.4),
        "max-loss": (1.30, 5.0), "noisy-label": (1.02, 4.0), "retrained": (1.0, 4.2)}


def _table(rows=ROWS):
    out = []
    for method, (r, f) in rows.items():
        for which, k in (("retain", r), ("forget", f)):
            for metric, base in (("fid", 50.0), ("mse", 0.4), ("is", 2.0), ("cosine", 0.9)):
                value = base * k if metric in ("fid", "mse") else base / k
                out.append({"model": "mae-mnist", "method": method, "seed": 0, "set": which,
                            "metric": metric, "value": value, "mask": "centre-8/16"})
    return pd.DataFrame(out)


def _page(df, methods=("max-loss", "noisy-label", "ours", "ours-proxy")):
    return TablePage(df, ["mae-mnist"], ["centre-8/16"], list(methods), [0, 1, 2], [0],
                     steps=100, ceiling_draws=0)


def test_claims_follow_the_ratios():
    page = _page(_table())
    v = page.verdicts.set_index("method")
    assert v.loc["ours", "forget fid"] == pytest.approx(3.5)
    assert v.loc["ours", "retain mse"] == pytest.approx(1.05)
    assert bool(v.loc["ours", "keeps D_R"]) and bool(v.loc["ours", "forgets D_F"])
    assert not v.loc["max-loss", "keeps D_R"]  # ×1.30 retain is outside the bar
    c = page.claims.iloc[0]
    assert c[CLAIMS[0]] and c[CLAIMS[1]] and c[CLAIMS[2]]
    assert not c[CLAIMS[3]]  # noisy-label keeps D_R and forgets more than ours
    values = page.glued()
    assert values["rows_beating_ours"] == "noisy-label"
    assert values["claim4_verdict"] == "does not hold" and values["claim1_verdict"] == "holds"
    assert values["ours_forget_fid_ratio"] == pytest.approx(3.5)
    assert values["ours_forget_is_direction"] == "falls"
    assert values["ours_over_retrained_forget_fid"] == pytest.approx(3.5 / 4.2)
    assert "less" in values["ours_vs_retrained"]
    assert math.isnan(values["random_encoder_forget_fid_ratio"])  # a row this run did not compute
    assert values["ceiling_verdict"].startswith("(not measured")
    assert values["steps_note"] == "100 unlearning steps (the mae default is 150)"
    fig = page.ratio_figure()
    assert len(fig.axes) == 2 and "(tiny scale)" in fig._suptitle.get_text()
    matplotlib.pyplot.close(fig)


def test_a_weak_ours_fails_claim_two_and_the_ceiling_words_name_the_bars_above_it():
    rows = {**ROWS, "ours": (1.05, 1.8), "noisy-label": (1.30, 4.0)}
    c = _page(_table(rows)).claims.iloc[0]
    assert c[CLAIMS[0]] and not c[CLAIMS[1]] and c[CLAIMS[3]]
    assert not c[CLAIMS[2]]  # proxy ×3.4 vs ours ×1.8: far apart
    assert against_ceiling({"fid": 2.6, "mse": 3.9}).startswith("Here the forget bar on FID lies")
    assert against_ceiling({"fid": 5.0, "mse": 3.9}).startswith("Both forget bars lie within")
