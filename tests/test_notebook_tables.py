"""The paper's Tables 1-2 at tiny scale: 02 (object classes, mae-mnist), 03 (scene classes,
mae-scenes) and 03b (every family side by side). Each notebook is executed once per session by
the ``executed`` fixture."""
import math

import nbformat
import papermill
import pytest

from notebook_fixtures import ROOT, errors, glued

ROWS = ("original", "max-loss", "noisy-label", "retain-label", "random-encoder", "ours",
        "ours-proxy", "retrained")
FIGURES_AND_TABLES = ("table_centre_4", "table_centre_8", "fig_ratios", "ratio_table",
                      "claims_table", "rows_summary")


def number(values: dict, name: str) -> float:
    return float(values[name]["text/plain"])


def check_page(executed, stem: str) -> dict:
    """What both pages must have: parameters, tables with every row, the figure, the scale
    banner, verdicts consistent with their booleans, no errors. -> the glued values."""
    params = papermill.inspect_notebook(str(ROOT / "notebooks" / f"{stem}.ipynb"))
    assert {"scale", "models", "forget_classes", "steps", "seeds", "masks", "with_retrained",
            "workers"} <= set(params)
    path = executed / f"{stem}.ipynb"
    assert not errors(path)
    values = glued(path)
    assert set(FIGURES_AND_TABLES) <= set(values), set(FIGURES_AND_TABLES) - set(values)
    assert "image/png" in values["fig_ratios"]
    for name in ("table_centre_4", "table_centre_8"):
        html = values[name]["text/html"]
        assert all(f">{row}<" in html for row in ROWS), name
    banner = [o for c in nbformat.read(path, as_version=4).cells for o in c.get("outputs", [])
              if "Scale of every number and figure on this page" in
              str(o.get("data", {}).get("text/markdown", ""))]
    assert banner
    for i in range(1, 5):
        holds = values[f"claim{i}_holds"]["text/plain"] == "True"
        assert values[f"claim{i}_verdict"]["text/plain"].strip("'") == (
            "holds" if holds else "does not hold")
    assert "MAE" in values["families_tabulated"]["text/plain"]
    # with_retrained=True is the default: the retrained reference has a row and ratios
    assert math.isfinite(number(values, "retrained_forget_mse_ratio"))
    assert math.isfinite(number(values, "ours_over_retrained_forget_mse"))
    # the objective's ceiling on D_F (ceiling_draws=16 by default); the page names exactly the
    # forget bars that lie above it
    verdict = values["ceiling_verdict"]["text/plain"]
    for metric in ("fid", "mse"):
        above = number(values, f"ceiling_forget_{metric}_ratio") < number(values, f"forget_{metric}_min")
        assert (metric.upper() in verdict.split(":")[0]) == above, (metric, verdict)
    return values


@pytest.mark.slow
def test_table_on_object_classes_keeps_retain_and_moves_forget(executed):
    values = check_page(executed, "02_table1_imagenet")
    # Measured (mae-mnist, forget 0-2, 100 steps, seed 0, centre-8/16), ratios to the original:
    # ours retain FID 1.03, retain MSE 1.05; forget FID 1.53, forget MSE 1.51 (below the
    # page's 3x / 2x "destroyed" bar, so claim 2 does not hold at this scale); ours-proxy retain
    # MSE 1.12; max-loss retain MSE 1.12, forget MSE 3.04; random-encoder forget MSE 1.00;
    # retrained forget MSE 1.69. Claims: 1 holds, 2 / 3 / 4 do not (noisy-label and
    # retain-label keep D_R and forget more than ours).
    assert abs(number(values, "ours_retain_fid_ratio") - 1) <= 0.15
    assert number(values, "ours_retain_mse_ratio") <= 1.10
    assert number(values, "ours_forget_mse_ratio") >= 1.35
    assert number(values, "ours_forget_fid_ratio") >= 1.3
    # forgetting costs the retain set more with gradient ascent than with ours
    assert number(values, "max_loss_retain_mse_ratio") > number(values, "ours_retain_mse_ratio")
    assert number(values, "max_loss_forget_mse_ratio") >= 2.5
    assert values["claim1_holds"]["text/plain"] == "True"
    # The objective's ceiling (the original's 16-draw target fill), measured at 8/16: forget MSE
    # x3.88, forget FID x2.62 -- the FID bar (3x) lies above what an exact optimum would reach.
    ceiling_mse, ceiling_fid = (number(values, f"ceiling_forget_{m}_ratio") for m in ("mse", "fid"))
    assert ceiling_mse > number(values, "ours_forget_mse_ratio") > 1
    assert 1.5 < ceiling_fid < number(values, "forget_fid_min")


@pytest.mark.slow
def test_table_on_scene_classes_keeps_retain_and_destroys_forget(executed):
    values = check_page(executed, "03_table_places")
    # Measured (mae-scenes, forget astronaut/chelsea/coffee, 100 steps, seed 0, centre-8/16):
    # ours retain FID 1.05, retain MSE 0.99; forget FID 14.3, forget MSE 4.08 (claims 1 and 2
    # hold; claim 1 fails at centre-4/16, retain FID 1.17); ours-proxy retain FID 1.54 and
    # MSE 1.09 (claim 3 does not hold); retain-label keeps D_R and forgets more than ours
    # (claim 4 does not hold). Measured without the retrained row (not yet in the zoo).
    assert abs(number(values, "ours_retain_fid_ratio") - 1) <= 0.15
    assert number(values, "ours_retain_mse_ratio") <= 1.10
    assert number(values, "ours_forget_mse_ratio") >= 3.0
    assert number(values, "ours_forget_fid_ratio") >= 8.0
    assert values["claim1_holds"]["text/plain"] == "True"
    assert values["claim2_holds"]["text/plain"] == "True"


@pytest.mark.slow
def test_families_page_puts_every_family_against_its_ceiling(executed):
    path = executed / "03b_table_families.ipynb"
    assert not errors(path)
    values = glued(path)
    names = {"families_table", "families_ratios", "fig_families", "families_summary",
             "families_verdict"}
    assert names <= set(values), names - set(values)
    assert "image/png" in values["fig_families"]
    families = values["families_tabulated"]["text/plain"]
    assert all(f in families for f in ("VQ-GAN", "diffusion", "MAE")), families
    params = papermill.inspect_notebook(str(ROOT / "notebooks" / "03b_table_families.ipynb"))
    models = eval(params["models"]["default"])
    rows = ["original"] + eval(params["methods"]["default"])
    html = values["families_table"]["text/html"]
    assert all(f">{m}<" in html for m in models + rows), html

    def ratio(model, col):
        return number(values, f"{model}: {col}")

    # The target fill bounds what the objective can do: ours moves the forget error up towards
    # it, not past it. For diffusion (the encoder shown a noise hole at every sampling step) one
    # noise draw's fill is mostly that draw's noise; the mean target, which an encoder can
    # reach, is far lower (x2.8 against x6.3 on the scenes), and ours stays below it.
    for model in ("mae-mnist", "vqgan-mnist", "mae-scenes", "vqgan-scenes", "diffusion-mnist",
                  "diffusion-scenes"):
        assert ratio(model, "ours forget mse") < ratio(model, "target fill forget mse"), model
        assert ratio(model, "ours forget mse") > (1.0 if "diffusion" not in model else 0.9), model
    assert ratio("diffusion-scenes", "target fill forget mse") > 2
    assert (ratio("diffusion-scenes", "one-draw fill forget mse")
            > 1.5 * ratio("diffusion-scenes", "target fill forget mse"))
    # The models that never saw the forget classes fill them worse than the original does.
    for model in ("mae-mnist", "vqgan-mnist", "diffusion-mnist"):
        assert ratio(model, "retrained forget mse") > 1.05, model
    for model in ("vqgan-scenes", "diffusion-scenes"):  # no retrained reference ships
        assert math.isnan(ratio(model, "retrained forget mse")), model
    # the plain-text verdict the scorecard pastes: "holds" only if no model falls short
    short = values["families_short"]["text/plain"].strip("'")
    assert values["families_claim_verdict"]["text/plain"].strip("'") == (
        "holds" if short == "none" else "does not hold")
