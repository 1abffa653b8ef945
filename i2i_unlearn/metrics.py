"""Reconstruction metrics on the hidden region.

Images are in [-1, 1], so the data range used for PSNR is 2. The paper's distribution metrics
(FID, IS, embedding cosine) join this file with the evaluation issue.
"""
from __future__ import annotations

import torch


def hidden_mse(generated: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-image mean squared error over hidden pixels and channels.

    generated, target: (B, C, H, W); mask: (B, 1, H, W), 1 = hidden. -> (B,)
    """
    hidden = mask.expand_as(target)
    err = ((generated - target) ** 2 * hidden).flatten(1).sum(1)
    count = hidden.flatten(1).sum(1)
    if (count == 0).any():
        raise ValueError("mask: some images have no hidden pixel; nothing to score")
    return err / count


def psnr(mse: torch.Tensor, data_range: float = 2.0) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB from a per-image MSE (data range 2 for [-1, 1] images)."""
    return 10 * torch.log10(data_range ** 2 / mse.clamp_min(1e-12))


def mean_fill(images: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The trivial inpainter: each image's hole filled with the mean of its visible pixels."""
    visible = 1 - mask
    mean = (images * visible).sum((2, 3), keepdim=True) / visible.sum((2, 3), keepdim=True).clamp_min(1)
    return images * visible + mean * mask
