"""Tests of the forgetting audit: probes, verdict, errors, CLI -- on tiny models of every family.

The models here are trained for a few hundred steps on a handful of 16x16 scene patches, so the
"original" (trained on forget + retain images) has really seen the forget classes and the
"retrained" one has not; the audit must tell them apart and flag the original.
"""
import math

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from i2i_unlearn import masks, zoo
from i2i_unlearn.audit import (AuditConfig, AuditData, audit, context_sweep, generalisation_gap,
                               linear_probe, membership_inference, membership_scores,
                               pool_embedding, relearning, run_audit, verdict, verdict_matrix)
from i2i_unlearn.audit.data import hidden_errors
from i2i_unlearn.audit.probes import context_mask, roc_auc_se
from i2i_unlearn.data import load_dataset
from i2i_unlearn.loop import LoopConfig, train
from i2i_unlearn.models.base import I2IModel

SIZE = 16
FORGET, RETAIN = (0, 1, 2), (3, 4, 5)


def _mae(channels):
    from i2i_unlearn.models.mae import build_mae
    return build_mae("mae-tiny", img_size=SIZE, in_chans=channels, embed_dim=64, depth=2,
                     num_heads=2, decoder_embed_dim=64, decoder_depth=1, decoder_num_heads=2)


def _diffusion(channels):
    from i2i_unlearn.models.diffusion import build_diffusion
    return build_diffusion("diffusion-tiny", img_size=SIZE, in_chans=channels,
                           block_out_channels=(16, 32), attention_levels=(False, True),
                           attention_head_dim=16, norm_num_groups=8, sample_steps=2)


def _vqgan(channels):
    from i2i_unlearn.models.vqgan import build_vqgan
    return build_vqgan("vqgan-tiny", img_size=SIZE, in_chans=channels, vq_channels=(16, 16),
                       embed_dim=32, depth=1, num_heads=2, decoder_embed_dim=32,
                       decoder_depth=1, decoder_num_heads=2, decode_steps=2)


# Adding a family is one line here (and one in TRAIN).
FAMILIES = {"mae": _mae, "diffusion": _diffusion, "vqgan": _vqgan}
TRAIN = {"mae": (300, 3e-3), "diffusion": (300, 2e-3), "vqgan": (300, 3e-3)}  # steps, lr
# Families whose tiny models learn enough in TRAIN's steps for the audit to resolve the original
# from the retrained model. Diffusion and VQ-GAN at 300 steps do not yet (relearn / context stay
# inconclusive); they are checked to run every probe through the contract instead.
SEPARATES = ("mae",)


def shrink(pair):
    images, labels = pair
    return F.avg_pool2d(images, images.shape[-1] // SIZE), labels


@pytest.fixture(scope="module")
def scenes():
    d = load_dataset("scenes")
    data = AuditData(*shrink(d.images(FORGET, "train", per_class=4)),
                     *shrink(d.images(FORGET, "eval", per_class=30)),
                     *shrink(d.images(RETAIN, "eval", per_class=30)))
    retain_train = shrink(d.images(RETAIN, "train", per_class=4))[0]
    return data, retain_train, d.channels


def fit(family: str, images: torch.Tensor, channels: int, steps: int | None = None) -> I2IModel:
    torch.manual_seed(0)
    model = FAMILIES[family](channels)
    default_steps, lr = TRAIN[family]

    def step_fn(step, g):
        x = images[torch.randint(0, len(images), (32,), generator=g)]
        m = masks.training_masks(len(x), SIZE, g)
        return model.task_loss(x, m, model.sample_corruption(x, m, g)), {}

    train(model, [p for p in model.parameters() if p.requires_grad], step_fn,
          LoopConfig(steps=steps or default_steps, lr=lr, warmup_steps=2), progress=False)
    return model.eval()


CONFIG = AuditConfig(probes=("relearn", "context"), relearn_k=8, relearn_steps=10,
                     relearn_every=5, areas=(0.7, 0.3), mia_masks=4)


@pytest.mark.parametrize("family", SEPARATES)
def test_audit_flags_the_original_and_not_the_retrained(family, scenes):
    data, retain_train, channels = scenes
    original = fit(family, torch.cat([data.forget_train, retain_train]), channels)
    retrained = fit(family, retain_train, channels)
    result = run_audit({"original": original, "retrained": retrained}, data,
                       config=CONFIG, progress=False)
    table = result.summary.set_index(["model", "probe"])
    for probe in CONFIG.probes:
        assert table.loc[("original", probe), "flagged"], (family, probe, table.loc["original"])
        assert not table.loc[("retrained", probe), "flagged"], (family, probe)
        assert table.loc[("retrained", probe), "position"] == 0
    figs = result.figures()
    assert {"relearn", "context", "verdict"} <= set(figs)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_every_probe_runs_on_every_family(family, scenes):
    data, retain_train, channels = scenes
    small = AuditData(data.forget_train[::2], data.forget_train_labels[::2],
                      data.forget_eval[::3], data.forget_eval_labels[::3],
                      data.retain_eval[::3], data.retain_eval_labels[::3])
    original = fit(family, torch.cat([data.forget_train, retain_train]), channels, steps=5)
    retrained = fit(family, retain_train, channels, steps=5)
    config = AuditConfig(relearn_k=4, relearn_steps=2, relearn_every=1, areas=(0.5,),
                         mia_masks=2, probe_folds=2)
    result = run_audit({"original": original, "retrained": retrained}, small, config=config,
                       progress=False)
    assert np.isfinite(result.rows["value"]).all()
    assert set(result.summary["probe"]) == {"probe", "membership", "relearn", "context"}
    assert len(result.scores) == 2 * 3 * (len(small.forget_train) + len(small.forget_eval))
    figs = result.figures(probe_ceilings={"forget vs retain": 0.8})
    assert set(figs) == {"probe", "membership", "relearn", "context", "verdict"}
    dashed = [line for ax in figs["probe"].axes for line in ax.get_lines()
              if line.get_label() == "visible pixels alone"]
    assert [line.get_ydata()[0] for line in dashed] == [0.8]  # only the task given
    for fig in figs.values():
        plt.close(fig)
    # relearning leaves the input models untouched
    before = {k: v.clone() for k, v in original.state_dict().items()}
    relearning({"original": original}, small, k=2, steps=1)
    assert all(torch.equal(before[k], v) for k, v in original.state_dict().items())


# -- probes that need a model with a known secret --------------------------------------------------
class Memoriser(I2IModel):
    """A deliberately un-unlearned model: reconstructs its training images exactly (a lookup),
    and everything else as the wrapped model does."""

    def __init__(self, base: I2IModel, members: torch.Tensor):
        super().__init__()
        self.base, self.config, self.members = base, base.config, members
        self.family = base.family

    def encode(self, x, mask, corruption=None):
        return self.base.encode(x, mask, corruption)

    @torch.no_grad()
    def generate(self, x, mask, generator=None):
        out = self.base.generate(x, mask, generator)
        known = (x.flatten(1)[:, None] == self.members.flatten(1)[None]).all(-1).any(-1)
        return torch.where(known[:, None, None, None], x, out)


class Blind(I2IModel):
    """An encoder that carries nothing about the image: every embedding is the same."""

    def __init__(self, base: I2IModel):
        super().__init__()
        self.base, self.config, self.family = base, base.config, base.family

    def encode(self, x, mask, corruption=None):
        return torch.zeros(len(x), 3, 8)


@pytest.fixture(scope="module")
def tiny_pair(scenes):
    data, retain_train, channels = scenes
    return data, fit("mae", retain_train, channels, steps=50)


def test_membership_flags_a_model_that_memorised_its_training_images(tiny_pair):
    data, base = tiny_pair
    models = {"original": Memoriser(base, data.forget_train), "retrained": base}
    rows = membership_inference(models, data, reference="retrained", n_masks=3)
    auc = rows[rows["metric"] == "auc"].set_index(["model", "statistic"])["value"]
    for statistic in ("loss", "multi-mask", "calibrated"):
        assert auc[("original", statistic)] > 0.95
    assert auc[("retrained", "calibrated")] == 0.5  # by construction: calibrated on itself
    tpr = rows[rows["metric"] == "tpr@1%fpr"].set_index(["model", "statistic"])["value"]
    assert tpr[("original", "calibrated")] > 0.9
    table = verdict(rows.assign(probe="membership"))
    assert table.set_index("model").loc["original", "flagged"]


def test_generalisation_gap_is_what_a_membership_attack_has_to_work_with(tiny_pair):
    """A model that reconstructs its members exactly has a huge gap; the gap is the held-out /
    member ratio of geometric-mean errors, read off the attack's own per-image scores."""
    data, base = tiny_pair
    models = {"original": Memoriser(base, data.forget_train), "retrained": base}
    scores = membership_scores(models, data, reference="retrained", n_masks=3)
    gap = generalisation_gap(scores).set_index("model")
    assert gap.loc["original", "ratio"] > 100 and gap.loc["original", "z"] > 10
    assert gap.loc["original", "members"] == len(data.forget_train)
    loss = generalisation_gap(scores, "loss").set_index("model")
    errors = hidden_errors(base, torch.cat([data.forget_train, data.forget_eval]),
                           masks.mask_from_name("centre-8/16", 1, SIZE)).numpy()
    members = len(data.forget_train)
    assert loss.loc["retrained", "member_error"] == pytest.approx(
        np.exp(np.log(errors[:members]).mean()), rel=1e-5)
    assert loss.loc["retrained", "ratio"] == pytest.approx(
        np.exp(np.log(errors[members:]).mean() - np.log(errors[:members]).mean()), rel=1e-5)
    with pytest.raises(ValueError, match="statistic"):
        generalisation_gap(scores, "calibrated")


def test_probe_flags_class_information_in_the_embeddings(tiny_pair):
    data, base = tiny_pair
    rows = linear_probe({"original": base, "retrained": Blind(base)}, data)
    acc = rows.set_index(["model", "task"])["value"]
    assert acc[("original", "forget classes")] > 0.6  # three classes: chance is 1/3
    assert abs(acc[("retrained", "forget classes")] - 1 / 3) < 0.05
    table = verdict(rows).set_index("model")
    assert table.loc["original", "flagged"] and not table.loc["retrained", "flagged"]


# -- pieces ------------------------------------------------------------------------------------
def test_pool_embedding_and_context_masks():
    assert pool_embedding(torch.ones(2, 5, 7)).shape == (2, 7)
    maps = (torch.ones(2, 4, 8, 8), torch.ones(2, 6, 4, 4))
    assert pool_embedding(maps).shape == (2, 10)
    for kind in ("centre", "outpaint"):
        for area in (0.9, 0.5, 0.1):
            share = context_mask(kind, area, 32).mean().item()
            assert abs(share - area) < 0.05, (kind, area, share)
    with pytest.raises(ValueError, match="areas"):
        context_mask("centre", 1.0, 32)
    with pytest.raises(ValueError, match="kinds"):
        context_mask("ring", 0.5, 32)
    assert math.isclose(roc_auc_se(0.5, 100, 100), 0.0408, abs_tol=1e-3)


def _rows(original, retrained, other, se=0.01, se_paired=None):
    return pd.DataFrame([{"model": m, "method": m, "probe": "relearn", "step": 10,
                          "metric": "forget_mse", "value": v, "se": se,
                          **({} if se_paired is None else {"se_paired": se_paired[m]})}
                         for m, v in (("original", original), ("retrained", retrained),
                                      ("other", other))])


def test_verdict_positions_and_flags():
    t = verdict(_rows(0.2, 0.6, 0.3)).set_index("model")
    assert t.loc["original", "position"] == 1 and t.loc["original", "flagged"]
    assert t.loc["retrained", "position"] == 0 and not t.loc["retrained", "flagged"]
    assert math.isclose(t.loc["other", "position"], 0.75) and t.loc["other", "flagged"]
    assert t.loc["other", "differs_from_retrained"]
    t = verdict(_rows(0.2, 0.6, 0.9)).set_index("model")  # overshoots the retrained model
    assert not t.loc["other", "flagged"] and t.loc["other", "verdict"] == "past the retrained model"
    t = verdict(_rows(0.5, 0.51, 0.9, se=0.05)).set_index("model")  # references not resolved
    assert not t["flagged"].any() and (t["closer_to"] == "-").all()
    assert verdict_matrix(verdict(_rows(0.2, 0.6, 0.3))).shape == (3, 1)


def test_verdict_tests_the_references_with_the_paired_se_where_there_is_one():
    # 0.04 apart with se 0.02 each: unresolved as independent values (2 * 0.028 > 0.04) ...
    t = verdict(_rows(0.50, 0.54, 0.51, se=0.02)).set_index("model")
    assert not t["flagged"].any() and math.isclose(t.loc["original", "se_vs_retrained"],
                                                   math.hypot(0.02, 0.02))
    # ... resolved once the per-image pairs say the difference is known to 0.005
    paired = {"original": 0.005, "retrained": 0.0, "other": 0.03}
    t = verdict(_rows(0.50, 0.54, 0.51, se=0.02, se_paired=paired)).set_index("model")
    assert t.loc["original", "flagged"] and not t.loc["retrained", "flagged"]
    assert t.loc["other", "flagged"] and math.isclose(t.loc["other", "position"], 0.75)
    assert not t.loc["other", "differs_from_retrained"]  # 0.03 apart, paired se 0.03


def test_paired_standard_errors_of_relearning_and_context(tiny_pair, scenes):
    data, base = tiny_pair
    _, retain_train, channels = scenes
    pair = {"original": base, "retrained": fit("mae", retain_train, channels, steps=20)}
    rows = relearning(pair, data, k=4, steps=4, eval_every=2, reference="retrained")
    forget = rows[rows["metric"] == "forget_mse"]
    assert forget.loc[forget["step"] < 4, "se_paired"].isna().all()  # only the last step's
    last = forget[forget["step"] == 4].set_index("model")
    assert last.loc["retrained", "se_paired"] == 0
    # both models err most on the same (hard) images: their difference is known better than each
    assert 0 < last.loc["original", "se_paired"] < math.hypot(*last["se"])
    ctx = context_sweep(pair, data, areas=(0.5,), reference="retrained")
    pooled = ctx[ctx["metric"] == "pooled_ratio"].set_index("model")
    assert pooled.loc["retrained", "se_paired"] == 0
    assert 0 < pooled.loc["original", "se_paired"] < math.hypot(*pooled["se"])
    with pytest.raises(ValueError, match="reference"):
        context_sweep(pair, data, areas=(0.5,), reference="nobody")
    with pytest.raises(ValueError, match="reference"):  # before any fine-tuning step
        relearning(pair, data, k=4, steps=10**6, reference="nobody")


def test_config_and_audit_errors_name_the_argument(small_checkpoint):
    with pytest.raises(ValueError, match="probes"):
        AuditConfig(probes=("probe", "vibes"))
    with pytest.raises(ValueError, match="areas"):
        AuditConfig(areas=(0.5, 1.2))
    with pytest.raises(ValueError, match="relearn_steps"):
        AuditConfig(relearn_steps=0)
    with pytest.raises(FileNotFoundError, match="reference"):
        audit(small_checkpoint, [0, 1, 2], original="mae-mnist", reference="/no/such/dir")
    with pytest.raises(ValueError, match="original: not given"):
        audit(small_checkpoint, [0, 1, 2])
    # a "reference" that saw the forget classes is refused
    with pytest.raises(ValueError, match="reference: .* was trained on forget classes"):
        audit(small_checkpoint, [0, 1, 2], original="mae-mnist", reference="mae-mnist")
    with pytest.raises(ValueError, match="forget"):
        audit(small_checkpoint, [42], original="mae-mnist", reference=small_checkpoint)


def test_cli_audit_errors(small_checkpoint, capsys):
    from i2i_unlearn.cli import main
    assert main(["audit", "--model", str(small_checkpoint), "--forget", "0", "--probes",
                 "vibes"]) == 2
    assert "--probes" in capsys.readouterr().err
    assert main(["audit", "--model", str(small_checkpoint), "--forget", "0", "1",
                 "--original", "mae-mnist", "--reference", "/no/such/dir"]) == 2
    assert "--reference" in capsys.readouterr().err


def test_shipped_original_is_flagged_by_relearning_and_context():
    """The shipped pair (mae-mnist vs mae-mnist-retrained): the original reconstructs forget
    digits after a short fine-tune far better than the model that never saw them, and from less
    context. (Membership inference is inconclusive on this pair: the tiny MAE leaks no membership
    signal; see the audit chapter.)"""
    d = load_dataset("mnist")
    data = AuditData.from_dataset(d, FORGET, RETAIN, members_per_class=10)
    pair = {"original": zoo.load("mae-mnist"), "retrained": zoo.load("mae-mnist-retrained")}
    for rows in (relearning(pair, data, k=8, steps=10, reference="retrained"),
                 context_sweep(pair, data, reference="retrained")):
        table = verdict(rows).set_index("model")
        assert table.loc["original", "flagged"], table
        assert not table.loc["retrained", "flagged"], table
