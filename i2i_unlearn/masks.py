"""The corruption ``T``: which pixels are hidden and must be generated.

Every mask is a float tensor (B, 1, H, W) with 1 where a pixel is hidden. The paper evaluates
with a centre box whose side is 4/16 or 8/16 of the image side (8/16 hides 25% of the area) and
with outpainting (a hidden border); models train and unlearn with random boxes.
"""
from __future__ import annotations

from fractions import Fraction

import torch

EVAL_MASKS = ("centre-4/16", "centre-8/16", "outpaint")


def centre_box(n: int, size: int, side_ratio: float = 0.5) -> torch.Tensor:
    """Hide a centred square whose side is ``side_ratio`` of the image side. -> (n, 1, size, size)"""
    if not 0 < side_ratio <= 1:
        raise ValueError(f"side_ratio: expected a value in (0, 1], got {side_ratio}")
    side = round(size * side_ratio)
    start = (size - side) // 2
    mask = torch.zeros(n, 1, size, size)
    mask[:, :, start:start + side, start:start + side] = 1.0
    return mask


def outpaint_border(n: int, size: int, visible_ratio: float = 0.5) -> torch.Tensor:
    """Keep a centred square of side ``visible_ratio`` of the image; hide the border around it."""
    if not 0 < visible_ratio < 1:
        raise ValueError(f"visible_ratio: expected a value in (0, 1), got {visible_ratio}")
    return 1.0 - centre_box(n, size, visible_ratio)


def random_boxes(n: int, size: int, generator: torch.Generator | None = None,
                 min_side: float = 0.25, max_side: float = 0.75, max_boxes: int = 2) -> torch.Tensor:
    """Training masks: the union of 1..max_boxes boxes per image, sides drawn in [min_side, max_side]."""
    if not 0 < min_side <= max_side <= 1:
        raise ValueError(f"min_side, max_side: expected 0 < min_side <= max_side <= 1, "
                         f"got {min_side}, {max_side}")
    mask = torch.zeros(n, 1, size, size)
    counts = torch.randint(1, max_boxes + 1, (n,), generator=generator)
    sides = torch.empty(n, max_boxes, 2).uniform_(min_side, max_side, generator=generator)
    corners = torch.rand(n, max_boxes, 2, generator=generator)
    for i in range(n):
        for b in range(int(counts[i])):
            h, w = (sides[i, b] * size).round().long().clamp(min=1).tolist()
            top = int(corners[i, b, 0] * (size - h + 1))
            left = int(corners[i, b, 1] * (size - w + 1))
            mask[i, 0, top:top + h, left:left + w] = 1.0
    return mask


def training_masks(n: int, size: int, generator: torch.Generator | None = None,
                   min_side: float = 0.25, max_side: float = 0.75) -> torch.Tensor:
    """Masks for pre-training and unlearning: one random box, shared by the whole batch.

    Sharing keeps the number of hidden patches equal across the batch, so a patch-based model
    (MAE) never has to drop extra visible patches of every image to match the most-masked one;
    models add their own random corruption on top (MAE's random patch dropping).
    """
    return random_boxes(1, size, generator, min_side, max_side, max_boxes=1).expand(n, -1, -1, -1)


def mask_from_name(name: str, n: int, size: int) -> torch.Tensor:
    """Evaluation masks by name: ``centre-K/16`` (any fraction, e.g. ``centre-8/16``) or ``outpaint``."""
    if name == "outpaint":
        return outpaint_border(n, size)
    if name.startswith("centre-"):
        try:
            ratio = Fraction(name.removeprefix("centre-"))
        except (ValueError, ZeroDivisionError):
            ratio = None
        if ratio is not None and 0 < ratio <= 1:
            return centre_box(n, size, float(ratio))
    raise ValueError(f"mask: expected one of {EVAL_MASKS} or 'centre-K/N', got {name!r}")
