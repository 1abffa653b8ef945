"""Conditional inpainting diffusion (Palette, Saharia et al. 2022) as an I2I model, on diffusers.

The network is a diffusers ``UNet2DModel`` that predicts the noise ε of ``x_t`` given the context.
Two input layouts (``DiffusionConfig.conditioning``):

- ``"mask-channel"`` (the tiny presets): ``[x_t, x ⊙ (1 − m), m]`` -- 2C + 1 channels;
- ``"palette"`` (official Palette weights, ``i2i_unlearn.models.palette``): ``[cond, x_t]`` with
  ``cond = x ⊙ (1 − m) + m ⊙ ε_c`` (Gaussian noise in the hole, as Palette's dataset makes it) -- 2C.

In both, as in Palette, only the hole is diffused: ``x_t = m ⊙ (√γ x + √(1−γ) ε) + (1 − m) ⊙ x``,
with the *clean* visible pixels, and the loss is the noise-prediction MSE over the hidden pixels.
``γ`` is the signal fraction ᾱ_t of the training schedule (diffusers ``DDPMScheduler``). With
``time_input="timestep"`` the UNet is told the integer t; with ``"gamma"`` (Palette) it is told γ
itself, drawn uniformly between ᾱ_{t−1} and ᾱ_t, which lets sampling use another schedule.
``generate`` runs DDIM (``DDIMScheduler``, ``sample_steps`` steps, trailing spacing, predicted x_0
clipped to [-1, 1]) from Gaussian noise in the hole and puts the clean visible pixels back into
``x_t`` after every step (as Palette's sampler does); visible pixels are returned unchanged.

Encoder / decoder (the split the paper's method relies on, as in the official code): the encoder
E_θ is the timestep embedding (``time_proj`` has no parameters, ``time_embedding``), ``conv_in``,
the down blocks and the mid block; ``encode`` returns ALL their feature maps -- ``conv_in``'s
output, every residual output of every down block, and the mid block's output (13 maps for the
Palette Places2 network, as the official unlearning code matches). The decoder is the up blocks,
``conv_norm_out`` and ``conv_out``: the UNet forward is run in these two pieces
(:meth:`DiffusionInpainter.predict_noise`), identical to ``UNet2DModel.forward``. The decoder
also reads the time embedding, which belongs to the encoder, exactly as in the official code.

Forget target. The loop (``i2i_unlearn.unlearn``) calls
``teacher.encode(teacher.forget_source(x_f, n, mask), mask, corr_f)`` with a noise image ``n`` and
the student's own corruption (same t, γ, ε, ε_c). Handing the teacher ``n`` itself (the contract's
default, right for MAE) would show it *only* noise: visible pixels, condition and the clean part
of ``x_t`` all from ``n``. The official diffusion code (``jpmorganchase/i2i_Palette...``,
``models/network.py``, ``fix_decoder`` branch) instead keeps the forget image's *real* visible
pixels and condition and puts the student's diffusion noise ε itself into the hole of ``x_t``,
at the same γ. :meth:`DiffusionInpainter.forget_source` reproduces that: it builds the forget image
with noise in the hole only
(``x ⊙ (1 − m) + n ⊙ m``); the teacher's hole is then ``√γ n + √(1−γ) ε`` -- the same N(0, I)
law as the official ``ε``, though not the same draw.

``corruption=None`` in ``encode`` / ``task_loss`` means a deterministic corruption: the timestep
``encode_timestep`` (default ``train_timesteps // 2``) and one fixed Gaussian image (seed 0)
shared by every row, so an image's embedding never depends on its batch or its position there.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .base import I2IModel, mean_embedding, noise_draws

CONDITIONINGS = ("mask-channel", "palette")
TIME_INPUTS = ("timestep", "gamma")
BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2")
RESAMPLES = ("resnet", "conv")


@dataclass
class DiffusionConfig:
    img_size: int = 32
    in_chans: int = 1
    block_out_channels: tuple[int, ...] = (16, 32, 64)
    layers_per_block: int = 1
    attention_levels: tuple[bool, ...] = (False, False, True)  # self-attention per UNet level
    attention_head_dim: int | None = 32  # None: one head per attention layer
    norm_num_groups: int = 8
    resample: str = "resnet"  # "resnet": ResBlocks that down/up-sample (Palette); "conv"
    dropout: float = 0.0
    conditioning: str = "mask-channel"
    time_input: str = "timestep"
    train_timesteps: int = 1000
    beta_schedule: str = "linear"
    beta_start: float = 1e-4
    beta_end: float = 0.02
    # sampling schedule; None: the training one (only "gamma" models may sample on another)
    sample_timesteps: int | None = None
    sample_beta_start: float | None = None
    sample_beta_end: float | None = None
    sample_steps: int = 10  # DDIM steps
    eta: float = 0.0  # DDIM eta (0: deterministic given the initial noise)
    clip_sample: bool = True
    encode_timestep: int | None = None  # corruption=None uses this t (None: train_timesteps // 2)

    def __post_init__(self):
        self.block_out_channels = tuple(int(c) for c in self.block_out_channels)  # JSON: lists
        self.attention_levels = tuple(bool(a) for a in self.attention_levels)
        for name in ("img_size", "in_chans", "layers_per_block", "norm_num_groups",
                     "train_timesteps", "sample_steps"):
            if not getattr(self, name) >= 1:
                raise ValueError(f"{name}: expected a positive integer, got {getattr(self, name)}")
        n = len(self.block_out_channels)
        if n < 1 or min(self.block_out_channels) < 1:
            raise ValueError(f"block_out_channels: expected positive widths, got "
                             f"{self.block_out_channels}")
        if len(self.attention_levels) != n:
            raise ValueError(f"attention_levels: expected one flag per level ({n}), got "
                             f"{self.attention_levels}")
        if self.img_size % 2 ** (n - 1):
            raise ValueError(f"img_size: {self.img_size} is not divisible by 2**{n - 1} "
                             f"({n} levels of block_out_channels)")
        for c in self.block_out_channels:
            if c % self.norm_num_groups:
                raise ValueError(f"norm_num_groups: {self.norm_num_groups} does not divide the "
                                 f"width {c} of block_out_channels")
        attended = [c for c, a in zip(self.block_out_channels, self.attention_levels) if a]
        attended.append(self.block_out_channels[-1])  # the mid block always attends
        if self.attention_head_dim is not None and (
                self.attention_head_dim < 1 or any(c % self.attention_head_dim for c in attended)):
            raise ValueError(f"attention_head_dim: {self.attention_head_dim} must divide the "
                             f"attended widths {sorted(set(attended))}")
        for name, valid in (("resample", RESAMPLES), ("conditioning", CONDITIONINGS),
                            ("time_input", TIME_INPUTS), ("beta_schedule", BETA_SCHEDULES)):
            if getattr(self, name) not in valid:
                raise ValueError(f"{name}: expected one of {valid}, got {getattr(self, name)!r}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout: expected a value in [0, 1), got {self.dropout}")
        if not 0 < self.beta_start < self.beta_end < 1:
            raise ValueError(f"beta_start, beta_end: expected 0 < beta_start < beta_end < 1, got "
                             f"{self.beta_start}, {self.beta_end}")
        sample = (self.sample_timesteps, self.sample_beta_start, self.sample_beta_end)
        if any(v is not None for v in sample):
            if any(v is None for v in sample):
                raise ValueError("sample_timesteps: give sample_timesteps, sample_beta_start and "
                                 "sample_beta_end together, or none of them")
            if self.time_input != "gamma":
                raise ValueError("sample_timesteps: a sampling schedule other than the training "
                                 "one needs time_input='gamma'")
            if not (self.sample_timesteps >= 2 and 0 < self.sample_beta_start
                    < self.sample_beta_end < 1):
                raise ValueError(f"sample_timesteps: expected >= 2 steps and 0 < start < end < 1, "
                                 f"got {sample}")
        if self.sample_steps > self.sampling_schedule()[0]:
            raise ValueError(f"sample_steps: {self.sample_steps} exceeds the "
                             f"{self.sampling_schedule()[0]} steps of the sampling schedule")
        if self.eta < 0:
            raise ValueError(f"eta: expected a non-negative DDIM eta, got {self.eta}")
        if self.encode_timestep is not None and not 0 <= self.encode_timestep < self.train_timesteps:
            raise ValueError(f"encode_timestep: expected 0 <= t < {self.train_timesteps}, got "
                             f"{self.encode_timestep}")

    def sampling_schedule(self) -> tuple[int, float, float]:
        """(timesteps, beta_start, beta_end) that DDIM samples on."""
        if self.sample_timesteps is None:
            return self.train_timesteps, self.beta_start, self.beta_end
        return self.sample_timesteps, self.sample_beta_start, self.sample_beta_end


PRESETS: dict[str, dict] = {
    # 32x32 images; scaled-down Palette UNets (ResBlock resampling, scale-shift norm), attention
    # at the 8x8 level and in the mid block. "tiny" is ~4x cheaper per step than "small" on CPU.
    "diffusion-tiny": dict(img_size=32, in_chans=1, block_out_channels=(16, 32, 64),
                           layers_per_block=1, attention_levels=(False, False, True),
                           attention_head_dim=32, norm_num_groups=8, sample_steps=10),
    "diffusion-small": dict(img_size=32, in_chans=1, block_out_channels=(32, 64, 64),
                            layers_per_block=1, attention_levels=(False, False, True),
                            attention_head_dim=32, norm_num_groups=8, sample_steps=10),
    # Palette's Places2 inpainting network (config/inpainting_places2.json): guided-diffusion
    # UNet, 2000-step linear training schedule, 1000-step linear test schedule, γ-conditioned.
    # Palette samples with 1000 ancestral steps: sample_steps=1000, eta=1 is that sampler.
    "palette-places2": dict(img_size=256, in_chans=3, block_out_channels=(64, 128, 256, 512),
                            layers_per_block=2, attention_levels=(False, False, False, False),
                            attention_head_dim=32, norm_num_groups=32, dropout=0.2,
                            conditioning="palette", time_input="gamma", train_timesteps=2000,
                            beta_start=1e-6, beta_end=0.01, sample_timesteps=1000,
                            sample_beta_start=1e-4, sample_beta_end=0.09, sample_steps=50),
}


def build_diffusion(preset: str, **overrides) -> "DiffusionInpainter":
    """A fresh diffusion inpainter from a named preset; ``overrides`` replace config fields."""
    return DiffusionInpainter.from_preset(PRESETS, DiffusionConfig, preset, "diffusion", **overrides)


def build_unet(c: DiffusionConfig):
    """The diffusers ``UNet2DModel`` for config ``c`` (scale-shift ResBlocks, as guided diffusion)."""
    from diffusers import UNet2DModel

    plain_down = "ResnetDownsampleBlock2D" if c.resample == "resnet" else "DownBlock2D"
    plain_up = "ResnetUpsampleBlock2D" if c.resample == "resnet" else "UpBlock2D"
    extra = 1 if c.conditioning == "mask-channel" else 0
    return UNet2DModel(
        sample_size=c.img_size, in_channels=2 * c.in_chans + extra, out_channels=c.in_chans,
        block_out_channels=c.block_out_channels, layers_per_block=c.layers_per_block,
        down_block_types=tuple("AttnDownBlock2D" if a else plain_down for a in c.attention_levels),
        up_block_types=tuple("AttnUpBlock2D" if a else plain_up
                             for a in reversed(c.attention_levels)),
        downsample_type=c.resample, upsample_type=c.resample, dropout=c.dropout,
        attention_head_dim=c.attention_head_dim, norm_num_groups=c.norm_num_groups,
        attn_norm_num_groups=c.norm_num_groups, resnet_time_scale_shift="scale_shift",
        flip_sin_to_cos=True, freq_shift=0)


@dataclass
class DiffusionCorruption:
    """The diffusion part of ``T``, drawn once for student and teacher alike.

    timestep: (B,) long, t in the training schedule.
    gamma: (B,) float, the signal fraction: hole of x_t = √γ x + √(1−γ) ε.
    noise: (B, C, H, W), ε.
    cond_noise: (B, C, H, W), the hole of Palette's condition (``conditioning="palette"``) or None.
    """
    timestep: torch.Tensor
    gamma: torch.Tensor
    noise: torch.Tensor
    cond_noise: torch.Tensor | None = None

    def to(self, device, dtype=None) -> "DiffusionCorruption":
        move = (lambda t: None if t is None else t.to(device, dtype))
        return DiffusionCorruption(self.timestep.to(device), self.gamma.to(device),
                                   move(self.noise), move(self.cond_noise))


class _DiffusionEncoder(nn.Module):
    """E_θ: a view over the UNet's time embedding, conv_in, down and mid blocks (owns nothing)."""

    def __init__(self, unet: nn.Module):
        super().__init__()
        self.time_proj, self.time_embedding = unet.time_proj, unet.time_embedding
        self.conv_in, self.down_blocks, self.mid_block = unet.conv_in, unet.down_blocks, unet.mid_block

    def forward(self, sample: torch.Tensor, t: torch.Tensor):
        """sample: (B, in, H, W), t: (B,) -> (feature maps, time embedding (B, 4·width))."""
        emb = self.time_embedding(self.time_proj(t).to(self.conv_in.weight.dtype))
        h = self.conv_in(sample)
        feats = [h]
        for block in self.down_blocks:
            h, res = block(hidden_states=h, temb=emb)
            feats.extend(res)
        feats.append(self.mid_block(h, emb))
        return tuple(feats), emb


class DiffusionInpainter(I2IModel):
    """Palette-style inpainting diffusion: a UNet predicting ε from [x_t, context]."""

    family = "diffusion"

    def __init__(self, config: DiffusionConfig):
        super().__init__()
        from diffusers import DDPMScheduler

        self.config = c = config
        self.unet = build_unet(c)
        with torch.device("cpu"):  # schedules are plain CPU state, never meta, never saved
            self.noise_scheduler = DDPMScheduler(
                num_train_timesteps=c.train_timesteps, beta_schedule=c.beta_schedule,
                beta_start=c.beta_start, beta_end=c.beta_end, clip_sample=c.clip_sample)
            self._abar = self.noise_scheduler.alphas_cumprod.clone()  # (T,) float32, stays on CPU

    # -- the I2I contract -----------------------------------------------------------------
    @property
    def encoder(self) -> nn.Module:
        return _DiffusionEncoder(self.unet)

    @property
    def num_feature_maps(self) -> int:
        """len(encode(...)): conv_in + every down-block residual + the mid block."""
        c = self.config
        return 2 + len(c.block_out_channels) * c.layers_per_block + len(c.block_out_channels) - 1

    def sample_corruption(self, x: torch.Tensor, mask: torch.Tensor,
                          generator: torch.Generator | None = None) -> DiffusionCorruption:
        """Draw t (and γ), ε and, for Palette's layout, the condition's hole noise ε_c."""
        self.check_inputs(x, mask)
        c, B = self.config, x.shape[0]
        dev = generator.device if generator is not None else x.device
        abar = self._abar.to(dev)
        if c.time_input == "gamma":  # Palette: t in [1, T), γ ~ U(ᾱ_{t-1}, ᾱ_t)
            t = torch.randint(1, c.train_timesteps, (B,), generator=generator, device=dev)
            u = torch.rand(B, generator=generator, device=dev)
            gamma = abar[t - 1] + (abar[t] - abar[t - 1]) * u
        else:
            t = torch.randint(0, c.train_timesteps, (B,), generator=generator, device=dev)
            gamma = abar[t]
        noise = torch.randn(x.shape, generator=generator, device=dev)
        cond = (torch.randn(x.shape, generator=generator, device=dev)
                if c.conditioning == "palette" else None)
        return DiffusionCorruption(t, gamma, noise, cond).to(x.device, x.dtype)

    def deterministic_corruption(self, x: torch.Tensor) -> DiffusionCorruption:
        """t = encode_timestep; ε (and ε_c) one fixed N(0, I) image (seed 0) shared by all rows."""
        c, B = self.config, x.shape[0]
        t = c.train_timesteps // 2 if c.encode_timestep is None else c.encode_timestep
        g = torch.Generator().manual_seed(0)
        one = (1, *x.shape[1:])
        noise = torch.randn(one, generator=g).expand(B, -1, -1, -1)
        cond = (torch.randn(one, generator=g).expand(B, -1, -1, -1)
                if c.conditioning == "palette" else None)
        ts = torch.full((B,), t, dtype=torch.long)
        return DiffusionCorruption(ts, self._abar[ts], noise, cond).to(x.device, x.dtype)

    def network_input(self, x: torch.Tensor, mask: torch.Tensor, corruption: DiffusionCorruption,
                      clean: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The UNet's (sample, time input) for context ``x`` whose hole is noised from ``clean``.

        x, clean: (B, C, H, W) (``clean`` defaults to ``x``), mask: (B, 1, H, W), 1 = hidden.
        -> sample (B, 2C[+1], H, W), t (B,): the timestep, or γ for ``time_input="gamma"``.
        """
        c, m = self.config, (mask > 0).to(x.dtype)
        clean = x if clean is None else clean
        if corruption.noise.shape != x.shape:
            raise ValueError(f"corruption: drawn for images of shape {tuple(corruption.noise.shape)}"
                             f", got x of shape {tuple(x.shape)}")
        if c.time_input == "timestep":
            noisy = self.noise_scheduler.add_noise(clean, corruption.noise, corruption.timestep)
            t_in = corruption.timestep
        else:
            g = corruption.gamma.to(x.dtype).view(-1, 1, 1, 1)
            noisy = g.sqrt() * clean + (1 - g).sqrt() * corruption.noise
            t_in = corruption.gamma
        x_t = m * noisy + (1 - m) * x
        return self._stack(x_t, x, m, corruption.cond_noise), t_in

    def _stack(self, x_t, x, m, cond_noise) -> torch.Tensor:
        if self.config.conditioning == "palette":  # Palette: cat([cond, y_t])
            return torch.cat([x * (1 - m) + m * cond_noise, x_t], dim=1)
        return torch.cat([x_t, x * (1 - m), m], dim=1)

    def predict_noise(self, sample: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """ε̂: the UNet forward as encoder then decoder; equals ``self.unet(sample, t).sample``."""
        feats, emb = self.encoder(sample, t)
        return self.decode(feats, emb)

    def decode(self, feats: tuple[torch.Tensor, ...], emb: torch.Tensor) -> torch.Tensor:
        """D: up blocks (consuming the down path's maps), norm, SiLU, conv_out -> (B, C, H, W)."""
        unet, h, res = self.unet, feats[-1], feats[:-1]
        for block in unet.up_blocks:
            n = len(block.resnets)
            h, res = block(h, res[-n:], emb), res[:-n]
        return unet.conv_out(unet.conv_act(unet.conv_norm_out(h)))

    def encode(self, x: torch.Tensor, mask: torch.Tensor,
               corruption: DiffusionCorruption | None = None) -> tuple[torch.Tensor, ...]:
        """x: (B, C, H, W), mask: (B, 1, H, W) -> the encoder's ``num_feature_maps`` maps."""
        self.check_inputs(x, mask)
        corruption = self.deterministic_corruption(x) if corruption is None else corruption
        return self.encoder(*self.network_input(x, mask, corruption))[0]

    def forget_source(self, x: torch.Tensor, noise: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The forget image with ``noise`` in its hole: what the official code's teacher sees."""
        return torch.where(mask > 0, noise, x)

    def generate_from_forget_target(self, x: torch.Tensor, noise: torch.Tensor, mask: torch.Tensor,
                                    generator: torch.Generator | None = None) -> torch.Tensor:
        """The fill of an encoder that meets the forget target at every sampling step.

        The encoder runs once per step, on the sample so far; the target asks it to embed the
        hole as pure noise at that step's level. Here it is shown exactly that (the teacher's
        input in the forget term), and the frozen decoder's noise estimates drive the sample.
        """
        return self.generate(x, mask, generator, forget_target_noise=noise)

    def _forget_target_features(self, x, m, feats, emb, t_in, cond_noise, noise, abar):
        """Mean over the draws ``n`` of the teacher's maps for √γ n + √(1−γ) ε̂ in the hole."""
        g = abar.to(x.device, x.dtype)
        eps_hat = self.decode(feats, emb)  # the ε that x_t's hole holds, as the model sees it
        draws = noise_draws(noise, x)
        return mean_embedding([
            self.encoder(self._stack(m * (g.sqrt() * n + (1 - g).sqrt() * eps_hat) + (1 - m) * x,
                                     x, m, cond_noise), t_in)[0] for n in draws])

    def task_loss(self, x: torch.Tensor, mask: torch.Tensor, corruption: DiffusionCorruption | None,
                  target: torch.Tensor | None = None) -> torch.Tensor:
        """Noise-prediction MSE averaged over the hidden pixels; ``target`` replaces the hole's x_0."""
        self.check_inputs(x, mask)
        if target is not None and target.shape != x.shape:
            raise ValueError(f"target: expected the shape of x {tuple(x.shape)}, "
                             f"got {tuple(target.shape)}")
        corruption = self.deterministic_corruption(x) if corruption is None else corruption
        eps = self.predict_noise(*self.network_input(x, mask, corruption, target))
        m = (mask > 0).to(eps.dtype)
        err = ((eps - corruption.noise) ** 2 * m).sum()
        return err / (m.sum() * x.shape[1]).clamp_min(1)

    def sampling_scheduler(self):
        """A fresh ``DDIMScheduler`` on the sampling schedule, set to ``sample_steps`` steps."""
        from diffusers import DDIMScheduler

        c = self.config
        steps, start, end = c.sampling_schedule()
        with torch.device("cpu"):
            sched = DDIMScheduler(num_train_timesteps=steps, beta_schedule=c.beta_schedule,
                                  beta_start=start, beta_end=end, clip_sample=c.clip_sample,
                                  set_alpha_to_one=True, timestep_spacing="trailing")
            sched.set_timesteps(c.sample_steps)
        return sched

    @torch.no_grad()
    def generate(self, x: torch.Tensor, mask: torch.Tensor,
                 generator: torch.Generator | None = None,
                 forget_target_noise: torch.Tensor | None = None) -> torch.Tensor:
        """x: (B, C, H, W) -> (B, C, H, W): DDIM from N(0, I) in the hole, visible pixels kept.

        All randomness comes from ``generator`` (drawn on its device, then moved), so a CPU
        generator with a fixed seed gives the same images run after run.
        forget_target_noise: (B, C, H, W), (K, B, C, H, W) or None. Given, the feature maps at
        every step are what the forget target shows the teacher -- ``√γ n + √(1−γ) ε̂`` in the
        hole, ε̂ the model's noise estimate on x_t, averaged over the K draws of ``n`` -- while
        the sample itself follows the decoder's noise estimate from them (see
        :meth:`generate_from_forget_target`).
        """
        self.check_inputs(x, mask)
        c, m = self.config, (mask > 0).to(x.dtype)
        sched = self.sampling_scheduler()
        dev = generator.device if generator is not None else x.device
        z = torch.randn(x.shape, generator=generator, device=dev).to(x.device, x.dtype)
        x_t = m * z + (1 - m) * x
        cond_noise = z if c.conditioning == "palette" else None  # Palette starts y_t = cond
        for t in sched.timesteps:
            if c.time_input == "timestep":
                t_in = torch.full((x.shape[0],), int(t), dtype=torch.long, device=x.device)
            else:
                t_in = sched.alphas_cumprod[int(t)].expand(x.shape[0]).to(x.device)
            feats, emb = self.encoder(self._stack(x_t, x, m, cond_noise), t_in)
            if forget_target_noise is not None:  # the teacher's view of the hole in the target
                feats = self._forget_target_features(x, m, feats, emb, t_in, cond_noise,
                                                     forget_target_noise,
                                                     sched.alphas_cumprod[int(t)])
            eps = self.decode(feats, emb)
            var = None
            if c.eta > 0:
                var = torch.randn(x.shape, generator=generator, device=dev).to(x.device, x.dtype)
            x_t = sched.step(eps, t, x_t, eta=c.eta, use_clipped_model_output=True,
                             variance_noise=var).prev_sample
            x_t = m * x_t + (1 - m) * x
        return torch.where(m > 0, x_t.clamp(-1, 1), x)

