"""The I2I contract shared by every model family (MAE, VQ-GAN, diffusion).

An image-to-image model is ``h = D ∘ E``: an encoder ``E`` that sees a corrupted image ``T(x)``
and a decoder ``D`` that generates the full image. Unlearning only needs five things from a model,
so one loop (``i2i_unlearn.unlearn``) serves every family:

- ``encoder`` -- the module whose parameters the paper's method may change (E_θ);
- ``sample_corruption(x, mask, generator)`` -- the model's own randomness for ``T`` (token masks,
  diffusion timestep and noise), drawn once and handed to student and teacher alike;
- ``encode(x, mask, corruption)`` -- ``E(T(x))``: a tensor or a tuple of feature maps;
- ``task_loss(x, mask, corruption, target=None)`` -- the model's training loss; ``target`` (an
  image like ``x``) replaces ``x`` as what the hidden region must become (Noisy Label,
  Retain Label);
- ``generate(x, mask, generator=None)`` -- the I2I output, visible pixels kept.

Conventions: images are float tensors in [-1, 1] of shape (B, C, H, W); a mask is (B, 1, H, W)
with 1 where pixels are hidden and must be generated.
"""
from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass, fields
from typing import Any, Union

import torch
from torch import nn

Embedding = Union[torch.Tensor, tuple[torch.Tensor, ...]]


def noise_draws(noise: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``noise`` as K draws: (K, B, C, H, W) as given, one (B, C, H, W) draw as K = 1."""
    return noise if noise.dim() == x.dim() + 1 else noise[None]


def mean_embedding(embeddings: list[Embedding]) -> Embedding:
    """The element-wise mean of K embeddings (tensors, or tuples of feature maps)."""
    if isinstance(embeddings[0], tuple):
        return tuple(torch.stack(maps).mean(0) for maps in zip(*embeddings))
    return torch.stack(embeddings).mean(0)


class I2IModel(nn.Module):
    """Base class of every image-to-image model in the package.

    Subclasses set ``self.config`` (a dataclass, saved in checkpoints' manifests so that
    ``i2i_unlearn.zoo.load`` can rebuild the model) and implement the contract below.
    """

    family: str = "base"
    config: Any

    # -- the contract -------------------------------------------------------------------
    @property
    def encoder(self) -> nn.Module:
        """E_θ: the sub-module the paper's method trains (the rest stays frozen)."""
        raise NotImplementedError

    def sample_corruption(self, x: torch.Tensor, mask: torch.Tensor,
                          generator: torch.Generator | None = None) -> Any:
        """Draw the model's own randomness for ``T`` once, for student and teacher alike."""
        raise NotImplementedError

    def encode(self, x: torch.Tensor, mask: torch.Tensor, corruption: Any = None) -> Embedding:
        """E(T(x)); ``corruption=None`` means the deterministic corruption given by ``mask`` only."""
        raise NotImplementedError

    def task_loss(self, x: torch.Tensor, mask: torch.Tensor, corruption: Any,
                  target: torch.Tensor | None = None) -> torch.Tensor:
        """The model's own training loss on ``T(x)``; scalar."""
        raise NotImplementedError

    @torch.no_grad()
    def generate(self, x: torch.Tensor, mask: torch.Tensor,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        """Fill the hidden region of ``x``; visible pixels are returned unchanged."""
        raise NotImplementedError

    def forget_source(self, x: torch.Tensor, noise: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The image whose teacher embedding is the forget target of the paper's method.

        Default: the noise image itself, ``E0(T(n))`` (MAE, VQ-GAN: the hole is dropped or
        masked, so only the noise's visible part reaches the encoder). A family whose encoder
        also sees the hole overrides this (diffusion keeps the visible pixels, as the official
        code does).
        """
        return noise

    @torch.no_grad()
    def generate_from_forget_target(self, x: torch.Tensor, noise: torch.Tensor, mask: torch.Tensor,
                                    generator: torch.Generator | None = None) -> torch.Tensor:
        """What this (original) model generates for ``x`` if its encoder returned exactly the
        forget target: the objective's ceiling, since the decoder never changes.

        noise: (B, C, H, W), one draw, or (K, B, C, H, W): K draws whose targets are averaged.
        The target is redrawn every step, so a deterministic encoder trained on it can at best
        reach the *mean* target (Claim 7 of the theory chapter); families that can average their
        embedding over the draws do so. Default: generate from ``forget_source(x, noise, mask)``
        -- exact for one draw when the embedding depends on the image only through the source;
        with K draws it cannot average an embedding it does not know how to decode, so it uses
        the first draw and warns. MAE, VQ-GAN, diffusion and the convnet template override it.
        """
        if noise.dim() == x.dim() + 1:
            warnings.warn(f"{type(self).__name__}.generate_from_forget_target: no override that "
                          f"averages the embedding over {noise.shape[0]} noise draws; the fill "
                          "decodes the first draw's target only", stacklevel=2)
            noise = noise[0]
        return self.generate(self.forget_source(x, noise, mask), mask, generator)

    @classmethod
    def from_preset(cls, presets: dict[str, dict], config_cls, preset: str, label: str,
                    **overrides) -> "I2IModel":
        """A fresh model from ``presets[preset]``; ``overrides`` replace config fields."""
        if preset not in presets:
            raise ValueError(f"preset: unknown {label} preset {preset!r}; valid: {sorted(presets)}")
        unknown = set(overrides) - {f.name for f in fields(config_cls)}
        if unknown:
            raise ValueError(f"overrides: unknown {config_cls.__name__} fields {sorted(unknown)}")
        return cls(config_cls(**{**presets[preset], **overrides}))

    # -- shared helpers -----------------------------------------------------------------
    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(C, H, W) the model expects."""
        c = self.config
        return (c.in_chans, c.img_size, c.img_size)

    def config_dict(self) -> dict:
        return asdict(self.config)

    def check_inputs(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> None:
        """Fail early, naming the argument, when ``x`` or ``mask`` do not fit this model."""
        c, h, w = self.image_shape
        if not isinstance(x, torch.Tensor) or x.ndim != 4:
            raise ValueError(f"x: expected a (B, {c}, {h}, {w}) tensor, got "
                             f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}")
        if tuple(x.shape[1:]) != (c, h, w):
            raise ValueError(f"x: expected images of shape (B, {c}, {h}, {w}) "
                             f"(channels, height, width), got {tuple(x.shape)}")
        if mask is not None and (mask.ndim != 4 or mask.shape[1] != 1
                                 or mask.shape[0] != x.shape[0] or mask.shape[2:] != x.shape[2:]):
            raise ValueError(f"mask: expected shape ({x.shape[0]}, 1, {h}, {w}) with 1 = hidden, "
                             f"got {tuple(mask.shape)}")


def embedding_mse(a: Embedding, b: Embedding) -> torch.Tensor:
    """Element-wise mean squared error between two embeddings (tensors or tuples of maps).

    For a tuple of feature maps (diffusion), the per-map MSEs are averaged, so every map counts
    equally whatever its size.
    """
    if isinstance(a, torch.Tensor):
        return torch.mean((a - b) ** 2)
    losses = [torch.mean((u - v) ** 2) for u, v in zip(a, b, strict=True)]
    return torch.stack(losses).mean()


def check_state_dict(state, expected: dict[str, tuple], what: str, argument: str = "state_dict",
                     optional=()) -> None:
    """Fail, naming ``argument``, unless ``state``'s keys and shapes are exactly ``expected``
    (key -> shape); keys in ``optional`` may be absent."""
    missing = [k for k in expected if k not in state and k not in optional]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        raise ValueError(f"{argument}: keys do not match {what}: missing {missing[:10]} "
                         f"({len(missing)} in all), unexpected {unexpected[:10]} "
                         f"({len(unexpected)} in all)")
    bad = [f"{k}: {tuple(state[k].shape)} != {tuple(s)}" for k, s in expected.items()
           if k in state and tuple(state[k].shape) != tuple(s)]
    if bad:
        raise ValueError(f"{argument}: shapes do not match {what}: {bad[:10]}")


def freeze(module: nn.Module) -> nn.Module:
    """Put a module in eval mode with gradients off (the teacher)."""
    module.eval()
    for p in module.parameters():
        p.requires_grad_(False)
    return module
