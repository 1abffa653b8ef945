"""A plain convolutional inpainting autoencoder: the template for bringing your own model.

Nothing here is from the paper. It is the smallest model that fills the I2I contract of
``models/base.py`` honestly, written so that each method shows what the unlearning loop needs:

- **encoder** (E_θ): convolutions over the masked image and the mask, down to a feature map;
- **decoder**: transposed convolutions back to the image; the paper's method never changes it;
- ``sample_corruption``: the model's own training randomness, here extra 4×4 blocks of the
  visible pixels hidden at random (a share drawn in ``drop_ratio``), like MAE's patch dropping;
- ``encode``: E(T(x)), the bottleneck vector ``(B, latent_dim)`` -- or, with ``latent_dim=0``,
  the last feature map ``(B, width·2^depth, H/2^depth, W/2^depth)``;
- ``task_loss``: MSE over the pixels the encoder did not see;
- ``generate``: one decoder pass, visible pixels pasted back;
- ``generate_from_forget_target`` (optional): the fill an encoder meeting the forget target
  would give, for the objective's ceiling (``evaluate.target_fill``).

Copy this file, swap in your own layers, give the class its own ``family`` name, register it
(``i2i_unlearn.zoo.register_family``) so its checkpoints load, and run
:func:`i2i_unlearn.models.contract.check_contract` on it before unlearning
(``notebooks/11_own_model.ipynb`` does all of it).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .base import I2IModel, mean_embedding, noise_draws

BLOCK = 4  # side of the blocks sample_corruption hides


@dataclass
class ConvInpainterConfig:
    in_chans: int = 1
    img_size: int = 32
    width: int = 16  # channels after the first convolution; doubled at each downsampling
    depth: int = 2  # downsamplings by 2: a 32×32 image becomes an 8×8 feature map
    drop_ratio: tuple[float, float] = (0.0, 0.5)  # share of visible blocks also hidden in training
    latent_dim: int = 128  # 0: the embedding is the last feature map (every position local)

    def __post_init__(self):
        self.drop_ratio = tuple(float(r) for r in self.drop_ratio)  # JSON gives lists
        if len(self.drop_ratio) != 2 or not 0 <= self.drop_ratio[0] <= self.drop_ratio[1] < 1:
            raise ValueError(f"drop_ratio: expected (lo, hi) with 0 <= lo <= hi < 1, "
                             f"got {self.drop_ratio}")
        if self.img_size % max(BLOCK, 2 ** self.depth):
            raise ValueError(f"img_size: expected a multiple of {max(BLOCK, 2 ** self.depth)} "
                             f"(depth {self.depth}), got {self.img_size}")


def _conv(c_in: int, c_out: int, stride: int = 1) -> nn.Module:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride, 1), nn.GroupNorm(8, c_out), nn.GELU())


class ConvInpainter(I2IModel):
    """x: (B, C, H, W) in [-1, 1], mask: (B, 1, H, W) with 1 = hidden."""

    family = "convnet"

    def __init__(self, config: ConvInpainterConfig | None = None):
        super().__init__()
        self.config = c = config or ConvInpainterConfig()
        widths = [c.width * 2 ** i for i in range(c.depth + 1)]
        down = [_conv(c.in_chans + 1, widths[0])]  # + 1: the mask is an input channel
        for w_in, w_out in zip(widths, widths[1:]):
            down += [_conv(w_in, w_out, stride=2), _conv(w_out, w_out)]
        side = c.img_size // 2 ** c.depth
        bottleneck = (widths[-1], side, side)
        if c.latent_dim:  # a Context Encoder's fully connected bottleneck: one global vector
            down += [nn.Flatten(), nn.Linear(widths[-1] * side * side, c.latent_dim)]
        self.down = nn.Sequential(*down)
        up = [nn.Linear(c.latent_dim, widths[-1] * side * side), nn.GELU(),
              nn.Unflatten(1, bottleneck)] if c.latent_dim else []
        for w_in, w_out in zip(widths[::-1], widths[-2::-1]):
            up += [nn.ConvTranspose2d(w_in, w_out, 4, 2, 1), nn.GELU(), _conv(w_out, w_out)]
        self.up = nn.Sequential(*up, nn.Conv2d(widths[0], c.in_chans, 3, 1, 1))

    # -- the I2I contract -----------------------------------------------------------------
    @property
    def encoder(self) -> nn.Module:
        return self.down  # the decoder (self.up) stays frozen under the paper's method

    def sample_corruption(self, x: torch.Tensor, mask: torch.Tensor,
                          generator: torch.Generator | None = None) -> torch.Tensor:
        """-> (B, 1, H, W): extra hidden pixels (4×4 blocks), drawn from ``generator`` only."""
        self.check_inputs(x, mask)
        B, _, H, W = mask.shape
        lo, hi = self.config.drop_ratio
        ratio = lo + (hi - lo) * torch.rand(B, 1, 1, 1, generator=generator)
        blocks = (torch.rand(B, 1, H // BLOCK, W // BLOCK, generator=generator) < ratio).float()
        return F.interpolate(blocks, scale_factor=BLOCK, mode="nearest").to(x.device)

    def hidden(self, mask: torch.Tensor, corruption: torch.Tensor | None) -> torch.Tensor:
        """What the encoder does not see: the caller's mask, plus the corruption's blocks."""
        if corruption is None:
            return (mask > 0).float()
        if corruption.shape != mask.shape:
            raise ValueError(f"corruption: expected the mask's shape {tuple(mask.shape)}, "
                             f"got {tuple(corruption.shape)}")
        return ((mask > 0) | (corruption > 0)).float()

    def encode(self, x: torch.Tensor, mask: torch.Tensor,
               corruption: torch.Tensor | None = None) -> torch.Tensor:
        """-> (B, latent_dim), or (B, width·2^depth, H/2^depth, W/2^depth) with latent_dim 0;
        hidden pixels are zeroed before the first layer, so nothing hidden reaches the embedding."""
        self.check_inputs(x, mask)
        hidden = self.hidden(mask, corruption)
        return self.encoder(torch.cat([x * (1 - hidden), hidden], dim=1))

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        """latent: the output of ``encode`` -> (B, C, H, W) in [-1, 1]."""
        return torch.tanh(self.up(latent))

    def task_loss(self, x: torch.Tensor, mask: torch.Tensor, corruption: torch.Tensor | None,
                  target: torch.Tensor | None = None) -> torch.Tensor:
        """MSE over the pixels the encoder did not see; ``target`` replaces ``x`` there."""
        if target is not None and target.shape != x.shape:
            raise ValueError(f"target: expected the shape of x {tuple(x.shape)}, "
                             f"got {tuple(target.shape)}")
        hidden = self.hidden(mask, corruption)
        err = (self.decode(self.encode(x, mask, corruption)) - (x if target is None else target)) ** 2
        return (err * hidden).sum() / (hidden.sum() * x.shape[1]).clamp_min(1)

    @torch.no_grad()
    def generate(self, x: torch.Tensor, mask: torch.Tensor,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        """Deterministic (``generator`` is unused): one pass, visible pixels kept exactly."""
        mask = (mask > 0).to(x.dtype)
        return x * (1 - mask) + self.decode(self.encode(x, mask)) * mask

    @torch.no_grad()
    def generate_from_forget_target(self, x: torch.Tensor, noise: torch.Tensor, mask: torch.Tensor,
                                    generator: torch.Generator | None = None) -> torch.Tensor:
        """Optional: the fill when the encoder returns the forget target, ``encode`` of the noise
        image, averaged over the draws of a (K, B, C, H, W) ``noise`` (what a deterministic
        encoder can reach; ``evaluate.target_fill`` uses it for the objective's ceiling)."""
        mask = (mask > 0).to(x.dtype)
        draws = noise_draws(noise, x)
        latent = mean_embedding([self.encode(self.forget_source(x, n, mask), mask) for n in draws])
        return x * (1 - mask) + self.decode(latent) * mask
