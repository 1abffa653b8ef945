"""Check that a model fills the I2I contract before a long unlearning run trusts it.

The unlearning loop (``i2i_unlearn.unlearn``) assumes more than the five methods' signatures: a
teacher and a student are deep copies; the student trains in ``train()`` mode against a teacher in
``eval()`` mode; both see the *same* corruption, so ``sample_corruption`` must draw from the
generator it is given; only the encoder's parameters train; ``generate`` keeps the visible pixels
(the metrics score the hole only). A model that breaks one of these still runs -- and gives
numbers that mean nothing. :func:`check_contract` runs each assumption on a small batch and says
which one fails, naming the method, before any compute is spent::

    from i2i_unlearn.models.contract import check_contract
    check_contract(my_model)            # a table of checks; raises ContractError on a failure
"""
from __future__ import annotations

import copy
import json
import warnings
from typing import Callable

import pandas as pd
import torch
from torch import nn

from .. import masks
from .base import Embedding, I2IModel, embedding_mse

OK, WARN, FAIL = "ok", "warn", "fail"


class ContractError(ValueError):
    """A model breaks the I2I contract; the message lists each failed check and its method."""


def _maps(e: Embedding) -> tuple[torch.Tensor, ...]:
    return (e,) if isinstance(e, torch.Tensor) else tuple(e)


def _max_diff(a: Embedding, b: Embedding) -> float:
    """The largest element-wise gap; inf where the maps' count or shapes differ."""
    ma, mb = _maps(a), _maps(b)
    if len(ma) != len(mb) or any(u.shape != v.shape for u, v in zip(ma, mb)):
        return float("inf")
    return max(float((u - v).abs().max()) for u, v in zip(ma, mb))


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def check_contract(model: I2IModel, x: torch.Tensor | None = None, mask: torch.Tensor | None = None,
                   seed: int = 0, atol: float = 1e-5, raise_on_failure: bool = True) -> pd.DataFrame:
    """Run every assumption the unlearning loop makes about ``model`` on one small batch.

    x: (B, C, H, W) in [-1, 1], default 4 seeded random images of ``model.image_shape``; use real
    images where the model behaves differently on them (they are moved to the model's device).
    mask: (B, 1, H, W), default the centre 8/16 box. ``atol``: tolerance of the equality checks.

    Returns a table (check, method, status, detail) with status ``ok``, ``warn`` (the loop runs,
    but read the detail; issued as a ``UserWarning`` unless the check raises) or ``fail``. Raises
    :class:`ContractError` listing the failures unless ``raise_on_failure`` is False. The model
    is left as it was: weights, buffers (batch-norm statistics), mode, and the global RNG state.
    """
    if not isinstance(model, I2IModel):
        raise ContractError(f"model: expected an i2i_unlearn.models.base.I2IModel subclass, got "
                            f"{type(model).__name__}")
    rows: list[dict] = []

    def check(name: str, method: str, fn: Callable[[], tuple[str, str]]) -> bool:
        try:
            status, detail = fn()
        except Exception as err:  # a crash is a failed check, reported with its message
            status, detail = FAIL, f"raised {type(err).__name__}: {err}"
        rows.append({"check": name, "method": method, "status": status, "detail": detail})
        return status != FAIL

    was_training = model.training
    saved = {k: v.detach().clone() for k, v in model.state_dict().items()}
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    try:
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            _run_checks(model, x, mask, seed, atol, check, device)
    finally:
        model.load_state_dict(saved)
        model.train(was_training)
        model.zero_grad(set_to_none=True)
    table = pd.DataFrame(rows, columns=["check", "method", "status", "detail"])
    failed = table[table["status"] == FAIL]
    if raise_on_failure and len(failed):
        lines = "\n".join(f"  {r.method}: {r.check}\n      {r.detail}" for r in failed.itertuples())
        raise ContractError(f"model: {type(model).__name__} breaks the I2I contract in "
                            f"{len(failed)} of {len(table)} checks:\n{lines}")
    for r in table[table["status"] == WARN].itertuples():
        warnings.warn(f"check_contract: {type(model).__name__}.{r.method}: {r.detail}", stacklevel=2)
    return table


def _run_checks(model, x, mask, seed, atol, check, device) -> None:
    check("names its family, and its config rebuilds it (zoo.save / zoo.load)", "config",
          lambda: _config_round_trip(model))
    batch = {}

    def images() -> tuple[str, str]:
        xs = x if x is not None else torch.rand(4, *model.image_shape, generator=_generator(seed)) * 2 - 1
        dtype = next(model.parameters()).dtype
        batch["x"] = xs = xs.to(device, dtype)
        batch["mask"] = m = (mask if mask is not None
                             else masks.centre_box(len(xs), xs.shape[-1], 0.5)).to(device, dtype)
        model.check_inputs(xs, m)
        return OK, f"x {tuple(xs.shape)}, mask {tuple(m.shape)}, on {device}"

    if not check("accepts the images (check_inputs, image_shape)", "check_inputs", images):
        return  # nothing else can run on images the model rejects
    x, mask = batch["x"], batch["mask"]
    if not check("is a sub-module holding some, not all, of the parameters", "encoder",
                 lambda: _encoder_is_a_part(model)):
        return  # every later check trains or reads the encoder
    check("copies into teacher and student (copy.deepcopy)", "deepcopy",
          lambda: (copy.deepcopy(model), (OK, "the loop trains a copy against a frozen copy"))[1])
    model.eval()
    if not check("returns a tensor or a tuple of tensors, one row per image, finite", "encode",
                 lambda: _embedding_shape(model.encode(x, mask, model.sample_corruption(
                     x, mask, _generator(seed))), len(x))):
        return
    for name, method, fn in _BATCH_CHECKS:
        check(name, method, lambda fn=fn: fn(model, x, mask, seed, atol))


def _without_corruption(model, x, mask, seed, atol) -> tuple[str, str]:
    return _embedding_shape(model.encode(x, mask), len(x))


def _config_round_trip(model) -> tuple[str, str]:
    if model.family == I2IModel.family:
        return FAIL, "set a class attribute `family` (zoo.save writes it, zoo.load reads it)"
    saved = json.loads(json.dumps(model.config_dict()))  # as a manifest stores it
    rebuilt = type(model)(type(model.config)(**saved))
    shapes = lambda m: {k: tuple(v.shape) for k, v in m.state_dict().items()}
    if shapes(model) != shapes(rebuilt):
        return FAIL, "type(model)(config) builds a model with other parameters than this one"
    from ..zoo import _families
    registered = _families().get(model.family, (None, None))[1]
    if registered is None:
        return WARN, (f"family {model.family!r} is not registered: call zoo.register_family("
                      f"{model.family!r}, {type(model.config).__name__}, {type(model).__name__}) "
                      "before zoo.load reads a checkpoint of it")
    if registered is not type(model):
        return WARN, (f"family {model.family!r} belongs to {registered.__name__}: zoo.load would "
                      f"rebuild that class, not {type(model).__name__}; give yours its own `family`")
    return OK, f"family {model.family!r}; {type(model.config).__name__} round-trips through JSON"


def _encoder_is_a_part(model) -> tuple[str, str]:
    encoder = model.encoder
    if not isinstance(encoder, nn.Module):
        return FAIL, f"expected an nn.Module, got {type(encoder).__name__}"
    own = {id(p) for p in model.parameters()}
    enc = [p for p in encoder.parameters()]
    outside = [p for p in enc if id(p) not in own]
    if outside:
        return FAIL, f"{len(outside)} of its parameter tensors are not the model's own"
    if not any(p.requires_grad for p in enc):
        return FAIL, "no trainable parameter: the paper's method would have nothing to change"
    n_enc, n_all = sum(p.numel() for p in enc), sum(p.numel() for p in model.parameters())
    if n_enc == n_all:
        return FAIL, ("holds every parameter: the paper's method keeps a decoder frozen, so the "
                      "encoder must be a part of the model")
    return OK, f"{n_enc:,} of {n_all:,} parameters ({n_enc / n_all:.0%})"


def _embedding_shape(e, batch: int) -> tuple[str, str]:
    maps = _maps(e)
    if not maps or not all(isinstance(m, torch.Tensor) for m in maps):
        return FAIL, f"expected a tensor or a tuple of tensors, got {type(e).__name__}"
    bad = [tuple(m.shape) for m in maps if m.ndim == 0 or m.shape[0] != batch]
    if bad:
        return FAIL, f"expected {batch} rows (the batch) in every map, got shapes {bad}"
    if not all(torch.isfinite(m).all() for m in maps):
        return FAIL, "not finite (NaN or inf)"
    return OK, ", ".join(str(tuple(m.shape)) for m in maps[:4]) + (
        f" … ({len(maps)} maps)" if len(maps) > 4 else "")


@torch.no_grad()
def _same_seed_same_embedding(model, x, mask, seed, atol) -> tuple[str, str]:
    a = model.encode(x, mask, model.sample_corruption(x, mask, _generator(seed)))
    b = model.encode(x, mask, model.sample_corruption(x, mask, _generator(seed)))
    diff = _max_diff(a, b)
    if diff > atol:
        return FAIL, (f"differ by {diff:.3g}: draw every random number from `generator` (not "
                      "the global RNG), or student and teacher see different corruptions")
    c = model.encode(x, mask, model.sample_corruption(x, mask, _generator(seed + 1)))
    if _max_diff(a, c) <= atol:
        return OK, "deterministic: another seed gives the same embedding (no own randomness)"
    return OK, "equal for equal seeds, different for another seed"


@torch.no_grad()
def _repeatable(model, x, mask, seed, atol) -> tuple[str, str]:
    corruption = model.sample_corruption(x, mask, _generator(seed))
    diff = _max_diff(model.encode(x, mask, corruption), model.encode(x, mask, corruption))
    if diff > atol:
        return FAIL, f"two calls differ by {diff:.3g} in eval() mode (hidden randomness?)"
    return OK, "equal"


@torch.no_grad()
def _train_eval_agree(model, x, mask, seed, atol) -> tuple[str, str]:
    corruption = model.sample_corruption(x, mask, _generator(seed))
    model.train()
    trained = model.encode(x, mask, corruption)
    model.eval()
    diff = _max_diff(trained, model.encode(x, mask, corruption))
    if diff > atol:
        return WARN, (f"differ by {diff:.3g} (dropout, batch-norm statistics, or randomness "
                      "outside sample_corruption?): the student trains in train() mode, so its "
                      "retain term is not zero even before the first step; with dropout (as "
                      "Palette's) that is noise, with a corruption drawn outside "
                      "sample_corruption the student and teacher see different inputs")
    return OK, "equal"


def _gradient_reaches_encoder(model, x, mask, seed, atol) -> tuple[str, str]:
    model.zero_grad(set_to_none=True)
    e = model.encode(x, mask, model.sample_corruption(x, mask, _generator(seed)))
    sum(m.float().pow(2).mean() for m in _maps(e)).backward()
    enc = {id(p) for p in model.encoder.parameters()}
    reached = [p for p in model.encoder.parameters() if p.grad is not None and p.grad.abs().sum() > 0]
    others = [n for n, p in model.named_parameters()
              if id(p) not in enc and p.grad is not None and p.grad.abs().sum() > 0]
    model.zero_grad(set_to_none=True)
    if not reached:
        return FAIL, "no encoder parameter gets a gradient from the embedding"
    if others:
        return WARN, (f"parameters outside the encoder shape the embedding too and stay frozen: "
                      f"{others[:3]}{' …' if len(others) > 3 else ''}")
    return OK, f"{len(reached)} of {len(enc)} encoder parameter tensors get a gradient"


def _task_loss(model, x, mask, seed, atol) -> tuple[str, str]:
    corruption = model.sample_corruption(x, mask, _generator(seed))
    torch.manual_seed(seed)  # the same global draws for each call (the caller's state is restored)
    loss = model.task_loss(x, mask, corruption)
    if not isinstance(loss, torch.Tensor) or loss.ndim != 0:
        return FAIL, f"expected a scalar tensor, got {getattr(loss, 'shape', type(loss).__name__)}"
    if not torch.isfinite(loss):
        return FAIL, f"not finite: {loss.item()}"
    if not loss.requires_grad:
        return FAIL, "does not require grad: nothing could train on it"
    torch.manual_seed(seed)
    with_target = model.task_loss(x, mask, corruption, target=x.clone())
    value, value_t = loss.item(), with_target.item()
    if abs(value_t - value) > atol * max(1.0, abs(value)):
        return FAIL, (f"target=x gives {value_t:.6g}, without target {value:.6g}: "
                      "`target` must only replace what the hidden region is compared with")
    torch.manual_seed(seed)
    noise = torch.randn(x.shape, generator=_generator(seed + 1)).to(x.device, x.dtype)
    with_noise = model.task_loss(x, mask, corruption, target=noise).item()
    if abs(with_noise - value) <= atol * max(1.0, abs(value)):
        return FAIL, ("target=noise gives the same loss as target=x: `target` is ignored, so "
                      "Noisy Label and Retain Label would train on the forget images themselves")
    return OK, f"{value:.4g} (target=noise: {with_noise:.4g})"


def _generate(model, x, mask, seed, atol) -> tuple[str, str]:
    out = model.generate(x, mask, _generator(seed))
    if not isinstance(out, torch.Tensor) or out.shape != x.shape:
        return FAIL, f"expected shape {tuple(x.shape)}, got {getattr(out, 'shape', type(out))}"
    if not torch.isfinite(out).all():
        return FAIL, "not finite (NaN or inf)"
    visible = (mask < 0.5).expand_as(x)
    moved = float((out - x)[visible].abs().max()) if visible.any() else 0.0
    if moved > atol:
        return FAIL, (f"changes visible pixels by up to {moved:.3g}: paste them back "
                      "(x * (1 - mask) + generated * mask); FID, IS, the embedding cosine and "
                      "the classifier score whole images, which may differ from x only in the hole")
    again = float((model.generate(x, mask, _generator(seed)) - out).abs().max())
    if again > atol:
        return FAIL, f"the same seed gives outputs {again:.3g} apart: draw from `generator`"
    low, high = float(out.min()), float(out.max())
    if low < -1 - atol or high > 1 + atol:
        return WARN, f"values in [{low:.3g}, {high:.3g}], outside the images' [-1, 1]"
    return OK, "visible pixels unchanged; same seed, same output"


@torch.no_grad()
def _generate_reads_encoder(model, x, mask, seed, atol) -> tuple[str, str]:
    changed = copy.deepcopy(model)
    g = _generator(seed + 2)
    for p in changed.encoder.parameters():
        p.add_(torch.randn(p.shape, generator=g).to(p.device, p.dtype) * (p.std() if p.numel() > 1
                                                                        else p.abs()).clamp_min(0.1))
    hole = (mask > 0.5).expand_as(x)
    diff = float((changed.generate(x, mask, _generator(seed)) - model.generate(x, mask, _generator(seed)))
                 [hole].abs().max()) if hole.any() else 0.0
    if diff <= atol:
        return FAIL, ("perturbing the encoder's weights changes nothing generate returns: "
                      "unlearning the encoder would change nothing that is scored")
    return OK, f"the hole moves by up to {diff:.3g}"


@torch.no_grad()
def _forget_source(model, x, mask, seed, atol) -> tuple[str, str]:
    noise = torch.randn(x.shape, generator=_generator(seed)).to(x.device)
    source = model.forget_source(x, noise, mask)
    if not isinstance(source, torch.Tensor) or source.shape != x.shape:
        return FAIL, f"expected shape {tuple(x.shape)}, got {getattr(source, 'shape', type(source))}"
    return OK, "the noise image" if torch.equal(source, noise) else "noise with the image's visible pixels"


def _one_step(model, x, mask, seed, atol) -> tuple[str, str]:
    from ..unlearn import teacher_and_student, unlearning_loss
    teacher, student, params = teacher_and_student(model, "ours")
    student.train()
    half = max(1, len(x) // 2)
    x_f, x_r = x[:half], x[half:2 * half] if len(x) >= 2 else x[:half]
    torch.manual_seed(seed)
    loss, logs = unlearning_loss("ours", student, teacher, x_f, x_r, mask[:half], alpha=1.0,
                                 noise="standard", generator=_generator(seed))
    if not torch.isfinite(loss):
        return FAIL, f"loss is {loss.item()}"
    loss.backward()
    if not any(p.grad is not None and p.grad.abs().sum() > 0 for p in params):
        return FAIL, "the loss gives the encoder no gradient"
    student.eval()
    with torch.no_grad():
        start_gap = embedding_mse(student.encode(x_r, mask[:half]),
                                  teacher.encode(x_r, mask[:half])).item()
    detail = f"retain {logs['retain']:.3g}, forget {logs['forget']:.3g}"
    if logs["retain"] > max(atol, 1e-3 * logs["forget"]) or start_gap > atol:
        return WARN, detail + (" -- the retain term is not 0 before training: the student "
                               "differs from the teacher (see the train/eval check)")
    return OK, detail


# The checks run on the batch once the model has accepted it and its encoder is sound:
# (what is checked, the contract method it concerns, check(model, x, mask, seed, atol)).
_BATCH_CHECKS = [
    ("works without a corruption (generate, the audit and the figures call it so)", "encode",
     _without_corruption),
    ("draws only from the generator it is given (same seed, same embedding)", "sample_corruption",
     _same_seed_same_embedding),
    ("is a function of (x, mask, corruption): two calls agree", "encode", _repeatable),
    ("gives the same embedding in train() and eval() mode (student vs teacher)", "encode",
     _train_eval_agree),
    ("depends on the encoder's parameters (gradients reach them)", "encode",
     _gradient_reaches_encoder),
    ("is a finite scalar with gradients; target=x gives the same loss, noise another",
     "task_loss", _task_loss),
    ("returns x's shape, keeps the visible pixels, repeats under a seed", "generate", _generate),
    ("reads the encoder: changing the encoder changes the hole", "generate",
     _generate_reads_encoder),
    ("returns an image shaped like x (the forget term's input)", "forget_source", _forget_source),
    ("one step of the paper's objective: retain term 0 at the start, finite loss",
     "unlearning_loss", _one_step),
]
