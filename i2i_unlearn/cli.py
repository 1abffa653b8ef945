"""``i2i-unlearn``: pre-train, unlearn and evaluate from the command line.

    i2i-unlearn pretrain --model mae --data mnist --out runs/mae-mnist
    i2i-unlearn unlearn  --model mae-mnist --forget 0 1 2 --method ours --out runs/ours
    i2i-unlearn evaluate --model runs/ours --forget 0 1 2 --metrics fid is cosine psnr --csv runs/ours/eval.csv
    i2i-unlearn audit    --model runs/ours --forget 0 1 2 --reference mae-mnist-retrained --csv runs/ours/audit.csv
    i2i-unlearn reproduce 02 03b --scale paper --out runs/paper
"""
from __future__ import annotations

import argparse
import importlib
import json
import shutil
import sys
from pathlib import Path

from . import zoo
from .unlearn import FAMILY_DEFAULTS, METHODS, NOISE_KINDS, RETAIN_SETS


def _per_family(key: str) -> str:
    """'mae 150, diffusion 300, vqgan 300': an unlearning default of every family, for --help."""
    return ", ".join(f"{family} {d[key]:g}" for family, d in FAMILY_DEFAULTS.items())


def _add_seed_steps(p, what: str, steps: int | None = None, batch_size: int | None = None,
                    lr: float | None = None):
    """--steps, --seed, --batch-size, --lr, --quiet. A default of None means "the model family's
    unlearning default" (``unlearn.FAMILY_DEFAULTS``), which the help spells out."""
    def default(value, key):
        return f"default: {value:g}" if value is not None else f"default per family: {_per_family(key)}"
    p.add_argument("--steps", type=int, default=steps,
                   help=f"optimiser steps of {what} ({default(steps, 'steps')})")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of every random draw (batches, masks, noise); the same seed gives "
                        "bit-identical weights on CPU (default: %(default)s)")
    rows = "rows per step" if batch_size is not None else "rows per step of each of the forget and retain sets"
    p.add_argument("--batch-size", type=int, default=batch_size,
                   help=f"{rows} ({default(batch_size, 'batch_size')})")
    p.add_argument("--lr", type=float, default=lr,
                   help=f"peak learning rate of AdamW ({default(lr, 'lr')})")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _class_ids(text: str) -> list[int]:
    """"7" -> [7]; "0-99" -> [0, ..., 99] (class ids on the command line)."""
    lo, sep, hi = text.partition("-")
    try:
        return list(range(int(lo), int(hi) + 1)) if sep else [int(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a class id or a range A-B, got {text!r}")


def _flat_ids(ids):
    """argparse's list of ``_class_ids`` lists -> sorted unique ids (None stays None)."""
    return None if ids is None else sorted({c for part in ids for c in part})


def _add_classes(p, forget_help: str):
    p.add_argument("--forget", required=True, type=_class_ids, nargs="+", metavar="C",
                   help=f"{forget_help}; A-B is the range A..B")
    p.add_argument("--retain", type=_class_ids, nargs="+", metavar="C", default=None,
                   help="class ids to keep (D_R); default: the dataset's retain split minus "
                        "--forget (mnist: 3 4 5)")


def _add_paper_data_args(p, what: str):
    """The flags that point a command at ImageNet / Places folders instead of tiny data."""
    paper = p.add_argument_group(
        "paper scale", f"{what}; class ids index --class-list, written in the paper's order "
        "(forget, retain, proxy)")
    paper.add_argument("--data", choices=["imagenet", "places"], default=None,
                       help="paper dataset (sets the paper's images per class)")
    paper.add_argument("--train-root", default=None, help="class-folder training images")
    paper.add_argument("--eval-root", default=None,
                       help="class-folder held-out images (e.g. ImageNet val sorted by class)")
    paper.add_argument("--class-list", default=None, help="class directories in paper order")
    return paper


def _add_paper_model_args(paper) -> None:
    """--weights and --device, for a --model that names an official paper model."""
    paper.add_argument("--weights", default=None,
                       help="checkpoint file of the paper model (needed where no URL exists)")
    paper.add_argument("--device", default=None,
                       help="torch device to run on (default: cuda if available, else cpu)")


def _require_paper_data(args) -> None:
    """The four paper-scale data flags must all be given; the error names the first missing."""
    missing = [f for f in ("data", "train_root", "eval_root", "class_list") if getattr(args, f) is None]
    if missing:
        raise ValueError(f"--{missing[0].replace('_', '-')}: needed for paper-scale data "
                         f"(see the book's paper-scale chapter)")


def _paper_dataset(args, image_size: int):
    """A FolderImageDataset from the paper-scale flags."""
    from .data import FolderImageDataset
    _require_paper_data(args)
    return FolderImageDataset(args.data, args.train_root, args.eval_root, args.class_list,
                              image_size=image_size)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="i2i-unlearn", description="Machine unlearning for image-to-image generative models "
        "(Li et al., ICLR 2024): train tiny models, unlearn classes, measure forgetting.")
    parser.add_argument("--import", dest="imports", action="append", default=[], metavar="MODULE",
                        help="import MODULE first (repeatable): a module that calls "
                             "i2i_unlearn.zoo.register_family, so checkpoints of your own model "
                             "class load by directory like the zoo's")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("pretrain", help="train a model from scratch (the tiny zoo, or the "
                       "retrained reference with --exclude-classes)")
    p.add_argument("--model", required=True, choices=["mae", "diffusion", "vqgan"],
                   help="model family (vqgan trains its tokenizer first, then the transformer)")
    p.add_argument("--data", required=True, choices=["mnist", "scenes"], help="tiny dataset")
    p.add_argument("--out", required=True, help="new checkpoint directory to write")
    p.add_argument("--exclude-classes", type=int, nargs="*", default=[], metavar="C",
                   help="classes never shown to the model (retrain-from-scratch reference)")
    p.add_argument("--preset", default=None,
                   help="size preset of the family (mae: mae-tiny (default), mae-small; "
                        "diffusion: diffusion-tiny (default), diffusion-small; "
                        "vqgan: vqgan-tiny (default))")
    p.add_argument("--mask-ratio", type=float, nargs=2, default=None, metavar=("LO", "HI"),
                   help="range of the random share of visible patches dropped on top of the "
                        "training box, drawn uniformly per step (MAE; default: the preset's, "
                        "0.25 0.75); the same corruption is used later for unlearning")
    p.add_argument("--weights-dtype", choices=["float32", "float16"], default="float32",
                   help="dtype of the stored weights: float16 halves the file; the model is "
                        "rounded to it before its held-out metrics are measured, and loads back "
                        "as float32 (default: %(default)s)")
    _add_seed_steps(p, "pre-training", steps=4000, batch_size=128, lr=1.5e-3)

    p = sub.add_parser("unlearn", help="unlearn forget classes from a model; writes a new "
                       "checkpoint directory and never touches the input model")
    p.add_argument("--model", required=True, help=f"zoo name ({', '.join(_originals())}), "
                   "checkpoint dir, or a paper model (see 'paper scale' below)")
    _add_classes(p, "class ids to forget (D_F)")
    p.add_argument("--retain-set", choices=RETAIN_SETS, default="retain",
                   help="what stands in for D_R while unlearning: the retain classes (default), "
                        "the proxy pool of classes in neither set (the paper's 'Ours (proxy "
                        "D_R)'), none (no retain term), every image of another tiny dataset "
                        "(mnist, scenes), or of a paper dataset (imagenet, places: the folders "
                        "of $I2I_UNLEARN_IMAGENET / $I2I_UNLEARN_PLACES); not the model's own")
    p.add_argument("--proxy", dest="retain_set", action="store_const", const="proxy",
                   help="short for --retain-set proxy")
    p.add_argument("--method", required=True, choices=METHODS,
                   help="ours = the paper's method; the others are the paper's baselines")
    p.add_argument("--alpha", type=float, default=None, help="forget-term weight α >= 0 "
                   f"(default per family: {_per_family('alpha')})")
    p.add_argument("--noise", choices=NOISE_KINDS, default="standard",
                   help="forget noise: N(0, I), or matched to the batch's mean/std "
                        "(default: %(default)s)")
    p.add_argument("--out", required=True, help="new checkpoint directory to write")
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted run from the last checkpoint in --out")
    p.add_argument("--checkpoint-every", type=int, default=50,
                   help="save a resumable checkpoint every N steps (0: never; default %(default)s)")
    _add_seed_steps(p, "unlearning")
    _add_paper_model_args(_add_paper_data_args(
        p, "unlearn an official model on ImageNet-1K / Places-365 folders: --model names a "
        f"paper model ({', '.join(zoo.PAPER_MODELS)})"))

    p = sub.add_parser("evaluate", help="score held-out D_R and D_F images: the paper's metrics "
                       "(FID, IS, embedding cosine), forget-class accuracy and hidden-region "
                       "PSNR / MSE (--metrics picks them; default: psnr)")
    p.add_argument("--model", required=True, help="zoo name, checkpoint directory, or a paper "
                   "model (see 'paper scale' below)")
    _add_classes(p, "the forget classes (D_F) to score")
    p.add_argument("--mask", default="centre-8/16",
                   help="centre-K/N (e.g. centre-4/16, centre-8/16) or outpaint (default %(default)s)")
    p.add_argument("--metrics", nargs="+", default=["psnr"], metavar="M",
                   help="any of: fid is cosine forget-acc psnr (psnr also reports mse; default: "
                        "%(default)s); tiny scale scores with the shipped classifier of the "
                        "model's dataset")
    p.add_argument("--seeds", type=int, nargs="+", default=[0], metavar="S",
                   help="sampling seeds; the spread over them is reported (default: %(default)s)")
    p.add_argument("--scale", choices=["tiny", "paper"], default="tiny",
                   help="feature networks: tiny = the package's classifiers; paper = Inception "
                        "(FID, IS) and CLIP ViT-H-14 (cosine), downloaded once (default: %(default)s)")
    p.add_argument("--csv", default=None, help="file to write tidy rows to (columns model, "
                   "method, seed, set, metric, value; set is retain or forget)")
    p.add_argument("--json", default=None,
                   help="file to write {set: {metric: mean over seeds}} to (with --ceiling also "
                        "'target-fill': {metric: mean})")
    p.add_argument("--ceiling", action="store_true",
                   help="also score the objective's ceiling on the forget classes: how the "
                        "original model (this one, or the parent of an unlearned one) fills them "
                        "from the forget target averaged over --ceiling-draws noise images "
                        "(evaluate.target_fill), scored with the same --metrics; rows with "
                        "method 'target-fill'")
    p.add_argument("--ceiling-draws", type=int, default=16, metavar="K",
                   help="noise draws the ceiling's target averages (default: %(default)s)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_paper_model_args(_add_paper_data_args(
        p, "evaluate on ImageNet-1K / Places-365 folders (use with --scale paper): a model "
        f"unlearned at paper scale, or an official model by name ({', '.join(zoo.PAPER_MODELS)}: "
        "the paper's 'original' row)"))

    p = sub.add_parser("audit", help="forgetting audit: linear probe, membership inference, "
                       "relearning and context sweep, against the original and the retrained model")
    p.add_argument("--model", required=True, nargs="+", metavar="DIR",
                   help="unlearned model(s) to audit: checkpoint directories or zoo names")
    _add_classes(p, "the forget classes the models were meant to unlearn")
    p.add_argument("--original", default=None, help="the model before unlearning (default: the "
                   "parent recorded in the first --model's manifest)")
    p.add_argument("--reference", default=None, help="the model retrained from scratch without "
                   "the forget classes (default: <original>-retrained, e.g. mae-mnist-retrained)")
    p.add_argument("--probes", nargs="+", default=None, metavar="P",
                   help="any of: probe membership relearn context (default: all)")
    p.add_argument("--relearn-steps", type=int, default=None,
                   help="fine-tuning steps of the relearning probe (default: 50)")
    p.add_argument("--relearn-k", type=int, default=None,
                   help="forget images the relearning probe fine-tunes on (default: 32)")
    p.add_argument("--seed", type=int, default=0, help="seed of every draw (default %(default)s)")
    p.add_argument("--csv", default=None, help="file to write every probe's tidy rows to")
    p.add_argument("--summary-csv", default=None, help="file to write the verdict table to")
    p.add_argument("--quiet", action="store_true", help="no progress bar")

    p = sub.add_parser("check", help="check a model against the I2I contract (every assumption "
                       "of the unlearning loop) before spending compute on it")
    p.add_argument("--model", required=True, help="zoo name or checkpoint directory (for your own "
                   "model class, register its family in a module and pass --import MODULE)")
    p.add_argument("--images", type=int, default=8,
                   help="held-out images of the model's dataset to check on, spread over its "
                        "classes; 0: seeded random images (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="seed of every draw (default %(default)s)")

    p = sub.add_parser("reproduce", help="run the book's notebooks (the paper's tables and "
                       "figures) with papermill at tiny or paper scale")
    p.add_argument("notebooks", nargs="*", metavar="NOTEBOOK",
                   help="which: a number (02, 03b) or a name; default: all of them")
    p.add_argument("--scale", choices=["tiny", "paper"], default="tiny",
                   help="tiny: shipped models and data on CPU; paper: the official weights on "
                        "ImageNet / Places folders, on a GPU (default: %(default)s)")
    p.add_argument("--out", default="runs/reproduce",
                   help="folder for the executed notebooks, summary.csv and the experiment "
                        "cache (default: %(default)s)")
    p.add_argument("-p", "--parameter", action="append", default=[], metavar="NAME=VALUE",
                   help="a papermill parameter on top of the scale's, as a Python literal "
                        "(e.g. -p 'seeds=[0, 1, 2]'); repeatable")
    p.add_argument("--notebooks-dir", default=None, metavar="DIR",
                   help="where the notebooks are (default: ./notebooks, else the checkout's)")
    p.add_argument("--timeout", type=int, default=1800, help="seconds per cell (default: %(default)s)")
    p.add_argument("--workers", type=int, default=None, metavar="N",
                   help="notebooks run side by side, each page after the pages it reuses "
                        "(default: 2 at tiny scale on two cores or more, else 1)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        for module in args.imports:
            importlib.import_module(module)
        return {"pretrain": _pretrain, "unlearn": _unlearn, "evaluate": _evaluate,
                "audit": _audit, "check": _check, "reproduce": _reproduce}[args.command](args)
    except (ValueError, FileNotFoundError, FileExistsError, FloatingPointError, ImportError,
            ConnectionError) as err:
        print(f"i2i-unlearn {args.command}: error: {err}", file=sys.stderr)
        return 2


def _new_out_dir(out: str, resume: bool = False) -> Path:
    path = Path(out)
    if (path / zoo.MANIFEST).exists() and not resume:
        raise FileExistsError(f"--out: {path} already holds a checkpoint; choose a new directory")
    return path


def _pretrain(args) -> int:
    from .loop import LoopConfig
    from .pretrain import pretrain
    out = _new_out_dir(args.out)
    loop = LoopConfig(steps=args.steps, lr=args.lr, warmup_steps=min(100, args.steps // 10),
                      seed=args.seed)
    model, info = pretrain(args.model, args.data, args.exclude_classes, loop,
                           batch_size=args.batch_size, preset=args.preset,
                           mask_ratio=args.mask_ratio, weights_dtype=args.weights_dtype,
                           progress=not args.quiet)
    zoo.save(model, out, info)
    print(json.dumps(info["metrics"], indent=2))
    return 0


def _originals() -> list[str]:
    """The shipped tiny models that are not retrained references."""
    return [n for n in zoo.TINY_MODELS if not n.endswith("-retrained")]


def _paper_inputs(args):
    """(model, dataset, device) for --model naming a paper model, else (args.model, None, None)."""
    if args.model not in zoo.PAPER_MODELS:
        given = [f for f in ("weights", "data", "train_root", "eval_root", "class_list")
                 if getattr(args, f) is not None]
        if given:
            raise ValueError(f"--{given[0].replace('_', '-')}: only for a paper model "
                             f"({', '.join(zoo.PAPER_MODELS)}); --model {args.model!r} is not one")
        return args.model, None, None
    import torch
    _require_paper_data(args)  # before a download, not after
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    model = zoo.load_paper_model(args.model, weights=args.weights).to(device)
    return model, _paper_dataset(args, model.config.img_size), device


def _unlearn(args) -> int:
    from .unlearn import unlearn_classes
    args.forget, args.retain = _flat_ids(args.forget), _flat_ids(args.retain)
    out = _new_out_dir(args.out, args.resume)
    if Path(args.model).resolve() == out.resolve():
        raise ValueError("--out: the output directory must differ from the input --model")
    created = not out.exists()
    try:
        model, dataset, _ = _paper_inputs(args)
        unlearn_classes(model, args.forget, retain=args.retain, retain_set=args.retain_set, dataset=dataset,
                        method=args.method, alpha=args.alpha, noise=args.noise, steps=args.steps,
                        seed=args.seed, batch_size=args.batch_size, lr=args.lr, out_dir=out,
                        resume=args.resume, checkpoint_every=args.checkpoint_every,
                        progress=not args.quiet)
    except (ValueError, FileNotFoundError) as err:
        if created:  # bad input: leave nothing behind
            shutil.rmtree(out, ignore_errors=True)
        raise err
    print(f"wrote {out}")
    return 0


def _evaluate(args) -> int:
    from .data import dataset_of
    from .evaluate import SETS, describe, evaluate_model, tidy
    from .metrics import normalize_metrics, paper_nets
    from .tables import paper_table
    args.forget, args.retain = _flat_ids(args.forget), _flat_ids(args.retain)
    metrics = normalize_metrics(args.metrics)
    if args.ceiling and args.ceiling_draws < 1:  # before any scoring
        raise ValueError(f"--ceiling-draws: expected at least 1, got {args.ceiling_draws}")
    if args.model in zoo.PAPER_MODELS:  # an official model: its data folders must be given
        model, dataset, _ = _paper_inputs(args)
    else:
        if args.weights is not None:
            raise ValueError(f"--weights: only for a paper model ({', '.join(zoo.PAPER_MODELS)}); "
                             f"--model {args.model!r} is not one")
        model = zoo.load(args.model)
        flags = any(getattr(args, f) for f in ("data", "train_root", "eval_root", "class_list"))
        if args.device is not None or flags:  # paper data: on the GPU where there is one
            import torch
            model.to(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
        # The folders given by flags, else the model's own data (paper: $I2I_UNLEARN_<NAME>).
        dataset = _paper_dataset(args, model.config.img_size) if flags else dataset_of(model.manifest)
    nets = paper_nets() if args.scale == "paper" and set(metrics) - {"psnr"} else None
    name, method = describe(model, Path(args.model.rstrip("/")).name)
    rows = evaluate_model(model, dataset, args.forget, args.retain, args.mask, metrics,
                          args.seeds, nets=nets, name=name, method=method, progress=not args.quiet)
    if args.ceiling:
        rows += _ceiling_rows(model, dataset, args, name, metrics, nets)
    df = tidy(rows)
    if args.csv:
        Path(args.csv).parent.mkdir(parents=True, exist_ok=True)
        df.to_csv(args.csv, index=False)
    if args.json:
        scored = df[df["method"] != "target-fill"]
        means = scored.groupby(["set", "metric"], sort=False)["value"].mean()
        scores = {s: {m: float(v) for m, v in means[s].items()} for s in SETS}
        if args.ceiling:
            fill = df[df["method"] == "target-fill"].groupby("metric", sort=False)["value"].mean()
            scores["target-fill"] = {m: float(v) for m, v in fill.items()}
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(scores, indent=2) + "\n")
    print(paper_table(df, digits=4).fillna("–").to_string())  # target-fill: forget set only
    if args.ceiling:
        mse = df[(df["set"] == "forget") & (df["metric"] == "mse")].groupby("method")["value"].mean()
        fid = df[(df["set"] == "forget") & (df["metric"] == "fid")].groupby("method")["value"].mean()
        also = (f"; forget FID {fid['target-fill']:.2f}, x{fid['target-fill'] / fid[method]:.2f}"
                if "target-fill" in fid else "")
        print(f"objective's ceiling ({args.ceiling_draws} noise draws): forget MSE "
              f"{mse['target-fill']:.4f}, x{mse['target-fill'] / mse[method]:.2f} this model's{also}")
    return 0


def _ceiling_rows(model, dataset, args, name: str, metrics, nets) -> list[dict]:
    """Tidy rows of the objective's ceiling on the forget classes, one block per seed: the
    original's target fill (``tables.forget_ceiling``), scored with the same ``metrics``
    and feature networks as the model. For an unlearned checkpoint the original is its parent:
    the ceiling belongs to the frozen decoder and the teacher."""
    from .tables import forget_ceiling
    manifest = getattr(model, "manifest", {}) or {}
    original = model
    if manifest.get("recipe", {}).get("command") == "unlearn":
        parent = (manifest.get("parent") or {}).get("model")
        if parent is None or parent in zoo.PAPER_MODELS:
            raise ValueError(f"--ceiling: the ceiling belongs to the original model, and this "
                             f"checkpoint's parent ({parent or 'not recorded'}) cannot be loaded "
                             "here; run evaluate --ceiling on the original model instead")
        original = zoo.load(parent).to(next(model.parameters()).device)
    rows = []
    for seed in args.seeds:
        scores = forget_ceiling(original, args.forget, args.mask, metrics, args.ceiling_draws,
                                seed, dataset=dataset, nets=nets)
        rows += [{"model": name, "method": "target-fill", "seed": int(seed), "set": "forget",
                  "metric": metric, "value": float(value)} for metric, value in scores.items()]
    return rows


def _check(args) -> int:
    import pandas as pd

    from .data import dataset_of
    from .models.contract import check_contract
    if args.images < 0:
        raise ValueError(f"--images: expected a count >= 0, got {args.images}")
    model = zoo.load(args.model)
    x = None
    if args.images:  # spread evenly over the held-out images sorted by class
        dataset = dataset_of(model.manifest)
        order = dataset.eval_labels.argsort(stable=True)
        x = dataset.eval_images[order[::max(1, len(order) // args.images)][:args.images]]
    table = check_contract(model, x, seed=args.seed, raise_on_failure=False)
    with pd.option_context("display.max_colwidth", None, "display.width", 200):
        print(table.to_string(index=False))
    failed = int((table["status"] == "fail").sum())
    print(f"{type(model).__name__} ({args.model}): {len(table) - failed} of {len(table)} checks "
          f"pass" + (f", {failed} fail" if failed else ""))
    return 1 if failed else 0


def _audit(args) -> int:
    from .audit import AuditConfig, audit
    args.forget, args.retain = _flat_ids(args.forget), _flat_ids(args.retain)
    overrides = {"seed": args.seed}
    for arg, key in (("probes", "probes"), ("relearn_steps", "relearn_steps"),
                     ("relearn_k", "relearn_k")):
        if getattr(args, arg) is not None:
            overrides[key] = getattr(args, arg)
    try:
        config = AuditConfig(**overrides)
    except ValueError as err:  # name the flag, not the field
        raise ValueError(f"--{str(err).split(':')[0].replace('_', '-')}:"
                         f"{str(err).split(':', 1)[1]}") from None
    models = {Path(m.rstrip("/")).name or m: m for m in args.model}
    if len(models) != len(args.model):
        raise ValueError(f"--model: two models share a directory name: {args.model}")
    try:
        result = audit(models, args.forget, args.retain, original=args.original,
                       reference=args.reference, config=config, progress=not args.quiet)
    except (ValueError, FileNotFoundError) as err:
        msg = str(err)
        for field, flag in (("models", "--model"), ("original", "--original"),
                            ("reference", "--reference"), ("forget", "--forget"),
                            ("retain", "--retain")):
            if msg.startswith(field):
                msg = flag + msg[len(field):]
                break
        raise type(err)(msg) from None
    for path, frame in ((args.csv, result.rows), (args.summary_csv, result.summary)):
        if path:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            frame.to_csv(path, index=False)
    cols = ["model", "probe", "value", "original", "retrained", "position", "verdict"]
    print(result.summary[cols].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    return 0


def _reproduce(args) -> int:
    from .reproduce import parse_overrides, reproduce
    try:
        overrides = parse_overrides(args.parameter)
        summary = reproduce(args.notebooks, args.scale, args.out, overrides,
                            folder=args.notebooks_dir, timeout=args.timeout,
                            progress=not args.quiet, workers=args.workers)
    except ValueError as err:  # name the flag or argument, not the function's parameter
        msg = str(err)
        for field, flag in (("parameters", "--parameter"), ("parameter", "--parameter"),
                            ("notebooks", "NOTEBOOK"), ("workers", "--workers")):
            if msg.startswith(field + ":"):
                msg = flag + msg[len(field):]
                break
        raise ValueError(msg) from None
    print(summary.to_string(index=False))
    failed = summary[summary["status"] != "ok"]
    print(f"\n{len(summary) - len(failed)} of {len(summary)} notebooks ran; executed notebooks and "
          f"summary.csv in {args.out}")
    return 1 if len(failed) else 0


if __name__ == "__main__":
    sys.exit(main())
