"""Paper-scale data behind the tiny datasets' interface, so the same unlearning and evaluation
code runs on ImageNet-1K / Places-365 folders.

``FolderImageDataset`` answers ``images(classes, split)`` like ``tiny.ImageDataset``, except that
training rows come back as ``LazyImages``: an index-able view that decodes JPEGs only for the rows
a batch asks for. The paper unlearns with 120 images per class of 100 forget and 100 retain
classes, and the proxy pool has 800 classes -- far too many decoded images to hold in memory
(96,000 proxy images at 224×224 would be 58 GB in float32). Evaluation rows (5,000 per set) are
decoded once into a tensor::

    data = FolderImageDataset("imagenet", "/data/imagenet/train", "/data/imagenet/val",
                              "imagenet_paper_order.txt", image_size=224)
    model, manifest = unlearn_classes(load_paper_model("mae-vit-large").cuda(),
                                      forget=range(100), dataset=data)

Notebooks and the experiment cache name their data instead (``load_dataset("imagenet",
image_size=224)``), so the folders are found through the environment -- which worker processes
inherit -- as one root per dataset holding ``train/``, ``val/`` and the class list
``paper_order.txt``::

    export I2I_UNLEARN_IMAGENET=/data/imagenet   # train/ val/ paper_order.txt
    export I2I_UNLEARN_PLACES=/data/places365
"""
from __future__ import annotations

import functools
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import torch
from torch import Tensor
from tqdm.auto import tqdm

from .folders import PAPER_SPLITS, ClassListImageFolder, read_class_list
from .tiny import as_class_ids


class LazyImages:
    """Rows of a ``ClassListImageFolder`` decoded on access.

    ``rows[idx]`` with an int tensor / list / slice -> (len(idx), 3, S, S) float32 in [-1, 1];
    ``len(rows)`` and ``rows.shape`` behave like those of the tensor it stands for.
    """

    def __init__(self, folder: ClassListImageFolder, indices: Sequence[int]):
        self.folder, self.indices = folder, list(indices)

    def __len__(self) -> int:
        return len(self.indices)

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (len(self), 3, self.folder.image_size, self.folder.image_size)

    def __getitem__(self, idx) -> Tensor:
        if isinstance(idx, slice):
            rows = self.indices[idx]
        else:
            rows = [self.indices[int(i)] for i in torch.as_tensor(idx).reshape(-1)]
        return torch.stack([self.folder[i][0] for i in rows])


class FolderImageDataset:
    """``images(classes, split)`` over a training and an evaluation folder of one class list.

    - name: ``"imagenet"`` or ``"places"`` (sets the paper's images per class, ``PAPER_SPLITS``).
    - train_root, eval_root: class-folder layouts, e.g. ``imagenet/train`` and ``imagenet/val``
      (val sorted into class folders).
    - class_list: file or list of class directories in the paper's order (forget, retain, proxy).
    - image_size: the model's input size (224 for MAE ViT-L, 256 for MAGE and Palette).
    - train_per_class, eval_per_class: images per class; default the paper's.
    """

    channels = 3

    def __init__(self, name: str, train_root: str | os.PathLike, eval_root: str | os.PathLike,
                 class_list, image_size: int, train_per_class: int | None = None,
                 eval_per_class: int | None = None):
        if name not in PAPER_SPLITS:
            raise ValueError(f"name: expected one of {sorted(PAPER_SPLITS)}, got {name!r}")
        paper = PAPER_SPLITS[name]
        self.name, self.image_size = name, int(image_size)
        self.class_names = read_class_list(class_list)
        self.roots = {"train": os.fspath(train_root), "eval": os.fspath(eval_root)}
        self.per_class = {"train": train_per_class or paper["train_per_class"],
                          "eval": eval_per_class or paper["eval_per_class"]}
        self._folders: dict[str, ClassListImageFolder] = {}

    def describe(self) -> dict:
        """What a manifest records about the data."""
        return {"dataset": self.name, "roots": self.roots, "image_size": self.image_size,
                "per_class": self.per_class, "classes": len(self.class_names)}

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def folder(self, split: str) -> ClassListImageFolder:
        """The folder of ``split`` (listed once, on first use)."""
        if split not in self.roots:
            raise ValueError(f"split must be 'train' or 'eval', got split={split!r}")
        if split not in self._folders:
            self._folders[split] = ClassListImageFolder(
                self.roots[split], self.class_names, self.image_size, per_class=self.per_class[split])
        return self._folders[split]

    def images(self, classes: int | Iterable[int], split: str = "train",
               per_class: int | None = None, progress: bool = True):
        """(rows, labels) of ``classes``: ``LazyImages`` for ``"train"``, a decoded tensor for
        ``"eval"``. per_class: keep the first N rows of each class (on top of the folder's)."""
        folder = self.folder(split)
        ids = as_class_ids(classes)
        if not ids:
            raise ValueError("classes is empty: give at least one class id")
        rows = []
        for c in ids:
            mine = folder.indices(c)
            rows += mine[:per_class] if per_class else mine
        labels = torch.tensor([folder.targets[i] for i in rows], dtype=torch.long)
        lazy = LazyImages(folder, rows)
        if split == "train":
            return lazy, labels
        batches = range(0, len(lazy), 256)
        return torch.cat([lazy[i:i + 256] for i in tqdm(
            batches, desc=f"decoding {self.name} {split} images", disable=not progress)]), labels


# -- paper data found through the environment -------------------------------------------------
DATA_ENV = {"imagenet": "I2I_UNLEARN_IMAGENET", "places": "I2I_UNLEARN_PLACES"}
CLASS_LIST = "paper_order.txt"
SPLIT_DIRS = {"train": "train", "eval": "val"}


def paper_data_root(name: str) -> Path:
    """The folder ``$I2I_UNLEARN_<NAME>``, checked to hold ``train/``, ``val/`` and the class list."""
    if name not in DATA_ENV:
        raise ValueError(f"name: expected one of {sorted(DATA_ENV)}, got {name!r}")
    env = DATA_ENV[name]
    if not os.environ.get(env):
        raise ValueError(f"{env}: not set; point it at the {name} folder holding train/, val/ "
                         f"and {CLASS_LIST} (see the book's paper-scale chapter)")
    root = Path(os.environ[env])
    missing = [p for p in (*SPLIT_DIRS.values(), CLASS_LIST) if not (root / p).exists()]
    if missing:
        raise FileNotFoundError(f"{env}={root}: missing {', '.join(missing)} (expected train/, "
                                f"val/ and {CLASS_LIST}: {PAPER_SPLITS[name]['note']})")
    return root


def paper_dataset(name: str, image_size: int | None) -> FolderImageDataset:
    """``FolderImageDataset`` of ``name`` from its environment root, at ``image_size``."""
    if image_size is None:
        raise ValueError(f"image_size: needed for the paper dataset {name!r} (the model's input "
                         f"size, e.g. 224 for MAE ViT-L, 256 for Palette and MAGE)")
    root = paper_data_root(name)
    return _paper_dataset(name, str(root), int(image_size))


@functools.lru_cache(maxsize=None)
def _paper_dataset(name: str, root: str, image_size: int) -> FolderImageDataset:
    base = Path(root)
    return FolderImageDataset(name, base / SPLIT_DIRS["train"], base / SPLIT_DIRS["eval"],
                              base / CLASS_LIST, image_size)
