"""The paper's metrics, with pluggable feature networks, and reconstruction metrics.

Every metric compares a generated image with its own ground truth, separately on ``D_R`` and
``D_F`` (paper, evaluation code):

=========  ==============================================================  ==================
metric     definition                                                      network output
=========  ==============================================================  ==================
fid        Fréchet distance of feature statistics, generated vs truth      ``features``
is         Inception Score ``exp E_x KL(p(y|x) || p(y))`` of generated     ``logits``
cosine     mean per-image cosine of embeddings, generated vs its truth     ``embedding``
acc        accuracy of a classifier on generated images (true labels)      ``logits`` (classes)
mse, psnr  hidden-region MSE and PSNR (data range 2 for [-1, 1])           none
=========  ==============================================================  ==================

A ``FeatureNet`` maps images in [-1, 1] to a dict of those outputs. ``MetricNets`` says which
network serves which metric: at tiny scale one small classifier (``tiny_nets``) serves all; at
paper scale Inception serves FID / IS and CLIP ViT-H-14 the cosine (``paper_nets``, which imports
and downloads only when called); ``nets_for_data`` picks by dataset. ``compute_metrics`` runs each network once per image set.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

METRICS = ("fid", "is", "cosine", "acc", "psnr")  # "psnr" also reports "mse"
METRIC_ALIASES = {"forget-acc": "acc", "accuracy": "acc", "clip": "cosine", "mse": "psnr",
                  "inception-score": "is"}


# -- reconstruction ---------------------------------------------------------------------
def hidden_mse(generated: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-image mean squared error over hidden pixels and channels.

    generated, target: (B, C, H, W); mask: (B, 1, H, W), 1 = hidden. -> (B,)
    """
    hidden = mask.expand_as(target)
    err = ((generated - target) ** 2 * hidden).flatten(1).sum(1)
    count = hidden.flatten(1).sum(1)
    if (count == 0).any():
        raise ValueError("mask: some images have no hidden pixel; nothing to score")
    return err / count


def psnr(mse: torch.Tensor, data_range: float = 2.0) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB from a per-image MSE (data range 2 for [-1, 1] images)."""
    return 10 * torch.log10(data_range ** 2 / mse.clamp_min(1e-12))


def mean_fill(images: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The trivial inpainter: each image's hole filled with the mean of its visible pixels."""
    visible = 1 - mask
    mean = (images * visible).sum((2, 3), keepdim=True) / visible.sum((2, 3), keepdim=True).clamp_min(1)
    return images * visible + mean * mask


# -- distribution and embedding metrics (pure functions of network outputs) -------------
def feature_statistics(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, D) -> mean (D,) and unbiased covariance (D, D), in float64."""
    if features.ndim != 2 or len(features) < 2:
        raise ValueError(f"features: expected (N, D) with N >= 2, got {tuple(features.shape)}")
    f = features.double()
    mu = f.mean(0)
    centred = f - mu
    return mu, centred.T @ centred / (len(f) - 1)


def _psd_sqrt(matrix: torch.Tensor) -> torch.Tensor:
    values, vectors = torch.linalg.eigh((matrix + matrix.T) / 2)
    return (vectors * values.clamp_min(0).sqrt()) @ vectors.T


def frechet_distance(mu1: torch.Tensor, sigma1: torch.Tensor, mu2: torch.Tensor,
                     sigma2: torch.Tensor) -> float:
    """``||mu1 - mu2||² + tr(S1 + S2 - 2 (S1 S2)^½)`` between two Gaussians, in float64.

    ``tr (S1 S2)^½`` is the sum of square roots of the eigenvalues of the symmetric PSD matrix
    ``S1^½ S2 S1^½`` (same spectrum as ``S1 S2``), which stays real and stable when the
    covariances are singular (fewer samples than feature dimensions).
    """
    mu1, mu2, sigma1, sigma2 = (t.double() for t in (mu1, mu2, sigma1, sigma2))
    root = _psd_sqrt(sigma1)
    inner = root @ sigma2 @ root
    tr_sqrt = torch.linalg.eigvalsh((inner + inner.T) / 2).clamp_min(0).sqrt().sum()
    value = (mu1 - mu2).square().sum() + sigma1.trace() + sigma2.trace() - 2 * tr_sqrt
    return float(value.clamp_min(0))


def fid_from_features(generated: torch.Tensor, real: torch.Tensor) -> float:
    """FID between two feature sets (N1, D), (N2, D)."""
    return frechet_distance(*feature_statistics(generated), *feature_statistics(real))


def inception_score(logits: torch.Tensor, splits: int = 1) -> float:
    """``exp(E_x KL(p(y|x) || p(y)))`` from logits (N, K), averaged over ``splits`` chunks.

    1 when every image gets the same prediction; K when the predictions are confident and spread
    evenly over K classes.
    """
    if logits.ndim != 2 or len(logits) < splits:
        raise ValueError(f"logits: expected (N, K) with N >= splits={splits}, got {tuple(logits.shape)}")
    log_p = F.log_softmax(logits.double(), dim=1)
    scores = []
    for chunk in log_p.chunk(splits):
        log_marginal = torch.logsumexp(chunk, 0) - torch.log(torch.tensor(float(len(chunk))))
        kl = (chunk.exp() * (chunk - log_marginal)).sum(1).mean()
        scores.append(kl.exp())
    return float(torch.stack(scores).mean())


def embedding_cosine(generated: torch.Tensor, real: torch.Tensor) -> float:
    """Mean per-image cosine similarity of embeddings (N, E) of generated images and their truth
    (the paper's "CLIP" column; higher = closer)."""
    if generated.shape != real.shape:
        raise ValueError(f"embeddings: generated {tuple(generated.shape)} and real "
                         f"{tuple(real.shape)} must pair up row by row")
    return F.cosine_similarity(generated.double(), real.double(), dim=1).mean().item()


def classifier_accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Share of images whose predicted class is the true label."""
    return (logits.argmax(1).cpu() == labels.cpu()).double().mean().item()


# -- feature networks -------------------------------------------------------------------
class FeatureNet(nn.Module):
    """Images (N, C, H, W) in [-1, 1] -> dict of outputs named ``features`` (for FID),
    ``logits`` (IS, accuracy) and ``embedding`` (cosine). ``outputs`` lists those it provides."""

    outputs: tuple[str, ...] = ()
    name: str = "feature-net"

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        raise NotImplementedError


class ClassifierFeatures(FeatureNet):
    """A tiny-scale classifier (``classifiers.SmallCNN``): its 64-d embedding is both the FID
    feature and the cosine embedding, its logits serve IS and accuracy."""

    outputs = ("features", "logits", "embedding")

    def __init__(self, classifier: nn.Module, name: str = "classifier"):
        super().__init__()
        self.classifier, self.name = classifier.eval(), name

    @torch.no_grad()
    def forward(self, images):
        emb = self.classifier.embed(images)
        return {"features": emb, "embedding": emb, "logits": self.classifier.head(emb)}


def to_uint8_rgb(images: torch.Tensor) -> torch.Tensor:
    """[-1, 1] float (N, 1 or 3, H, W) -> uint8 (N, 3, H, W) in 0..255 (grey repeated)."""
    x = ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x


class InceptionFeatures(FeatureNet):
    """Inception-v3 as FID / IS use it: ``backbone(uint8 (N, 3, H, W))`` returns the 2048-d pool
    features and the 1008 unbiased logits (torch-fidelity's ``inception-v3-compat``, which
    resizes to 299 px itself). Any module with that contract can stand in."""

    outputs = ("features", "logits")
    name = "inception-v3"

    def __init__(self, backbone: nn.Module):
        super().__init__()
        self.backbone = backbone.eval()

    @torch.no_grad()
    def forward(self, images):
        features, logits = self.backbone(to_uint8_rgb(images))
        return {"features": features.flatten(1), "logits": logits.flatten(1)}


CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


class ClipFeatures(FeatureNet):
    """CLIP image embeddings: ``model.encode_image`` on images resized to ``size`` px (bicubic)
    and normalised with CLIP's mean / std, as open_clip's preprocessing does."""

    outputs = ("embedding",)
    name = "clip"

    def __init__(self, model: nn.Module, size: int = 224):
        super().__init__()
        self.model, self.size = model.eval(), size
        self.register_buffer("mean", torch.tensor(CLIP_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(CLIP_STD).view(1, 3, 1, 1))

    @torch.no_grad()
    def forward(self, images):
        x = (images.clamp(-1, 1) + 1) / 2
        x = x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x
        x = F.interpolate(x, size=(self.size, self.size), mode="bicubic", align_corners=False,
                          antialias=True).clamp(0, 1)
        return {"embedding": self.model.encode_image((x - self.mean) / self.std).float()}


class _FidelityInception(nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net._torch_fidelity_forward(x)


def load_inception(weights_path: str | None = None) -> InceptionFeatures:
    """torchmetrics' Inception-v3 (torch-fidelity weights, fetched once from GitHub)."""
    try:
        from torchmetrics.image.fid import NoTrainInceptionV3
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("Inception metrics need the paper extra: pip install -e '.[paper]' "
                          "(torchmetrics[image], torch-fidelity)") from err
    try:
        net = NoTrainInceptionV3("inception-v3-compat", ["2048", "logits_unbiased"],
                                 feature_extractor_weights_path=weights_path)
    except Exception as err:  # pragma: no cover - network
        raise ConnectionError(f"Inception-v3 weights are not reachable ({err}); download "
                           "pt_inception-2015-12-05-6726825d.pth and pass weights_path") from err
    return InceptionFeatures(_FidelityInception(net))


def load_clip(arch: str = "ViT-H-14", pretrained: str = "laion2b_s32b_b79k") -> ClipFeatures:
    """open_clip's CLIP ViT-H-14 (the paper's cosine network); downloads its weights once."""
    try:
        import open_clip
    except ImportError as err:
        raise ImportError("the CLIP cosine needs open_clip: pip install open_clip_torch") from err
    try:
        model = open_clip.create_model(arch, pretrained=pretrained)
    except Exception as err:  # pragma: no cover - network
        raise ConnectionError(f"CLIP {arch} ({pretrained}) weights are not reachable: {err}") from err
    return ClipFeatures(model, size=model.visual.image_size[0]
                        if isinstance(model.visual.image_size, tuple) else model.visual.image_size)


@dataclass
class MetricNets:
    """Which network serves which metric; ``None`` where the metric is unavailable."""

    fid: FeatureNet | None = None
    inception: FeatureNet | None = None
    cosine: FeatureNet | None = None
    classifier: FeatureNet | None = None  # logits in the dataset's own class ids
    scale: str = "tiny"

    def net_for(self, metric: str) -> tuple[FeatureNet | None, str]:
        return {"fid": (self.fid, "features"), "is": (self.inception, "logits"),
                "cosine": (self.cosine, "embedding"), "acc": (self.classifier, "logits")}[metric]


def tiny_nets(data: str, device="cpu") -> MetricNets:
    """The shipped classifier of ``data`` serves every metric (tiny scale)."""
    from .classifiers import load_classifier
    net = ClassifierFeatures(load_classifier(data, device), name=f"classifier-{data}")
    return MetricNets(fid=net, inception=net, cosine=net, classifier=net, scale="tiny")


def nets_for_data(data: str, device=None) -> MetricNets:
    """The metric networks of ``data``'s scale: the shipped classifier for the tiny datasets,
    Inception and CLIP (``paper_nets``) for ImageNet / Places. Loaded once per process."""
    from .data import DATASETS
    from .zoo import default_device
    return _nets(data if data in DATASETS else "paper", str(device or default_device()))


@functools.lru_cache(maxsize=None)
def _nets(data: str, device: str) -> MetricNets:
    return paper_nets(device) if data == "paper" else tiny_nets(data, device)


def paper_nets(device="cpu", classifier: FeatureNet | None = None) -> MetricNets:
    """Inception for FID / IS and CLIP ViT-H-14 for the cosine (paper scale; needs the weights)."""
    inception = load_inception().to(device)
    return MetricNets(fid=inception, inception=inception, cosine=load_clip().to(device),
                      classifier=classifier, scale="paper")


def normalize_metrics(metrics) -> tuple[str, ...]:
    """Metric names (aliases allowed, e.g. ``forget-acc``) -> canonical names in METRICS order."""
    chosen = set()
    for m in metrics:
        m = METRIC_ALIASES.get(m, m)
        if m not in METRICS:
            raise ValueError(f"metrics: unknown metric {m!r}; expected any of {METRICS} "
                             f"(or {sorted(METRIC_ALIASES)})")
        chosen.add(m)
    if not chosen:
        raise ValueError(f"metrics: choose at least one of {METRICS}")
    return tuple(m for m in METRICS if m in chosen)


@torch.no_grad()
def run_net(net: FeatureNet, images: torch.Tensor, batch_size: int = 250) -> dict[str, torch.Tensor]:
    device = next(iter(net.parameters()), torch.empty(0)).device
    parts = [net(images[i:i + batch_size].to(device)) for i in range(0, len(images), batch_size)]
    return {k: torch.cat([p[k].cpu() for p in parts]) for k in parts[0]}


def compute_metrics(generated: torch.Tensor, real: torch.Tensor, mask: torch.Tensor,
                    nets: MetricNets | None, metrics=METRICS, labels: torch.Tensor | None = None,
                    is_splits: int = 1, batch_size: int = 250) -> dict[str, float]:
    """Every requested metric of ``generated`` against its ground truth ``real``.

    generated, real: (N, C, H, W) in [-1, 1], row i of one is the truth of row i of the other;
    mask: (N, 1, H, W), 1 = hidden; labels: (N,) class ids (for ``acc``).
    Each network runs once over each image set. -> {metric: value} (``psnr`` adds ``mse``).
    """
    metrics = normalize_metrics(metrics)
    if generated.shape != real.shape:
        raise ValueError(f"generated {tuple(generated.shape)} and real {tuple(real.shape)} differ")
    out: dict[str, float] = {}
    cache: dict[tuple[int, str], dict] = {}

    def outputs(net, which):
        key = (id(net), which)
        if key not in cache:
            cache[key] = run_net(net, generated if which == "gen" else real, batch_size)
        return cache[key]

    for metric in metrics:
        if metric == "psnr":
            mse = hidden_mse(generated, real, mask)
            out["mse"], out["psnr"] = mse.mean().item(), psnr(mse).mean().item()
            continue
        if nets is None:
            raise ValueError(f"metrics: {metric!r} needs feature networks (nets)")
        net, output = nets.net_for(metric)
        if net is None or output not in net.outputs:
            raise ValueError(f"metrics: no network providing {output!r} for {metric!r} at "
                             f"{nets.scale} scale")
        gen = outputs(net, "gen")[output]
        if metric == "fid":
            out["fid"] = fid_from_features(gen, outputs(net, "real")[output])
        elif metric == "is":
            out["is"] = inception_score(gen, is_splits)
        elif metric == "cosine":
            out["cosine"] = embedding_cosine(gen, outputs(net, "real")[output])
        elif metric == "acc":
            if labels is None:
                raise ValueError("labels: accuracy needs the true class of every image")
            out["acc"] = classifier_accuracy(gen, labels)
    return out
