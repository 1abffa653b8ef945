"""Experiments computed once and shared: unlearned models, retrained references, result tables.

Several notebooks need the same unlearned model or metric table (Table 1 and the qualitative
figure use the same ``ours`` run). Each is stored under the cache folder, keyed by a hash of its
full configuration -- including the sha256 of the model it started from -- so a build runs each
experiment once and a changed setting can never return a stale result.

The cache folder is ``$I2I_UNLEARN_CACHE`` (``tools/build_book.py`` points it into ``_build/``),
else ``~/.cache/i2i_unlearn/experiments``. Entries are written to a temporary name and renamed
when complete, so an interrupted run leaves nothing that looks finished.
"""
from __future__ import annotations

import hashlib
import inspect
import json
import os
import shutil
from pathlib import Path
from typing import Callable

import pandas as pd

from . import unlearn, zoo
from .data import dataset_of, make_split
from .models.base import I2IModel

CACHE_ENV = "I2I_UNLEARN_CACHE"
# Arguments of ``unlearn_classes`` that say where or how to run, not what to compute.
_NOT_SETTINGS = {"model", "forget", "method", "out_dir", "resume", "checkpoint_every", "progress"}
_UNLEARN_DEFAULTS = {name: p.default for name, p in
                     inspect.signature(unlearn.unlearn_classes).parameters.items()
                     if name not in _NOT_SETTINGS and p.default is not inspect.Parameter.empty}


def cache_root() -> Path:
    env = os.environ.get(CACHE_ENV)
    return Path(env) if env else Path.home() / ".cache" / "i2i_unlearn" / "experiments"


def config_key(config: dict) -> str:
    """A short stable hash of a JSON-serialisable configuration."""
    text = json.dumps(config, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _entry(kind: str, config: dict) -> Path:
    return cache_root() / kind / config_key(config)


def _publish(tmp: Path, final: Path) -> Path:
    """Move a completed ``tmp`` folder to ``final`` (a concurrent twin may have won the race)."""
    try:
        os.replace(tmp, final)
    except OSError:  # final exists and is not empty: identical work finished first
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def unlearned(model: str, forget, method: str = "ours", **options) -> I2IModel:
    """``unlearn_classes(model, forget, method=method, **options)``, run once per configuration.

    ``model`` is a zoo name or checkpoint directory; ``options`` are those of
    :func:`i2i_unlearn.unlearn.unlearn_classes` (``retain``, ``retain_set``, ``alpha``, ``steps``,
    ``seed``, ``noise``, ``lr``, ``batch_size``). Returns the loaded unlearned model, whose
    ``manifest`` holds the recipe and held-out scores.
    """
    from .unlearn import unlearn_classes
    options.pop("progress", None)
    # The key holds every setting, defaults filled in, so equal runs share one entry however
    # they were spelled (retain_set="retain" given or not, retain=None or left out).
    defaults = _UNLEARN_DEFAULTS
    unknown = set(options) - set(defaults)
    if unknown:
        raise ValueError(f"options: unknown unlearning settings {sorted(unknown)}; "
                         f"valid: {sorted(defaults)}")
    manifest = zoo.read_manifest(model)
    settings = {**defaults, **options}
    # ... and the family's defaults and the default retain classes resolved, so alpha=None and
    # alpha=0.25 (the MAE default) are one run, as are retain=None and retain=[3, 4, 5].
    settings.update(unlearn.resolve_defaults(
        manifest["family"], *(settings.get(k) for k in ("alpha", "steps", "lr", "batch_size"))))
    data = dataset_of(manifest)
    settings["retain"] = list(make_split(data.num_classes, forget, settings.get("retain"),
                                         dataset=data.name).retain)
    config = {"parent_sha256": manifest["sha256"], "forget": sorted(forget), **settings,
              "method": method}
    final = _entry("unlearned", config)
    if not (final / zoo.MANIFEST).exists():
        tmp = final.with_name(final.name + f".tmp{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        unlearn_classes(model, forget, method=method, out_dir=tmp, checkpoint_every=0,
                        progress=False, **settings)
        (tmp / "experiment.json").write_text(json.dumps(config, indent=2, default=str) + "\n")
        _publish(tmp, final)
    return zoo.load(final)


def retrained(model: str, forget) -> I2IModel:
    """The reference that never saw ``forget``: ``model``'s own pre-training recipe with those
    classes excluded. A zoo entry made by exactly that recipe is used when it ships; otherwise
    the model is trained here (minutes on CPU for the tiny presets) and cached."""
    from .loop import LoopConfig
    from .pretrain import pretrain
    wanted, data = _retraining_recipe(model, forget)
    shipped = shipped_retrained(model, forget)
    if shipped is not None:
        return zoo.load(shipped)
    config = {"recipe": wanted, "data": data}
    final = _entry("retrained", config)
    if not (final / zoo.MANIFEST).exists():
        loop = dict(wanted["loop"])
        loop["betas"] = tuple(loop["betas"])
        mask_ratio = wanted.get("mask_ratio")
        net, info = pretrain(wanted["family"], data, wanted["exclude_classes"], LoopConfig(**loop),
                             batch_size=wanted["batch_size"], preset=wanted["preset"],
                             mask_ratio=tuple(mask_ratio) if mask_ratio else None,
                             weights_dtype=wanted["weights_dtype"], progress=True)
        tmp = final.with_name(final.name + f".tmp{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        zoo.save(net, tmp, info)
        _publish(tmp, final)
    return zoo.load(final)


def shipped_retrained(model: str, forget) -> str | None:
    """The zoo name of ``retrained(model, forget)`` when the zoo ships it, else None (then
    ``retrained`` would train it: what a page on a time budget wants to know first)."""
    wanted, data = _retraining_recipe(model, forget)
    target = _training_recipe({**zoo.read_manifest(model), "recipe": wanted})
    for name in zoo.TINY_MODELS:  # how the weights are stored does not change what was learned
        shipped = zoo.read_manifest(name)
        if _training_recipe(shipped) == target and shipped["data"]["dataset"] == data:
            return name
    return None


def _retraining_recipe(model: str, forget) -> tuple[dict, str]:
    """(``model``'s pre-training recipe with ``forget`` excluded too, its dataset name)."""
    manifest = zoo.read_manifest(model)
    recipe = _full_recipe(manifest)
    if recipe.get("command") != "pretrain":
        raise ValueError(f"model: {model!r} was not made by pretrain, so there is no recipe to "
                         f"retrain (its recipe is {recipe.get('command')!r})")
    wanted = {**recipe, "exclude_classes": sorted(set(recipe["exclude_classes"]) | set(forget))}
    return wanted, manifest["data"]["dataset"]


def _training_recipe(manifest: dict) -> dict:
    """The full recipe less the storage dtype of the weights."""
    return {k: v for k, v in _full_recipe(manifest).items() if k != "weights_dtype"}


def _full_recipe(manifest: dict) -> dict:
    """The manifest's recipe with fields that older manifests left implicit filled in from the
    model's config (``mask_ratio``: the MAE's random-drop range; ``weights_dtype``: float32), so
    equal recipes compare equal."""
    recipe = dict(manifest["recipe"])
    if recipe.get("command") == "pretrain":
        if "mask_ratio" not in recipe:
            ratio = manifest["config"].get("train_mask_ratio")
            recipe["mask_ratio"] = list(ratio) if ratio else None
        recipe.setdefault("weights_dtype", "float32")
    return recipe


def table(name: str, config: dict, compute: Callable[[], pd.DataFrame]) -> pd.DataFrame:
    """A tidy result table computed by ``compute()`` once per (``name``, ``config``), as CSV."""
    final = _entry(f"tables/{name}", config)
    path = final / "table.csv"
    if not path.exists():
        frame = compute()
        tmp = final.with_name(final.name + f".tmp{os.getpid()}")
        tmp.mkdir(parents=True, exist_ok=True)
        frame.to_csv(tmp / "table.csv", index=False)
        (tmp / "experiment.json").write_text(json.dumps(config, indent=2, default=str) + "\n")
        _publish(tmp, final)
    return pd.read_csv(path)
