"""VQ-GAN token inpainting (MAGE, Li et al. 2023) as an I2I model: diffusers ``VQModel`` + timm ViT.

A frozen VQ tokenizer (diffusers ``VQModel``: conv encoder, codebook, conv decoder) turns an image
into a grid of token ids; a bidirectional transformer laid out like the official MAGE
(``LTH14/mage`` ``models_mage.py``: same module and parameter names) inpaints masked tokens:

- **encoder** E_θ = ``token_emb`` (word + learned position embedding, LayerNorm) + ``blocks`` +
  ``norm``. Masked tokens enter as the ``[MASK]`` id of the vocabulary; a share of them is
  *dropped* (removed from the sequence) during training, as MAGE does. A class slot ("fake class"
  id) leads the sequence like a cls token. ``encode`` returns the encoder output (B, 1+K, D).
- **decoder** D_φ = ``decoder_embed``, the dropped/masked slots filled with the cls output (MAGE's
  ``pad_with_cls_token``), ``decoder_pos_embed_learned``, ``decoder_blocks``, ``decoder_norm`` and
  ``mlm_layer`` (fc, GELU, LayerNorm, logits against the output embedding + bias).

Randomness of ``T`` (``sample_corruption``): MAGE's mask rate r ~ truncnorm(μ=0.55, σ=0.25) on
[0.5, 1]; ⌈rL⌉ tokens masked, ⌈0.5 L⌉ of them dropped. Tokens under the caller's hole plus a
``token_margin`` ring are always masked first. The tokenizer reads the image with its hole filled
with 0 (mid grey), so no hidden pixel reaches the encoder; targets are the clean image's tokens.

``generate``: MaskGIT iterative decoding. The hole's tokens plus a one-token margin (as the
paper's code) start as ``[MASK]``; each of ``decode_steps`` steps samples every masked token
(Gumbel-max at ``temperature``; 0 = argmax) and re-masks the least confident ones (log-prob plus
Gumbel noise scaled by ``choice_temperature · (1 − t/T)``) on the cosine schedule, counted
per image from its own number of masked tokens (the paper's script counts from all 256 tokens
and skips the steps above the hole's share). The last step's tokens are decoded by the tokenizer
and the visible pixels composited back exactly (no blurred seam). All draws come from
``generator``. Logits cover the codebook ids only, as in the paper's fork.

The tied output layer and "decoder frozen". MAGE computes the logits against the token
embedding table itself (``token_emb.word_embeddings.weight.data.detach()``), which belongs to the
encoder: training the encoder would silently change the decoder. Here the decoder reads its own
copy, the buffer ``mlm_layer.output_embeddings`` (saved with the model). The copy follows the
table, as in MAGE, whenever the model trains on its own task loss (``task_loss`` in train mode:
pre-training and the whole-model baselines Max Loss / Noisy Label / Retain Label, which train the
decoder anyway). The paper's encoder-only methods never call ``task_loss``, so for them the whole
decoder, output layer included, stays bit-for-bit frozen, as Theorem 1 assumes.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial

import torch
import torch.nn.functional as F
from timm.models.vision_transformer import Block
from torch import nn

from .base import I2IModel, mean_embedding, noise_draws
from .vqgan_parts import (CodebookUsage, MlmLayer, TokenEmbedding, build_tokenizer, gumbel,
                          reconstruction_loss, remask)

VQ_INPUTS = ("symmetric", "unit")


@dataclass
class VQGANConfig:
    img_size: int = 32
    in_chans: int = 1
    # tokenizer: diffusers VQModel, one level per width; tokens are 2**(levels-1) pixels wide
    vq_channels: tuple[int, ...] = (16, 16, 32)
    vq_layers_per_block: int = 1
    vq_latent_channels: int = 16
    vq_embed_dim: int = 16
    codebook_size: int = 128
    vq_norm_groups: int = 8
    vq_mid_attention: bool = False
    vq_input: str = "symmetric"  # "unit": the tokenizer reads [0, 1] images (MAGE's VQGAN)
    # transformer (MAGE)
    embed_dim: int = 96
    depth: int = 4
    num_heads: int = 4
    decoder_embed_dim: int = 96
    decoder_depth: int = 2
    decoder_num_heads: int = 4
    mlp_ratio: float = 4.0
    dropout: float = 0.0
    class_tokens: int = 1  # class-label slots of the vocabulary (MAGE: 1000)
    fake_class_offset: int = 0  # the cls id is codebook_size + this (MAGE: 76, id 1100)
    # MAGE's corruption and loss
    mask_ratio_min: float = 0.5
    mask_ratio_max: float = 1.0
    mask_ratio_mu: float = 0.55
    mask_ratio_std: float = 0.25
    label_smoothing: float = 0.1
    token_margin: int = 1
    # MaskGIT decoding
    decode_steps: int = 8
    temperature: float = 1.0
    choice_temperature: float = 4.5
    # pre-training recipe: share of the steps spent on the tokenizer (then the transformer)
    tokenizer_share: float = 0.2

    def __post_init__(self):
        self.vq_channels = tuple(int(c) for c in self.vq_channels)  # JSON gives lists
        for name in ("img_size", "in_chans", "vq_layers_per_block", "vq_latent_channels",
                     "vq_embed_dim", "codebook_size", "vq_norm_groups", "embed_dim", "depth",
                     "num_heads", "decoder_embed_dim", "decoder_depth", "decoder_num_heads",
                     "class_tokens", "decode_steps"):
            if not getattr(self, name) >= 1:
                raise ValueError(f"{name}: expected a positive integer, got {getattr(self, name)}")
        if not self.vq_channels or any(c % self.vq_norm_groups for c in self.vq_channels):
            raise ValueError(f"vq_channels: expected widths divisible by vq_norm_groups="
                             f"{self.vq_norm_groups}, got {self.vq_channels}")
        if self.img_size % self.token_size:
            raise ValueError(f"img_size: {self.img_size} is not a multiple of the token size "
                             f"{self.token_size} (2**(len(vq_channels) - 1))")
        for d, h in (("embed_dim", "num_heads"), ("decoder_embed_dim", "decoder_num_heads")):
            if getattr(self, d) % getattr(self, h):
                raise ValueError(f"{h}: {getattr(self, h)} does not divide {d}={getattr(self, d)}")
        checks = [("vq_input", self.vq_input in VQ_INPUTS, f"one of {VQ_INPUTS}"),
                  ("fake_class_offset", 0 <= self.fake_class_offset < self.class_tokens,
                   f"0 <= offset < class_tokens={self.class_tokens}"),
                  ("mask_ratio_min", 0 < self.mask_ratio_min <= self.mask_ratio_max <= 1
                   and self.mask_ratio_std > 0, "0 < min <= max <= 1 and std > 0"),
                  ("label_smoothing", 0 <= self.label_smoothing < 1, "a value in [0, 1)"),
                  ("token_margin", self.token_margin >= 0, ">= 0"),
                  ("temperature", self.temperature >= 0, ">= 0"),
                  ("choice_temperature", self.choice_temperature >= 0, ">= 0"),
                  ("tokenizer_share", 0 < self.tokenizer_share < 1, "a value in (0, 1)"),
                  ("dropout", 0 <= self.dropout < 1, "a value in [0, 1)")]
        for name, ok, expected in checks:
            if not ok:
                raise ValueError(f"{name}: expected {expected}, got {getattr(self, name)!r}")

    @property
    def token_size(self) -> int:
        return 2 ** (len(self.vq_channels) - 1)

    @property
    def grid(self) -> int:
        return self.img_size // self.token_size

    @property
    def vocab_size(self) -> int:
        """Codebook ids, class slots, then ``[MASK]`` last (MAGE: 1024 + 1000 + 1)."""
        return self.codebook_size + self.class_tokens + 1


PRESETS: dict[str, dict] = {
    # 32x32 images, 4x4-pixel tokens (an 8x8 grid); a few MB; trains on one CPU thread. 32 codes:
    # with 128, dead-code re-seeding spread even plain background over many near-equal codes
    # (token entropy 4.6 of ln 128 = 4.85 nats on mnist), which the transformer cannot predict.
    "vqgan-tiny": dict(codebook_size=32),
    # The official MAGE ViT-B with MaskGIT's VQGAN tokenizer (see .mage for the weights):
    # 256x256, 16x16 tokens, codebook 1024. Decoding as the paper's inpainting (20 steps, 6.0).
    "mage-vit-base": dict(img_size=256, in_chans=3, vq_channels=(128, 128, 256, 256, 512),
                          vq_layers_per_block=2, vq_latent_channels=256, vq_embed_dim=256,
                          codebook_size=1024, vq_norm_groups=32, vq_input="unit", embed_dim=768,
                          depth=12, num_heads=12, decoder_embed_dim=768, decoder_depth=8,
                          decoder_num_heads=16, class_tokens=1000, fake_class_offset=76,
                          decode_steps=20, choice_temperature=6.0),
}


def build_vqgan(preset: str, **overrides) -> "VQGANInpainter":
    """A fresh VQ-GAN inpainter from a named preset; ``overrides`` replace config fields."""
    return VQGANInpainter.from_preset(PRESETS, VQGANConfig, preset, "VQ-GAN", **overrides)


@dataclass
class VQCorruption:
    """Which tokens are masked and which the encoder sees, drawn once for student and teacher.

    masked: (B, L) bool, tokens replaced by ``[MASK]`` (the loss is taken on them).
    ids_keep: (B, K) long, raster positions the encoder sees (dropped ones are left out).
    """
    masked: torch.Tensor
    ids_keep: torch.Tensor

    def to(self, device) -> "VQCorruption":
        return VQCorruption(self.masked.to(device), self.ids_keep.to(device))


class _VQEncoder(nn.Module):
    """E_θ: a view over the model's token embedding, encoder blocks and norm (owns nothing)."""

    def __init__(self, model: "VQGANInpainter"):
        super().__init__()
        self.token_emb, self.blocks, self.norm = model.token_emb, model.blocks, model.norm

    def forward(self, ids: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """ids: (B, 1+L) with cls first, keep: (B, 1+K) positions -> latent (B, 1+K, D)."""
        t = self.token_emb(ids)
        t = torch.gather(t, 1, keep[..., None].expand(-1, -1, t.shape[-1]))
        for blk in self.blocks:
            t = blk(t)
        return self.norm(t)


class VQGANInpainter(I2IModel):
    """MAGE-style masked token inpainting over a frozen VQ tokenizer."""

    family = "vqgan"

    def __init__(self, config: VQGANConfig):
        super().__init__()
        self.config = c = config
        L = c.grid ** 2
        self.vqgan = build_tokenizer(c)
        for p in self.vqgan.parameters():  # frozen except in its own pre-training stage
            p.requires_grad_(False)
        norm = partial(nn.LayerNorm, eps=1e-6)
        block = partial(Block, mlp_ratio=c.mlp_ratio, qkv_bias=True, norm_layer=norm,
                        proj_drop=c.dropout, attn_drop=c.dropout)
        self.token_emb = TokenEmbedding(c.vocab_size, c.embed_dim, L + 1, c.dropout)
        self.blocks = nn.ModuleList([block(c.embed_dim, c.num_heads) for _ in range(c.depth)])
        self.norm = norm(c.embed_dim)
        self.decoder_embed = nn.Linear(c.embed_dim, c.decoder_embed_dim)
        self.decoder_pos_embed_learned = nn.Parameter(torch.zeros(1, L + 1, c.decoder_embed_dim))
        self.decoder_blocks = nn.ModuleList([block(c.decoder_embed_dim, c.decoder_num_heads)
                                             for _ in range(c.decoder_depth)])
        self.decoder_norm = norm(c.decoder_embed_dim)
        self.mlm_layer = MlmLayer(c.decoder_embed_dim, c.embed_dim, c.vocab_size)
        self.initialize_weights()

    def initialize_weights(self):
        for m in (self.blocks, self.decoder_blocks, self.decoder_embed, self.mlm_layer, self.norm,
                  self.decoder_norm, self.token_emb.LayerNorm):
            m.apply(self._init_weights)
        nn.init.normal_(self.token_emb.word_embeddings.weight, std=0.02)
        nn.init.normal_(self.token_emb.position_embeddings.weight, std=0.02)
        nn.init.normal_(self.decoder_pos_embed_learned, std=0.02)
        self.sync_output_embedding()

    @staticmethod
    def _init_weights(m: nn.Module):
        if isinstance(m, nn.Linear):  # xavier-uniform as MAGE
            nn.init.xavier_uniform_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)

    def sync_output_embedding(self) -> None:
        """Copy the token embedding table into the decoder's output layer (MAGE's tie).

        A new tensor each time, so graphs built on the previous copy stay valid."""
        self.mlm_layer.output_embeddings = self.token_emb.word_embeddings.weight.detach().clone()

    # -- ids --------------------------------------------------------------------------------
    @property
    def cls_id(self) -> int:
        return self.config.codebook_size + self.config.fake_class_offset

    @property
    def mask_id(self) -> int:
        return self.config.vocab_size - 1

    @property
    def num_tokens(self) -> int:
        return self.config.grid ** 2

    # -- pixels <-> tokens ------------------------------------------------------------------
    def _to_vq(self, x: torch.Tensor) -> torch.Tensor:
        return (x + 1) / 2 if self.config.vq_input == "unit" else x

    def _from_vq(self, y: torch.Tensor) -> torch.Tensor:
        return y * 2 - 1 if self.config.vq_input == "unit" else y

    @torch.no_grad()
    def tokenize(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, C, H, W) in [-1, 1] -> token ids (B, L), raster order."""
        h = self.vqgan.encode(self._to_vq(x)).latents
        return self.vqgan.quantize(h)[2][2].view(x.shape[0], -1)

    @torch.no_grad()
    def detokenize(self, ids: torch.Tensor) -> torch.Tensor:
        """ids: (B, L) codebook ids -> images (B, C, H, W) in [-1, 1]."""
        g, e = self.config.grid, self.config.vq_embed_dim
        z = self.vqgan.quantize.get_codebook_entry(ids.reshape(-1), (ids.shape[0], g, g, e))
        out = self.vqgan.decode(z, force_not_quantize=True).sample
        return self._from_vq(out).clamp(-1, 1)

    @staticmethod
    def fill_hole(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Hidden pixels set to 0 (mid grey): what the tokenizer may see of ``x``."""
        return torch.where(mask > 0, torch.zeros_like(x), x)

    def hidden_tokens(self, mask: torch.Tensor, margin: int | None = None) -> torch.Tensor:
        """mask: (B, 1, H, W) -> (B, L) bool: tokens touching the hole, grown by ``margin``."""
        margin = self.config.token_margin if margin is None else margin
        t = F.max_pool2d((mask > 0).float(), self.config.token_size)
        if margin:
            t = F.max_pool2d(t, 2 * margin + 1, stride=1, padding=margin)
        return t.flatten(1) > 0

    # -- the I2I contract -------------------------------------------------------------------
    @property
    def encoder(self) -> nn.Module:
        return _VQEncoder(self)

    def mask_rate(self, generator: torch.Generator | None = None, device=None) -> float:
        """r ~ truncnorm(mu, std) on [min, max], by inverse CDF from one uniform draw."""
        c = self.config
        a = torch.tensor((c.mask_ratio_min - c.mask_ratio_mu) / c.mask_ratio_std, dtype=torch.float64)
        b = torch.tensor((c.mask_ratio_max - c.mask_ratio_mu) / c.mask_ratio_std, dtype=torch.float64)
        u = torch.rand((), generator=generator, device=device, dtype=torch.float64).cpu()
        lo, hi = torch.special.ndtr(a), torch.special.ndtr(b)
        r = c.mask_ratio_mu + c.mask_ratio_std * torch.special.ndtri(lo + u * (hi - lo))
        return float(r.clamp(c.mask_ratio_min, c.mask_ratio_max))

    def sample_corruption(self, x: torch.Tensor, mask: torch.Tensor,
                          generator: torch.Generator | None = None) -> VQCorruption:
        """MAGE's masking (rate ~ truncnorm, half the tokens dropped) on top of the hole's tokens."""
        self.check_inputs(x, mask)
        hidden = self.hidden_tokens(mask)
        B, L = hidden.shape
        dev = generator.device if generator is not None else x.device
        r = self.mask_rate(generator, dev)
        noise = torch.rand(B, L, generator=generator, device=dev).to(x.device)
        rank = torch.argsort(torch.argsort(noise - hidden.float(), dim=1), dim=1)  # hidden first
        n_mask = hidden.sum(1, keepdim=True).clamp(min=math.ceil(L * r))
        n_drop = math.ceil(L * self.config.mask_ratio_min)
        dropped = rank < n_drop
        ids_keep = torch.argsort(dropped.to(torch.int8), dim=1, stable=True)[:, :L - n_drop]
        return VQCorruption(rank < n_mask, ids_keep)

    def deterministic_corruption(self, mask: torch.Tensor) -> VQCorruption:
        """The hole's tokens (with margin) masked, nothing dropped."""
        hidden = self.hidden_tokens(mask)
        keep = torch.arange(hidden.shape[1], device=mask.device).expand(hidden.shape[0], -1)
        return VQCorruption(hidden, keep)

    def _check_corruption(self, corruption: VQCorruption, x: torch.Tensor) -> None:
        if tuple(corruption.masked.shape) != (x.shape[0], self.num_tokens):
            raise ValueError(f"corruption: drawn for token masks of shape "
                             f"{tuple(corruption.masked.shape)}, expected ({x.shape[0]}, "
                             f"{self.num_tokens})")

    def encode_ids(self, ids: torch.Tensor, corruption: VQCorruption) -> torch.Tensor:
        """ids: (B, L) token ids -> latent (B, 1+K, D): masked -> [MASK], cls first, drops removed."""
        ids = torch.where(corruption.masked, self.mask_id, ids)
        ids = torch.cat([torch.full_like(ids[:, :1], self.cls_id), ids], dim=1)
        keep = torch.cat([torch.zeros_like(corruption.ids_keep[:, :1]), corruption.ids_keep + 1], 1)
        return self.encoder(ids, keep)

    def encode(self, x: torch.Tensor, mask: torch.Tensor,
               corruption: VQCorruption | None = None) -> torch.Tensor:
        """x: (B, C, H, W), mask: (B, 1, H, W) -> latent (B, 1+K, D) after the encoder norm."""
        self.check_inputs(x, mask)
        corruption = self.deterministic_corruption(mask) if corruption is None else corruption
        self._check_corruption(corruption, x)
        return self.encode_ids(self.tokenize(self.fill_hole(x, mask)), corruption)

    def forward_decoder(self, latent: torch.Tensor, corruption: VQCorruption) -> torch.Tensor:
        """latent: (B, 1+K, D) -> codebook logits (B, L, codebook_size)."""
        x = self.decoder_embed(latent)
        B, L = corruption.masked.shape
        keep = torch.cat([torch.zeros_like(corruption.ids_keep[:, :1]), corruption.ids_keep + 1], 1)
        cls = x[:, :1].expand(B, L + 1, x.shape[-1])
        full = cls.scatter(1, keep[..., None].expand(-1, -1, x.shape[-1]), x)
        masked = torch.cat([torch.zeros_like(corruption.masked[:, :1]), corruption.masked], 1)
        x = torch.where(masked[..., None], cls, full) + self.decoder_pos_embed_learned
        for blk in self.decoder_blocks:
            x = blk(x)
        return self.mlm_layer(self.decoder_norm(x), self.config.codebook_size)[:, 1:]

    def task_loss(self, x: torch.Tensor, mask: torch.Tensor, corruption: VQCorruption | None,
                  target: torch.Tensor | None = None) -> torch.Tensor:
        """Label-smoothed cross-entropy on the masked tokens; targets: tokens of ``target`` or x."""
        self.check_inputs(x, mask)
        if target is not None and target.shape != x.shape:
            raise ValueError(f"target: expected the shape of x {tuple(x.shape)}, "
                             f"got {tuple(target.shape)}")
        corruption = self.deterministic_corruption(mask) if corruption is None else corruption
        if self.training:  # the output layer follows the embedding table (MAGE's tie)
            self.sync_output_embedding()
        gt = self.tokenize(x if target is None else target)
        logits = self.forward_decoder(self.encode(x, mask, corruption), corruption)
        loss = F.cross_entropy(logits.flatten(0, 1), gt.flatten(), reduction="none",
                               label_smoothing=self.config.label_smoothing).view_as(gt)
        m = corruption.masked.to(loss.dtype)
        return (loss * m).sum() / m.sum().clamp_min(1)

    @torch.no_grad()
    def generate(self, x: torch.Tensor, mask: torch.Tensor,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        """x: (B, C, H, W) -> (B, C, H, W): MaskGIT decoding of the hole, visible pixels kept.

        All randomness comes from ``generator`` (drawn on its device), so the same seed gives
        bit-identical images on CPU.
        """
        self.check_inputs(x, mask)
        return self._maskgit(x, mask, generator, self.encode_ids)

    @torch.no_grad()
    def generate_from_forget_target(self, x: torch.Tensor, noise: torch.Tensor, mask: torch.Tensor,
                                    generator: torch.Generator | None = None) -> torch.Tensor:
        """The fill of ``x`` when the encoder returns the forget target at every decoding step.

        The target is the teacher's latent of the noise image's visible tokens (``forget_source``)
        with the hole's tokens as decoded so far; with a (K, B, C, H, W) ``noise`` the latent is
        averaged over the K draws. The tokenizer is not unlearned, so the hole's tokens are
        decoded to pixels next to ``x``'s own visible tokens.
        """
        self.check_inputs(x, mask)
        m = (mask > 0).to(x.dtype)
        hole = self.hidden_tokens(m)
        draws = noise_draws(noise, x)
        visible = [self.tokenize(self.fill_hole(self.forget_source(x, n, m), m)) for n in draws]

        def target_latent(ids, corruption):
            return mean_embedding([self.encode_ids(torch.where(hole, ids, v), corruption)
                                   for v in visible])

        return self._maskgit(x, mask, generator, target_latent)

    def _maskgit(self, x: torch.Tensor, mask: torch.Tensor, generator: torch.Generator | None,
                 latent_of) -> torch.Tensor:
        """MaskGIT decoding of the hole's tokens; ``latent_of(ids, corruption)`` is the encoder."""
        c, m = self.config, (mask > 0).to(x.dtype)
        dev = generator.device if generator is not None else x.device
        ids = self.tokenize(self.fill_hole(x, m))
        unknown = self.hidden_tokens(m)
        n0 = unknown.sum(1)
        ids = torch.where(unknown, self.mask_id, ids)
        keep = torch.arange(ids.shape[1], device=x.device).expand_as(ids)
        sampled = ids
        for step in range(c.decode_steps):
            unknown = ids == self.mask_id
            if not unknown.any():
                break
            logits = self.forward_decoder(latent_of(ids, VQCorruption(unknown, keep)),
                                          VQCorruption(unknown, keep)).float()
            if c.temperature > 0:
                pick = logits / c.temperature + gumbel(logits.shape, generator, dev).to(x.device)
            else:
                pick = logits
            sampled = torch.where(unknown, pick.argmax(-1), ids)
            if step == c.decode_steps - 1:
                break
            again = remask(logits, sampled, unknown, n0, (step + 1) / c.decode_steps,
                           c.choice_temperature, generator)
            ids = torch.where(again, self.mask_id, sampled)
        out = self.detokenize(torch.where(sampled == self.mask_id, 0, sampled))
        return torch.where(m > 0, out, x)

    # -- pre-training (the two stages of i2i_unlearn.pretrain) ------------------------------
    def pretraining_stages(self) -> list[tuple]:
        """(name, share of the steps, parameters, loss(x, mask, generator) -> (loss, logs)):
        the tokenizer first (reconstruction), then the transformer (masked token prediction)."""
        share = self.config.tokenizer_share
        transformer = [p for n, p in self.named_parameters() if not n.startswith("vqgan.")]

        def transformer_loss(x, mask, generator):
            return self.task_loss(x, mask, self.sample_corruption(x, mask, generator)), {}

        return [("tokenizer", share, list(self.vqgan.parameters()), self.tokenizer_loss),
                ("transformer", 1 - share, transformer, transformer_loss)]

    def tokenizer_loss(self, x: torch.Tensor, mask: torch.Tensor | None = None,
                       generator: torch.Generator | None = None) -> tuple[torch.Tensor, dict]:
        """The tokenizer's pre-training loss (see ``vq_tokenizer.reconstruction_loss``)."""
        if getattr(self, "_usage", None) is None:
            self._usage = CodebookUsage(self.config.codebook_size)
        return reconstruction_loss(self.vqgan, self._to_vq(x), self._usage, generator)
