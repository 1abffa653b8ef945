"""What the theory lets one measure on a trained I2I model, image by image."""
from __future__ import annotations

import torch


@torch.no_grad()
def embedding_audit(original, unlearned, images: torch.Tensor, mask_name: str = "centre-8/16",
                    seed: int = 0) -> dict[str, torch.Tensor]:
    """What can be measured honestly on a trained I2I model, per image (no distribution needed).

    images: (N, C, H, W) in [-1, 1]. Returns (N,) tensors:
    'emb_change'   -- mean over elements of (E(T x) - E0(T x))², the paper's L2 on this image;
    'out_change'   -- hidden-region MSE between the unlearned and the original model's outputs;
    'to_noise_before', 'to_noise_after' -- mean over elements of (E0(T x) - m)² and
    (E(T x) - m)², m the mean of E0(T n) over noise images n ~ N(0, I) (the forget target);
    and 'noise_spread' -- (E0(T n) - m)² for N noise images, the target's own spread.
    T is the deterministic corruption of ``mask_name`` (no random token masking).
    """
    from .. import masks
    from ..metrics import hidden_mse
    from ..unlearn import make_noise

    mask = masks.mask_from_name(mask_name, len(images), images.shape[-1]).to(images.dtype)
    noise = make_noise(images, "standard", torch.Generator().manual_seed(seed))
    e0, e1, en = (m.encode(x, mask) for m, x in ((original, images), (unlearned, images),
                                                    (original, noise)))
    target = en.mean(0, keepdim=True)

    def per_image(a, b):
        return ((a - b) ** 2).flatten(1).mean(1).double()

    out = hidden_mse(unlearned.generate(images, mask), original.generate(images, mask), mask)
    return {"emb_change": per_image(e1, e0), "out_change": out.double(),
            "to_noise_before": per_image(e0, target), "to_noise_after": per_image(e1, target),
            "noise_spread": per_image(en, target)}
