"""Official Palette weights (Janspiry/Palette-Image-to-Image-Diffusion-Models) -> DiffusionInpainter.

Palette's inpainting network is the guided-diffusion UNet of
``models/guided_diffusion_modules/unet.py``, built from the ``unet`` block of
``config/inpainting_places2.json`` (:data:`PLACES2_UNET`). Its trainer saves the whole ``Network``
module's state dict as ``{epoch}_Network.pth`` (and ``_Network_ema.pth``): the UNet's keys carry
the prefix ``denoise_fn.``, and the noise-schedule buffers (``gammas``, ``posterior_*``, ...)
come along when the schedule was set before saving. The unlearning fork adds
``teacher_denoise_fn.*`` and DataParallel adds ``module.``; :func:`palette_to_diffusers`
accepts all of these.

The conversion is exact, module for module, into a diffusers ``UNet2DModel`` with scale-shift
ResBlocks (``resnet_time_scale_shift="scale_shift"``), ResBlock down/up-sampling
(``ResnetDownsampleBlock2D`` / ``ResnetUpsampleBlock2D``, or the ``Attn*`` blocks with
``downsample_type="resnet"``), head width ``num_head_channels`` and 32-group norms:

================================  =====================================================
official (guided diffusion)       diffusers
================================  =====================================================
cond_embed.0 / .2                 time_embedding.linear_1 / .linear_2 (the sinusoid of γ
                                  is ``Timesteps(flip_sin_to_cos=True, freq_shift=0)``)
input_blocks.0.0                  conv_in
ResBlock in_layers.0 / .2         norm1 / conv1
ResBlock emb_layers.1             time_emb_proj
ResBlock out_layers.0 / .3        norm2 / conv2
ResBlock skip_connection          conv_shortcut
AttentionBlock norm               group_norm
AttentionBlock qkv (Conv1d)       to_q, to_k, to_v (split per head, as QKVAttentionLegacy does)
AttentionBlock proj_out           to_out.0
middle_block.0 / .1 / .2          mid_block.resnets.0 / attentions.0 / resnets.1
out.0 / out.2                     conv_norm_out / conv_out
================================  =====================================================

The network is told γ (the signal fraction, ``time_input="gamma"``) and reads
``cat([cond, y_t])`` with ``cond`` = visible pixels + N(0, I) in the hole
(``conditioning="palette"``). What is not the same as Palette: sampling (DDIM with
``sample_steps``; ``sample_steps=1000, eta=1`` is Palette's ancestral sampler in law), and the
training loss is averaged over the hidden pixels rather than over all pixels.
Places2: attention at ``attn_res=[16]`` never fires (the downsampling rates are 1, 2, 4, 8), so the
only attention is the middle block's.
"""
from __future__ import annotations

from os import PathLike
from typing import Iterator, Mapping

import torch

from .base import check_state_dict
from .diffusion import DiffusionConfig, DiffusionInpainter

PLACES2_UNET = dict(image_size=256, in_channel=6, out_channel=3, inner_channel=64,
                    channel_mults=(1, 2, 4, 8), attn_res=(16,), num_head_channels=32,
                    res_blocks=2, dropout=0.2)
PLACES2_SCHEDULE = {"train": dict(schedule="linear", n_timestep=2000, linear_start=1e-6,
                                  linear_end=0.01),
                    "test": dict(schedule="linear", n_timestep=1000, linear_start=1e-4,
                                 linear_end=0.09)}
UNET_DEFAULTS = dict(dropout=0.0, channel_mults=(1, 2, 4, 8), conv_resample=True,
                     use_checkpoint=False, use_fp16=False, num_heads=1, num_head_channels=-1,
                     num_heads_upsample=-1, use_scale_shift_norm=True, resblock_updown=True,
                     use_new_attention_order=False)
SCHEDULE_BUFFERS = ("gammas", "sqrt_recip_gammas", "sqrt_recipm1_gammas",
                    "posterior_log_variance_clipped", "posterior_mean_coef1", "posterior_mean_coef2")


def _unet_args(unet: Mapping) -> dict:
    u = {**UNET_DEFAULTS, **unet}
    missing = {"image_size", "in_channel", "out_channel", "inner_channel", "res_blocks",
               "attn_res"} - set(u)
    if missing:
        raise ValueError(f"unet: missing official UNet arguments {sorted(missing)}")
    unsupported = [k for k, ok in (("use_scale_shift_norm", u["use_scale_shift_norm"]),
                                   ("resblock_updown", u["resblock_updown"]),
                                   ("channel_mults", u["channel_mults"][0] == 1),
                                   ("in_channel", u["in_channel"] == 2 * u["out_channel"]),
                                   ("num_heads_upsample",
                                    u["num_heads_upsample"] in (-1, u["num_heads"])),
                                   ("num_heads", u["num_head_channels"] != -1 or u["num_heads"] == 1))
                   if not ok]
    if unsupported:
        raise ValueError(f"unet: no exact diffusers counterpart for {unsupported} = "
                         f"{[u[k] for k in unsupported]} (supported: scale-shift norm, ResBlock "
                         f"resampling, channel_mults[0] = 1, in_channel = 2 * out_channel, "
                         f"num_head_channels or a single head)")
    return u


def _layout(u: dict) -> Iterator[tuple[str, str, str, int, int]]:
    """(kind, official prefix, diffusers prefix, in width, out width), walking the official
    ``UNet.__init__``: input blocks, middle block, output blocks (skip widths popped), out."""
    inner, mults, nres = u["inner_channel"], tuple(u["channel_mults"]), u["res_blocks"]
    attn_res, last = set(u["attn_res"]), len(mults) - 1
    ch = inner * mults[0]
    yield "conv", "input_blocks.0.0", "conv_in", u["in_channel"], ch
    chans, ds, i = [ch], 1, 1
    for level, mult in enumerate(mults):
        for j in range(nres):
            yield "res", f"input_blocks.{i}.0", f"down_blocks.{level}.resnets.{j}", ch, inner * mult
            ch = inner * mult
            if ds in attn_res:
                yield "attn", f"input_blocks.{i}.1", f"down_blocks.{level}.attentions.{j}", ch, ch
            chans.append(ch)
            i += 1
        if level != last:
            yield "res", f"input_blocks.{i}.0", f"down_blocks.{level}.downsamplers.0", ch, ch
            chans.append(ch)
            i, ds = i + 1, ds * 2
    yield "res", "middle_block.0", "mid_block.resnets.0", ch, ch
    yield "attn", "middle_block.1", "mid_block.attentions.0", ch, ch
    yield "res", "middle_block.2", "mid_block.resnets.1", ch, ch
    i = 0
    for level in range(last, -1, -1):
        up = f"up_blocks.{last - level}"
        for j in range(nres + 1):
            out = inner * mults[level]
            yield "res", f"output_blocks.{i}.0", f"{up}.resnets.{j}", ch + chans.pop(), out
            ch, k = out, 1
            if ds in attn_res:
                yield "attn", f"output_blocks.{i}.1", f"{up}.attentions.{j}", ch, ch
                k = 2
            if level and j == nres:
                yield "res", f"output_blocks.{i}.{k}", f"{up}.upsamplers.0", ch, ch
                ds //= 2
            i += 1
    yield "norm", "out.0", "conv_norm_out", ch, ch
    yield "conv", "out.2", "conv_out", inner * mults[0], u["out_channel"]
    yield "linear", "cond_embed.0", "time_embedding.linear_1", inner, 4 * inner
    yield "linear", "cond_embed.2", "time_embedding.linear_2", 4 * inner, 4 * inner


def _params(kind: str, cin: int, cout: int, emb: int) -> list[tuple[str, str, tuple]]:
    """(official suffix, diffusers suffix, official shape) of one layout entry's tensors."""
    if kind == "conv":
        return [("weight", "weight", (cout, cin, 3, 3)), ("bias", "bias", (cout,))]
    if kind == "linear":
        return [("weight", "weight", (cout, cin)), ("bias", "bias", (cout,))]
    if kind == "norm":
        return [("weight", "weight", (cin,)), ("bias", "bias", (cin,))]
    if kind == "attn":
        return [("norm.weight", "group_norm.weight", (cin,)), ("norm.bias", "group_norm.bias", (cin,)),
                ("qkv.weight", "to_qkv.weight", (3 * cin, cin, 1)), ("qkv.bias", "to_qkv.bias", (3 * cin,)),
                ("proj_out.weight", "to_out.0.weight", (cin, cin, 1)),
                ("proj_out.bias", "to_out.0.bias", (cin,))]
    out = [("in_layers.0.weight", "norm1.weight", (cin,)), ("in_layers.0.bias", "norm1.bias", (cin,)),
           ("in_layers.2.weight", "conv1.weight", (cout, cin, 3, 3)),
           ("in_layers.2.bias", "conv1.bias", (cout,)),
           ("emb_layers.1.weight", "time_emb_proj.weight", (2 * cout, emb)),
           ("emb_layers.1.bias", "time_emb_proj.bias", (2 * cout,)),
           ("out_layers.0.weight", "norm2.weight", (cout,)), ("out_layers.0.bias", "norm2.bias", (cout,)),
           ("out_layers.3.weight", "conv2.weight", (cout, cout, 3, 3)),
           ("out_layers.3.bias", "conv2.bias", (cout,))]
    if cin != cout:
        out += [("skip_connection.weight", "conv_shortcut.weight", (cout, cin, 1, 1)),
                ("skip_connection.bias", "conv_shortcut.bias", (cout,))]
    return out


def official_palette_shapes(unet: Mapping = PLACES2_UNET, prefix: str = "denoise_fn.") -> dict:
    """Key -> shape of the official Palette UNet built from ``unet`` (official arguments), keys
    as in ``*_Network.pth`` (``prefix`` ``denoise_fn.``), schedule buffers left out."""
    u = _unet_args(unet)
    emb = 4 * u["inner_channel"]
    return {f"{prefix}{off}.{o}": shape for kind, off, _, cin, cout in _layout(u)
            for o, _, shape in _params(kind, cin, cout, emb)}


def palette_config(unet: Mapping = PLACES2_UNET, beta_schedule: Mapping = PLACES2_SCHEDULE,
                   **overrides) -> DiffusionConfig:
    """The ``DiffusionConfig`` of an official Palette network (``overrides``: e.g. sample_steps)."""
    u = _unet_args(unet)
    for phase in ("train", "test"):
        if beta_schedule[phase]["schedule"] != "linear":
            raise ValueError(f"beta_schedule: only Palette's 'linear' schedule converts, got "
                             f"{phase}={beta_schedule[phase]['schedule']!r}")
    train, test = beta_schedule["train"], beta_schedule["test"]
    mults = tuple(u["channel_mults"])
    return DiffusionConfig(**{
        "img_size": u["image_size"], "in_chans": u["out_channel"],
        "block_out_channels": tuple(u["inner_channel"] * m for m in mults),
        "layers_per_block": u["res_blocks"],
        "attention_levels": tuple(2 ** level in set(u["attn_res"]) for level in range(len(mults))),
        "attention_head_dim": None if u["num_head_channels"] == -1 else u["num_head_channels"],
        "norm_num_groups": 32, "resample": "resnet", "dropout": float(u["dropout"]),
        "conditioning": "palette", "time_input": "gamma", "beta_schedule": "linear",
        "train_timesteps": train["n_timestep"], "beta_start": train["linear_start"],
        "beta_end": train["linear_end"], "sample_timesteps": test["n_timestep"],
        "sample_beta_start": test["linear_start"], "sample_beta_end": test["linear_end"],
        "sample_steps": 50, **overrides})


def _strip(state_dict: Mapping[str, torch.Tensor]) -> tuple[dict, dict]:
    """-> (UNet tensors without prefixes, schedule buffers); drops the fork's teacher copy."""
    net, buffers = {}, {}
    for key, value in state_dict.items():
        k = key.removeprefix("module.")
        if k.startswith("teacher_denoise_fn."):
            continue
        if k in SCHEDULE_BUFFERS:
            buffers[k] = value
        else:
            net[k.removeprefix("denoise_fn.")] = value
    return net, buffers


def palette_to_diffusers(state_dict: Mapping[str, torch.Tensor], unet: Mapping = PLACES2_UNET,
                         beta_schedule: Mapping = PLACES2_SCHEDULE,
                         **overrides) -> tuple[DiffusionConfig, dict]:
    """Official Palette network state dict -> (config, ``UNet2DModel`` state dict), exactly.

    Raises ValueError listing missing / unexpected keys or mismatched shapes, or when the
    checkpoint's ``gammas`` buffer does not have the length of either phase of ``beta_schedule``.
    """
    u = _unet_args(unet)
    config = palette_config(u, beta_schedule, **overrides)
    net, buffers = _strip(state_dict)
    if "gammas" in buffers:
        n = buffers["gammas"].shape[0]
        if n not in (beta_schedule["train"]["n_timestep"], beta_schedule["test"]["n_timestep"]):
            raise ValueError(f"beta_schedule: the checkpoint's gammas has {n} steps, the schedule "
                             f"{beta_schedule['train']['n_timestep']} (train) / "
                             f"{beta_schedule['test']['n_timestep']} (test)")
    official = official_palette_shapes(u, prefix="")
    check_state_dict(net, official, f"the official Palette UNet for {dict(unet)}")

    heads_dim = u["num_head_channels"]
    out = {}
    for kind, off, ours, cin, cout in _layout(u):
        for o, d, _ in _params(kind, cin, cout, 4 * u["inner_channel"]):
            t = net[f"{off}.{o}"]
            if d.startswith("to_qkv"):
                out.update(_split_qkv(t, ours, d.split(".")[-1], cin,
                                      cin if heads_dim == -1 else heads_dim,
                                      u["use_new_attention_order"]))
            else:
                out[f"{ours}.{d}"] = t.squeeze(-1) if d.startswith("to_out") and t.ndim == 3 else t
    return config, out


def _split_qkv(t: torch.Tensor, prefix: str, suffix: str, c: int, head_dim: int,
               new_order: bool) -> dict:
    """Conv1d qkv weight (3c, c, 1) or bias (3c,) -> to_q / to_k / to_v weight (c, c) or bias (c,).

    The legacy order (QKVAttentionLegacy) lays rows out per head as [q, k, v]; the new order
    (QKVAttention) as [q (all heads), k, v]. diffusers takes head h from rows h·d .. (h+1)·d."""
    t = t.reshape(3 * c, -1)  # (3c, c) or (3c, 1)
    if new_order:
        q, k, v = t.reshape(3, c, -1).unbind(0)
    else:
        q, k, v = t.reshape(c // head_dim, 3, head_dim, -1).unbind(1)
    shape = (c,) if suffix == "bias" else (c, c)
    return {f"{prefix}.to_{n}.{suffix}": w.reshape(shape) for n, w in zip("qkv", (q, k, v))}


def load_palette(checkpoint: str | PathLike | Mapping[str, torch.Tensor],
                 unet: Mapping = PLACES2_UNET, beta_schedule: Mapping = PLACES2_SCHEDULE,
                 **overrides) -> DiffusionInpainter:
    """A ``DiffusionInpainter`` holding an official Palette checkpoint (a path or a state dict)."""
    if not isinstance(checkpoint, Mapping):
        checkpoint = torch.load(checkpoint, map_location="cpu", weights_only=True)
    config, state = palette_to_diffusers(checkpoint, unet, beta_schedule, **overrides)
    meta = any(t.is_meta for t in state.values())
    if meta:
        with torch.device("meta"):
            model = DiffusionInpainter(config)
    else:
        model = DiffusionInpainter(config)
    model.unet.load_state_dict(state, strict=True, assign=meta)
    return model
