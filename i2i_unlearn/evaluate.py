"""Generate on held-out evaluation images of D_R and D_F and score the hidden region."""
from __future__ import annotations

import torch
from tqdm.auto import tqdm

from . import masks
from .data import ImageDataset
from .metrics import hidden_mse, psnr
from .models.base import I2IModel


@torch.no_grad()
def inpaint(model: I2IModel, images: torch.Tensor, mask_name: str = "centre-8/16",
            batch_size: int = 100, seed: int = 0, progress: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Fill ``mask_name``'s hole in every image. -> (generated (N, C, H, W), mask (N, 1, H, W))"""
    model.eval()
    device = next(model.parameters()).device
    mask = masks.mask_from_name(mask_name, len(images), images.shape[-1])
    generator = torch.Generator().manual_seed(seed)
    out = []
    for i in tqdm(range(0, len(images), batch_size), desc="inpainting", disable=not progress):
        x, m = images[i:i + batch_size].to(device), mask[i:i + batch_size].to(device)
        out.append(model.generate(x, m, generator).cpu())
    return torch.cat(out), mask


def reconstruction_scores(model: I2IModel, images: torch.Tensor, mask_name: str = "centre-8/16",
                          **kwargs) -> dict[str, float]:
    """Mean hidden-region MSE and PSNR (dB) over ``images``."""
    generated, mask = inpaint(model, images, mask_name, **kwargs)
    mse = hidden_mse(generated, images, mask)
    return {"mse": mse.mean().item(), "psnr": psnr(mse).mean().item()}


def evaluate_forgetting(model: I2IModel, dataset: ImageDataset, forget, retain,
                        mask_name: str = "centre-8/16", **kwargs) -> dict[str, dict[str, float]]:
    """``{"retain": {"mse", "psnr"}, "forget": {...}}`` on the held-out evaluation images."""
    out = {}
    for name, classes in (("retain", retain), ("forget", forget)):
        images, _ = dataset.images(classes, split="eval")
        out[name] = reconstruction_scores(model, images, mask_name, **kwargs)
    return out
