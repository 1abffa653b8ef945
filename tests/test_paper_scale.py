"""scale="paper" end to end, offline: a generated folder in the ImageNet layout found through
$I2I_UNLEARN_IMAGENET, and a small 3-channel MAE saved as a paper-scale checkpoint standing in
for the official one (the real weights and GPU are for the paper-scale run itself)."""
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from i2i_unlearn import scale as scale_module
from i2i_unlearn import tables, zoo
from i2i_unlearn.data import dataset_of, load_dataset
from i2i_unlearn.experiments import CACHE_ENV
from i2i_unlearn.models.mae import build_mae

ROOT = Path(__file__).resolve().parents[1]
N_CLASSES = 204  # the paper's split needs 200 (forget 0-99, retain 100-199); 4 more: proxy


@pytest.fixture(scope="module")
def imagenet_root(tmp_path_factory):
    """train/ (2 JPEGs per class), val/ (1 per class) and paper_order.txt; images differ by class."""
    root = tmp_path_factory.mktemp("imagenet")
    rng = np.random.default_rng(0)
    names = [f"n{i:08d}" for i in range(N_CLASSES)]
    for split, n in (("train", 2), ("val", 1)):
        for c, name in enumerate(names):
            (root / split / name).mkdir(parents=True)
            colour = rng.integers(0, 256, 3)
            for i in range(n):
                pixels = np.clip(colour + rng.normal(0, 40, (36, 36, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(root / split / name / f"{name}_{i}.JPEG")
    (root / "paper_order.txt").write_text("".join(f"{n}\n" for n in names))
    return root


@pytest.fixture(scope="module")
def stand_in(tmp_path_factory):
    """mae-scenes (3 channels, 32x32) saved as a checkpoint made on ImageNet."""
    out = tmp_path_factory.mktemp("stand-in") / "mae-stand-in"
    return zoo.save(zoo.load("mae-scenes"), out, {
        "recipe": {"command": "import", "paper_model": "stand-in"}, "data": {"dataset": "imagenet"}})


@pytest.fixture
def paper_env(monkeypatch, imagenet_root, tmp_path):
    monkeypatch.setenv("I2I_UNLEARN_IMAGENET", str(imagenet_root))
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setenv(zoo.DEVICE_ENV, "cpu")
    return imagenet_root


def test_paper_data_are_found_through_the_environment(monkeypatch, imagenet_root, tmp_path):
    monkeypatch.delenv("I2I_UNLEARN_IMAGENET", raising=False)
    with pytest.raises(ValueError, match="I2I_UNLEARN_IMAGENET"):
        load_dataset("imagenet", 32)
    (tmp_path / "train").mkdir(), (tmp_path / "val").mkdir()
    monkeypatch.setenv("I2I_UNLEARN_IMAGENET", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="paper_order.txt"):
        load_dataset("imagenet", 32)
    monkeypatch.setenv("I2I_UNLEARN_IMAGENET", str(imagenet_root))
    with pytest.raises(ValueError, match="image_size"):
        load_dataset("imagenet")
    with pytest.raises(ValueError, match="image_size"):
        load_dataset("mnist", 224)
    data = load_dataset("imagenet", 32)
    assert data.num_classes == N_CLASSES and data is load_dataset("imagenet", 32)
    images, labels = data.images([5, 150], split="eval", progress=False)
    assert images.shape == (2, 3, 32, 32) and labels.tolist() == [5, 150]


def test_use_scale_checks_each_model_against_the_scale(paper_env, stand_in):
    with pytest.raises(ValueError, match="scale"):
        scale_module.use_scale("huge", ["mae-mnist"])
    with pytest.raises(ValueError, match="paper-scale models"):
        scale_module.use_scale("tiny", ["mae-vit-large"])
    with pytest.raises(ValueError, match="paper-scale models"):
        scale_module.use_scale("tiny", [str(stand_in)])
    assert scale_module.use_scale("tiny", ["mae-mnist"]) == ["mae-mnist"]
    with pytest.raises(ValueError, match="tiny dataset 'mnist'"):
        scale_module.use_scale("paper", ["mae-mnist"], device="cpu")
    with pytest.raises(ValueError, match="data='places'"):
        scale_module.use_scale("paper", [str(stand_in)], data="places", device="cpu")
    assert scale_module.use_scale("paper", [str(stand_in)], device="cpu") == [str(stand_in)]
    assert "imagenet at" in scale_module.banner_note("paper")


def test_an_official_checkpoint_is_imported_once_into_a_checkpoint_folder(monkeypatch, tmp_path):
    calls = []

    def fake_official(name, weights=None):  # the real one downloads ViT-L (1.2 GB)
        calls.append(name)
        model = build_mae("mae-tiny", in_chans=3, embed_dim=32, depth=1, num_heads=2,
                          decoder_embed_dim=32, decoder_depth=1, decoder_num_heads=2)
        model.manifest = {"source": "https://example.org/official.pth", "sha256": "ab" * 32}
        return model

    monkeypatch.setattr(zoo, "load_paper_model", fake_official)
    out = zoo.import_paper_model("mae-vit-large", tmp_path / "mae")
    assert zoo.import_paper_model("mae-vit-large", tmp_path / "mae") == out and calls == ["mae-vit-large"]
    manifest = zoo.read_manifest(out)
    assert manifest["data"]["dataset"] == "imagenet"
    assert manifest["recipe"]["source_sha256"] == "ab" * 32
    assert zoo.load(out).family == "mae"
    with pytest.raises(ValueError, match="another import"):
        zoo.import_paper_model("mae-vit-large", out, data="places")
    with pytest.raises(ValueError, match="data"):
        zoo.import_paper_model("mae-vit-large", tmp_path / "x", data="mnist")


def test_tables_run_on_paper_folders_in_worker_processes(paper_env, stand_in):
    # Workers are fresh processes: they find the folders through the inherited environment.
    df = tables.compare_methods(str(stand_in), [0, 1, 2], methods=("original", "ours"), seeds=(0,),
                                metrics=("psnr",), workers=2, progress=False,
                                unlearn_kwargs={"steps": 2, "batch_size": 4})
    mse = df[df["metric"] == "mse"].set_index(["method", "set"])["value"]
    assert len(mse) == 4 and (mse > 0).all()
    assert mse["ours", "forget"] != mse["original", "forget"]  # the unlearned model differs
    assert dataset_of(zoo.read_manifest(stand_in)).name == "imagenet"


def test_a_paper_build_checks_its_hand_fetched_checkpoints_before_any_work(paper_env, monkeypatch,
                                                                          tmp_path):
    """``make book SCALE=paper`` names every official model it will run; the two that cannot be
    downloaded by a script must be given as files before the first notebook starts."""
    sys.path.insert(0, str(ROOT / "tools"))
    import build_book
    assert build_book.paper_models_named() == ["mae-vit-large", "mage-vitb", "palette-places2"]
    assert build_book.paper_models_named({"grid": [("mage-vitb", [0], "ours")]}) == ["mage-vitb"]
    monkeypatch.setenv("I2I_UNLEARN_PLACES", str(paper_env))  # the same layout serves both
    monkeypatch.delenv(zoo.weights_env("mage-vitb"), raising=False)
    monkeypatch.setenv(zoo.weights_env("palette-places2"), str(tmp_path / "16_Network.pth"))
    with pytest.raises(SystemExit, match="mage-vitb from .*export I2I_UNLEARN_WEIGHTS_MAGE_VITB=") as e:
        build_book.check_paper_inputs()
    assert "palette" not in str(e.value)
    monkeypatch.setenv(zoo.weights_env("mage-vitb"), str(tmp_path / "mage-vitb-1600.pth"))
    build_book.check_paper_inputs()


def test_qualitative_notebook_runs_at_paper_scale(paper_env, stand_in, tmp_path):
    sys.path.insert(0, str(ROOT / "tools"))
    import build_book
    from notebook_fixtures import errors, glued
    out = build_book.execute(ROOT / "notebooks" / "04_figure_qualitative.ipynb",
                             tmp_path / "04.ipynb",
                             {"scale": "paper", "models": [str(stand_in)], "steps": 2,
                              "methods": ["ours", "ours-proxy"], "with_retrained": False},
                             timeout=600)
    assert not errors(out)
    assert {"grid_forget", "grid_retain"} <= set(glued(out))
    text = out.read_text()
    assert "Scale of every number and figure on this page: `paper`" in text
    runs = list((tmp_path / "cache" / "unlearned").glob("*/manifest.json"))
    assert len(runs) == 2
    assert all(zoo.read_manifest(r.parent)["data"]["dataset"] == "imagenet" for r in runs)


def test_reproduce_checks_only_what_the_chosen_pages_need(paper_env, monkeypatch, tmp_path):
    """``i2i-unlearn reproduce 02 --scale paper`` needs ImageNet and MAGE's file, not Places or
    Palette's; the Places page does need its folder."""
    from i2i_unlearn import reproduce
    monkeypatch.delenv("I2I_UNLEARN_PLACES", raising=False)
    for name in ("mage-vitb", "palette-places2"):
        monkeypatch.delenv(zoo.weights_env(name), raising=False)
    with pytest.raises(FileNotFoundError, match="mage-vitb from .*I2I_UNLEARN_WEIGHTS_MAGE_VITB") as e:
        reproduce.check_paper_inputs(["02_table1_imagenet"])
    assert "palette" not in str(e.value)
    monkeypatch.setenv(zoo.weights_env("mage-vitb"), str(tmp_path / "mage-vitb-1600.pth"))
    reproduce.check_paper_inputs(["02_table1_imagenet", "06_ablation_alpha"])
    with pytest.raises(ValueError, match="I2I_UNLEARN_PLACES: not set"):
        reproduce.check_paper_inputs(["03_table_places"])
