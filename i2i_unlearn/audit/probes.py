"""The four probes of the forgetting audit. Each takes ``{name: model}`` and an ``AuditData`` and
returns tidy rows (a pandas DataFrame: one measurement per row, columns ``model``, ``method``,
``probe``, ``metric``, ``value``, ``se`` and the probe's own axes).

1. ``linear_probe``        -- can a linear classifier on E(T(x)) of held-out images still tell
                              the forget classes apart (from each other, and from retain classes)?
2. ``membership_inference`` -- can an attacker tell the forget classes' training images (members)
                              from their held-out images by reconstruction error?
3. ``relearning``          -- fine-tune on k forget images for m steps: how fast does forget
                              reconstruction come back?
4. ``context_sweep``       -- hidden area from 90% down to 10% (centre box, outpainting): from how
                              much visible context are forget images reconstructed again?

Every probe scores all models on the *same* images. Given ``reference`` (the retrained model's
name), each headline row also carries ``se_paired``: the standard error of the difference between
that model's value and the reference's, from per-image pairs. Hard images are hard for every
model, so this is much smaller than the two values' own standard errors combined, and it is what
the verdict tests the two references with (0 for the reference itself).
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from .. import masks
from ..loop import step_generator
from ..models.base import I2IModel
from .data import AuditData, embed, hidden_errors, method_of, trainable_copy

Models = dict[str, I2IModel]


def _check_models(models: Models, reference: str | None = None) -> None:
    if not models:
        raise ValueError("models: give at least one model to audit")
    for name, model in models.items():
        if not isinstance(model, I2IModel):
            raise ValueError(f"models[{name!r}]: expected an I2IModel, got {type(model).__name__}")
    if reference is not None and reference not in models:
        raise ValueError(f"reference: {reference!r} is not among the models {list(models)}")


def _base(name: str, model: I2IModel, probe: str) -> dict:
    return {"model": name, "method": method_of(model, default=name), "probe": probe}


# -- 1. linear probe on encoder embeddings ------------------------------------------------------
def _cv_correct(features: np.ndarray, labels: np.ndarray, folds: int, seed: int, c: float,
                repeats: int = 1) -> np.ndarray:
    """Per image, the share of ``repeats`` stratified k-fold splits (seeds ``seed``, ``seed + 1``,
    ...) in which standardised logistic regression classifies it right. -> (N,) in [0, 1]"""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    folds = min(folds, int(np.bincount(labels).min()))
    if folds < 2:
        raise ValueError("data: the linear probe needs at least 2 held-out images per class")
    clf = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=2000))
    hits = [cross_val_predict(clf, features, labels,
                              cv=StratifiedKFold(folds, shuffle=True, random_state=seed + r)) == labels
            for r in range(repeats)]
    return np.mean(hits, axis=0)


def binomial_se(acc: float, n: int) -> float:
    """Standard error of an accuracy over ``n`` images (floored at one image's worth)."""
    return math.sqrt(max(acc * (1 - acc), 1.0 / n) / n)


def paired_se(values: dict[str, np.ndarray], reference: str | None) -> dict[str, float]:
    """Per model, the standard error of mean(values[model] - values[reference]) over images
    (NaN for every model without a ``reference``; 0 for the reference itself)."""
    if reference is None:
        return {name: float("nan") for name in values}
    ref = np.asarray(values[reference], dtype=float)
    return {name: float(np.std(np.asarray(v, dtype=float) - ref, ddof=1) / math.sqrt(len(ref)))
            for name, v in values.items()}


def linear_probe(models: Models, data: AuditData, mask_name: str = "centre-8/16", folds: int = 5,
                 c: float = 0.1, seed: int = 0, progress: bool = False, repeats: int = 5,
                 reference: str | None = None) -> pd.DataFrame:
    """Cross-validated accuracy of a linear classifier on pooled E(T(x)) of held-out images.

    Two tasks: ``forget classes`` (which forget class? skipped with a single forget class) and
    ``forget vs retain`` (balanced by construction only if the sets are; chance is the majority
    share). Embeddings: ``encode`` under ``mask_name`` (deterministic corruption), pooled by
    :func:`pool_embedding`. Features are standardised; ``c`` is the inverse L2 strength. The
    accuracy is averaged over ``repeats`` k-fold splits (which images share a fold changes the
    accuracy by about its own standard error); every model gets the same splits, so with
    ``reference`` the rows' ``se_paired`` compares models image by image.
    """
    _check_models(models, reference)
    if repeats < 1:
        raise ValueError(f"repeats: expected at least 1, got {repeats}")
    y_f = data.forget_eval_labels.numpy()
    tasks = {}
    if len(np.unique(y_f)) > 1:
        tasks["forget classes"] = np.unique(y_f, return_inverse=True)[1]
    tasks["forget vs retain"] = np.r_[np.ones(len(y_f), int), np.zeros(len(data.retain_eval), int)]
    correct = {task: {} for task in tasks}
    for name, model in tqdm(models.items(), desc="probe", disable=not progress):
        e_f, e_r = embed(model, data.forget_eval, mask_name), embed(model, data.retain_eval, mask_name)
        for task, labels in tasks.items():
            features = e_f if task == "forget classes" else np.concatenate([e_f, e_r])
            correct[task][name] = _cv_correct(features, labels, folds, seed, c, repeats)
    se_pair = {task: paired_se(correct[task], reference) for task in tasks}
    rows = []
    for name, model in models.items():
        for task, labels in tasks.items():
            chance = float(np.bincount(labels).max() / len(labels))
            acc = float(correct[task][name].mean())
            rows.append({**_base(name, model, "probe"), "task": task, "metric": "accuracy",
                         "value": acc, "se": binomial_se(acc, len(labels)),
                         "se_paired": se_pair[task][name], "chance": chance, "n": len(labels)})
    return pd.DataFrame(rows)


# -- 2. membership inference -----------------------------------------------------------------
def attack_masks(n_masks: int, size: int, mask_name: str = "centre-8/16", seed: int = 0) -> torch.Tensor:
    """The attacker's masks: ``mask_name`` first, then seeded random boxes. -> (n_masks, 1, H, W)"""
    if n_masks < 1:
        raise ValueError(f"n_masks: expected at least 1, got {n_masks}")
    first = masks.mask_from_name(mask_name, 1, size)
    g = torch.Generator().manual_seed(seed)
    rest = [masks.random_boxes(1, size, g, min_side=0.3, max_side=0.6, max_boxes=1)
            for _ in range(n_masks - 1)]
    return torch.cat([first, *rest])


def membership_scores(models: Models, data: AuditData, reference: str, n_masks: int = 8,
                      mask_name: str = "centre-8/16", seed: int = 0,
                      progress: bool = False) -> pd.DataFrame:
    """Per-image attack scores (higher = "was trained on"), one row per model, statistic, image.

    Members: ``data.forget_train``; non-members: ``data.forget_eval`` (same classes, held out).
    Statistics, each from the hidden-region error of ``generate``:

    - ``loss``: minus the error under ``mask_name`` (the classic loss attack);
    - ``multi-mask``: minus the mean log error over ``n_masks`` masks (``mask_name`` + random
      boxes): averaging masks removes much of the error's dependence on where the hole falls;
    - ``calibrated``: the multi-mask score minus the same score of the ``reference`` model (the
      retrained model, which never saw these images), per image: what is left once each image's
      own difficulty is taken out (difficulty calibration, Watson et al. 2022; LiRA's offline
      attack with one reference model). For the reference itself it is 0 for every image:
      AUC 0.5 by construction.
    """
    _check_models(models, reference)
    images = torch.cat([data.forget_train, data.forget_eval])
    member = np.r_[np.ones(len(data.forget_train), bool), np.zeros(len(data.forget_eval), bool)]
    mset = attack_masks(n_masks, images.shape[-1], mask_name, seed)
    log_err = {}
    for name, model in tqdm(models.items(), desc="membership", disable=not progress):
        errs = torch.stack([hidden_errors(model, images, m[None], seed=seed + k)
                            for k, m in enumerate(mset)])  # (n_masks, N)
        log_err[name] = errs.clamp_min(1e-8).log().numpy()
    frames = []
    for name, model in models.items():
        scores = {"loss": -np.exp(log_err[name][0]), "multi-mask": -log_err[name].mean(0),
                  "calibrated": -(log_err[name] - log_err[reference]).mean(0)}
        for statistic, s in scores.items():
            frames.append(pd.DataFrame({**_base(name, model, "membership"), "statistic": statistic,
                                        "image": np.arange(len(s)), "member": member, "score": s}))
    return pd.concat(frames, ignore_index=True)


def roc_auc_se(auc: float, n_pos: int, n_neg: int) -> float:
    """Standard error of a ROC AUC (Hanley & McNeil, 1982)."""
    q1, q2 = auc / (2 - auc), 2 * auc ** 2 / (1 + auc)
    var = (auc * (1 - auc) + (n_pos - 1) * (q1 - auc ** 2) + (n_neg - 1) * (q2 - auc ** 2))
    return math.sqrt(max(var, 0.0) / (n_pos * n_neg))


def tpr_at_fpr(member: np.ndarray, score: np.ndarray, fpr: float = 0.01) -> float:
    """The largest true-positive rate of a threshold on ``score`` with false-positive rate <= fpr."""
    from sklearn.metrics import roc_curve
    f, t, _ = roc_curve(member, score)
    return float(t[f <= fpr].max())


def membership_metrics(scores: pd.DataFrame, fpr: float = 0.01,
                       reference: str | None = None) -> pd.DataFrame:
    """ROC AUC (with se) and TPR at ``fpr`` per model and statistic, from ``membership_scores``.

    With ``reference``, the calibrated AUC's ``se_paired`` is its own se: the reference's
    calibrated score is 0 for every image, so its AUC is exactly 0.5, not an estimate.
    """
    from sklearn.metrics import roc_auc_score
    rows = []
    for (name, method, statistic), g in scores.groupby(["model", "method", "statistic"], sort=False):
        member, s = g["member"].to_numpy(), g["score"].to_numpy()
        auc = float(roc_auc_score(member, s))
        base = {"model": name, "method": method, "probe": "membership", "statistic": statistic,
                "members": int(member.sum()), "non_members": int((~member).sum())}
        se = roc_auc_se(auc, member.sum(), (~member).sum())
        se_pair = (float("nan") if reference is None or statistic != "calibrated"
                   else 0.0 if name == reference else se)
        rows.append({**base, "metric": "auc", "value": auc, "se": se, "se_paired": se_pair})
        rows.append({**base, "metric": f"tpr@{fpr:.0%}fpr", "value": tpr_at_fpr(member, s, fpr),
                     "se": float("nan")})
    return pd.DataFrame(rows)


def generalisation_gap(scores: pd.DataFrame, statistic: str = "multi-mask") -> pd.DataFrame:
    """How much better each model reconstructs the members than held-out images of the same
    classes: what any membership attack on reconstruction error has to work with.

    scores: ``membership_scores`` rows; ``statistic`` "multi-mask" (minus each image's mean log
    error over the attack's masks) or "loss". One row per model: ``member_error`` and
    ``held_out_error`` (geometric means), ``ratio`` = held-out / member error (1: no gap), its
    ``log_gap`` with a Welch standard error ``se`` and ``z`` = log_gap / se. A model that
    generalises (ratio near 1, z small) leaks no membership, and no attack can flag it.
    """
    if statistic not in ("multi-mask", "loss"):
        raise ValueError(f"statistic: expected 'multi-mask' or 'loss', got {statistic!r}")
    rows = []
    for (name, method), g in scores[scores["statistic"] == statistic].groupby(
            ["model", "method"], sort=False):
        s = g["score"].to_numpy()
        log_err = -s if statistic == "multi-mask" else np.log(np.maximum(-s, 1e-8))
        mem, held = log_err[g["member"].to_numpy()], log_err[~g["member"].to_numpy()]
        gap = float(held.mean() - mem.mean())
        se = math.sqrt(mem.var(ddof=1) / len(mem) + held.var(ddof=1) / len(held))
        rows.append({"model": name, "method": method, "statistic": statistic,
                     "members": len(mem), "non_members": len(held),
                     "member_error": float(np.exp(mem.mean())),
                     "held_out_error": float(np.exp(held.mean())), "ratio": math.exp(gap),
                     "log_gap": gap, "se": se, "z": gap / se if se > 0 else math.nan})
    if not rows:
        raise ValueError(f"scores: no rows of statistic {statistic!r}")
    return pd.DataFrame(rows)


def membership_inference(models: Models, data: AuditData, reference: str, n_masks: int = 8,
                         mask_name: str = "centre-8/16", seed: int = 0,
                         progress: bool = False) -> pd.DataFrame:
    """ROC AUC and TPR at 1% FPR of the three attacks of :func:`membership_scores`."""
    return membership_metrics(membership_scores(models, data, reference, n_masks, mask_name, seed,
                                                progress), reference=reference)


# -- 3. relearning -----------------------------------------------------------------------------
def relearn_images(data: AuditData, k: int, seed: int = 0) -> torch.Tensor:
    """A seeded choice of ``k`` forget training images (the same for every model)."""
    if not 1 <= k <= len(data.forget_train):
        raise ValueError(f"k: expected 1..{len(data.forget_train)} forget training images, got {k}")
    g = torch.Generator().manual_seed(seed)
    return data.forget_train[torch.randperm(len(data.forget_train), generator=g)[:k]]


def _scored(model, name, step, data, mask, seed) -> tuple[list[dict], torch.Tensor]:
    """The step's rows (held-out forget and retain MSE) and the per-image forget errors (N,)."""
    rows, errors = [], {}
    for split, images in (("forget", data.forget_eval), ("retain", data.retain_eval)):
        err = errors[split] = hidden_errors(model, images, mask, seed=seed)
        rows.append({**_base(name, model, "relearn"), "step": step, "metric": f"{split}_mse",
                     "value": err.mean().item(), "se": (err.std() / math.sqrt(len(err))).item()})
    return rows, errors["forget"]


def relearning(models: Models, data: AuditData, k: int = 32, steps: int = 50, lr: float = 1e-4,
               eval_every: int = 10, batch_size: int | None = None, mask_name: str = "centre-8/16",
               seed: int = 0, progress: bool = False, reference: str | None = None) -> pd.DataFrame:
    """Fine-tune a copy of each model on ``k`` forget training images for ``steps`` steps.

    The whole model trains with its own ``task_loss`` under the training corruption (random box +
    the model's own randomness, drawn from the same seeds for every model), AdamW at a constant
    ``lr``. Every ``eval_every`` steps (and at 0 and the end) the hidden-region MSE under
    ``mask_name`` is measured on the *held-out* forget and retain images. The input models are
    left untouched.

    With ``reference``, the last step's ``forget_mse`` rows carry ``se_paired``, from the
    per-image differences to the reference's errors on the same held-out images.
    """
    _check_models(models, reference)
    for arg, v in (("steps", steps), ("eval_every", eval_every)):
        if v < 1:
            raise ValueError(f"{arg}: expected at least 1, got {v}")
    if not lr > 0:
        raise ValueError(f"lr: expected a positive learning rate, got {lr}")
    x_k = relearn_images(data, k, seed)
    batch = min(batch_size or k, k)
    size = x_k.shape[-1]
    mask = masks.mask_from_name(mask_name, 1, size)
    rows, final = [], {}
    bar = tqdm(total=len(models) * steps, desc="relearning", disable=not progress)
    for name, original in models.items():
        model = trainable_copy(original)
        device = next(model.parameters()).device
        params = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
        scored, final[name] = _scored(model, name, 0, data, mask, seed)
        rows += scored
        for step in range(steps):
            g = step_generator(seed, step)
            idx = torch.randperm(k, generator=g)[:batch]
            x = x_k[idx].to(device)
            m = masks.training_masks(len(x), size, g).to(device)
            model.train()
            loss = model.task_loss(x, m, model.sample_corruption(x, m, g))
            if not torch.isfinite(loss):
                raise FloatingPointError(f"relearning {name!r}: loss is {loss.item()} at step "
                                         f"{step}; lower lr")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            bar.update()
            if (step + 1) % eval_every == 0 or step + 1 == steps:
                scored, final[name] = _scored(model, name, step + 1, data, mask, seed)
                rows += scored
        del model, opt
    bar.close()
    se_pair = paired_se({name: err.numpy() for name, err in final.items()}, reference)
    for r in rows:
        if r["metric"] == "forget_mse" and r["step"] == steps:
            r["se_paired"] = se_pair[r["model"]]
    return pd.DataFrame(rows)


# -- 4. context sweep --------------------------------------------------------------------------
CONTEXT_KINDS = ("centre", "outpaint")


def context_mask(kind: str, hidden_area: float, size: int) -> torch.Tensor:
    """A (1, 1, size, size) mask hiding about ``hidden_area`` of the image: a centred box
    (``centre``) or a border around a centred visible square (``outpaint``)."""
    if not 0 < hidden_area < 1:
        raise ValueError(f"areas: expected hidden fractions in (0, 1), got {hidden_area}")
    if kind == "centre":
        return masks.centre_box(1, size, math.sqrt(hidden_area))
    if kind == "outpaint":
        return masks.outpaint_border(1, size, math.sqrt(1 - hidden_area))
    raise ValueError(f"kinds: expected some of {CONTEXT_KINDS}, got {kind!r}")


def context_sweep(models: Models, data: AuditData, areas=(0.9, 0.7, 0.5, 0.3, 0.1),
                  kinds=CONTEXT_KINDS, seed: int = 0, bootstrap: int = 200,
                  progress: bool = False, reference: str | None = None) -> pd.DataFrame:
    """Hidden-region MSE on held-out forget and retain images as the hidden area shrinks.

    One row per model, mask kind, ``hidden_area`` (asked for; ``hidden_fraction``: what the
    pixel grid gives) and ``set`` (forget / retain). Per model, one more row (``kind="all"``,
    metric ``pooled_ratio``): forget MSE summed over the sweep divided by retain MSE summed
    over it -- the ratio of the areas under the two error curves -- with a bootstrap se (images
    resampled once for all points, so the points' shared images are accounted for). The same
    resamples serve every model, so with ``reference`` the bootstrap spread of the difference of
    two models' ratios gives ``se_paired``.

    Pooling weights each mask by how much there is to reconstruct under it. A mean of per-mask
    ratios would weight alike a mask that hides only background (on digits, a thin outpainting
    border: errors near 1e-4, ratios of pure noise) and one that hides the strokes.
    """
    _check_models(models, reference)
    size = data.forget_eval.shape[-1]
    grid = [(kind, a, context_mask(kind, a, size)) for kind in kinds for a in areas]
    rng = np.random.default_rng(seed)
    boot = {s: torch.from_numpy(rng.integers(0, len(x), (bootstrap, len(x))))
            for s, x in (("forget", data.forget_eval), ("retain", data.retain_eval))}
    rows, boot_ratio = [], {}
    for name, model in tqdm(models.items(), desc="context sweep", disable=not progress):
        total = {"forget": 0.0, "retain": 0.0}
        boot_total = {"forget": 0.0, "retain": 0.0}
        for kind, area, mask in grid:
            for split, images in (("forget", data.forget_eval), ("retain", data.retain_eval)):
                err = hidden_errors(model, images, mask, seed=seed)
                total[split] = total[split] + err.mean()
                boot_total[split] = boot_total[split] + err[boot[split]].mean(1)
                rows.append({**_base(name, model, "context"), "kind": kind, "hidden_area": area,
                             "hidden_fraction": mask.mean().item(), "set": split,
                             "metric": "mse", "value": err.mean().item(),
                             "se": (err.std() / math.sqrt(len(err))).item()})
        boot_ratio[name] = (boot_total["forget"] / boot_total["retain"]).numpy()
        rows.append({**_base(name, model, "context"), "kind": "all", "set": "forget/retain",
                     "metric": "pooled_ratio", "value": (total["forget"] / total["retain"]).item(),
                     "se": float(boot_ratio[name].std(ddof=1))})
    if reference is not None:
        for r in rows:
            if r["metric"] == "pooled_ratio":
                r["se_paired"] = float((boot_ratio[r["model"]] - boot_ratio[reference]).std(ddof=1))
    return pd.DataFrame(rows)
