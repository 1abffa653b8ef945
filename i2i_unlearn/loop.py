"""One training loop for pre-training and every unlearning method.

Hugging Face Accelerate places the model (one CPU process in CI, one GPU in Colab, several under
``accelerate launch``); AdamW with linear warm-up then cosine decay and gradient clipping.

Randomness is a pure function of ``(seed, step)``: each step gets its own ``torch.Generator``, and
batches are drawn by stateless samplers. A run killed and resumed from a checkpoint therefore
gives bit-identical weights to an uninterrupted one: the checkpoint only needs the weights, the
optimiser, the scheduler and the step.
"""
from __future__ import annotations

import json
import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from accelerate import Accelerator
from safetensors.torch import load_file, save_file
from torch import nn
from tqdm.auto import tqdm


@dataclass
class LoopConfig:
    steps: int = 300
    lr: float = 1e-3
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.95)
    warmup_steps: int = 20
    grad_clip: float = 3.0
    seed: int = 0
    checkpoint_every: int = 0  # 0: no intermediate checkpoints
    log_every: int = 10

    def __post_init__(self):
        for name in ("steps", "warmup_steps", "checkpoint_every", "log_every"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}: expected a non-negative integer, got {getattr(self, name)}")
        if self.steps < 1:
            raise ValueError(f"steps: expected at least 1, got {self.steps}")
        if self.lr <= 0:
            raise ValueError(f"lr: expected a positive learning rate, got {self.lr}")


def step_generator(seed: int, step: int, rank: int = 0) -> torch.Generator:
    """The generator of one step: independent of what ran before, so resuming is exact.
    ``rank``: the process under data parallelism (its masks and noise differ from the others')."""
    return torch.Generator().manual_seed(seed * 1_000_003 + step + rank * 7_919_000_003)


def warmup_cosine(warmup: int, total: int) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    return factor


StepFn = Callable[[int, torch.Generator], tuple[torch.Tensor, dict]]


def train(model: nn.Module, params: list[nn.Parameter], step_fn: StepFn, config: LoopConfig,
          checkpoint_dir: str | Path | None = None, resume: bool = False,
          desc: str = "training", progress: bool = True) -> list[dict]:
    """Run ``config.steps`` optimiser steps of ``step_fn(step, generator) -> (loss, logs)``.

    Only ``params`` are optimised. Checkpoints (every ``checkpoint_every`` steps) go to
    ``checkpoint_dir`` and are replaced atomically; with ``resume=True`` the loop continues from
    the last one. Returns the logged rows (plain dicts: step, loss, lr and the step's own logs).
    Raises ``FloatingPointError`` on a NaN or infinite loss, naming the step.
    """
    params = [p for p in params if p.requires_grad]
    if not params:
        raise ValueError("params: nothing to train (no parameter requires grad)")
    accelerator = Accelerator()
    optimizer = torch.optim.AdamW(params, lr=config.lr, betas=tuple(config.betas),
                                  weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, warmup_cosine(config.warmup_steps, config.steps))
    model, optimizer = accelerator.prepare(model, optimizer)

    start, history = 0, []
    ckpt = Path(checkpoint_dir) if checkpoint_dir else None
    if resume and ckpt is not None and (ckpt / "state.json").exists():
        start, history = _load_checkpoint(ckpt, accelerator.unwrap_model(model), optimizer, scheduler)
    model.train()
    bar = tqdm(range(start, config.steps), desc=desc, disable=not progress,
               initial=start, total=config.steps)
    for step in bar:
        loss, logs = step_fn(step, step_generator(config.seed, step, accelerator.process_index))
        if not torch.isfinite(loss):
            raise FloatingPointError(f"loss is {loss.item()} at step {step}; lower the learning "
                                     f"rate or alpha (last finite checkpoint kept in {ckpt})")
        optimizer.zero_grad(set_to_none=True)
        accelerator.backward(loss)
        if accelerator.num_processes > 1:  # step_fn calls the model itself, not DDP's wrapper,
            for p in params:               # so average the gradients of the shards explicitly
                if p.grad is not None:
                    p.grad = accelerator.reduce(p.grad, reduction="mean")
        if config.grad_clip > 0:
            accelerator.clip_grad_norm_(params, config.grad_clip)
        optimizer.step()
        scheduler.step()
        if step % max(1, config.log_every) == 0 or step == config.steps - 1:
            row = {"step": step, "loss": loss.item(), "lr": scheduler.get_last_lr()[0],
                   **{k: float(v) for k, v in logs.items()}}
            history.append(row)
            bar.set_postfix(loss=f"{row['loss']:.4f}")
        done = step + 1
        if ckpt is not None and config.checkpoint_every and done % config.checkpoint_every == 0 \
                and done < config.steps and accelerator.is_main_process:
            _save_checkpoint(ckpt, accelerator.unwrap_model(model), optimizer, scheduler, done, history)
    return history


def _save_checkpoint(path: Path, model, optimizer, scheduler, step: int, history: list) -> None:
    tmp = path.with_name(path.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, tmp / "model.safetensors")
    torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()},
               tmp / "optimizer.pt")
    (tmp / "state.json").write_text(json.dumps({"step": step, "history": history}))
    old = path.with_name(path.name + ".old")
    if path.exists():
        os.replace(path, old)
    os.replace(tmp, path)
    shutil.rmtree(old, ignore_errors=True)


def _load_checkpoint(path: Path, model, optimizer, scheduler) -> tuple[int, list]:
    model.load_state_dict(load_file(path / "model.safetensors"))
    states = torch.load(path / "optimizer.pt", map_location="cpu", weights_only=True)
    optimizer.load_state_dict(states["optimizer"])
    scheduler.load_state_dict(states["scheduler"])
    state = json.loads((path / "state.json").read_text())
    return state["step"], state["history"]
