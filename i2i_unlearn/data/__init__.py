"""Data: tiny shipped datasets, paper-scale ImageFolder datasets, and class splits.

- ``load_dataset("mnist" | "scenes") -> ImageDataset``: tiny, 32×32, in [-1, 1], no download
- ``load_dataset("imagenet" | "places", image_size)``: paper folders, from ``$I2I_UNLEARN_<NAME>``
- ``dataset_of(manifest)``: the data a checkpoint was made on
- ``make_split`` / ``default_split -> ClassSplit``: forget / retain / proxy class ids
- ``BalancedPairSampler``: equal forget + retain rows per batch
- ``ClassListImageFolder``, ``imagenet_split``, ``places_split``: ImageNet-1K / Places-365 at
  paper scale
- ``FolderImageDataset``: the tiny datasets' interface over those folders
"""
from .folders import (PAPER_SPLITS, ClassListImageFolder, imagenet_split, places_split,
                      read_class_list)
from .paper import DATA_ENV, FolderImageDataset, LazyImages, paper_data_root
from .splits import (DEFAULT_SPLITS, BalancedPairSampler, ClassSplit, default_split, make_split,
                     sample_rows)
from .tiny import (DATASETS, SCENE_CLASSES, ImageDataset, convert_channels, dataset_of, load_dataset,
                   mnist_rows, scenes_crop_boxes)

__all__ = [
    "DATASETS", "SCENE_CLASSES", "ImageDataset", "convert_channels", "dataset_of", "load_dataset", "mnist_rows", "scenes_crop_boxes",
    "ClassSplit", "DEFAULT_SPLITS", "make_split", "default_split", "BalancedPairSampler", "sample_rows",
    "ClassListImageFolder", "DATA_ENV", "FolderImageDataset", "paper_data_root", "LazyImages", "PAPER_SPLITS", "imagenet_split", "places_split", "read_class_list",
]
