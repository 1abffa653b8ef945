"""Masked autoencoder (He et al., 2022) as an I2I model, laid out like facebookresearch/mae.

The module and parameter names are those of the official ``MaskedAutoencoderViT``
(``models_mae.py``), so official checkpoints load strictly with ``load_official_mae``.
As in the official code, the encoder embeds only the *kept* patches (the others are dropped,
not replaced) and the decoder puts ``mask_token`` back at the dropped positions.

For inpainting, the caller's mask decides which patches are hidden: a patch is hidden if any of
its pixels is. ``sample_corruption`` adds MAE's own random masking on top, and hidden patches
are always dropped first.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from os import PathLike
from typing import Mapping

import torch
import torch.nn.functional as F
from timm.layers import PatchEmbed
from timm.models.vision_transformer import Block
from torch import nn

from .base import I2IModel, check_state_dict, mean_embedding, noise_draws

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class MAEConfig:
    img_size: int
    patch_size: int
    in_chans: int
    embed_dim: int
    depth: int
    num_heads: int
    decoder_embed_dim: int
    decoder_depth: int
    decoder_num_heads: int
    mlp_ratio: float = 4.0
    norm_pix_loss: bool = False
    input_norm: str = "none"  # "imagenet": the network works in ImageNet mean/std space
    train_mask_ratio: tuple[float, float] = (0.25, 0.75)  # MAE's random ratio ~ U(lo, hi)

    def __post_init__(self):
        self.train_mask_ratio = tuple(float(r) for r in self.train_mask_ratio)  # JSON gives lists
        lo, hi = self.train_mask_ratio if len(self.train_mask_ratio) == 2 else (-1, -1)
        if not 0 <= lo <= hi < 1:
            raise ValueError(f"train_mask_ratio: expected (lo, hi) with 0 <= lo <= hi < 1, "
                             f"got {self.train_mask_ratio}")
        if self.img_size % self.patch_size:
            raise ValueError(f"img_size: {self.img_size} is not a multiple of patch_size "
                             f"{self.patch_size}")
        if self.input_norm not in ("none", "imagenet"):
            raise ValueError(f"input_norm: expected 'none' or 'imagenet', got {self.input_norm!r}")
        if self.input_norm == "imagenet" and self.in_chans != 3:
            raise ValueError(f"input_norm: 'imagenet' needs in_chans=3, got {self.in_chans}")
        for d in ("embed_dim", "decoder_embed_dim"):
            if getattr(self, d) % 4:  # the 2-D sin-cos embedding splits dims in quarters
                raise ValueError(f"{d}: must be a multiple of 4, got {getattr(self, d)}")


# The official models were pre-trained with 75 % of the patches masked at random; unlearning
# uses the model's own training corruption (the paper), so the same fixed ratio.
_OFFICIAL = dict(img_size=224, patch_size=16, in_chans=3, decoder_embed_dim=512, decoder_depth=8,
                 decoder_num_heads=16, mlp_ratio=4.0, input_norm="imagenet",
                 train_mask_ratio=(0.75, 0.75))
PRESETS: dict[str, dict] = {
    # 32x32 images (MNIST / photo patches); runs on a laptop CPU.
    "mae-tiny": dict(img_size=32, patch_size=4, in_chans=1, embed_dim=128, depth=4, num_heads=4,
                     decoder_embed_dim=96, decoder_depth=2, decoder_num_heads=4),
    # A deeper encoder: more attention layers let every token carry what the image shows,
    # which an encoder-only unlearning objective needs where classes share patches (digits).
    "mae-small": dict(img_size=32, patch_size=4, in_chans=1, embed_dim=128, depth=6, num_heads=4,
                      decoder_embed_dim=96, decoder_depth=2, decoder_num_heads=4),
    # The official sizes (facebookresearch/mae models_mae.py).
    "mae_vit_base_patch16": dict(_OFFICIAL, embed_dim=768, depth=12, num_heads=12),
    "mae_vit_large_patch16": dict(_OFFICIAL, embed_dim=1024, depth=24, num_heads=16),
    "mae_vit_huge_patch14": dict(_OFFICIAL, patch_size=14, embed_dim=1280, depth=32, num_heads=16),
}


def build_mae(preset: str, **overrides) -> "MaskedAutoencoder":
    """A fresh MAE from a named preset; ``overrides`` replace config fields (e.g. in_chans=3)."""
    return MaskedAutoencoder.from_preset(PRESETS, MAEConfig, preset, "MAE", **overrides)


def sincos_pos_embed_2d(dim: int, grid: int, cls_token: bool = True) -> torch.Tensor:
    """Fixed 2-D sine-cosine position table: (grid*grid [+1], dim), patches in raster order.

    Each axis gets dim/2 channels: half sines, half cosines of the coordinate times geometric
    frequencies 1/10000^(k/(dim/4)). The first half encodes the column and the second the row,
    the order the official checkpoints were saved with. The cls slot (if any) is all zeros.
    """
    rows, cols = torch.meshgrid(torch.arange(grid, dtype=torch.float64),
                                torch.arange(grid, dtype=torch.float64), indexing="ij")

    def one_axis(pos: torch.Tensor, d: int) -> torch.Tensor:  # pos: (N,) -> (N, d)
        freq = 1.0 / 10000 ** (torch.arange(d // 2, dtype=torch.float64) / (d // 2))
        angle = pos[:, None] * freq[None, :]
        return torch.cat([angle.sin(), angle.cos()], dim=1)

    table = torch.cat([one_axis(cols.flatten(), dim // 2), one_axis(rows.flatten(), dim // 2)], 1)
    if cls_token:
        table = torch.cat([torch.zeros(1, dim, dtype=torch.float64), table], 0)
    return table.float()


@dataclass
class MAECorruption:
    """Which patches the encoder keeps, drawn once for student and teacher alike.

    ids_keep: (B, K) patch indices the encoder sees, in the order it sees them.
    ids_restore: (B, L) inverse permutation: where each patch sits in [kept, dropped].
    """
    ids_keep: torch.Tensor
    ids_restore: torch.Tensor

    def to(self, device) -> "MAECorruption":
        return MAECorruption(self.ids_keep.to(device), self.ids_restore.to(device))

    def removed(self) -> torch.Tensor:
        """(B, L) float: 1 for patches the encoder did not see (where the loss is taken)."""
        out = torch.ones(self.ids_restore.shape, device=self.ids_keep.device)
        return out.scatter_(1, self.ids_keep, 0.0)


class _MAEEncoder(nn.Module):
    """E_θ: a view over the model's own encoder modules (built on demand, owns nothing)."""

    def __init__(self, mae: "MaskedAutoencoder"):
        super().__init__()
        self.cls_token, self.pos_embed = mae.cls_token, mae.pos_embed
        self.patch_embed, self.blocks, self.norm = mae.patch_embed, mae.blocks, mae.norm

    def forward(self, x: torch.Tensor, ids_keep: torch.Tensor) -> torch.Tensor:
        """x: (B, C, H, W) in model space, ids_keep: (B, K) -> latent (B, 1+K, D)."""
        t = self.patch_embed(x) + self.pos_embed[:, 1:]  # (B, L, D)
        t = torch.gather(t, 1, ids_keep[..., None].expand(-1, -1, t.shape[-1]))  # (B, K, D)
        cls = (self.cls_token + self.pos_embed[:, :1]).expand(t.shape[0], -1, -1)
        t = torch.cat([cls, t], dim=1)
        for blk in self.blocks:
            t = blk(t)
        return self.norm(t)


class MaskedAutoencoder(I2IModel):
    """MAE with a ViT encoder over the kept patches and a light ViT decoder predicting pixels."""

    family = "mae"

    def __init__(self, config: MAEConfig):
        super().__init__()
        self.config = c = config
        norm = partial(nn.LayerNorm, eps=1e-6)
        block = partial(Block, mlp_ratio=c.mlp_ratio, qkv_bias=True, norm_layer=norm)
        # encoder
        self.patch_embed = PatchEmbed(c.img_size, c.patch_size, c.in_chans, c.embed_dim)
        L = self.patch_embed.num_patches
        self.cls_token = nn.Parameter(torch.zeros(1, 1, c.embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, L + 1, c.embed_dim), requires_grad=False)
        self.blocks = nn.ModuleList([block(c.embed_dim, c.num_heads) for _ in range(c.depth)])
        self.norm = norm(c.embed_dim)
        # decoder
        self.decoder_embed = nn.Linear(c.embed_dim, c.decoder_embed_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, c.decoder_embed_dim))
        self.decoder_pos_embed = nn.Parameter(torch.zeros(1, L + 1, c.decoder_embed_dim),
                                              requires_grad=False)
        self.decoder_blocks = nn.ModuleList([block(c.decoder_embed_dim, c.decoder_num_heads)
                                             for _ in range(c.decoder_depth)])
        self.decoder_norm = norm(c.decoder_embed_dim)
        self.decoder_pred = nn.Linear(c.decoder_embed_dim, c.patch_size ** 2 * c.in_chans)
        if c.input_norm == "imagenet":  # non-persistent: never in the state dict
            self.register_buffer("in_mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), False)
            self.register_buffer("in_std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), False)
        self.initialize_weights()

    def initialize_weights(self):
        grid = self.config.img_size // self.config.patch_size
        self.pos_embed.data.copy_(sincos_pos_embed_2d(self.pos_embed.shape[-1], grid)[None])
        self.decoder_pos_embed.data.copy_(
            sincos_pos_embed_2d(self.decoder_pos_embed.shape[-1], grid)[None])
        w = self.patch_embed.proj.weight.data  # init the conv as the linear map it is
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        nn.init.normal_(self.cls_token, std=0.02)
        nn.init.normal_(self.mask_token, std=0.02)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(m: nn.Module):
        if isinstance(m, nn.Linear):  # xavier-uniform as in official (timm's ViT uses trunc normal)
            nn.init.xavier_uniform_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)

    # -- pixels <-> patches, our [-1, 1] <-> model space --------------------------------
    def patchify(self, imgs: torch.Tensor) -> torch.Tensor:
        """imgs: (B, C, H, W) -> (B, L, p*p*C), pixels ordered (p, q, c) as officially."""
        p, (B, C, H, W) = self.config.patch_size, imgs.shape
        x = imgs.reshape(B, C, H // p, p, W // p, p)
        return torch.einsum("nchpwq->nhwpqc", x).reshape(B, (H // p) * (W // p), p * p * C)

    def unpatchify(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, L, p*p*C) -> imgs: (B, C, H, W)."""
        p, C = self.config.patch_size, self.config.in_chans
        h = w = self.config.img_size // p
        x = x.reshape(x.shape[0], h, w, p, p, C)
        return torch.einsum("nhwpqc->nchpwq", x).reshape(x.shape[0], C, h * p, w * p)

    def _to_model(self, x: torch.Tensor) -> torch.Tensor:
        if self.config.input_norm == "none":
            return x
        return ((x + 1) / 2 - self.in_mean) / self.in_std

    def _from_model(self, x: torch.Tensor) -> torch.Tensor:
        if self.config.input_norm == "none":
            return x
        return (x * self.in_std + self.in_mean) * 2 - 1

    def hidden_patches(self, mask: torch.Tensor) -> torch.Tensor:
        """mask: (B, 1, H, W) -> (B, L) bool: a patch is hidden if any of its pixels is."""
        p = self.config.patch_size
        return F.max_pool2d((mask > 0).float(), p).flatten(1) > 0

    # -- the I2I contract -----------------------------------------------------------------
    @property
    def encoder(self) -> nn.Module:
        return _MAEEncoder(self)

    def _corruption(self, noise: torch.Tensor, hidden: torch.Tensor, k: int) -> MAECorruption:
        """Keep the k lowest-noise patches; hidden ones rank after every visible one."""
        # noise < L on both paths (uniform [0, 1) or raster index), so +L ranks hidden last
        ids_shuffle = torch.argsort(noise + hidden.to(noise.dtype) * noise.shape[1], dim=1,
                                    stable=True)
        return MAECorruption(ids_shuffle[:, :k], torch.argsort(ids_shuffle, dim=1))

    def sample_corruption(self, x: torch.Tensor, mask: torch.Tensor,
                          generator: torch.Generator | None = None) -> MAECorruption:
        """MAE's random masking (ratio r ~ U(train_mask_ratio)) on top of the caller's mask."""
        self.check_inputs(x, mask)
        hidden = self.hidden_patches(mask)
        B, L = hidden.shape
        dev = generator.device if generator is not None else x.device
        lo, hi = self.config.train_mask_ratio
        r = lo + (hi - lo) * torch.rand((), generator=generator, device=dev).item()
        noise = torch.rand(B, L, generator=generator, device=dev).to(x.device)
        n_visible = int((~hidden).sum(1).min())
        return self._corruption(noise, hidden, max(1, min(n_visible, round(L * (1 - r)))))

    def deterministic_corruption(self, mask: torch.Tensor) -> MAECorruption:
        """Keep the visible patches in raster order (the first K = fewest-visible per row)."""
        hidden = self.hidden_patches(mask)
        order = torch.arange(hidden.shape[1], device=mask.device, dtype=torch.float32)
        k = max(1, int((~hidden).sum(1).min()))
        return self._corruption(order.expand_as(hidden), hidden, k)

    def encode(self, x: torch.Tensor, mask: torch.Tensor,
               corruption: MAECorruption | None = None) -> torch.Tensor:
        """x: (B, C, H, W), mask: (B, 1, H, W) -> latent (B, 1+K, D) after the final norm."""
        self.check_inputs(x, mask)
        if corruption is None:
            corruption = self.deterministic_corruption(mask)
        # hidden pixels are zeroed too, so nothing hidden can leak (e.g. a fully masked image)
        x = torch.where(mask > 0, torch.zeros_like(x), x)
        return self.encoder(self._to_model(x), corruption.ids_keep)

    def forward_decoder(self, latent: torch.Tensor, ids_restore: torch.Tensor) -> torch.Tensor:
        """latent: (B, 1+K, D), ids_restore: (B, L) -> pred: (B, L, p*p*C) in model space."""
        x = self.decoder_embed(latent)
        B, L = ids_restore.shape
        fill = self.mask_token.expand(B, L + 1 - x.shape[1], -1)
        x_ = torch.cat([x[:, 1:], fill], dim=1)  # [kept, dropped] -> back to raster order
        x_ = torch.gather(x_, 1, ids_restore[..., None].expand(-1, -1, x.shape[2]))
        x = torch.cat([x[:, :1], x_], dim=1) + self.decoder_pos_embed
        for blk in self.decoder_blocks:
            x = blk(x)
        return self.decoder_pred(self.decoder_norm(x))[:, 1:]  # drop cls

    def forward_loss(self, target: torch.Tensor, pred: torch.Tensor,
                     removed: torch.Tensor) -> torch.Tensor:
        """target: (B, C, H, W) model space, pred: (B, L, p*p*C), removed: (B, L), 1 = dropped."""
        t = self.patchify(target)
        if self.config.norm_pix_loss:
            mean, var = t.mean(dim=-1, keepdim=True), t.var(dim=-1, keepdim=True)
            t = (t - mean) / (var + 1.0e-6) ** 0.5
        loss = ((pred - t) ** 2).mean(dim=-1)  # (B, L), per-patch MSE
        return (loss * removed).sum() / removed.sum().clamp_min(1)

    def forward(self, x: torch.Tensor, mask: torch.Tensor,
                corruption: MAECorruption | None = None, target: torch.Tensor | None = None):
        """-> (loss, pred (B, L, p*p*C), removed (B, L)), like the official forward."""
        if corruption is None:
            corruption = self.deterministic_corruption(mask)
        pred = self.forward_decoder(self.encode(x, mask, corruption), corruption.ids_restore)
        if target is not None and target.shape != x.shape:
            raise ValueError(f"target: expected the shape of x {tuple(x.shape)}, "
                             f"got {tuple(target.shape)}")
        target, removed = self._to_model(x if target is None else target), corruption.removed()
        return self.forward_loss(target, pred, removed), pred, removed

    def task_loss(self, x: torch.Tensor, mask: torch.Tensor, corruption: MAECorruption | None,
                  target: torch.Tensor | None = None) -> torch.Tensor:
        """MSE on the pixels of the patches the encoder did not see (scalar)."""
        return self(x, mask, corruption, target)[0]

    @torch.no_grad()
    def generate(self, x: torch.Tensor, mask: torch.Tensor,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        """x: (B, C, H, W) -> (B, C, H, W): hidden pixels predicted, visible ones kept exactly.

        Deterministic (``generator`` is unused). With norm_pix_loss the predictions lack each
        patch's mean and variance, so use a model trained on raw pixels for inpainting.
        """
        self.check_inputs(x, mask)
        corruption = self.deterministic_corruption(mask)
        return self._decode_fill(x, mask, self.encode(x, mask, corruption), corruption)

    @torch.no_grad()
    def generate_from_forget_target(self, x: torch.Tensor, noise: torch.Tensor, mask: torch.Tensor,
                                    generator: torch.Generator | None = None) -> torch.Tensor:
        """The fill of ``x`` when the encoder returns the forget target: the latent of the noise
        image (one draw), or its mean over the draws of a (K, B, C, H, W) ``noise``."""
        self.check_inputs(x, mask)
        corruption = self.deterministic_corruption(mask)
        draws = noise_draws(noise, x)
        latent = mean_embedding([self.encode(self.forget_source(x, n, mask), mask, corruption)
                                 for n in draws])
        return self._decode_fill(x, mask, latent, corruption)

    def _decode_fill(self, x: torch.Tensor, mask: torch.Tensor, latent: torch.Tensor,
                     corruption: MAECorruption) -> torch.Tensor:
        """The decoder's pixels from ``latent`` (encoded under ``corruption``) in the hole of x."""
        mask = mask.to(x.dtype)
        pred = self.forward_decoder(latent, corruption.ids_restore)
        pred = self._from_model(self.unpatchify(pred)).clamp(-1, 1)
        return x * (1 - mask) + pred * mask


def load_official_mae(model: MaskedAutoencoder,
                      checkpoint: str | PathLike | Mapping[str, torch.Tensor]) -> MaskedAutoencoder:
    """Load a facebookresearch/mae checkpoint (a path or a state dict) strictly into ``model``.

    Official files wrap the weights as ``{"model": state_dict}``. For inpainting use
    ``mae_visualize_vit_large.pth`` (preset ``mae_vit_large_patch16``): it includes the decoder,
    while the pretrain-only files (``mae_pretrain_vit_*.pth``) hold no decoder and fail here.
    Raises ValueError listing missing / unexpected keys or mismatched shapes.
    """
    if not isinstance(checkpoint, Mapping):
        checkpoint = torch.load(checkpoint, map_location="cpu", weights_only=True)
    state = checkpoint.get("model", checkpoint)
    check_state_dict(state, {k: tuple(v.shape) for k, v in model.state_dict().items()},
                     type(model).__name__, argument="checkpoint")
    # meta-device models have no storage to copy into: take the checkpoint's tensors instead
    model.load_state_dict(state, strict=True, assign=any(p.is_meta for p in model.parameters()))
    return model
