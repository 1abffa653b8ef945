"""Tests of the corruption masks."""
import pytest
import torch

from i2i_unlearn import masks


@pytest.mark.parametrize("name,area", [("centre-8/16", 0.25), ("centre-4/16", 0.0625),
                                       ("outpaint", 0.75)])
def test_named_masks_hide_the_paper_areas(name, area):
    m = masks.mask_from_name(name, 3, 32)
    assert m.shape == (3, 1, 32, 32)
    assert m.mean().item() == pytest.approx(area)
    assert set(m.unique().tolist()) == {0.0, 1.0}


def test_centre_box_is_centred():
    m = masks.centre_box(1, 32, 0.5)[0, 0]
    rows = m.sum(1).nonzero().flatten()
    assert rows.min() == 8 and rows.max() == 23
    assert torch.equal(m, m.flip(0)) and torch.equal(m, m.flip(1))


def test_random_boxes_are_seeded_and_varied():
    a = masks.random_boxes(16, 32, torch.Generator().manual_seed(1))
    b = masks.random_boxes(16, 32, torch.Generator().manual_seed(1))
    c = masks.random_boxes(16, 32, torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and not torch.equal(a, c)
    area = a.flatten(1).mean(1)
    assert (area > 0).all() and (area < 1).all() and area.std() > 0.02


@pytest.mark.parametrize("bad", ["centre", "centre-0/16", "centre-17/16", "border", "centre-x"])
def test_unknown_mask_names_fail_clearly(bad):
    with pytest.raises(ValueError, match="mask"):
        masks.mask_from_name(bad, 1, 32)


def test_bad_ratios_name_the_argument():
    with pytest.raises(ValueError, match="side_ratio"):
        masks.centre_box(1, 32, 1.5)
    with pytest.raises(ValueError, match="visible_ratio"):
        masks.outpaint_border(1, 32, 1.0)


def test_training_masks_share_one_box_per_batch():
    g = torch.Generator().manual_seed(0)
    m = masks.training_masks(8, 32, g)
    assert m.shape == (8, 1, 32, 32)
    assert all(torch.equal(m[0], m[i]) for i in range(8))
    assert 0 < m[0].mean() < 1
    assert not torch.equal(m, masks.training_masks(8, 32, g))  # the next batch differs
