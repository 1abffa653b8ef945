"""Train a model from scratch: the tiny zoo, and the retrained-from-scratch reference.

The same recipe with ``exclude_classes`` set to the forget classes gives the model that never saw
them, the gold standard unlearning is compared against.
"""
from __future__ import annotations

from dataclasses import asdict, replace

import torch

from . import masks
from .data import load_dataset, sample_rows
from .evaluate import inpaint
from .loop import LoopConfig, train
from .metrics import hidden_mse, mean_fill
from .models.base import I2IModel

PRESETS = {"mae": "mae-tiny", "diffusion": "diffusion-tiny", "vqgan": "vqgan-tiny"}


def build_untrained(family: str, channels: int, seed: int, preset: str | None = None,
                    mask_ratio: tuple[float, float] | None = None) -> I2IModel:
    """A freshly initialised model; ``mask_ratio`` overrides the preset's random-drop range."""
    if family not in PRESETS:
        raise ValueError(f"model: expected one of {sorted(PRESETS)}, got {family!r}")
    if mask_ratio is not None and family != "mae":
        raise ValueError(f"mask_ratio (--mask-ratio): only the MAE family drops patches, not {family!r}")
    torch.manual_seed(seed)  # initial weights
    if family == "diffusion":
        from .models.diffusion import build_diffusion
        return build_diffusion(preset or PRESETS[family], in_chans=channels)
    if family == "vqgan":
        from .models.vqgan import build_vqgan
        return build_vqgan(preset or PRESETS[family], in_chans=channels)
    from .models.mae import build_mae
    overrides = {} if mask_ratio is None else {"train_mask_ratio": tuple(mask_ratio)}
    return build_mae(preset or PRESETS[family], in_chans=channels, **overrides)


def pretrain(family: str, data: str, exclude_classes=(), loop: LoopConfig | None = None,
             batch_size: int = 128, preset: str | None = None,
             mask_ratio: tuple[float, float] | None = None, weights_dtype: str = "float32",
             progress: bool = True):
    """Train ``family`` on every training image of ``data`` except ``exclude_classes``.

    weights_dtype: "float16" rounds the trained weights to float16 (before the held-out metrics
    are measured, so they describe the stored file), which halves the checkpoint; ``zoo.save``
    then stores them as float16 and ``zoo.load`` casts them back to float32.
    Returns (model, manifest-ready dict with the recipe and held-out metrics).
    """
    if weights_dtype not in WEIGHT_DTYPES:
        raise ValueError(f"weights_dtype (--weights-dtype): expected one of {WEIGHT_DTYPES}, "
                         f"got {weights_dtype!r}")
    loop = loop or default_loop()
    if mask_ratio is not None and not (len(mask_ratio) == 2 and 0 <= mask_ratio[0] <= mask_ratio[1] < 1):
        raise ValueError(f"mask_ratio (--mask-ratio): expected LO HI with 0 <= LO <= HI < 1, "
                         f"got {mask_ratio}")
    dataset = load_dataset(data)
    keep = [c for c in range(dataset.num_classes) if c not in set(exclude_classes)]
    unknown = set(exclude_classes) - set(range(dataset.num_classes))
    if unknown or not keep:
        raise ValueError(f"exclude_classes: expected ids in 0..{dataset.num_classes - 1} leaving at "
                         f"least one class, got {sorted(exclude_classes)}")
    images, _ = dataset.images(keep, split="train")
    model = build_untrained(family, dataset.channels, loop.seed, preset, mask_ratio)
    stages = _stages(model, loop)
    history = fit(model, images, loop, batch_size, progress=progress)
    if weights_dtype != "float32":
        round_weights(model, weights_dtype)
    info = {
        "recipe": {"command": "pretrain", "family": family, "preset": preset or PRESETS[family],
                   "batch_size": batch_size, "exclude_classes": sorted(exclude_classes),
                   "weights_dtype": weights_dtype,
                   "mask_ratio": list(getattr(model.config, "train_mask_ratio", ())) or None,
                   "loop": asdict(loop),
                   **({"stages": {name: s.steps for name, _, s, _ in stages}}
                      if len(stages) > 1 else {})},
        "data": {"dataset": data, "classes": keep, "train_images": len(images)},
        "metrics": heldout_metrics(model, data),
        "history": history,
    }
    return model, info


def default_loop() -> LoopConfig:
    """The pre-training loop when none is given (the zoo's manifests record their own)."""
    return LoopConfig(steps=3000, lr=1.5e-3, warmup_steps=100, weight_decay=0.05)


def fit(model: I2IModel, images: torch.Tensor, loop: LoopConfig | None = None,
        batch_size: int = 128, progress: bool = True) -> list[dict]:
    """Train ``model`` in place on ``images`` with its own ``task_loss`` and random training masks.

    images: (N, C, H, W) in [-1, 1]. Any ``I2IModel`` works (your own too): each step draws a
    seeded batch, one random box shared by the batch and the model's own corruption. A model with
    a ``pretraining_stages()`` hook trains stage by stage (VQ-GAN: tokenizer, then transformer).
    Returns the logged rows; the model is left in eval mode.
    """
    loop = loop or default_loop()
    model.check_inputs(images[:1])
    history, stages = [], _stages(model, loop)
    for name, params, stage_loop, loss_fn in stages:
        def step_fn(step: int, generator: torch.Generator, loss_fn=loss_fn):
            x = images[sample_rows(len(images), batch_size, loop.seed, step)]
            x = x.to(next(model.parameters()).device)
            mask = masks.training_masks(len(x), x.shape[-1], generator).to(x.device)
            return loss_fn(x, mask, generator)

        chosen = {id(p) for p in params}
        for p in model.parameters():  # only this stage's parameters train
            p.requires_grad_(id(p) in chosen)
        rows = train(model, params, step_fn, stage_loop, progress=progress,
                     desc=f"pre-training {model.family}" + (f" ({name})" if len(stages) > 1 else ""))
        history += [{"stage": name, **r} for r in rows] if len(stages) > 1 else rows
    model.eval()
    return history


WEIGHT_DTYPES = ("float32", "float16")


@torch.no_grad()
def round_weights(model: I2IModel, dtype: str) -> I2IModel:
    """Round every floating-point weight and buffer of ``model`` to ``dtype`` in place (they stay
    float32 tensors): the model then computes exactly what its ``dtype`` file will load as."""
    for tensor in model.state_dict().values():
        if tensor.is_floating_point():
            tensor.copy_(tensor.to(getattr(torch, dtype)))
    return model


def _stages(model: I2IModel, loop: LoopConfig) -> list[tuple]:
    """(name, parameters, loop, loss(x, mask, generator)) of each pre-training stage.

    One stage (the model's task loss on its trainable parameters) unless the model has a
    ``pretraining_stages()`` hook returning (name, share of the steps, parameters, loss), as the
    VQ-GAN family does (tokenizer, then transformer); ``loop.steps`` is split by the shares.
    """
    hook = getattr(model, "pretraining_stages", None)
    if hook is None:
        def loss(x, mask, generator):
            return model.task_loss(x, mask, model.sample_corruption(x, mask, generator)), {}
        return [("model", [p for p in model.parameters() if p.requires_grad], loop, loss)]
    stages, left = [], loop.steps
    for i, (name, share, params, loss) in enumerate(spec := hook()):
        steps = left if i == len(spec) - 1 else max(1, round(loop.steps * share))
        if steps < 1:
            raise ValueError(f"steps: {loop.steps} is too few for the {len(spec)} pre-training "
                             f"stages of this model")
        left -= steps
        stages.append((name, params, replace(loop, steps=steps, warmup_steps=min(
            loop.warmup_steps, steps // 10)), loss))
    return stages


def heldout_metrics(model: I2IModel, data: str, mask_name: str = "centre-8/16",
                    classes=None) -> dict:
    """Hidden-region MSE on the held-out images (of ``classes``; default all), next to filling
    the hole with the visible mean."""
    dataset = load_dataset(data)
    images = dataset.eval_images if classes is None else dataset.images(classes, split="eval")[0]
    generated, mask = inpaint(model, images, mask_name)
    return {"mask": mask_name,
            "eval_mse": hidden_mse(generated, images, mask).mean().item(),
            "mean_fill_mse": hidden_mse(mean_fill(images, mask), images, mask).mean().item()}
