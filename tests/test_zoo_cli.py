"""Tests of checkpoints (zoo) and of the command line."""
import json
import subprocess
import sys

import pandas as pd
import pytest
import torch

from i2i_unlearn import zoo
from i2i_unlearn.data import load_dataset
from i2i_unlearn.cli import main


def test_checkpoint_roundtrip_is_exact(small_checkpoint):
    model = zoo.load(small_checkpoint)
    again = zoo.load(small_checkpoint)
    for (k, a), b in zip(model.state_dict().items(), again.state_dict().values()):
        assert torch.equal(a, b), k
    assert model.manifest["sha256"] == zoo.sha256_file(small_checkpoint / zoo.WEIGHTS)


def test_corrupt_weights_are_refused(small_checkpoint, tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    for name in (zoo.WEIGHTS, zoo.MANIFEST):
        (bad / name).write_bytes((small_checkpoint / name).read_bytes())
    data = bytearray((bad / zoo.WEIGHTS).read_bytes())
    data[-1] ^= 0xFF
    (bad / zoo.WEIGHTS).write_bytes(bytes(data))
    with pytest.raises(ValueError, match="sha256"):
        zoo.load(bad)


def test_missing_checkpoint_names_the_model(tmp_path):
    with pytest.raises(FileNotFoundError, match="model"):
        zoo.load(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="manifest"):
        zoo.load(tmp_path / "empty")


@pytest.mark.parametrize("name", zoo.TINY_MODELS)
def test_shipped_models_inpaint_better_than_the_mean(name):
    from i2i_unlearn.evaluate import inpaint
    from i2i_unlearn.metrics import compute_metrics, hidden_mse, mean_fill, tiny_nets
    model = zoo.load(name)
    manifest = model.manifest
    assert manifest["recipe"]["command"] == "pretrain"
    data = manifest["data"]["dataset"]
    dataset = load_dataset(data)
    images, labels = dataset.eval_images, dataset.eval_labels
    fill, mask = inpaint(model, images, "centre-8/16")  # as pretrain's heldout_metrics
    assert hidden_mse(fill, images, mask).mean().item() == pytest.approx(
        manifest["metrics"]["eval_mse"], rel=1e-4)
    # Judged on the classes it was trained on: a retrained reference is *meant* to fail on the
    # classes it never saw (mae-scenes-retrained: 1.28x the mean fill on scenes 0-2, 0.51x on
    # the others).
    seen = ~torch.isin(labels, torch.tensor(manifest["recipe"].get("exclude_classes") or []))
    images, fill, mask = images[seen], fill[seen], mask[seen]
    metric, key = JUDGED_BY[manifest["family"]]
    nets = tiny_nets(data) if metric == "fid" else None
    ours = compute_metrics(fill, images, mask, nets, metrics=(metric,))
    mean = compute_metrics(mean_fill(images, mask), images, mask, nets, metrics=(metric,))
    assert ours[key] < FILL_BAR * mean[key], (ours, mean)


# How much better than filling the hole with the visible mean a shipped model must be.
# - MAE, by hidden-region MSE: it predicts one fill, close to the posterior mean.
# - Diffusion and VQ-GAN *draw* a fill, and a draw from the true posterior errs twice as much
#   as its mean (E|s - x|^2 = 2 E|x - E[x|v]|^2): on scenes, where mae-scenes sits at 0.57x the
#   mean fill, even a perfect sampler would be at 1.14x. Samplers are judged by what they are
#   for, how real their fills look: classifier FID of the fills. Measured at centre-8/16:
#   diffusion-mnist 0.08x and vqgan-mnist 0.17x the mean fill's FID, diffusion-scenes 0.12x,
#   vqgan-scenes 0.59x
#   (mae-scenes, for comparison, 0.98x: on scenes the classifier's FID barely tells a blurred
#   fill from the mean fill).
FILL_BAR = 0.75
JUDGED_BY = {"mae": ("psnr", "mse"), "diffusion": ("fid", "fid"), "vqgan": ("fid", "fid")}


def test_cli_unlearn_then_evaluate(small_checkpoint, tmp_path, capsys):
    out = tmp_path / "ours"
    assert main(["unlearn", "--model", str(small_checkpoint), "--forget", "0", "1", "2",
                 "--method", "ours", "--steps", "3", "--batch-size", "4", "--out", str(out),
                 "--quiet"]) == 0
    assert (out / zoo.MANIFEST).exists()
    scores_file = tmp_path / "scores.json"
    assert main(["evaluate", "--model", str(out), "--forget", "0", "1", "2",
                 "--json", str(scores_file)]) == 0
    scores = json.loads(scores_file.read_text())
    assert set(scores) == {"retain", "forget"}
    assert set(scores["forget"]) == {"mse", "psnr"} and scores["forget"]["mse"] > 0
    # The output directory is never overwritten.
    assert main(["unlearn", "--model", str(small_checkpoint), "--forget", "0", "--method", "ours",
                 "--out", str(out), "--quiet"]) == 2
    assert "--out" in capsys.readouterr().err


@pytest.mark.parametrize("args,needle", [
    (["--forget", "12"], "forget"),
    (["--forget", "1", "--retain", "1", "2"], "forget and retain"),
    (["--forget", "1", "--alpha", "-1"], "alpha"),
    (["--forget", "1", "--class-list", "x.txt"], "--class-list: only for a paper model"),
])
def test_cli_bad_input_fails_clearly_and_leaves_nothing(small_checkpoint, tmp_path, capsys,
                                                        args, needle):
    out = tmp_path / "never"
    code = main(["unlearn", "--model", str(small_checkpoint), "--method", "ours", "--steps", "2",
                 "--out", str(out), "--quiet", *args])
    assert code == 2
    assert needle in capsys.readouterr().err
    assert not out.exists()


def test_console_script_help_explains_every_option():
    for command, options in {"pretrain": ["--exclude-classes", "--steps", "--seed", "--preset",
                                          "--mask-ratio"],
                             "unlearn": ["--forget", "--retain", "--retain-set", "--proxy", "--method", "--alpha",
                                         "--resume", "--out"],
                             "evaluate": ["--json", "--mask", "--ceiling", "--ceiling-draws"]}.items():
        text = subprocess.run([sys.executable, "-m", "i2i_unlearn.cli", command, "--help"],
                              capture_output=True, text=True, check=True).stdout
        for option in options:
            assert option in text


def test_pretrain_excludes_classes_for_the_retrained_reference():
    from i2i_unlearn.loop import LoopConfig
    from i2i_unlearn.pretrain import pretrain
    model, info = pretrain("mae", "mnist", exclude_classes=[0, 1, 2],
                           loop=LoopConfig(steps=2, warmup_steps=1), batch_size=8, progress=False)
    assert info["data"]["classes"] == list(range(3, 10))
    assert info["data"]["train_images"] == 7 * 450
    assert info["recipe"]["exclude_classes"] == [0, 1, 2]
    with pytest.raises(ValueError, match="exclude_classes"):
        pretrain("mae", "mnist", exclude_classes=[10], loop=LoopConfig(steps=1))


def test_pretrain_mask_ratio_is_the_models_corruption_and_is_recorded(tmp_path, capsys):
    out = tmp_path / "light"
    assert main(["pretrain", "--model", "mae", "--data", "scenes", "--steps", "2",
                 "--batch-size", "4", "--mask-ratio", "0", "0.5", "--out", str(out), "--quiet"]) == 0
    model = zoo.load(out)
    assert model.config.train_mask_ratio == (0.0, 0.5)
    assert model.manifest["recipe"]["mask_ratio"] == [0.0, 0.5]
    bad = tmp_path / "bad"
    assert main(["pretrain", "--model", "mae", "--data", "scenes", "--steps", "2",
                 "--mask-ratio", "0.8", "0.2", "--out", str(bad), "--quiet"]) == 2
    assert "--mask-ratio" in capsys.readouterr().err and not bad.exists()


def test_paper_palette_loads_from_a_hand_downloaded_file(tmp_path):
    """Palette's weights sit in a web folder: no silent download, a clear request for the file,
    and a file in the official ``*_Network.pth`` layout loads with its sha256 recorded."""
    from i2i_unlearn.models.diffusion import DiffusionInpainter
    from i2i_unlearn.models.palette import official_palette_shapes
    with pytest.raises(ValueError, match="^weights: palette-places2 .*drive.google.com"):
        zoo.load_paper_model("palette-places2")
    with pytest.raises(FileNotFoundError, match="^weights: "):
        zoo.load_paper_model("palette-places2", weights=tmp_path / "missing.pth")
    with pytest.raises(ValueError, match="^name: "):
        zoo.load_paper_model("palette-celeba")
    path = tmp_path / "16_Network.pth"
    torch.save({k: torch.full(s, 0.01) for k, s in official_palette_shapes().items()}, path)
    model = zoo.load_paper_model("palette-places2", weights=path)
    assert isinstance(model, DiffusionInpainter) and model.config.img_size == 256
    assert model.manifest["sha256"] == zoo.sha256_file(path)
    assert torch.all(model.unet.conv_in.weight == 0.01)


def test_paper_mage_loads_from_the_file_its_environment_variable_names(tmp_path, monkeypatch):
    """MAGE ViT-B is fetched by hand too: without a file the error names the page and the
    variable; the file that ``$I2I_UNLEARN_WEIGHTS_MAGE_VITB`` names (``{"model": sd}``, the
    tokenizer under ``vqgan.``) loads into the VQ-GAN family, its sha256 recorded. The
    transformer is shrunk to one block to keep the file small; the tokenizer is full size."""
    from i2i_unlearn.models import mage
    from i2i_unlearn.models.vqgan import VQGANInpainter
    env = zoo.weights_env("mage-vitb")
    assert env == "I2I_UNLEARN_WEIGHTS_MAGE_VITB"
    monkeypatch.delenv(env, raising=False)
    assert zoo.missing_paper_weights(["mae-vit-large", "mage-vitb"]) == ["mage-vitb"]
    with pytest.raises(ValueError, match=r"^weights: mage-vitb .*LTH14/mage.*\$I2I_UNLEARN_WEIGHTS_MAGE_VITB"):
        zoo.load_paper_model("mage-vitb")
    monkeypatch.setitem(mage.MAGE_ARCHS, "mage_vit_base_patch16", dict(
        embed_dim=64, depth=1, num_heads=2, decoder_embed_dim=64, decoder_depth=1,
        decoder_num_heads=2))
    state = {k: torch.full(s, 0.01, dtype=torch.float16)
             for k, s in mage.official_mage_shapes().items()}
    state["blocks.0.attn.qkv.bias"] = torch.arange(192, dtype=torch.float16)
    path = tmp_path / "mage-vitb-1600.pth"
    torch.save({"model": state, "epoch": 1599}, path)
    monkeypatch.setenv(env, str(path))
    assert zoo.missing_paper_weights(["mage-vitb"]) == []
    model = zoo.load_paper_model("mage-vitb")
    assert isinstance(model, VQGANInpainter) and model.config.img_size == 256
    assert model.manifest["sha256"] == zoo.sha256_file(path) and model.manifest["family"] == "vqgan"
    assert torch.equal(model.blocks[0].attn.qkv.bias, torch.arange(192.0))
    assert model.config.codebook_size == 1024 and model.config.embed_dim == 64
    # The book's paper path: imported once as a checkpoint folder, which loads back the same.
    back = zoo.load(zoo.import_paper_model("mage-vitb", tmp_path / "mage-imagenet"))
    assert back.manifest["data"]["dataset"] == "imagenet" and back.config == model.config
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in back.state_dict().items())


def test_cli_class_ranges_and_paper_inputs(small_checkpoint, tmp_path, capsys):
    out = tmp_path / "ranges"
    assert main(["unlearn", "--model", str(small_checkpoint), "--forget", "0-2", "--retain", "3",
                 "5-6", "--method", "ours", "--steps", "1", "--batch-size", "2", "--out", str(out),
                 "--quiet"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["data"]["forget"] == [0, 1, 2] and manifest["data"]["retain"] == [3, 5, 6]
    # A paper model needs its data folders; the error names the first missing flag.
    code = main(["unlearn", "--model", "mae-vit-large", "--forget", "0-99", "--method", "ours",
                 "--out", str(tmp_path / "paper"), "--quiet", "--data", "imagenet"])
    assert code == 2 and "--train-root" in capsys.readouterr().err
    assert not (tmp_path / "paper").exists()
    # evaluate takes an official model by name too (the paper's "original" row), with its folders
    code = main(["evaluate", "--model", "mae-vit-large", "--forget", "0-99", "--quiet",
                 "--data", "imagenet", "--train-root", str(tmp_path)])
    assert code == 2 and "--eval-root" in capsys.readouterr().err
    code = main(["evaluate", "--model", str(out), "--forget", "0", "--weights", "x.pth", "--quiet"])
    assert code == 2 and "--weights: only for a paper model" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # argparse rejects a malformed range before anything runs
        main(["unlearn", "--model", str(small_checkpoint), "--forget", "1-x", "--method", "ours",
              "--out", str(tmp_path / "bad")])
    assert "range A-B" in capsys.readouterr().err
    # evaluate scores the classes a range names, as unlearn takes them
    scores = tmp_path / "scores.json"
    assert main(["evaluate", "--model", str(out), "--forget", "0-2", "--retain", "3", "5-6",
                 "--json", str(scores), "--quiet"]) == 0
    assert set(json.loads(scores.read_text())) == {"retain", "forget"}
    from i2i_unlearn.cli import build_parser, _flat_ids
    args = build_parser().parse_args(["audit", "--model", str(out), "--forget", "2", "0-1"])
    assert _flat_ids(args.forget) == [0, 1, 2] and args.retain is None


def test_float16_weights_halve_the_file_and_load_as_what_was_measured(tmp_path):
    from safetensors.torch import load_file
    from i2i_unlearn.pretrain import heldout_metrics
    for dtype in ("float32", "float16"):
        assert main(["pretrain", "--model", "mae", "--data", "mnist", "--steps", "2",
                     "--batch-size", "4", "--weights-dtype", dtype, "--out",
                     str(tmp_path / dtype), "--quiet"]) == 0
    full, half = (tmp_path / d / zoo.WEIGHTS for d in ("float32", "float16"))
    assert half.stat().st_size < 0.55 * full.stat().st_size
    assert {v.dtype for v in load_file(half).values() if v.is_floating_point()} == {torch.float16}
    model = zoo.load(tmp_path / "float16")
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert model.manifest["recipe"]["weights_dtype"] == "float16"
    # the recorded metrics describe the stored (rounded) weights
    assert heldout_metrics(model, "mnist")["eval_mse"] == model.manifest["metrics"]["eval_mse"]


def test_float16_save_refuses_weights_it_would_round(tmp_path):
    from i2i_unlearn.models.mae import build_mae
    model = build_mae("mae-tiny", img_size=32, in_chans=1)
    with pytest.raises(ValueError, match="round_weights"):
        zoo.save(model, tmp_path / "m", {"recipe": {"command": "pretrain",
                                                      "weights_dtype": "float16"}})
    assert not (tmp_path / "m" / zoo.MANIFEST).exists()


def test_cli_evaluate_scores_the_objectives_ceiling(tmp_path, capsys):
    """``evaluate --ceiling`` adds the original's target fill on the forget classes (method
    'target-fill'), scored with the same --metrics; for an unlearned checkpoint it is its
    parent's, the same numbers."""
    from i2i_unlearn.evaluate import target_fill_scores
    from i2i_unlearn.metrics import nets_for_data

    args = ["--forget", "0-2", "--ceiling", "--ceiling-draws", "2", "--metrics", "fid", "psnr",
            "--quiet"]
    rows, scores = tmp_path / "rows.csv", tmp_path / "scores.json"
    assert main(["evaluate", "--model", "mae-mnist", *args, "--csv", str(rows),
                 "--json", str(scores)]) == 0
    printed = capsys.readouterr().out
    assert "objective's ceiling (2 noise draws)" in printed and "forget FID" in printed
    df = pd.read_csv(rows)
    fill = df[df["method"] == "target-fill"]
    assert set(fill["set"]) == {"forget"} and set(fill["metric"]) == {"fid", "mse", "psnr"}
    images, labels = load_dataset("mnist").images([0, 1, 2], split="eval")
    expected = target_fill_scores(zoo.load("mae-mnist"), images, metrics=("fid", "psnr"),
                                  nets=nets_for_data("mnist"), labels=labels, draws=2)
    for metric in ("fid", "mse"):
        value = fill.loc[fill["metric"] == metric, "value"].item()
        assert value == pytest.approx(expected[metric], rel=1e-6), metric
    original_fid = df[(df["method"] == "original") & (df["set"] == "forget")
                      & (df["metric"] == "fid")]["value"].item()
    assert expected["fid"] > 1.5 * original_fid  # x2.6 on mae-mnist at 8/16
    saved = json.loads(scores.read_text())
    assert set(saved) == {"retain", "forget", "target-fill"}
    assert saved["target-fill"]["mse"] > 2 * saved["forget"]["mse"]  # x3.9 on mae-mnist

    out = tmp_path / "ours"
    assert main(["unlearn", "--model", "mae-mnist", "--forget", "0-2", "--method", "ours",
                 "--steps", "2", "--out", str(out), "--quiet"]) == 0
    again = tmp_path / "again.json"
    assert main(["evaluate", "--model", str(out), *args, "--json", str(again)]) == 0
    assert json.loads(again.read_text())["target-fill"] == pytest.approx(saved["target-fill"])
    assert main(["evaluate", "--model", "mae-mnist", "--forget", "0", "--ceiling",
                 "--ceiling-draws", "0", "--quiet"]) == 2
    assert "--ceiling-draws" in capsys.readouterr().err
