"""Named checkpoints: tiny ones shipped inside the package, paper-scale ones downloaded.

A checkpoint is a directory holding ``model.safetensors`` and ``manifest.json``. The manifest
says how to rebuild the model (``family`` + ``config``), how the weights were made (``recipe``,
``data``), what they score (``metrics``) and their ``sha256``, which ``load`` checks before
trusting a file. Unlearning writes a new directory of the same kind, so an unlearned model loads
exactly like a zoo entry.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from .models.base import I2IModel

ZOO_DIR = Path(__file__).parent / "zoo"
DEVICE_ENV = "I2I_UNLEARN_DEVICE"  # where load() puts models by default (paper scale: cuda)
TINY_MODELS = ("mae-mnist", "mae-scenes", "mae-mnist-retrained", "mae-scenes-retrained",
               "diffusion-mnist", "diffusion-scenes", "diffusion-mnist-retrained", "vqgan-mnist",
               "vqgan-scenes", "vqgan-mnist-retrained")
WEIGHTS, MANIFEST = "model.safetensors", "manifest.json"

# Paper-scale weights: fetched only where the network reaches them (never in tests or CI).
# ``url`` None: the authors share the file only through a web folder that cannot be fetched by a
# script; download it by hand from ``page`` and pass its path as ``weights=`` or put it in the
# environment variable ``weights_env(name)`` (what ``make book SCALE=paper`` and workers read).
PAPER_MODELS = {
    "mae-vit-large": {
        "family": "mae", "preset": "mae_vit_large_patch16", "data": "imagenet",
        # The official visualisation checkpoint keeps the decoder (pre-training files do not).
        "url": "https://dl.fbaipublicfiles.com/mae/visualize/mae_visualize_vit_large.pth",
        "page": "https://github.com/facebookresearch/mae/blob/main/demo/mae_visualize.ipynb",
        "sha256": None,  # not published by the authors; the computed hash is printed on load
    },
    "palette-places2": {
        "family": "diffusion", "preset": "palette-places2", "data": "places",
        # Janspiry/Palette: Places2, 128x128 centre mask (the paper's diffusion model); the
        # folder holds ``{epoch}_Network.pth`` and its EMA twin; either loads.
        "url": None,
        "page": "https://drive.google.com/drive/folders/1fLyFtrStfEtyrqwI0N_Xb_3idsf0gz0M",
        "sha256": None,
    },
    "mage-vitb": {
        "family": "vqgan", "preset": "mage_vit_base_patch16", "data": "imagenet",
        # LTH14/mage: ``mage-vitb-1600.pth`` holds the transformer and its frozen VQGAN tokenizer
        # (``vqgan.*``), the paper's VQ-GAN model.
        "url": None,
        "page": "https://github.com/LTH14/mage#pre-trained-models",
        "sha256": None,
    },
}


def weights_env(name: str) -> str:
    """The environment variable naming a hand-downloaded paper checkpoint, e.g.
    ``I2I_UNLEARN_WEIGHTS_PALETTE_PLACES2`` for ``palette-places2``."""
    return "I2I_UNLEARN_WEIGHTS_" + name.upper().replace("-", "_")


def missing_paper_weights(names) -> list[str]:
    """Those of ``names`` (paper models) that need a hand-downloaded file nobody has given.

    A paper build checks this before its first hour of GPU work, not after."""
    return [n for n in names if PAPER_MODELS[n]["url"] is None and not os.environ.get(weights_env(n))]


_REGISTERED: dict[str, tuple[type, type]] = {}


def register_family(family: str, config_cls: type, model_cls: type) -> None:
    """Let :func:`load` rebuild checkpoints of your own ``I2IModel`` subclass.

    ``model_cls(config_cls(**manifest["config"]))`` must give an empty model of the saved one;
    ``model_cls.family`` must be ``family`` (it is what :func:`save` writes in the manifest).
    Register in each process that loads such checkpoints (the CLI included: import the module
    that registers before calling ``i2i_unlearn.cli.main``).
    """
    from .models.base import I2IModel
    if not (isinstance(model_cls, type) and issubclass(model_cls, I2IModel)):
        raise ValueError(f"model_cls: expected an I2IModel subclass, got {model_cls!r}")
    if getattr(model_cls, "family", None) != family:
        raise ValueError(f"family: {model_cls.__name__}.family is {model_cls.family!r}, "
                         f"not {family!r}")
    if family in _builtin_families():
        raise ValueError(f"family: {family!r} is a built-in family")
    _REGISTERED[family] = (config_cls, model_cls)


def _builtin_families():
    from .models import convnet, diffusion, mae, vqgan
    return {"mae": (mae.MAEConfig, mae.MaskedAutoencoder),
            "diffusion": (diffusion.DiffusionConfig, diffusion.DiffusionInpainter),
            "vqgan": (vqgan.VQGANConfig, vqgan.VQGANInpainter),
            "convnet": (convnet.ConvInpainterConfig, convnet.ConvInpainter)}


def _families():
    return {**_builtin_families(), **_REGISTERED}


def build_model(family: str, config: dict) -> I2IModel:
    """Rebuild an empty model of ``family`` from its manifest config."""
    families = _families()
    if family not in families:
        raise ValueError(f"family: expected one of {sorted(families)}, got {family!r} "
                         f"(for your own model class, call zoo.register_family first)")
    config_cls, model_cls = families[family]
    return model_cls(config_cls(**config))


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def resolve(name_or_dir: str | Path) -> Path:
    """A zoo name or a checkpoint directory -> the directory."""
    if str(name_or_dir) in TINY_MODELS:
        return ZOO_DIR / str(name_or_dir)
    path = Path(name_or_dir)
    if path.is_dir():
        return path
    raise FileNotFoundError(f"model: {str(name_or_dir)!r} is neither a zoo model {TINY_MODELS} "
                            f"nor a checkpoint directory")


def read_manifest(name_or_dir: str | Path) -> dict:
    path = resolve(name_or_dir) / MANIFEST
    if not path.exists():
        raise FileNotFoundError(f"model: no {MANIFEST} in {path.parent} (not a checkpoint, or an "
                                f"interrupted run; resume it with --resume)")
    return json.loads(path.read_text())


def default_device() -> str:
    """``$I2I_UNLEARN_DEVICE``, else ``"cpu"`` (tiny scale: CPU runs are bit-identical)."""
    return os.environ.get(DEVICE_ENV) or "cpu"


def load(name_or_dir: str | Path, device: str | torch.device | None = None) -> I2IModel:
    """Load a zoo model or checkpoint directory, verifying the weights' sha256 first.

    device: default ``default_device()``, so a paper-scale notebook that sets
    ``$I2I_UNLEARN_DEVICE=cuda`` gets every model (and every worker's) on the GPU.

    The manifest is attached as ``model.manifest`` and the folder it came from as
    ``model.checkpoint_dir`` (to hand the same model to functions that take a name or folder).
    """
    directory = resolve(name_or_dir)
    manifest = read_manifest(directory)
    weights = directory / WEIGHTS
    if not weights.exists():
        raise FileNotFoundError(f"model: {weights} is missing")
    digest = sha256_file(weights)
    if digest != manifest["sha256"]:
        raise ValueError(f"model: {weights} is corrupt or was changed: sha256 {digest} does not "
                         f"match the manifest's {manifest['sha256']}")
    model = build_model(manifest["family"], manifest["config"])
    model.load_state_dict(load_file(weights))  # strict: a key mismatch raises
    model.manifest = manifest
    model.checkpoint_dir = directory
    return model.to(device or default_device()).eval()


def save(model: I2IModel, out_dir: str | Path, manifest: dict) -> Path:
    """Write ``model`` and its manifest to ``out_dir`` (created). The manifest is written last and
    atomically, so a directory with a manifest always holds complete, verified weights.

    A pre-training recipe with ``weights_dtype`` "float16" stores floating-point tensors in
    float16 (``load`` casts them back); the weights must already be rounded to it
    (``pretrain.round_weights``), so nothing is lost on the way.
    """
    out = Path(out_dir)
    dtype = getattr(torch, manifest.get("recipe", {}).get("weights_dtype", "float32"))
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    if dtype != torch.float32:
        stored = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}
        lossy = [k for k, v in stored.items()
                 if v.is_floating_point() and not torch.equal(v.to(state[k].dtype), state[k])]
        state = stored
        if lossy:
            raise ValueError(f"manifest: weights_dtype {dtype} would change {len(lossy)} tensors "
                             f"(e.g. {lossy[0]}); round the model first (pretrain.round_weights)")
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / (WEIGHTS + ".tmp")
    save_file(state, tmp)
    os.replace(tmp, out / WEIGHTS)
    full = {"family": model.family, "config": model.config_dict(), **manifest,
            "sha256": sha256_file(out / WEIGHTS)}
    tmp = out / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(full, indent=2, sort_keys=False) + "\n")
    os.replace(tmp, out / MANIFEST)
    return out


def load_paper_model(name: str, weights: str | Path | None = None,
                     cache_dir: str | Path | None = None) -> I2IModel:
    """Load an official paper-scale checkpoint, downloading it once when it has a ``url``.

    ``weights``: a local copy of the file (required for entries without a ``url``; default
    ``$I2I_UNLEARN_WEIGHTS_<NAME>``, see ``weights_env``). The file's
    sha256 is checked when the entry lists one and printed in any case, so a run can record it.
    """
    if name not in PAPER_MODELS:
        raise ValueError(f"name: expected one of {sorted(PAPER_MODELS)}, got {name!r}")
    entry = PAPER_MODELS[name]
    weights = weights or os.environ.get(weights_env(name)) or None
    if weights is not None:
        path = Path(weights)
        if not path.is_file():
            raise FileNotFoundError(f"weights: {path} is not a file")
    elif entry["url"] is None:
        raise ValueError(f"weights: {name} cannot be downloaded by a script; fetch the checkpoint "
                         f"by hand from {entry['page']} and pass its path as weights= (or set "
                         f"${weights_env(name)})")
    else:
        path = Path(cache_dir or Path(torch.hub.get_dir()) / "i2i_unlearn") / Path(entry["url"]).name
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            torch.hub.download_url_to_file(entry["url"], str(path), progress=True)
    digest = sha256_file(path)
    if entry["sha256"] is not None and digest != entry["sha256"]:
        raise ValueError(f"{path}: sha256 {digest} does not match the expected {entry['sha256']}")
    print(f"{path.name}: sha256 {digest}")
    if entry["family"] == "diffusion":
        from .models.palette import load_palette
        model = load_palette(path)
    elif entry["family"] == "vqgan":
        from .models.mage import load_mage
        model = load_mage(path, arch=entry["preset"])
    else:
        from .models import mae
        model = mae.load_official_mae(mae.build_mae(entry["preset"]), path)
    model.manifest = {"family": entry["family"], "config": model.config_dict(), "paper_model": name,
                      "source": entry["url"] or entry["page"], "sha256": digest}
    return model.eval()


def import_paper_model(name: str, out_dir: str | Path, weights: str | Path | None = None,
                       data: str | None = None) -> Path:
    """An official checkpoint as a checkpoint directory of this package (done once per folder).

    Everything that takes a zoo name or a checkpoint directory -- unlearning, the experiment
    cache, the tables -- then runs on the official model unchanged. ``data``: the paper dataset
    the model is unlearned and evaluated on (default the one it was trained on, e.g. ImageNet for
    MAE ViT-L); its folders are found through ``$I2I_UNLEARN_<DATA>`` (``data.paper``).
    """
    from .data import DATA_ENV
    if name not in PAPER_MODELS:
        raise ValueError(f"name: expected one of {sorted(PAPER_MODELS)}, got {name!r}")
    data = data or PAPER_MODELS[name]["data"]
    if data not in DATA_ENV:
        raise ValueError(f"data: expected one of {sorted(DATA_ENV)}, got {data!r}")
    out = Path(out_dir)
    if (out / MANIFEST).exists():
        manifest = read_manifest(out)
        if manifest.get("recipe", {}).get("paper_model") != name or manifest["data"]["dataset"] != data:
            raise ValueError(f"out_dir: {out} holds another import ({manifest.get('recipe')}, "
                             f"data {manifest['data']['dataset']!r}); choose a new folder")
        return out
    model = load_paper_model(name, weights)
    return save(model, out, {
        "recipe": {"command": "import", "paper_model": name, "source": model.manifest["source"],
                   "source_sha256": model.manifest["sha256"]},
        "data": {"dataset": data}})
