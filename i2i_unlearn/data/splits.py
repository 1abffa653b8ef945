"""Class splits (forget / retain / proxy) and the balanced forget-retain batch sampler.

The paper unlearns a set of forget classes ``D_F`` while keeping a set of retain classes
``D_R``; the classes in neither form the *proxy* retain pool (the paper's "other 800 ImageNet
classes" variant, used when the true retain data is unavailable). Evaluation images of every
class are held out by the datasets themselves (``tiny.ImageDataset.eval_*``).
"""
from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch

from .tiny import SCENE_CLASSES, as_class_ids


@dataclass(frozen=True)
class ClassSplit:
    """Disjoint class ids: ``forget`` (D_F), ``retain`` (D_R), ``proxy`` (the remaining pool)."""

    forget: tuple[int, ...]
    retain: tuple[int, ...]
    proxy: tuple[int, ...]

    def __post_init__(self):
        for field in ("forget", "retain", "proxy"):
            object.__setattr__(self, field, tuple(int(c) for c in getattr(self, field)))
        overlap = (set(self.forget) & set(self.retain)) | (set(self.proxy)
                                                           & (set(self.forget) | set(self.retain)))
        if overlap:
            raise ValueError(f"forget, retain and proxy must be disjoint; shared: {sorted(overlap)}")


def _proxy(num_classes: int, *taken: Iterable[int]) -> tuple[int, ...]:
    used = set().union(*map(set, taken))
    return tuple(c for c in range(num_classes) if c not in used)


DEFAULT_SPLITS: dict[str, ClassSplit] = {
    "mnist": ClassSplit(forget=(0, 1, 2), retain=(3, 4, 5), proxy=(6, 7, 8, 9)),
    "scenes": ClassSplit(forget=(0, 1, 2), retain=(3, 4, 5),
                         proxy=_proxy(len(SCENE_CLASSES), (0, 1, 2, 3, 4, 5))),
}


# Paper scale: the retain classes follow the forget classes in the paper-order class list
# (``folders.PAPER_SPLITS``): ImageNet 100-199, Places 50-99.
PAPER_RETAIN = {"imagenet": range(100, 200), "places": range(50, 100)}


def default_split(dataset: str) -> ClassSplit:
    """The split the tiny experiments use for ``dataset`` ("mnist" | "scenes")."""
    if dataset not in DEFAULT_SPLITS:
        raise ValueError(f"no default split for dataset={dataset!r}; known: {tuple(DEFAULT_SPLITS)}")
    return DEFAULT_SPLITS[dataset]


def _class_ids(arg: str, value, num_classes: int) -> tuple[int, ...]:
    """``value`` (an id or ids) as a sorted tuple, checked for range and duplicates."""
    ids = as_class_ids(value)
    bad = sorted({c for c in ids if not 0 <= c < num_classes})
    if bad:
        raise ValueError(f"{arg} has class ids {bad} outside the valid range "
                         f"0..{num_classes - 1}")
    dup = sorted({c for c in ids if ids.count(c) > 1})
    if dup:
        raise ValueError(f"{arg} lists class ids {dup} more than once")
    return tuple(sorted(ids))


def make_split(num_classes: int, forget, retain=None, dataset: str | None = None) -> ClassSplit:
    """Build and check a ClassSplit of ``num_classes`` classes.

    - forget: the class id(s) to unlearn (non-empty).
    - retain: the class id(s) to keep; None -> ``dataset``'s default retain classes minus
      ``forget`` (``PAPER_RETAIN`` for "imagenet" / "places"; all non-forget classes when there
      is no default for ``dataset``); if that
      leaves nothing, every class not in ``forget``.
    - proxy: every class in neither.
    """
    if int(num_classes) < 2:
        raise ValueError(f"num_classes must be >= 2 (one to forget, one to retain), "
                         f"got num_classes={num_classes}")
    num_classes = int(num_classes)
    forget = _class_ids("forget", forget, num_classes)
    if not forget:
        raise ValueError("forget is empty: give at least one class id to unlearn")
    if retain is None:
        default = DEFAULT_SPLITS.get(dataset) if dataset is not None else None
        pool = (default.retain if default is not None
                else PAPER_RETAIN.get(dataset, range(num_classes)))
        retain = tuple(c for c in pool if c < num_classes and c not in forget)
        if not retain:
            retain = _proxy(num_classes, forget)
    retain = _class_ids("retain", retain, num_classes)
    if not retain:
        raise ValueError(f"retain is empty: give at least one class id to keep "
                         f"(forget={forget} of {num_classes} classes)")
    overlap = sorted(set(forget) & set(retain))
    if overlap:
        raise ValueError(f"forget and retain must be disjoint; both contain {overlap}")
    return ClassSplit(forget, retain, _proxy(num_classes, forget, retain))


class BalancedPairSampler:
    """Row indices for batches holding ``batch_size`` forget rows and ``batch_size`` retain rows.

    Each set is walked through epoch-wise random permutations: global position
    ``p = step * batch_size + j`` of a set of size n is row ``perm_e[p % n]`` with epoch
    ``e = p // n``, ``perm_e`` a permutation seeded by (seed, set, e). The smaller set thus
    cycles more often (it is oversampled), and every epoch visits each row exactly once.

    Stateless: ``indices(step)`` depends only on (seed, step, sizes, batch_size), so a run
    resumed at step k draws exactly what an uninterrupted run would.

    shard: ``(rank, world)`` under data parallelism (``accelerate launch``): the step's global
    batch of ``world * batch_size`` rows per set is drawn as above and process ``rank`` takes
    rows ``rank::world``, so the processes see different rows and together walk the same
    permutations one process would with the larger batch.
    """

    def __init__(self, n_forget: int, n_retain: int, batch_size: int, seed: int,
                 shard: tuple[int, int] = (0, 1)):
        for arg, n in (("n_forget", n_forget), ("n_retain", n_retain)):
            if int(n) < 1:
                raise ValueError(f"{arg} must be >= 1 (the set is empty), got {arg}={n}")
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got batch_size={batch_size}")
        rank, world = (int(v) for v in shard)
        if not 0 <= rank < world:
            raise ValueError(f"shard must be (rank, world) with 0 <= rank < world, got {shard}")
        self.n_forget, self.n_retain = int(n_forget), int(n_retain)
        self.batch_size, self.seed = int(batch_size), int(seed)
        self.rank, self.world = rank, world

    @property
    def steps_per_epoch(self) -> int:
        """Steps that visit every row of the larger set at least once."""
        return -(-max(self.n_forget, self.n_retain) // self.batch_size)

    def _rows(self, which: int, n: int, step: int) -> torch.Tensor:
        rows = sample_rows(n, self.batch_size * self.world, self.seed, step, stream=which)
        return rows[self.rank::self.world]

    def indices(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(forget rows (batch_size,), retain rows (batch_size,)) for ``step`` (>= 0), int64."""
        if int(step) < 0:
            raise ValueError(f"step must be >= 0, got step={step}")
        step = int(step)
        return self._rows(0, self.n_forget, step), self._rows(1, self.n_retain, step)


@functools.lru_cache(maxsize=8)  # a batch spans few epochs; keep memory bounded
def _epoch_permutation(n: int, seed: int, stream: int, epoch: int) -> torch.Tensor:
    # SeedSequence mixes (seed, stream, epoch) into well-separated 64-bit seeds.
    s = np.random.SeedSequence([seed % 2**64, stream, epoch]).generate_state(1, np.uint64)[0]
    return torch.randperm(n, generator=torch.Generator().manual_seed(int(s)))


def sample_rows(n: int, batch_size: int, seed: int, step: int, stream: int = 0) -> torch.Tensor:
    """Rows of step ``step`` when walking a set of ``n`` rows in epoch-wise random permutations.

    Global position ``p = step * batch_size + j`` is row ``perm_e[p % n]`` of epoch ``e = p // n``;
    a pure function of its arguments, so resumed runs draw what uninterrupted ones would.
    ``stream`` separates independent walks with the same seed. -> (batch_size,) int64
    """
    pos = step * batch_size + torch.arange(batch_size)
    epochs, offsets = pos // n, pos % n
    out = torch.empty(batch_size, dtype=torch.long)
    for e in epochs.unique().tolist():
        sel = epochs == e
        out[sel] = _epoch_permutation(n, seed, stream, e)[offsets[sel]]
    return out
