"""Tests of the metrics (FID, IS, cosine, accuracy, PSNR), their feature networks and the shipped
tiny-scale classifiers. Paper-scale networks are replaced by stand-ins with the same contract."""
import sys

import numpy as np
import pytest
import torch
from torch import nn

from i2i_unlearn import metrics as M
from i2i_unlearn.classifiers import (REQUIRED_ACCURACY, ClassifierRecipe, accuracy,
                                     load_classifier, train_classifier, zoo_dir)
from i2i_unlearn.data import load_dataset


def correlated_features(n: int, d: int, seed: int, shift: float = 0.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    mixing = torch.randn(d, d, generator=g) / d ** 0.5
    return torch.randn(n, d, generator=g) @ mixing + shift


# -- FID ------------------------------------------------------------------------------------
def test_fid_matches_torchmetrics_on_the_same_features():
    from torchmetrics.image.fid import FrechetInceptionDistance

    class Passthrough(nn.Module):  # the "images" given to torchmetrics are our features
        num_features = 64

        def forward(self, x):
            return x

    real = correlated_features(300, 64, 0)
    fake = correlated_features(250, 64, 1, shift=0.3)
    reference = FrechetInceptionDistance(feature=Passthrough())
    reference.update(real.double(), real=True)
    reference.update(fake.double(), real=False)
    ours = M.fid_from_features(fake, real)
    assert ours == pytest.approx(reference.compute().item(), abs=1e-3)
    assert ours > 1  # not a vacuous agreement


def test_fid_matches_scipy_sqrtm():
    from scipy import linalg
    a, b = correlated_features(200, 32, 2), correlated_features(200, 32, 3, shift=0.1)
    mu1, s1 = a.double().numpy().mean(0), np.cov(a.double().numpy(), rowvar=False)
    mu2, s2 = b.double().numpy().mean(0), np.cov(b.double().numpy(), rowvar=False)
    covmean = linalg.sqrtm(s1 @ s2).real
    expected = ((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean)
    assert M.fid_from_features(a, b) == pytest.approx(expected, abs=1e-3)


def test_fid_zero_for_identical_sets_and_mean_shift_only_for_translated_sets():
    a = correlated_features(100, 16, 4)
    assert M.fid_from_features(a, a) == pytest.approx(0, abs=1e-6)
    shift = torch.full((16,), 0.5)
    assert M.fid_from_features(a + shift, a) == pytest.approx(16 * 0.25, abs=1e-6)
    # Fewer samples than dimensions: singular covariances still give a finite, real value.
    assert np.isfinite(M.fid_from_features(correlated_features(10, 64, 5), a.repeat(1, 4)))
    with pytest.raises(ValueError, match="features"):
        M.fid_from_features(a[:1], a)


# -- IS, cosine, accuracy, PSNR -------------------------------------------------------------
def test_inception_score_bounds_and_torchmetrics_agreement():
    assert M.inception_score(torch.zeros(50, 10)) == pytest.approx(1.0)
    confident = torch.eye(5).repeat(20, 1) * 50  # sure, and spread evenly over 5 classes
    assert M.inception_score(confident) == pytest.approx(5.0, rel=1e-6)
    from torchmetrics.image.inception import InceptionScore

    class Passthrough(nn.Module):
        def forward(self, x):
            return x

    logits = torch.randn(120, 10, generator=torch.Generator().manual_seed(0)) * 3
    reference = InceptionScore(feature=Passthrough(), splits=1)
    reference.update(logits)
    assert M.inception_score(logits) == pytest.approx(reference.compute()[0].item(), abs=1e-4)


def test_cosine_and_accuracy():
    a = torch.randn(30, 8)
    assert M.embedding_cosine(a, a) == pytest.approx(1.0)
    assert M.embedding_cosine(a, -a) == pytest.approx(-1.0)
    assert M.embedding_cosine(torch.tensor([[1.0, 0]]), torch.tensor([[0.0, 2]])) == pytest.approx(0)
    with pytest.raises(ValueError, match="pair up"):
        M.embedding_cosine(a, a[:5])
    logits = torch.tensor([[2.0, 0], [0, 1], [3, 1], [0, 5]])
    assert M.classifier_accuracy(logits, torch.tensor([0, 1, 1, 1])) == 0.75


def test_psnr_of_the_hidden_region_only():
    x = torch.zeros(2, 1, 8, 8)
    mask = torch.zeros(2, 1, 8, 8)
    mask[:, :, 2:4, 2:4] = 1
    gen = x + 0.1 * mask - 5 * (1 - mask)  # visible errors must not count
    out = M.compute_metrics(gen, x, mask, None, ["psnr"])
    assert out["mse"] == pytest.approx(0.01)
    assert out["psnr"] == pytest.approx(10 * np.log10(4 / 0.01))


def test_metric_names_and_aliases():
    assert M.normalize_metrics(["psnr", "forget-acc", "fid"]) == ("fid", "acc", "psnr")
    assert M.normalize_metrics(["clip", "is"]) == ("is", "cosine")
    with pytest.raises(ValueError, match="metrics"):
        M.normalize_metrics(["fjd"])
    with pytest.raises(ValueError, match="metrics"):
        M.normalize_metrics([])


# -- paper-scale adapters, with stand-ins -----------------------------------------------------
class StandInInception(nn.Module):
    """torch-fidelity's contract: uint8 (N, 3, H, W) -> (pool features, 1008 logits); the real
    network's features are 2048-d, the stand-in's 32-d (keeps the test fast)."""

    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(3, 1008)
        self.seen = []

    def forward(self, x):
        assert x.dtype == torch.uint8 and x.shape[1] == 3
        self.seen.append(x)
        logits = self.proj(x.float().mean((2, 3)) / 255)
        return logits[:, :32], logits


class StandInClip(nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(3, 16)
        self.sizes = []

    def encode_image(self, x):
        self.sizes.append(tuple(x.shape[1:]))
        return self.proj(x.mean((2, 3)))


def test_paper_scale_interface_with_stand_in_networks():
    torch.manual_seed(0)
    inception, clip = M.InceptionFeatures(StandInInception()), M.ClipFeatures(StandInClip())
    nets = M.MetricNets(fid=inception, inception=inception, cosine=clip, scale="paper")
    real = torch.rand(12, 1, 32, 32) * 2 - 1  # grey: repeated to RGB for both networks
    mask = torch.zeros(12, 1, 32, 32)
    mask[..., 8:24, 8:24] = 1
    gen = real * (1 - mask) + 0.3 * mask
    out = M.compute_metrics(gen, real, mask, nets, ["fid", "is", "cosine", "psnr"])
    assert set(out) == {"fid", "is", "cosine", "mse", "psnr"}
    assert out["fid"] > 0 and 1 <= out["is"] and -1 <= out["cosine"] <= 1
    seen = inception.backbone.seen[0]
    assert seen.max() <= 255 and torch.equal(seen[:, 0], seen[:, 1])
    assert clip.model.sizes[0] == (3, 224, 224)
    same = M.compute_metrics(real, real, mask, nets, ["fid", "cosine"])
    assert same["fid"] == pytest.approx(0, abs=1e-6) and same["cosine"] == pytest.approx(1)
    with pytest.raises(ValueError, match="acc"):  # no classifier at paper scale here
        M.compute_metrics(gen, real, mask, nets, ["forget-acc"], labels=torch.zeros(12))


def test_uint8_conversion_covers_the_range():
    x = torch.tensor([-1.0, 0.0, 1.0]).view(1, 1, 1, 3)
    assert M.to_uint8_rgb(x)[0, :, 0].tolist() == [[0, 128, 255]] * 3


def test_missing_open_clip_fails_with_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "open_clip", None)
    with pytest.raises(ImportError, match="open_clip_torch"):
        M.load_clip()


# -- the shipped tiny-scale classifiers ----------------------------------------------------
@pytest.mark.parametrize("data", ["mnist", "scenes"])
def test_shipped_classifiers_reach_the_required_accuracy(data):
    model = load_classifier(data)
    d = load_dataset(data)
    acc = accuracy(model, d.eval_images, d.eval_labels)
    assert acc >= REQUIRED_ACCURACY[data]
    assert acc == pytest.approx(model.manifest["metrics"]["eval_accuracy"], abs=1e-6)
    assert (zoo_dir(data) / "model.safetensors").stat().st_size < 1_000_000


def test_classifier_scores_the_ground_truth_perfectly():
    nets = M.tiny_nets("mnist")
    d = load_dataset("mnist")
    x, y = d.images([0, 1, 2], split="eval")
    mask = torch.zeros(len(x), 1, 32, 32)
    mask[..., 8:24, 8:24] = 1
    out = M.compute_metrics(x, x, mask, nets, ["fid", "is", "cosine", "acc"], labels=y)
    assert out["fid"] == pytest.approx(0, abs=1e-6) and out["cosine"] == pytest.approx(1)
    assert out["acc"] > 0.95 and 2.5 < out["is"] < 3.5  # ~three confident, balanced classes
    blurred = M.mean_fill(x, mask)  # the trivial inpainter is far from the truth
    worse = M.compute_metrics(blurred, x, mask, nets, ["fid", "cosine", "acc"], labels=y)
    assert worse["fid"] > 1 and worse["cosine"] < 0.99


def test_classifier_recipe_is_deterministic_and_checked(tmp_path):
    from i2i_unlearn.classifiers import save_classifier
    recipe = ClassifierRecipe(steps=3, batch_size=8)
    a, info = train_classifier("scenes", recipe, progress=False, score=False)
    b, _ = train_classifier("scenes", recipe, progress=False, score=False)
    for (k, u), v in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(u, v), k
    save_classifier(a, tmp_path / "c", info)
    loaded = load_classifier(tmp_path / "c")
    assert loaded.manifest["recipe"]["steps"] == 3
    weights = tmp_path / "c" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="sha256"):
        load_classifier(tmp_path / "c")
    with pytest.raises(FileNotFoundError, match="classifier"):
        load_classifier(tmp_path / "nowhere")


def test_fid_matches_torchmetrics_on_classifier_features_of_inpaintings():
    """The features the tiny tables use (ReLU embeddings, some dimensions dead: singular
    covariances) still agree with torchmetrics' independent computation."""
    from torchmetrics.image.fid import FrechetInceptionDistance

    class Passthrough(nn.Module):
        num_features = 64

        def forward(self, x):
            return x

    x, _ = load_dataset("mnist").images([0, 1, 2], split="eval")
    mask = torch.zeros(len(x), 1, 32, 32)
    mask[..., 8:24, 8:24] = 1
    net = M.tiny_nets("mnist").fid
    fake, real = M.run_net(net, M.mean_fill(x, mask))["features"], M.run_net(net, x)["features"]
    reference = FrechetInceptionDistance(feature=Passthrough())
    reference.update(real.double(), real=True)
    reference.update(fake.double(), real=False)
    assert M.fid_from_features(fake, real) == pytest.approx(reference.compute().item(), abs=1e-3)


def test_clip_loader_with_real_open_clip_code_and_no_weights():
    """The paper-scale CLIP path end to end through open_clip, offline: a randomly initialised
    smaller architecture (ViT-H-14 weights are only fetched where reachable)."""
    pytest.importorskip("open_clip")
    torch.manual_seed(0)
    net = M.load_clip("ViT-S-32", pretrained=None)
    emb = net(torch.rand(2, 1, 32, 32) * 2 - 1)["embedding"]
    assert emb.shape == (2, net.model.visual.output_dim) and torch.isfinite(emb).all()
