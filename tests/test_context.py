"""Tests of what the visible context tells (``i2i_unlearn.context``)."""
import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from i2i_unlearn import zoo
from i2i_unlearn.classifiers import ClassifierRecipe
from i2i_unlearn.context import (blank_hole, context_accuracy, context_classifier,
                                 context_limits, forget_probability, switch_estimate)
from i2i_unlearn.data import load_dataset

FAST = ClassifierRecipe(steps=60)


def test_blank_hole_zeroes_exactly_the_hole():
    x = torch.ones(2, 1, 32, 32)
    out = blank_hole(x, "centre-8/16")
    assert out[:, :, 8:24, 8:24].abs().sum() == 0
    assert out.sum() == 2 * (32 * 32 - 16 * 16)


def test_switch_estimate_with_a_perfect_classifier_reaches_the_target_fill():
    rng = np.random.default_rng(0)
    original = rng.uniform(0.5, 1.0, 200)
    target = original * 3
    is_forget = np.arange(200) < 100
    out = switch_estimate(original, target, is_forget.astype(float), is_forget)
    assert out["forget_ratio"] == pytest.approx(3.0)
    assert out["retain_ratio"] == pytest.approx(1.0)


def test_switch_estimate_without_information_keeps_the_retain_bar():
    # p carries no information: any switch hits forget and retain images alike, so with the
    # target at 3x, a retain ratio within 1.10 allows only about 5 % of the images switched.
    rng = np.random.default_rng(1)
    original = np.ones(1000)
    target = np.full(1000, 3.0)
    is_forget = np.arange(1000) < 500
    out = switch_estimate(original, target, rng.uniform(size=1000), is_forget, retain_tol=0.10)
    assert out["retain_ratio"] <= 1.10
    assert out["forget_ratio"] < 1.3
    never = switch_estimate(original, target, rng.uniform(size=1000), is_forget, retain_tol=0.0)
    # no retain image may switch: only the few forget images that top the random ranking do
    assert never["retain_ratio"] == 1.0 and never["forget_ratio"] < 1.05


def test_switch_estimate_names_bad_arguments():
    with pytest.raises(ValueError, match="is_forget"):
        switch_estimate(np.ones(4), np.ones(4), np.ones(4), np.ones(4, bool))
    with pytest.raises(ValueError, match="retain_tol"):
        switch_estimate(np.ones(4), np.ones(4), np.ones(4), np.arange(4) < 2, retain_tol=-1)
    with pytest.raises(ValueError, match="one shape"):
        switch_estimate(np.ones(4), np.ones(3), np.ones(4), np.arange(4) < 2)


def test_context_classifier_is_deterministic_and_needs_context():
    d = load_dataset("mnist")
    images, labels = d.images([0, 1, 2, 3, 4, 5], split="eval")
    is_forget = (labels < 3).numpy()
    p = {}
    for mask in ("centre-4/16", "centre-14/16"):
        clf = context_classifier(d, [0, 1, 2, 3, 4, 5], mask, FAST)
        p[mask] = forget_probability(clf, images, mask, [0, 1, 2]).numpy()
        assert ((p[mask] >= 0) & (p[mask] <= 1)).all()
    again = forget_probability(context_classifier(d, [0, 1, 2, 3, 4, 5], "centre-4/16", FAST),
                               images, "centre-4/16", [0, 1, 2]).numpy()
    np.testing.assert_array_equal(again, p["centre-4/16"])
    # a small hole leaves the digit readable; a hole of 14/16 of the side leaves a thin border
    small, large = (roc_auc_score(is_forget, p[m]) for m in ("centre-4/16", "centre-14/16"))
    assert small > 0.95 and small > large + 0.1


def test_context_limits_rows_on_a_tiny_mae():
    df = context_limits(zoo.load("mae-mnist"), [0, 1, 2], mask_names=["centre-4/16"],
                        recipe=FAST)
    assert list(df["mask"]) == ["centre-4/16"]
    row = df.iloc[0]
    assert row["target_fill_forget"] > 2  # the noise embedding's fill is far from the digits
    # at most about the target fill's: leaving out a forget image whose target fill happens to
    # be closer to the truth than the original's can lift the mean a little above it
    assert 1 <= row["switch_forget"] <= 1.05 * row["target_fill_forget"]
    assert row["switch_retain"] <= 1.10 + 1e-9
    assert 0.5 < row["auc"] <= 1 and 0 <= row["accuracy"] <= 1


def test_context_accuracy_scores_both_probe_tasks():
    d = load_dataset("mnist")
    acc = context_accuracy(d, [0, 1, 2], [3, 4, 5], "centre-4/16", FAST)
    assert set(acc) == {"forget classes", "forget vs retain"}
    assert acc["forget classes"] > 0.9 and acc["forget vs retain"] > 0.9  # chance: 1/3, 1/2
    assert set(context_accuracy(d, [0], [3, 4], "centre-4/16", FAST)) == {"forget vs retain"}
