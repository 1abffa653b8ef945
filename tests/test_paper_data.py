"""Paper-scale data path, on small generated folders: the ImageNet/Places layout read lazily by
``FolderImageDataset`` and unlearned through the same ``unlearn_classes`` as the tiny data."""
import numpy as np
import pytest
import torch
from PIL import Image

from i2i_unlearn.data import FolderImageDataset, LazyImages, make_split
from i2i_unlearn.models.mae import build_mae
from i2i_unlearn.unlearn import unlearn_classes

CLASSES = [f"n{i:08d}" for i in range(6)]  # paper order: forget, retain, proxy


@pytest.fixture(scope="module")
def imagenet_like(tmp_path_factory):
    """train/ and val/ in class-folder layout, 4 + 2 random JPEGs per class of 6."""
    root = tmp_path_factory.mktemp("imagenet")
    rng = np.random.default_rng(0)
    for split, n in (("train", 4), ("val", 2)):
        for c, name in enumerate(CLASSES):
            (root / split / name).mkdir(parents=True)
            for i in range(n):
                pixels = rng.integers(0, 256, (40, 48, 3), dtype=np.uint8) // (c + 1)
                Image.fromarray(pixels).save(root / split / name / f"{name}_{i}.JPEG")
    (root / "classes.txt").write_text("".join(f"{n} class {i}\n" for i, n in enumerate(CLASSES)))
    return root


def data(root, **kw):
    return FolderImageDataset("imagenet", root / "train", root / "val", root / "classes.txt",
                              image_size=32, **kw)


def test_training_rows_are_decoded_per_batch_and_eval_rows_at_once(imagenet_like):
    ds = data(imagenet_like)
    assert ds.num_classes == 6 and ds.per_class == {"train": 120, "eval": 50}
    rows, labels = ds.images([0, 1], split="train")
    assert isinstance(rows, LazyImages) and len(rows) == 8 and rows.shape == (8, 3, 32, 32)
    assert labels.tolist() == [0] * 4 + [1] * 4
    batch = rows[torch.tensor([7, 0, 7])]
    assert batch.shape == (3, 3, 32, 32) and torch.equal(batch[0], batch[2])
    assert rows[:1].shape == (1, 3, 32, 32)
    assert batch.min() >= -1 and batch.max() <= 1
    images, labels = ds.images([2], split="eval", progress=False)
    assert isinstance(images, torch.Tensor) and images.shape == (2, 3, 32, 32)
    with pytest.raises(ValueError, match="split"):
        ds.images([0], split="test")
    with pytest.raises(ValueError, match="name"):
        FolderImageDataset("cifar", imagenet_like, imagenet_like, CLASSES, 32)


def test_paper_default_split_puts_retain_after_forget():
    split = make_split(1000, range(100), dataset="imagenet")
    assert split.retain == tuple(range(100, 200)) and len(split.proxy) == 800
    assert make_split(365, range(50), dataset="places").retain == tuple(range(50, 100))


def test_unlearn_classes_runs_on_folders_with_a_proxy_retain_set(imagenet_like):
    torch.manual_seed(0)
    model = build_mae("mae-tiny", in_chans=3, embed_dim=32, depth=1, num_heads=2,
                      decoder_embed_dim=32, decoder_depth=1, decoder_num_heads=2)
    model.manifest = {"family": "mae", "config": model.config_dict(), "sha256": None}
    before = {k: v.clone() for k, v in model.state_dict().items()}
    ds = data(imagenet_like, train_per_class=3)
    unlearned, manifest = unlearn_classes(model, [0, 1], retain=[2, 3], retain_set="proxy",
                                          dataset=ds, steps=3, batch_size=2, progress=False)
    assert manifest["data"]["dataset"] == "imagenet" and manifest["data"]["retain_images"] == 6
    assert manifest["data"]["forget_images"] == 6 and manifest["data"]["per_class"]["train"] == 3
    assert set(manifest["metrics"]) == {"mask", "retain", "forget"}
    changed = [k for k, v in unlearned.state_dict().items() if not torch.equal(v, before[k])]
    assert changed and all(not k.startswith("decoder") for k in changed)  # ours: encoder only
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())  # input kept
