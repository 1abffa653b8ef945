"""Paper-scale data: ImageNet-1K and Places-365 folders with the paper's class splits.

Both are read in the standard ImageFolder layout, ``root/<class_dir>/<image>``, where
``<class_dir>`` may be nested (Places names such as ``a/airfield`` or
``a/apartment_building/outdoor``). Which classes are used, and in which order, comes from a
*class list*: a text file with one class directory per line, or a list of names. The label of
a class is its position in that list, so writing the list in the paper's order -- forget
classes first, then retain classes, then the proxy pool -- makes ``imagenet_split`` /
``places_split`` give the paper's split.

Paper setup (Li et al., ICLR 2024):

- ImageNet-1K: the 200 classes of ImageNet-R; classes 0-99 forget, 100-199 retain, the other
  800 ImageNet classes the proxy retain pool. 120 train images per class for unlearning
  (``per_class=120`` on ``train/``); evaluation on the 50 val images per class
  (``per_class=50`` on ``val/`` in class-folder layout): 5,000 forget + 5,000 retain images.
- Places-365: 50 (mostly indoor) classes forget, 50 (outdoor) classes retain, the other 265
  the proxy pool; evaluation on the first 100 val images per class (``per_class=100``).
"""
from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence

import numpy as np
import torch
from PIL import Image

from .splits import ClassSplit, make_split
from .tiny import as_class_ids

IMAGE_EXTENSIONS = (".jpeg", ".jpg", ".png", ".bmp", ".webp")

PAPER_SPLITS = {
    "imagenet": {"forget": 100, "retain": 100, "train_per_class": 120, "eval_per_class": 50,
                 "note": "list the 200 ImageNet-R wnids first (0-99 forget, 100-199 retain), "
                         "then the other 800 ImageNet classes (proxy pool)"},
    "places": {"forget": 50, "retain": 50, "train_per_class": None, "eval_per_class": 100,
               "note": "list 50 mostly-indoor classes (forget), 50 outdoor classes (retain), "
                       "then the other 265 Places-365 classes (proxy pool)"},
}


def _paper_split(dataset: str, class_list_len: int) -> ClassSplit:
    n_f, n_r = PAPER_SPLITS[dataset]["forget"], PAPER_SPLITS[dataset]["retain"]
    if int(class_list_len) < n_f + n_r:
        raise ValueError(f"the {dataset} paper split needs at least {n_f + n_r} listed classes "
                         f"({n_f} forget then {n_r} retain), got class_list_len={class_list_len}")
    return make_split(int(class_list_len), range(n_f), range(n_f, n_f + n_r))


def imagenet_split(class_list_len: int = 1000) -> ClassSplit:
    """The paper's ImageNet split over a class list of ``class_list_len`` names: forget = the
    first 100 listed classes, retain = the next 100, proxy = the rest (800 for the full list)."""
    return _paper_split("imagenet", class_list_len)


def places_split(class_list_len: int = 365) -> ClassSplit:
    """The paper's Places split: forget = first 50 listed classes, retain = next 50,
    proxy = the rest (265 for the full Places-365 list)."""
    return _paper_split("places", class_list_len)


def read_class_list(class_list: str | os.PathLike | Sequence[str]) -> list[str]:
    """Class directory names, in label order.

    A path is read as a text file: the first whitespace-separated token of each non-empty line,
    leading "/" dropped -- so plain lists, ImageNet's ``LOC_synset_mapping.txt``
    (``n01440764 tench, ...``) and Places' ``categories_places365.txt`` (``/a/airfield 0``)
    all work. A list or tuple is taken as the names themselves.
    """
    if isinstance(class_list, (str, os.PathLike)):
        with open(class_list, encoding="utf-8") as f:
            names = [line.split()[0] for line in f if line.strip()]
    else:
        names = [str(n) for n in class_list]
    names = [n.strip().strip("/") for n in names]
    if not names:
        raise ValueError(f"class_list is empty: {class_list!r}")
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValueError(f"class_list names {dup[:5]} more than once")
    return names


class ClassListImageFolder(torch.utils.data.Dataset):
    """Images of the listed classes under ``root``; item = (image (3, S, S) in [-1, 1], label).

    - root: a split folder such as ``imagenet/train`` or ``places365/val`` (class-folder layout).
    - class_list: text file or list of class directory names; label = position in the list.
    - image_size: S; each image is resized so its short side is S, then centre-cropped to S×S.
    - per_class: keep only the first N files (sorted by name) of each class; a class with fewer
      files keeps all of them.
    - transform: optional callable applied to the (3, S, S) tensor (e.g. a random flip).

    Only files directly inside a class directory count: nested class names (Places'
    ``a/apartment_building/outdoor``) must not pull in a sibling class's images.
    """

    def __init__(self, root: str | os.PathLike, class_list, image_size: int = 256,
                 per_class: int | None = None, transform: Callable | None = None):
        if int(image_size) < 1:
            raise ValueError(f"image_size must be >= 1, got image_size={image_size}")
        if per_class is not None and int(per_class) < 1:
            raise ValueError(f"per_class must be >= 1 or None, got per_class={per_class}")
        self.root = os.fspath(root)
        if not os.path.isdir(self.root):
            raise FileNotFoundError(f"root={self.root!r} is not a directory")
        self.classes = read_class_list(class_list)
        self.image_size, self.per_class, self.transform = int(image_size), per_class, transform
        self.samples: list[tuple[str, int]] = []
        for label, name in enumerate(self.classes):
            folder = os.path.join(self.root, *name.split("/"))
            if not os.path.isdir(folder):
                raise FileNotFoundError(f"class {name!r} (label {label}) has no directory "
                                        f"under root={self.root!r}: expected {folder}")
            files = sorted(f for f in os.listdir(folder)
                           if f.lower().endswith(IMAGE_EXTENSIONS)
                           and os.path.isfile(os.path.join(folder, f)))
            if not files:
                raise FileNotFoundError(f"class {name!r} has no images in {folder}")
            if per_class is not None:
                files = files[:int(per_class)]
            self.samples += [(os.path.join(folder, f), label) for f in files]
        self.targets = [label for _, label in self.samples]

    def __len__(self) -> int:
        return len(self.samples)

    def indices(self, classes: int | Iterable[int]) -> list[int]:
        """Item indices whose label is in ``classes`` (e.g. ``split.forget``)."""
        wanted = set(as_class_ids(classes))
        bad = sorted(c for c in wanted if not 0 <= c < len(self.classes))
        if bad:
            raise ValueError(f"classes contains unknown class ids {bad}; valid 0..{len(self.classes) - 1}")
        return [i for i, t in enumerate(self.targets) if t in wanted]

    def load(self, path: str) -> torch.Tensor:
        """One file as (3, S, S) float32 in [-1, 1]: short side resized to S, centre crop."""
        with Image.open(path) as im:
            im = im.convert("RGB")
            w, h = im.size
            s = self.image_size / min(w, h)
            size = (max(self.image_size, round(w * s)), max(self.image_size, round(h * s)))
            im = im.resize(size, Image.BICUBIC)  # PIL antialiases and clips to 0..255
            left, top = (size[0] - self.image_size) // 2, (size[1] - self.image_size) // 2
            im = im.crop((left, top, left + self.image_size, top + self.image_size))
            a = np.asarray(im, dtype=np.float32)
        return torch.from_numpy(a).permute(2, 0, 1).contiguous() / 127.5 - 1.0

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        path, label = self.samples[i]
        x = self.load(path)
        if self.transform is not None:
            x = self.transform(x)
        return x, label
