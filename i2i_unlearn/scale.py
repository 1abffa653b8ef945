"""The two scales every notebook runs at, behind one call.

- ``tiny``: the shipped 32×32 models and data, on CPU, in minutes (every book build).
- ``paper``: the official checkpoints on ImageNet-1K / Places-365 folders, on a GPU::

      export I2I_UNLEARN_IMAGENET=/data/imagenet   # train/, val/, paper_order.txt
      export I2I_UNLEARN_PLACES=/data/places365
      make book SCALE=paper

A notebook's setup cell calls ``models = use_scale(scale, models)``. At paper scale each official
name (``mae-vit-large``) becomes a checkpoint directory of this package's format, imported once
into the experiment cache, so every function that takes a zoo name or checkpoint directory --
unlearning, ``experiments``, ``tables`` -- runs on it unchanged; the data its manifest names are
read from the folders above, the metrics use Inception and CLIP, and models load on the GPU.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch

from . import zoo
from .data import DATA_ENV, DATASETS, paper_data_root

SCALES = ("tiny", "paper")


def use_scale(scale: str, models, weights: dict | None = None, data: str | None = None,
              device: str | None = None) -> list[str]:
    """Check ``models`` against ``scale`` and make them loadable there. -> zoo names or folders.

    models: tiny -- zoo names or checkpoint folders of the tiny datasets; paper -- official names
    (``zoo.PAPER_MODELS``) or checkpoint folders made at paper scale. weights: {official name:
    local checkpoint file}, for models that cannot be downloaded by a script. data: the paper
    dataset to run on (default each model's own). device: paper scale only (default cuda when
    there is one); it becomes ``$I2I_UNLEARN_DEVICE`` so worker processes use it too.
    """
    if scale not in SCALES:
        raise ValueError(f"scale: expected one of {SCALES}, got {scale!r}")
    models = [str(m) for m in models]
    if scale == "tiny":
        wrong = [m for m in models if m in zoo.PAPER_MODELS
                 or zoo.read_manifest(m)["data"]["dataset"] not in DATASETS]
        if wrong:
            raise ValueError(f"models: {wrong} are paper-scale models; run with scale='paper'")
        return models
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    os.environ[zoo.DEVICE_ENV] = device
    out = []
    for m in models:
        if m in zoo.PAPER_MODELS:
            own = data or zoo.PAPER_MODELS[m]["data"]
            from .experiments import cache_root
            m = str(zoo.import_paper_model(m, cache_root() / "paper_models" / f"{m}-{own}",
                                           (weights or {}).get(m), data=own))
        name = zoo.read_manifest(m)["data"]["dataset"]
        if name not in DATA_ENV:
            raise ValueError(f"models: {m} was made on the tiny dataset {name!r}; at paper scale "
                             f"give an official name {sorted(zoo.PAPER_MODELS)} or a checkpoint "
                             f"folder made on {sorted(DATA_ENV)}")
        if data is not None and name != data:
            raise ValueError(f"models: {m} runs on {name!r}, not on data={data!r}")
        paper_data_root(name)  # fail now, not after an hour of unlearning, if the folders are wrong
        out.append(m)
    return out


def banner_note(scale: str) -> str:
    """Where this scale's numbers come from, for a page's scale banner."""
    if scale == "tiny":
        return "shipped tiny models and data, CPU"
    roots = {n: os.environ.get(env) for n, env in DATA_ENV.items() if os.environ.get(env)}
    where = ", ".join(f"{n} at {Path(r)}" for n, r in roots.items()) or "no data folder set"
    return f"official checkpoints on {where}, device {zoo.default_device()}"
