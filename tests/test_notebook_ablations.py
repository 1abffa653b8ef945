"""The t-SNE figure, the α ablation and the mask appendix: executed at tiny scale (the session
fixture ``executed`` runs every notebook once), checked for what they glue and for the behaviour
they report. Margins below are set from the numbers measured at the notebooks' defaults."""
import pytest

from i2i_unlearn import zoo

from notebook_fixtures import page_values


def number(values: dict, name: str) -> float:
    return float(values[name]["text/plain"].strip("'\""))


def text(values: dict, name: str) -> str:
    return values[name]["text/plain"].strip("'\"")


@pytest.mark.slow
def test_tsne_figure_measures_how_far_forget_and_retain_outputs_move(executed):
    values = page_values(executed, "05_figure_tsne",
                         names={"tsne_table", "tsne_verdict", "part_retain", "part_forget",
                                "part_noise", "ours_vs_retrained"},
                         figures=("tsne_main", "tsne_panels"))
    assert "text/html" in values["tsne_table"]
    first_of_family = {}  # read from zoo.TINY_MODELS, not typed
    for n in zoo.TINY_MODELS:
        if not zoo.read_manifest(n)["recipe"]["exclude_classes"]:
            first_of_family.setdefault(zoo.read_manifest(n)["family"], n)
    assert text(values, "families") == ", ".join(first_of_family)
    others = text(values, "other_models")  # every other family's model gets its kept cosines
    assert all(f"{n} (" in others for n in first_of_family.values()
               if n != text(values, "first_model"))
    # Measured on mae-mnist (ours, 100 steps, seed 0, centre-8/16): retain outputs kept at cosine
    # 0.99, forget outputs at 0.92 (5.7x further in 1 - cos); linear probe after-vs-before 0.63 on
    # D_R, 0.77 on D_F; forget outputs' cosine to the noise target 0.80 -> 0.87; 27 % of forget
    # images closer to the noise target than to their original output. Verdict: agrees in part
    # (the retain probe misses the 0.60 bar).
    assert number(values, "retain_kept") >= 0.97
    assert number(values, "forget_kept") < number(values, "retain_kept") - 0.03
    assert number(values, "move_ratio") >= 3
    assert number(values, "sep_forget") >= 0.70
    assert number(values, "sep_forget") > number(values, "sep_retain") + 0.08
    assert number(values, "noise_after") > number(values, "noise_before") + 0.03
    assert 0 < number(values, "closer_to_noise") < 0.6
    assert text(values, "tsne_verdict") in ("agrees", "agrees in part")
    # the retrained reference (0.84 forget probe) moves forget outputs further than ours does
    assert number(values, "retrained_sep_forget") > number(values, "sep_forget")


@pytest.mark.slow
def test_alpha_ablation_trades_forget_damage_for_retain_damage(executed):
    values = page_values(executed, "06_ablation_alpha",
                         names={"alpha_table", "alpha_ratio_table", "alpha_verdict",
                                "retrained_forget_mse_ratio", "alpha_closest_retrained"},
                         figures=("fig_alpha",))
    assert "text/html" in values["alpha_table"]
    # Measured on mae-mnist (100 steps, seed 0, centre-8/16), MSE as a multiple of the
    # original's: α 0.05 -> forget 1.06, retain 1.01; α 0.25 -> 1.51, 1.05; α 1 -> forget 2.11,
    # retain 1.30 (forget FID 1.01 -> 1.94). The retrained model: forget 1.69, retain 0.95;
    # α 0.25 comes closest to it.
    assert values["forget_grows"]["text/plain"] == "True"
    assert text(values, "alpha_verdict") == "raises"
    assert number(values, "forget_mse_ratio_high") >= 1.7
    assert number(values, "forget_mse_ratio_low") <= 1.2
    assert number(values, "forget_fid_ratio_high") > number(values, "forget_fid_ratio_low") + 0.5
    assert number(values, "retain_mse_ratio_low") <= 1.05
    assert number(values, "retain_mse_ratio_high") <= 1.5  # the retain cost stays bounded
    # forget damage grows faster than retain damage across the sweep (measured 106 % vs 29 %)
    assert number(values, "extra_forget_pct") > 2 * number(values, "extra_retain_pct")
    assert 1.3 <= number(values, "retrained_forget_mse_ratio") <= 2.2


@pytest.mark.slow
def test_mask_appendix_scores_every_mask_and_draws_the_outpainting_grid(executed):
    values = page_values(executed, "08_appendix_masks",
                         names={"mask_table", "mask_ratio_table", "mask_verdict", "masks_holding",
                                "outpaint_ours_forget_ratio", "context_table", "context_prose"},
                         figures=("fig_masks", "grid_outpaint", "fig_context"))
    assert "text/html" in values["mask_table"]
    assert int(number(values, "masks_total")) == 6
    # Measured on mae-mnist (ours, 100 steps, seed 0), forget / retain MSE over the original's:
    # centre-4/16 2.13 / 1.02, 6/16 1.87 / 1.04, 8/16 1.83 / 1.06, 10/16 1.01 / 1.00,
    # 12/16 1.01 / 1.00, outpaint 1.04 / 1.05 -> the bar (forget >= 1.25, retain <= 1.10) holds
    # under the three smaller boxes only: the effect vanishes once most of the digit is hidden
    # (the original itself guesses) and under outpainting (on MNIST the hidden border is mostly
    # background; the original's forget MSE there is far below its error under the boxes).
    assert 3 <= int(number(values, "masks_holding")) < 6
    assert text(values, "forget_ratio_max_mask") == "centre-4/16"
    assert number(values, "forget_ratio_max") >= 1.5
    assert number(values, "retain_ratio_max") <= 1.10
    assert text(values, "context_direction") == "shrinks"
    assert number(values, "forget_ratio_large") < 1.15
    assert text(values, "outpaint_rank") == "the easiest"
    assert number(values, "outpaint_ours_forget_ratio") < 1.25
    # What the visible context allows (mae-mnist, measured: context AUC 1.00 / 0.96 / 0.51 at
    # centre 4/16 / 8/16 / 12/16; switch estimate x3.45 / x3.40 / x1.00; ours x2.13 / x1.83 /
    # x1.01): the context names the class under the small boxes, not under the largest, and
    # under the main box it allows more than the method reaches.
    assert number(values, "context_auc_small") > 0.95
    assert number(values, "context_auc_large") < 0.7
    assert number(values, "context_switch_large") < 1.1
    assert number(values, "context_switch_main") > number(values, "context_ours_main") + 0.5
    assert "centre-8/16" in text(values, "context_short")
