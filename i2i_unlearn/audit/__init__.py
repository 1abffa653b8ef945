"""The forgetting audit: has an unlearned model really forgotten?

The paper judges unlearning by what the outputs look like (FID, IS, CLIP). That cannot tell a
model that *suppresses* the forget classes from one that no longer knows them. The audit puts an
unlearned model beside two references -- the **original** model and the model **retrained from
scratch** without the forget classes (the gold standard) -- and runs four probes:

1. ``probe``: a linear classifier on encoder embeddings of held-out images;
2. ``membership``: membership inference on the forget classes' training images, with the
   reconstruction error and a reference-calibrated multi-mask statistic;
3. ``relearn``: few-step fine-tuning on k forget images, the forget error against the step;
4. ``context``: the forget vs retain error as the hidden share of the image shrinks.

Each probe gives tidy rows and a figure; ``verdict.verdict`` reduces them
to one table saying, per probe, whether each model is closer to the retrained model or to the
original::

    from i2i_unlearn.audit import audit
    result = audit({"ours": "runs/ours"}, forget=[0, 1, 2],
                   original="mae-mnist", reference="mae-mnist-retrained")
    result.summary                     # the verdict table
    result.figures()["relearn"]        # one figure per probe, and the verdict map

On the command line: ``i2i-unlearn audit --model runs/ours --forget 0 1 2``.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

from ..models.base import I2IModel
from . import plots
from .data import AuditData, embed, hidden_errors, method_of, pool_embedding, trainable_copy
from .probes import (CONTEXT_KINDS, context_sweep, generalisation_gap, linear_probe,
                     membership_inference, membership_metrics, membership_scores, relearning)
from .verdict import PROBES, headlines, verdict, verdict_matrix

__all__ = ["AuditConfig", "AuditData", "AuditResult", "audit", "run_audit", "linear_probe",
           "membership_inference", "membership_scores", "membership_metrics",
           "generalisation_gap", "relearning",
           "context_sweep", "verdict", "verdict_matrix", "headlines", "embed", "pool_embedding",
           "hidden_errors", "trainable_copy", "method_of", "plots", "PROBES", "CONTEXT_KINDS"]


@dataclass
class AuditConfig:
    """Every knob of the audit. The defaults suit a tiny model on CPU (about three minutes for
    ``mae-mnist``); the book's audit page runs lighter settings (fewer members, masks and
    relearning steps) to fit its page budget, and its parameters cell names them."""

    probes: tuple[str, ...] = PROBES
    mask: str = "centre-8/16"  # corruption of the probe's embeddings and of the loss attack
    members_per_class: int | None = 150  # forget training images per class used as members
    eval_per_class: int | None = None  # held-out images per class (None: all)
    probe_folds: int = 5
    probe_c: float = 0.1  # inverse L2 strength of the logistic regression
    probe_repeats: int = 5  # k-fold splits the probe's accuracy is averaged over
    mia_masks: int = 8  # masks of the multi-mask and calibrated statistics
    relearn_k: int = 32  # forget images fine-tuned on
    relearn_steps: int = 50
    relearn_lr: float = 1e-4
    relearn_every: int = 10  # evaluate every N steps
    areas: tuple[float, ...] = (0.9, 0.7, 0.5, 0.3, 0.1)
    kinds: tuple[str, ...] = CONTEXT_KINDS
    seed: int = 0
    z: float = 2.0  # standard errors that separate two values in the verdict

    def __post_init__(self):
        self.probes, self.areas, self.kinds = tuple(self.probes), tuple(self.areas), tuple(self.kinds)
        unknown = set(self.probes) - set(PROBES)
        if unknown or not self.probes:
            raise ValueError(f"probes: expected some of {PROBES}, got {list(self.probes)}")
        bad = [k for k in self.kinds if k not in CONTEXT_KINDS]
        if bad or not self.kinds:
            raise ValueError(f"kinds: expected some of {CONTEXT_KINDS}, got {list(self.kinds)}")
        if not self.areas or not all(0 < a < 1 for a in self.areas):
            raise ValueError(f"areas: expected hidden fractions in (0, 1), got {list(self.areas)}")
        for name in ("probe_folds", "probe_repeats", "mia_masks", "relearn_k", "relearn_steps",
                     "relearn_every"):
            if getattr(self, name) < 1 or (name == "probe_folds" and self.probe_folds < 2):
                raise ValueError(f"{name}: expected a positive integer"
                                 f"{' >= 2' if name == 'probe_folds' else ''}, got {getattr(self, name)}")
        for name in ("relearn_lr", "probe_c", "z"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name}: expected a positive number, got {getattr(self, name)}")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class AuditResult:
    """Everything an audit measured.

    rows: every probe's tidy rows (a probe's own columns are NaN in other probes' rows);
    scores: per-image membership scores (for ROC curves); summary: the verdict table.
    """

    rows: pd.DataFrame
    scores: pd.DataFrame
    summary: pd.DataFrame
    original: str
    reference: str
    config: AuditConfig = field(default_factory=AuditConfig)

    def probe(self, name: str) -> pd.DataFrame:
        """The rows of one probe, without the columns that belong to other probes."""
        if name not in PROBES:
            raise ValueError(f"name: expected one of {PROBES}, got {name!r}")
        return self.rows[self.rows["probe"] == name].dropna(axis=1, how="all").reset_index(drop=True)

    def figures(self, scale: str = "tiny", probe_ceilings: dict[str, float] | None = None) -> dict:
        """One matplotlib figure per probe that ran, and ``verdict``: the position map.

        probe_ceilings: {task: accuracy} of a classifier of the visible pixels alone
        (``context.context_accuracy``), drawn on the linear probe's panels.
        """
        ref = dict(original=self.original, reference=self.reference, scale=scale)
        probes = set(self.rows["probe"])
        figs = {}
        if "probe" in probes:
            figs["probe"] = plots.plot_probe(self.probe("probe"), ceilings=probe_ceilings, **ref)
        if "membership" in probes:
            figs["membership"] = plots.plot_membership(self.scores, self.probe("membership"), **ref)
        if "relearn" in probes:
            figs["relearn"] = plots.plot_relearn(self.probe("relearn"), **ref)
        if "context" in probes:
            figs["context"] = plots.plot_context(self.probe("context"), **ref)
        figs["verdict"] = plots.plot_verdict(self.summary, scale=scale)
        return figs


def run_audit(models: dict[str, I2IModel], data: AuditData, original: str = "original",
              reference: str = "retrained", config: AuditConfig | None = None,
              progress: bool = True) -> AuditResult:
    """Run the configured probes on ``models`` (which must include ``original`` and ``reference``
    by name) and return the rows and the verdict."""
    config = config or AuditConfig()
    for arg, name in (("original", original), ("reference", reference)):
        if name not in models:
            raise ValueError(f"{arg}: {name!r} is not among the models {list(models)}")
    c, frames, scores = config, [], pd.DataFrame()
    for probe in tqdm(config.probes, desc="audit", disable=not progress):
        if probe == "probe":
            frames.append(linear_probe(models, data, c.mask, c.probe_folds, c.probe_c, c.seed,
                                       progress, c.probe_repeats, reference))
        elif probe == "membership":
            scores = membership_scores(models, data, reference, c.mia_masks, c.mask, c.seed, progress)
            frames.append(membership_metrics(scores, reference=reference))
        elif probe == "relearn":
            frames.append(relearning(models, data, c.relearn_k, c.relearn_steps, c.relearn_lr,
                                     c.relearn_every, mask_name=c.mask, seed=c.seed,
                                     progress=progress, reference=reference))
        else:
            frames.append(context_sweep(models, data, c.areas, c.kinds, c.seed, progress=progress,
                                        reference=reference))
    rows = pd.concat(frames, ignore_index=True)
    return AuditResult(rows, scores, verdict(rows, original, reference, c.z), original, reference,
                       config)


# -- from names and directories ---------------------------------------------------------------
def _name(spec, i: int) -> str:
    if isinstance(spec, I2IModel):
        return method_of(spec, default=f"model{i}")
    return Path(str(spec)).name or str(spec)


def _load(arg: str, spec) -> I2IModel:
    from .. import zoo
    if isinstance(spec, I2IModel):
        return spec
    try:
        return zoo.load(spec)
    except (FileNotFoundError, ValueError) as err:
        raise type(err)(f"{arg}: {str(err).removeprefix('model: ')}") from None


def _seen_classes(model: I2IModel) -> set[int] | None:
    data = getattr(model, "manifest", {}).get("data", {})
    return set(data["classes"]) if "classes" in data else None


def audit(models, forget, retain=None, original=None, reference=None,
          config: AuditConfig | None = None, progress: bool = True) -> AuditResult:
    """Audit one or more unlearned models against the original and the retrained reference.

    - models: a zoo name, checkpoint directory or loaded ``I2IModel``; a list of them; or a dict
      ``{name: model}``. Names default to directory names.
    - forget, retain: class ids (retain defaults as in ``make_split``).
    - original: the model before unlearning (default: the ``parent`` recorded in the first
      model's manifest).
    - reference: the model retrained without the forget classes (default:
      ``<original>-retrained``, e.g. ``mae-mnist-retrained``).

    The models must share one tiny dataset (``manifest["data"]["dataset"]``); for other data,
    build an ``AuditData`` and call :func:`run_audit`.
    """
    from ..data import load_dataset, make_split
    if isinstance(models, (str, Path, I2IModel)):
        models = [models]
    if not isinstance(models, dict):
        models = {_name(s, i): s for i, s in enumerate(models)}
    if not models:
        raise ValueError("models: give at least one model to audit")
    loaded = {name: _load(f"models[{name!r}]", spec) for name, spec in models.items()}
    first_name, first = next(iter(loaded.items()))
    if original is None:
        original = getattr(first, "manifest", {}).get("parent", {}).get("model")
        if original is None:
            raise ValueError(f"original: not given, and {first_name!r} names no parent model in "
                             f"its manifest; pass the model before unlearning")
    if reference is None:
        if isinstance(original, I2IModel):
            raise ValueError("reference: give the retrained model (no default for a loaded original)")
        reference = f"{original}-retrained"
    refs = {"original": _load("original", original), "retrained": _load("reference", reference)}
    for name in refs:
        if name in loaded:
            raise ValueError(f"models: the name {name!r} is reserved for the reference models")
    everyone = {**refs, **loaded}

    datasets = {n: getattr(m, "manifest", {}).get("data", {}).get("dataset") for n, m in everyone.items()}
    data_name = datasets["original"]
    if data_name is None:
        raise ValueError("original: its manifest names no tiny dataset; for other data build an "
                         "AuditData and call run_audit")
    for n, d in datasets.items():
        if d not in (None, data_name):
            raise ValueError(f"{'reference' if n == 'retrained' else n}: trained on {d!r}, but the "
                             f"original on {data_name!r}; audit models of one dataset together")
    dataset = load_dataset(data_name)
    split = make_split(dataset.num_classes, forget, retain, dataset=data_name)
    seen = _seen_classes(refs["retrained"])
    if seen is not None and seen & set(split.forget):
        raise ValueError(f"reference: {reference!r} was trained on forget classes "
                         f"{sorted(seen & set(split.forget))}; the reference must never have seen "
                         f"them (pretrain --exclude-classes {' '.join(map(str, split.forget))})")
    seen = _seen_classes(refs["original"])
    if seen is not None and not set(split.forget) <= seen:
        raise ValueError(f"original: {original!r} never saw forget classes "
                         f"{sorted(set(split.forget) - seen)}; nothing to forget")
    shapes = {n: m.image_shape for n, m in everyone.items()}
    if len(set(shapes.values())) > 1:
        raise ValueError(f"models: image shapes differ: {shapes}")
    config = config or AuditConfig()
    data = AuditData.from_dataset(dataset, split.forget, split.retain, config.members_per_class,
                                  config.eval_per_class)
    return run_audit(everyone, data, "original", "retrained", config, progress)
