"""Parts of the VQ-GAN family (``vqgan.py``): the tokenizer (a diffusers ``VQModel``) and its
pre-training loss, MAGE's token embedding and MLM head, and the re-masking step of MaskGIT.

The tiny tokenizers train on reconstruction (MSE) plus the VQ commitment loss; the adversarial
and perceptual terms of a full VQGAN are left out at this scale. Codes unused for a while are
re-seeded from the current batch's encoder outputs (all of them on the first step), a standard
remedy for codebook collapse; the draws come from the step's generator, so training stays
reproducible.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def build_tokenizer(c):
    """The diffusers ``VQModel`` of a ``VQGANConfig`` (no attention, like MaskGIT's tokenizer)."""
    from diffusers import VQModel

    n = len(c.vq_channels)
    return VQModel(in_channels=c.in_chans, out_channels=c.in_chans,
                   down_block_types=("DownEncoderBlock2D",) * n,
                   up_block_types=("UpDecoderBlock2D",) * n, block_out_channels=c.vq_channels,
                   layers_per_block=c.vq_layers_per_block, latent_channels=c.vq_latent_channels,
                   sample_size=c.img_size, num_vq_embeddings=c.codebook_size,
                   norm_num_groups=c.vq_norm_groups, vq_embed_dim=c.vq_embed_dim,
                   mid_block_add_attention=c.vq_mid_attention)


class TokenEmbedding(nn.Module):
    """MAGE's ``BertEmbeddings``: word + learned position embedding, LayerNorm, dropout."""

    def __init__(self, vocab_size: int, dim: int, positions: int, dropout: float):
        super().__init__()
        self.word_embeddings = nn.Embedding(vocab_size, dim)
        self.position_embeddings = nn.Embedding(positions, dim)
        self.LayerNorm = nn.LayerNorm(dim, eps=1e-6)
        self.dropout = nn.Dropout(dropout)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """ids: (B, N) -> (B, N, D), position i for column i."""
        pos = self.position_embeddings.weight[:ids.shape[1]]
        return self.dropout(self.LayerNorm(self.word_embeddings(ids) + pos))


class MlmLayer(nn.Module):
    """Token logits: fc, GELU, LayerNorm, then a product with the (frozen) output embedding."""

    def __init__(self, decoder_dim: int, dim: int, vocab_size: int):
        super().__init__()
        self.fc = nn.Linear(decoder_dim, dim)
        self.gelu = nn.GELU()
        self.ln = nn.LayerNorm(dim)
        self.bias = nn.Parameter(torch.zeros(1, 1, vocab_size))
        self.register_buffer("output_embeddings", torch.zeros(vocab_size, dim))

    def forward(self, x: torch.Tensor, n: int) -> torch.Tensor:
        """x: (B, N, Dd) -> logits over the first ``n`` ids (the codebook): (B, N, n)."""
        h = self.ln(self.gelu(self.fc(x)))
        return h @ self.output_embeddings[:n].T + self.bias[..., :n]


class CodebookUsage:
    """Exponential moving average of how often each code is picked; re-seeds the unused ones."""

    def __init__(self, size: int, decay: float = 0.95, threshold: float = 0.01):
        self.size, self.decay, self.threshold = size, decay, threshold
        self.usage: torch.Tensor | None = None

    @torch.no_grad()
    def update(self, vq, ids: torch.Tensor, latents: torch.Tensor, generator) -> None:
        """ids: codes picked this step; latents: (N, E) encoder outputs to re-seed from."""
        if self.usage is None or self.usage.device != latents.device:
            self.usage = torch.ones(self.size, device=latents.device)
            self._reseed(vq, torch.ones_like(self.usage, dtype=torch.bool), latents, generator)
            return
        counts = torch.bincount(ids.flatten(), minlength=self.size).to(self.usage)
        self.usage.mul_(self.decay).add_(counts, alpha=1 - self.decay)
        dead = self.usage < self.threshold
        if dead.any():
            self._reseed(vq, dead, latents, generator)

    def _reseed(self, vq, which: torch.Tensor, latents: torch.Tensor, generator) -> None:
        rows = torch.randint(0, len(latents), (int(which.sum()),), generator=generator)
        vq.quantize.embedding.weight[which] = latents[rows.to(latents.device)]
        self.usage[which] = 1.0


def reconstruction_loss(vq, x: torch.Tensor, usage: CodebookUsage,
                        generator: torch.Generator | None = None) -> tuple[torch.Tensor, dict]:
    """Tokenizer pre-training loss on images ``x`` in the tokenizer's own range: MSE + commitment."""
    h = vq.encode(x).latents
    if usage.usage is None:  # first step: the whole codebook from this batch, then quantize
        usage.update(vq, None, h.permute(0, 2, 3, 1).reshape(-1, h.shape[1]).detach(), generator)
    quant, commit, (_, _, ids) = vq.quantize(h)
    recon = F.mse_loss(vq.decode(quant, force_not_quantize=True).sample, x)
    usage.update(vq, ids, h.permute(0, 2, 3, 1).reshape(-1, h.shape[1]).detach(), generator)
    return recon + commit, {"recon": recon.item(), "codes_used": int(ids.unique().numel())}


def gumbel(shape, generator: torch.Generator | None, device) -> torch.Tensor:
    """Standard Gumbel noise drawn on ``device`` from ``generator``."""
    u = torch.rand(shape, generator=generator, device=device)
    return -torch.log((-torch.log(u.clamp(1e-20, 1.0))).clamp_min(1e-20))


def remask(logits: torch.Tensor, sampled: torch.Tensor, unknown: torch.Tensor, n0: torch.Tensor,
           ratio: float, choice_temperature: float, generator) -> torch.Tensor:
    """One MaskGIT step's choice of the tokens to mask again -> (B, L) bool.

    logits: (B, L, K); sampled: (B, L) ids just drawn; unknown: (B, L) bool, masked before this
    step; n0: (B,) masked tokens at the start; ratio: (step + 1) / steps. The least confident
    ``floor(n0 cos(pi/2 ratio))`` tokens (at least 1, at most all but one of those still unknown)
    are masked again; confidence is the log-probability of the drawn id plus Gumbel noise scaled
    by ``choice_temperature (1 - ratio)``; known tokens never are.
    """
    dev = generator.device if generator is not None else logits.device
    conf = torch.log_softmax(logits, -1).gather(-1, sampled[..., None])[..., 0]
    noise = gumbel(conf.shape, generator, dev).to(conf.device)
    conf = torch.where(unknown, conf + choice_temperature * (1 - ratio) * noise, math.inf)
    left = unknown.sum(1)
    n_next = torch.floor(n0 * math.cos(math.pi / 2 * ratio)).long()
    n_next = torch.where(left > 0, torch.minimum(left - 1, n_next).clamp(min=1), 0)
    rank = torch.argsort(torch.argsort(conf, dim=1, stable=True), dim=1)
    return rank < n_next[:, None]
