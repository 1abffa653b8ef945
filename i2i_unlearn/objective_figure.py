"""The paper's objective drawn from the code's own terms, on real images of a real model.

One figure, three rows -- a retain image, a forget image, and the noise whose embedding is the
forget target -- showing what ``encode`` sees (the corruption ``T``), what ``generate`` makes of
it before and after unlearning, and the two loss terms of :func:`i2i_unlearn.unlearn.unlearning_loss`
evaluated for the original encoder and for the unlearned one, on the same corruption draw.
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import torch

from .models.base import I2IModel
from .plots import masked_view, to_numpy_image
from .unlearn import make_noise, unlearning_loss


@torch.no_grad()
def objective_terms(student: I2IModel, teacher: I2IModel, x_f: torch.Tensor, x_r: torch.Tensor,
                    mask: torch.Tensor, alpha: float, seed: int = 0) -> dict[str, float]:
    """The retain and forget terms of the paper's loss for ``student`` against ``teacher``."""
    generator = torch.Generator().manual_seed(seed)
    _, terms = unlearning_loss("ours", student, teacher, x_f, x_r, mask, alpha, "standard", generator)
    return terms


@torch.no_grad()
def forget_target_image(model: I2IModel, x_f: torch.Tensor, x_r: torch.Tensor, mask: torch.Tensor,
                        seed: int = 0) -> torch.Tensor:
    """The image the teacher encodes for the forget target, with the very noise that
    :func:`objective_terms` draws for the same ``seed`` (same order of random draws)."""
    generator = torch.Generator().manual_seed(seed)
    model.sample_corruption(x_r, mask, generator)
    model.sample_corruption(x_f, mask, generator)
    return model.forget_source(x_f, make_noise(x_f, "standard", generator), mask)


def objective_figure(original: I2IModel, unlearned: I2IModel, x_f: torch.Tensor,
                     x_r: torch.Tensor, mask: torch.Tensor, alpha: float, seed: int = 0,
                     scale: str = "tiny"):
    """Draw the objective for one forget image ``x_f`` and one retain image ``x_r``.

    x_f, x_r: (1, C, H, W) in [-1, 1]; mask: (1, 1, H, W), 1 = hidden. Returns the figure.
    """
    before = objective_terms(original, original, x_f, x_r, mask, alpha, seed)
    after = objective_terms(unlearned, original, x_f, x_r, mask, alpha, seed)
    noise_source = forget_target_image(original, x_f, x_r, mask, seed)
    generator = lambda: torch.Generator().manual_seed(seed)  # noqa: E731 -- same draw for both
    rows = {
        "retain image $x_r$": [x_r, masked_view(x_r, mask), original.generate(x_r, mask, generator()),
                               unlearned.generate(x_r, mask, generator())],
        "forget image $x_f$": [x_f, masked_view(x_f, mask), original.generate(x_f, mask, generator()),
                               unlearned.generate(x_f, mask, generator())],
        "noise $n$ (forget target)": [noise_source, masked_view(noise_source, mask), None, None],
    }
    columns = ["image", "$\\mathcal{T}(\\cdot)$: the hole\n(+ own random drops)",
               "generate(),\noriginal $E_0$", "generate(),\nunlearned $E_\\theta$"]
    # sized for the book's text column (about 8 inches at 100 dpi), so text stays legible there
    fig, axes = plt.subplots(3, 5, figsize=(9, 6.8), gridspec_kw={"width_ratios": [1, 1, 1, 1, 2.4]})
    for r, (label, images) in enumerate(rows.items()):
        for c, image in enumerate(images):
            ax = axes[r, c]
            ax.set_xticks([]), ax.set_yticks([])
            if image is None:
                ax.axis("off")
                continue
            ax.imshow(to_numpy_image(image[0]), cmap="gray", vmin=0, vmax=1)
            if r == 0:
                ax.set_title(columns[c], fontsize=10.5)
            if c == 0:
                ax.set_ylabel(label, fontsize=10.5)
        axes[r, 4].axis("off")
    term = "original {:.3g} → unlearned {:.3g}"
    notes = [
        "retain term\n$\\|E_\\theta(\\mathcal{T}(x_r)) - E_0(\\mathcal{T}(x_r))\\|^2$\n"
        + term.format(before["retain"], after["retain"]) + "\nkeeps retain embeddings\nwhere they were",
        "forget term ($\\times\\,\\alpha$ = " + f"{alpha:g})\n"
        "$\\|E_\\theta(\\mathcal{T}(x_f)) - E_0(\\mathcal{T}(n))\\|^2$\n"
        + term.format(before["forget"], after["forget"]) + "\npulls forget embeddings\nto the noise's",
        "the target: the frozen original\nencoder $E_0$ applied to\nforget_source(x_f, n, mask)\n"
        "under the same corruption draw\n(the decoder is never trained)",
    ]
    for r, note in enumerate(notes):
        axes[r, 4].text(0.02, 0.5, note, fontsize=10.5, va="center", linespacing=1.35)
    fig.suptitle(f"The paper's objective on one forget and one retain image, {original.family} "
                 f"model ({scale} scale)", fontsize=12)
    fig.tight_layout()
    return fig
