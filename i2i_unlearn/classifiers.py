"""Small classifiers of the tiny datasets: the feature networks of the tiny-scale metrics.

At paper scale FID / IS use Inception and the cosine column uses CLIP; at tiny scale one small
CNN per dataset, trained by the package's own recipe (``train_classifier``) on the training rows
and shipped in the zoo (``zoo/classifier-<data>/``), plays all three parts:

- ``embed(x)``  -> (N, 64) penultimate features: FID statistics and the embedding cosine;
- ``forward(x)`` -> (N, num_classes) logits: Inception Score and forget-class accuracy.

Rebuild the shipped files (deterministic on CPU, ~1 min each on one core)::

    python -m i2i_unlearn.classifiers --data mnist scenes
"""
from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn

from . import zoo
from .data import load_dataset, sample_rows

CLASSIFIER_DATASETS = ("mnist", "scenes")
# Held-out accuracy each shipped classifier must reach (the evaluation issue's bar).
REQUIRED_ACCURACY = {"mnist": 0.97, "scenes": 0.90}


def zoo_dir(data: str) -> Path:
    return zoo.ZOO_DIR / f"classifier-{data}"


@dataclass
class ClassifierConfig:
    in_chans: int = 1
    num_classes: int = 10
    widths: tuple[int, int, int] = (16, 32, 64)
    embed_dim: int = 64
    img_size: int = 32

    def __post_init__(self):
        self.widths = tuple(int(w) for w in self.widths)


class SmallCNN(nn.Module):
    """Three conv stages (32 -> 16 -> 8 -> 4 px), global average pool, a 64-d embedding, logits.

    x: (N, C, 32, 32) in [-1, 1].
    """

    family = "classifier"  # lets ``zoo.save`` write it like any checkpoint

    def __init__(self, config: ClassifierConfig):
        super().__init__()
        self.config = config
        layers, c = [], config.in_chans
        for w in config.widths:
            layers += [nn.Conv2d(c, w, 3, padding=1), nn.BatchNorm2d(w), nn.ReLU(),
                       nn.Conv2d(w, w, 3, padding=1), nn.BatchNorm2d(w), nn.ReLU(),
                       nn.MaxPool2d(2)]
            c = w
        self.features = nn.Sequential(*layers)
        self.embedding = nn.Sequential(nn.Flatten(), nn.Linear(c * (config.img_size // 8) ** 2,
                                                               config.embed_dim), nn.ReLU())
        self.head = nn.Linear(config.embed_dim, config.num_classes)

    def config_dict(self) -> dict:
        return asdict(self.config)

    def check_inputs(self, x: torch.Tensor) -> None:
        c, s = self.config.in_chans, self.config.img_size
        if x.ndim != 4 or tuple(x.shape[1:]) != (c, s, s):
            raise ValueError(f"images: expected shape (N, {c}, {s}, {s}) for this classifier, "
                             f"got {tuple(x.shape)}")

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) -> (N, embed_dim)"""
        self.check_inputs(x)
        return self.embedding(self.features(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) -> logits (N, num_classes)"""
        return self.head(self.embed(x))


@dataclass
class ClassifierRecipe:
    steps: int = 500
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 1e-4
    shift: int = 2  # random translation (px) as augmentation
    seed: int = 0


def _augment(x: torch.Tensor, shift: int, generator: torch.Generator) -> torch.Tensor:
    """Translate each image by up to ``shift`` px (edge padding), one offset per image."""
    if shift == 0:
        return x
    n, _, h, w = x.shape
    padded = F.pad(x, (shift,) * 4, mode="replicate")
    offs = torch.randint(0, 2 * shift + 1, (n, 2), generator=generator)
    return torch.stack([padded[i, :, a:a + h, b:b + w] for i, (a, b) in enumerate(offs.tolist())])


@torch.no_grad()
def accuracy(model: SmallCNN, images: torch.Tensor, labels: torch.Tensor,
             batch_size: int = 500) -> float:
    model.eval()
    pred = torch.cat([model(images[i:i + batch_size]).argmax(1)
                      for i in range(0, len(images), batch_size)])
    return (pred == labels).float().mean().item()


def fit_classifier(images: torch.Tensor, labels: torch.Tensor, num_classes: int,
                   recipe: ClassifierRecipe, transform=None, progress: bool = False,
                   desc: str = "training a classifier") -> SmallCNN:
    """A ``SmallCNN`` trained on ``images`` (N, C, H, W) / ``labels`` (N,) in 0..num_classes-1.

    Deterministic on CPU for a given recipe. ``transform``: applied to every augmented batch
    before the network sees it (``context`` blanks a mask's hole with it). Returns it in eval mode.
    """
    from tqdm.auto import tqdm

    torch.manual_seed(recipe.seed)
    model = SmallCNN(ClassifierConfig(in_chans=images.shape[1], num_classes=num_classes,
                                      img_size=images.shape[-1]))
    opt = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=recipe.lr, total_steps=recipe.steps,
                                                pct_start=0.1)
    model.train()
    for step in tqdm(range(recipe.steps), desc=desc, disable=not progress):
        rows = sample_rows(len(images), recipe.batch_size, recipe.seed, step)
        g = torch.Generator().manual_seed(recipe.seed * 1_000_003 + step)
        x = _augment(images[rows], recipe.shift, g)
        loss = F.cross_entropy(model(x if transform is None else transform(x)), labels[rows])
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    model.eval()
    return model


def train_classifier(data: str, recipe: ClassifierRecipe | None = None,
                     progress: bool = True, score: bool = True) -> tuple[SmallCNN, dict]:
    """Train the small CNN of ``data`` on its training rows; evaluate on the held-out rows.

    Deterministic: the same recipe gives the same weights on CPU. Returns (model, manifest dict);
    ``score=False`` skips the accuracies (quick checks of the recipe).
    """
    recipe = recipe or ClassifierRecipe()
    dataset = load_dataset(data)
    x_all, y_all = dataset.train_images, dataset.train_labels
    start = time.time()
    model = fit_classifier(x_all, y_all, dataset.num_classes, recipe, progress=progress,
                           desc=f"training the {data} classifier")
    info = {
        "recipe": {"command": "python -m i2i_unlearn.classifiers", **asdict(recipe)},
        "data": {"dataset": data, "train_images": len(x_all), "eval_images": len(dataset.eval_images)},
        "metrics": {"train_seconds": round(time.time() - start, 1)},
    }
    if score:
        info["metrics"].update(train_accuracy=accuracy(model, x_all, y_all),
                               eval_accuracy=accuracy(model, dataset.eval_images, dataset.eval_labels))
    return model, info


def load_classifier(name_or_dir: str | Path = "mnist", device: str | torch.device = "cpu") -> SmallCNN:
    """The shipped classifier of a tiny dataset ("mnist" | "scenes"), or one saved in a directory.

    The weights' sha256 is checked against the manifest; the manifest is ``model.manifest``.
    """
    directory = zoo_dir(str(name_or_dir)) if str(name_or_dir) in CLASSIFIER_DATASETS else Path(name_or_dir)
    manifest_path = directory / zoo.MANIFEST
    if not manifest_path.exists():
        raise FileNotFoundError(f"classifier: no {zoo.MANIFEST} in {directory}; expected one of "
                                f"{CLASSIFIER_DATASETS} or a directory written by save_classifier")
    manifest = json.loads(manifest_path.read_text())
    if manifest.get("family") != "classifier":
        raise ValueError(f"classifier: {directory} holds a {manifest.get('family')!r} checkpoint, "
                         f"not a classifier")
    weights = directory / zoo.WEIGHTS
    digest = zoo.sha256_file(weights)
    if digest != manifest["sha256"]:
        raise ValueError(f"classifier: {weights} is corrupt or was changed: sha256 {digest} does "
                         f"not match the manifest's {manifest['sha256']}")
    model = SmallCNN(ClassifierConfig(**manifest["config"]))
    model.load_state_dict(load_file(weights))
    model.manifest = manifest
    return model.to(device).eval()


def save_classifier(model: SmallCNN, out_dir: str | Path, info: dict) -> Path:
    """Weights (safetensors) + manifest with sha256, written like a zoo checkpoint."""
    return zoo.save(model, out_dir, info)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Train the tiny-scale metric classifiers.")
    parser.add_argument("--data", nargs="+", choices=CLASSIFIER_DATASETS,
                        default=list(CLASSIFIER_DATASETS))
    parser.add_argument("--out", default=None,
                        help="parent directory (default: the package's zoo)")
    parser.add_argument("--steps", type=int, default=ClassifierRecipe.steps)
    args = parser.parse_args(argv)
    for data in args.data:
        model, info = train_classifier(data, ClassifierRecipe(steps=args.steps))
        out = zoo_dir(data) if args.out is None else Path(args.out) / f"classifier-{data}"
        save_classifier(model, out, info)
        print(f"{out}: {json.dumps(info['metrics'])}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
