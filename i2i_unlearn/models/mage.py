"""Official MAGE weights (LTH14/mage) -> VQGANInpainter: ``mage-vitb-1600.pth`` and its tokenizer.

MAGE's pre-training script saves the whole ``MaskedGenerativeEncoderViT`` as ``{"model": sd}``;
its keys include the frozen tokenizer under ``vqgan.`` (``gen_img_uncond.py`` loads the file
strictly). The tokenizer alone is ``vqgan_jax_strongaug.ckpt`` (MaskGIT's JAX VQGAN ported to the
taming layout, ``{"state_dict": sd}`` or the bare dict). Both are on Google Drive: download them
by hand (see MAGE's README), then ``load_mage("mage-vitb-1600.pth")``.

Transformer: our module and parameter names are MAGE's, so those tensors copy over unchanged.
Left out, because MAGE never uses them for token prediction: ``patch_embed``, ``cls_token``,
``pos_embed``, ``decoder_pos_embed`` (fixed sin-cos), ``decoder_pred``, ``mask_token`` (MAGE pads
with the cls output) and the ``token_emb.position_ids`` buffer. Our decoder's frozen output
layer ``mlm_layer.output_embeddings`` is filled with ``token_emb.word_embeddings.weight``,
which is what MAGE's logits read.

Tokenizer (taming ``Encoder``/``Decoder`` as MAGE's ``config/vqgan.yaml``: ch 128, ch_mult
(1, 1, 2, 2, 4), 2 res-blocks per level, no attention, z = embed = 256, 1024 codes) -> a diffusers
``VQModel``. The conversion is exact; where the layouts differ it is made so by construction:

- biases taming lacks (encoder ``conv_in``, every res-block conv) are zeros;
- the encoder downsamples by 2x2 average pooling: a fixed 3x3 stride-2 conv with 1/4 on the
  top-left 2x2 taps of each channel, after diffusers' (0, 1, 0, 1) padding, is the same map;
- the encoder ``conv_out`` is 1x1: it sits at the centre of diffusers' 3x3 kernel;
- taming has no ``quant_conv``/``post_quant_conv``: identities;
- diffusers' decoder has one res-block more per level than the encoder: the extra one is made
  the identity (its ``conv2`` is zero, so the block returns its input);
- MaskGIT's res-block applies its 1x1 ``nin_shortcut`` W to the block's *output* h and returns
  h + W h (no skip of the input): diffusers' ``conv_shortcut`` is set to zero and (I + W) is
  folded into ``conv2``.
"""
from __future__ import annotations

from os import PathLike
from typing import Iterator, Mapping

import torch

from .base import check_state_dict
from .vqgan import PRESETS, VQGANConfig, VQGANInpainter

MAGE_DDCONFIG = dict(ch=128, ch_mult=(1, 1, 2, 2, 4), num_res_blocks=2, z_channels=256,
                     in_channels=3, out_ch=3, resolution=256)
MAGE_CODEBOOK = dict(n_embed=1024, embed_dim=256)
MAGE_ARCHS = {"mage_vit_base_patch16": dict(embed_dim=768, depth=12, num_heads=12,
                                            decoder_embed_dim=768, decoder_depth=8,
                                            decoder_num_heads=16),
              "mage_vit_large_patch16": dict(embed_dim=1024, depth=24, num_heads=16,
                                             decoder_embed_dim=1024, decoder_depth=8,
                                             decoder_num_heads=16)}
UNUSED = ("patch_embed.proj.weight", "patch_embed.proj.bias", "cls_token", "pos_embed",
          "decoder_pos_embed", "decoder_pred.weight", "decoder_pred.bias", "mask_token",
          "token_emb.position_ids")


def _res(prefix: str, cin: int, cout: int) -> dict:
    out = {f"{prefix}.norm1.weight": (cin,), f"{prefix}.norm1.bias": (cin,),
           f"{prefix}.conv1.weight": (cout, cin, 3, 3), f"{prefix}.norm2.weight": (cout,),
           f"{prefix}.norm2.bias": (cout,), f"{prefix}.conv2.weight": (cout, cout, 3, 3)}
    if cin != cout:
        out[f"{prefix}.nin_shortcut.weight"] = (cout, cout, 1, 1)
    return out


def _levels(dd: Mapping) -> Iterator[tuple[str, int, int, int, int]]:
    """(part, level, block, in width, out width) of every taming res-block, in build order."""
    ch, mult, n = dd["ch"], tuple(dd["ch_mult"]), len(dd["ch_mult"])
    bi = ch
    for lv in range(n):
        for j in range(dd["num_res_blocks"]):
            yield "encoder", lv, j, bi, ch * mult[lv]
            bi = ch * mult[lv]
    bi = ch * mult[-1]
    for lv in reversed(range(n)):
        for j in range(dd["num_res_blocks"]):
            yield "decoder", lv, j, bi, ch * mult[lv]
            bi = ch * mult[lv]


def official_vqgan_shapes(dd: Mapping = MAGE_DDCONFIG, n_embed: int = MAGE_CODEBOOK["n_embed"],
                          embed_dim: int = MAGE_CODEBOOK["embed_dim"], prefix: str = "") -> dict:
    """Key -> shape of MAGE's taming ``VQModel`` (``taming/models/vqgan.py``, the MaskGIT port of
    ``taming/modules/diffusionmodules/model.py``) built from ``dd``."""
    ch, mult, z, n = dd["ch"], tuple(dd["ch_mult"]), dd["z_channels"], len(dd["ch_mult"])
    top = ch * mult[-1]
    s = {"encoder.conv_in.weight": (ch, dd["in_channels"], 3, 3)}
    for part, lv, j, cin, cout in _levels(dd):
        s.update(_res(f"{part}.{'down' if part == 'encoder' else 'up'}.{lv}.block.{j}", cin, cout))
        if part == "encoder" and j == dd["num_res_blocks"] - 1 and lv == n - 1:
            for b in (1, 2):
                s.update(_res(f"encoder.mid.block_{b}", top, top))
            s.update({"encoder.norm_out.weight": (top,), "encoder.norm_out.bias": (top,),
                      "encoder.conv_out.weight": (z, top, 1, 1), "encoder.conv_out.bias": (z,),
                      "decoder.conv_in.weight": (top, z, 3, 3), "decoder.conv_in.bias": (top,)})
            for b in (1, 2):
                s.update(_res(f"decoder.mid.block_{b}", top, top))
        if part == "decoder" and j == dd["num_res_blocks"] - 1 and lv:
            s[f"decoder.up.{lv}.upsample.conv.weight"] = (cout, cout, 3, 3)
            s[f"decoder.up.{lv}.upsample.conv.bias"] = (cout,)
    s.update({"decoder.norm_out.weight": (ch * mult[0],), "decoder.norm_out.bias": (ch * mult[0],),
              "decoder.conv_out.weight": (dd["out_ch"], ch * mult[0], 3, 3),
              "decoder.conv_out.bias": (dd["out_ch"],),
              "quantize.embedding.weight": (n_embed, embed_dim)})
    return {prefix + k: v for k, v in s.items()}


def official_mage_shapes(arch: str = "mage_vit_base_patch16", dd: Mapping = MAGE_DDCONFIG,
                         n_embed: int = MAGE_CODEBOOK["n_embed"],
                         embed_dim: int = MAGE_CODEBOOK["embed_dim"]) -> dict:
    """Key -> shape of ``models_mage.MaskedGenerativeEncoderViT`` (``arch`` as its builders;
    img 256, patch 16, 1000 class slots), tokenizer included under ``vqgan.``."""
    if arch not in MAGE_ARCHS:
        raise ValueError(f"arch: expected one of {sorted(MAGE_ARCHS)}, got {arch!r}")
    a = MAGE_ARCHS[arch]
    D, Dd, L, vocab = a["embed_dim"], a["decoder_embed_dim"], 256, n_embed + 1000 + 1
    s = {"token_emb.word_embeddings.weight": (vocab, D),
         "token_emb.position_embeddings.weight": (L + 1, D), "token_emb.LayerNorm.weight": (D,),
         "token_emb.LayerNorm.bias": (D,), "token_emb.position_ids": (1, L + 1),
         "patch_embed.proj.weight": (D, 3, 16, 16), "patch_embed.proj.bias": (D,),
         "cls_token": (1, 1, D), "pos_embed": (1, L + 1, D)}
    for name, dim, depth in (("blocks", D, a["depth"]), ("decoder_blocks", Dd, a["decoder_depth"])):
        for i in range(depth):
            p = f"{name}.{i}."
            s.update({p + "norm1.weight": (dim,), p + "norm1.bias": (dim,),
                      p + "attn.qkv.weight": (3 * dim, dim), p + "attn.qkv.bias": (3 * dim,),
                      p + "attn.proj.weight": (dim, dim), p + "attn.proj.bias": (dim,),
                      p + "norm2.weight": (dim,), p + "norm2.bias": (dim,),
                      p + "mlp.fc1.weight": (4 * dim, dim), p + "mlp.fc1.bias": (4 * dim,),
                      p + "mlp.fc2.weight": (dim, 4 * dim), p + "mlp.fc2.bias": (dim,)})
        if name == "blocks":
            s.update({"norm.weight": (D,), "norm.bias": (D,), "decoder_embed.weight": (Dd, D),
                      "decoder_embed.bias": (Dd,), "mask_token": (1, 1, Dd),
                      "decoder_pos_embed": (1, L + 1, Dd),
                      "decoder_pos_embed_learned": (1, L + 1, Dd)})
    s.update({"decoder_norm.weight": (Dd,), "decoder_norm.bias": (Dd,),
              "decoder_pred.weight": (16 * 16 * 3, Dd), "decoder_pred.bias": (16 * 16 * 3,),
              "mlm_layer.fc.weight": (D, Dd), "mlm_layer.fc.bias": (D,),
              "mlm_layer.ln.weight": (D,), "mlm_layer.ln.bias": (D,),
              "mlm_layer.bias": (1, 1, vocab)})
    s.update(official_vqgan_shapes(dd, n_embed, embed_dim, prefix="vqgan."))
    return s


def tokenizer_config(dd: Mapping = MAGE_DDCONFIG, n_embed: int = MAGE_CODEBOOK["n_embed"],
                     embed_dim: int = MAGE_CODEBOOK["embed_dim"]) -> dict:
    """The ``VQGANConfig`` tokenizer fields of a taming ``ddconfig`` (images in [0, 1])."""
    if dd["z_channels"] != embed_dim or dd["in_channels"] != dd["out_ch"]:
        raise ValueError(f"dd: MAGE's tokenizer needs z_channels == embed_dim and in_channels == "
                         f"out_ch, got {dd['z_channels']}, {embed_dim}, {dd['in_channels']}, "
                         f"{dd['out_ch']}")
    return dict(img_size=dd["resolution"], in_chans=dd["in_channels"],
                vq_channels=tuple(dd["ch"] * m for m in dd["ch_mult"]),
                vq_layers_per_block=dd["num_res_blocks"], vq_latent_channels=dd["z_channels"],
                vq_embed_dim=embed_dim, codebook_size=n_embed, vq_norm_groups=32,
                vq_mid_attention=False, vq_input="unit")


def vqgan_to_diffusers(state: Mapping[str, torch.Tensor], dd: Mapping = MAGE_DDCONFIG,
                       n_embed: int = MAGE_CODEBOOK["n_embed"],
                       embed_dim: int = MAGE_CODEBOOK["embed_dim"]) -> dict:
    """MAGE's taming tokenizer state dict -> a diffusers ``VQModel`` state dict, exactly."""
    check_state_dict(state, official_vqgan_shapes(dd, n_embed, embed_dim),
                     "the official MAGE VQGAN tokenizer")
    ref = state["quantize.embedding.weight"]

    def zeros(*shape):
        return torch.zeros(shape, dtype=ref.dtype, device=ref.device)

    def eye(n):
        return torch.eye(n, dtype=ref.dtype, device=ref.device)

    def ones(n):
        return torch.ones(n, dtype=ref.dtype, device=ref.device)

    out, n, nres = {}, len(dd["ch_mult"]), dd["num_res_blocks"]

    def res(src: str | None, dst: str, cin: int, cout: int):
        for norm in ("norm1", "norm2"):
            w = cin if norm == "norm1" else cout
            out[f"{dst}.{norm}.weight"] = state[f"{src}.{norm}.weight"] if src else ones(w)
            out[f"{dst}.{norm}.bias"] = state[f"{src}.{norm}.bias"] if src else zeros(w)
        out[f"{dst}.conv1.weight"] = state[f"{src}.conv1.weight"] if src else zeros(cout, cin, 3, 3)
        conv2 = state[f"{src}.conv2.weight"] if src else zeros(cout, cout, 3, 3)
        if cin != cout:  # h + W h = (I + W) h, folded into conv2; the input skip is zero
            w = state[f"{src}.nin_shortcut.weight"][:, :, 0, 0]
            conv2 = torch.einsum("ok,kcij->ocij", eye(cout) + w, conv2)
            out[f"{dst}.conv_shortcut.weight"] = zeros(cout, cin, 1, 1)
            out[f"{dst}.conv_shortcut.bias"] = zeros(cout)
        out[f"{dst}.conv2.weight"] = conv2
        out[f"{dst}.conv1.bias"], out[f"{dst}.conv2.bias"] = zeros(cout), zeros(cout)

    out["encoder.conv_in.weight"] = state["encoder.conv_in.weight"]
    out["encoder.conv_in.bias"] = zeros(dd["ch"])
    for part, lv, j, cin, cout in _levels(dd):
        if part == "encoder":
            res(f"encoder.down.{lv}.block.{j}", f"encoder.down_blocks.{lv}.resnets.{j}", cin, cout)
            if j == nres - 1 and lv < n - 1:  # 2x2 average pooling as a fixed conv
                w = zeros(cout, cout, 3, 3)
                w[:, :, :2, :2] = 0.25 * eye(cout)[:, :, None, None]
                out[f"encoder.down_blocks.{lv}.downsamplers.0.conv.weight"] = w
                out[f"encoder.down_blocks.{lv}.downsamplers.0.conv.bias"] = zeros(cout)
        else:
            up = f"decoder.up_blocks.{n - 1 - lv}"
            res(f"decoder.up.{lv}.block.{j}", f"{up}.resnets.{j}", cin, cout)
            if j == nres - 1:
                res(None, f"{up}.resnets.{nres}", cout, cout)  # diffusers' extra block: identity
                if lv:
                    for t in ("weight", "bias"):
                        out[f"{up}.upsamplers.0.conv.{t}"] = state[f"decoder.up.{lv}.upsample.conv.{t}"]
    top, z = dd["ch"] * dd["ch_mult"][-1], dd["z_channels"]
    for part in ("encoder", "decoder"):
        for b in (1, 2):
            res(f"{part}.mid.block_{b}", f"{part}.mid_block.resnets.{b - 1}", top, top)
        for t in ("weight", "bias"):
            out[f"{part}.conv_norm_out.{t}"] = state[f"{part}.norm_out.{t}"]
    conv_out = zeros(z, top, 3, 3)
    conv_out[:, :, 1:2, 1:2] = state["encoder.conv_out.weight"]
    out.update({"encoder.conv_out.weight": conv_out, "encoder.conv_out.bias": state["encoder.conv_out.bias"]})
    for t in ("conv_in.weight", "conv_in.bias", "conv_out.weight", "conv_out.bias"):
        out[f"decoder.{t}"] = state[f"decoder.{t}"]
    for conv in ("quant_conv", "post_quant_conv"):
        out[f"{conv}.weight"] = eye(z)[:, :, None, None]
        out[f"{conv}.bias"] = zeros(z)
    out["quantize.embedding.weight"] = ref
    return out


def mage_to_ours(state: Mapping[str, torch.Tensor], arch: str = "mage_vit_base_patch16") -> dict:
    """An official ``models_mage`` state dict (tokenizer under ``vqgan.``) -> our state dict."""
    check_state_dict(state, official_mage_shapes(arch), f"the official MAGE {arch}",
                     optional=("token_emb.position_ids",))
    vq = {k.removeprefix("vqgan."): v for k, v in state.items() if k.startswith("vqgan.")}
    out = {f"vqgan.{k}": v for k, v in vqgan_to_diffusers(vq).items()}
    out.update({k: v for k, v in state.items() if not k.startswith("vqgan.") and k not in UNUSED})
    out["mlm_layer.output_embeddings"] = state["token_emb.word_embeddings.weight"]
    return out


def mage_config(arch: str = "mage_vit_base_patch16", **overrides) -> VQGANConfig:
    """The ``VQGANConfig`` of an official MAGE model (``overrides``: e.g. decode_steps)."""
    if arch not in MAGE_ARCHS:
        raise ValueError(f"arch: expected one of {sorted(MAGE_ARCHS)}, got {arch!r}")
    return VQGANConfig(**{**PRESETS["mage-vit-base"], **MAGE_ARCHS[arch], **overrides})


def _unwrap(checkpoint, key: str) -> dict:
    if not isinstance(checkpoint, Mapping):
        checkpoint = torch.load(checkpoint, map_location="cpu", weights_only=True)
    state = checkpoint.get(key, checkpoint)
    return {k.removeprefix("module."): v for k, v in state.items()}


def load_mage(checkpoint: str | PathLike | Mapping[str, torch.Tensor],
              tokenizer: str | PathLike | Mapping[str, torch.Tensor] | None = None,
              arch: str = "mage_vit_base_patch16", **overrides) -> VQGANInpainter:
    """A ``VQGANInpainter`` holding official MAGE weights (paths or state dicts).

    ``checkpoint``: ``mage-vitb-1600.pth`` (``{"model": sd}``, tokenizer included);
    ``tokenizer``: ``vqgan_jax_strongaug.ckpt``, needed only when the checkpoint lacks ``vqgan.*``
    (it replaces the checkpoint's own tokenizer if both are given).
    """
    state = _unwrap(checkpoint, "model")
    if tokenizer is not None:
        state = {k: v for k, v in state.items() if not k.startswith("vqgan.")}
        state.update({f"vqgan.{k}": v for k, v in _unwrap(tokenizer, "state_dict").items()})
    ours = mage_to_ours(state, arch)
    meta = any(t.is_meta for t in ours.values())
    config = mage_config(arch, **overrides)
    if meta:
        with torch.device("meta"):
            model = VQGANInpainter(config)
    else:
        model = VQGANInpainter(config)
    model.load_state_dict(ours, strict=True, assign=meta)
    return model
