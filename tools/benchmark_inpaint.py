"""Print how long each tiny zoo model takes to inpaint 100 held-out images on this machine.

    OMP_NUM_THREADS=2 python tools/benchmark_inpaint.py [--models diffusion-mnist ...] [--n 100]

The diffusion issue's target: 100 images in <= 30 s on 2 CPU cores (centre 8/16 hole, the
model's own sampler settings, one batch). A warm-up call on a few images runs first, so the time
excludes one-off start-up costs; the best of ``--repeats`` runs is reported with the median.
"""
import argparse
import statistics
import time

import torch

from i2i_unlearn import zoo
from i2i_unlearn.data import load_dataset
from i2i_unlearn.evaluate import inpaint

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--models", nargs="+", default=list(zoo.TINY_MODELS))
parser.add_argument("--n", type=int, default=100, help="images to inpaint (default %(default)s)")
parser.add_argument("--mask", default="centre-8/16")
parser.add_argument("--repeats", type=int, default=3)
args = parser.parse_args()

print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.n} images, "
      f"mask {args.mask}")
for name in args.models:
    model = zoo.load(name)
    images = load_dataset(model.manifest["data"]["dataset"]).eval_images[:args.n]
    inpaint(model, images[:4], args.mask)  # warm-up
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        inpaint(model, images, args.mask, batch_size=args.n)
        times.append(time.perf_counter() - start)
    steps = getattr(model.config, "sample_steps", None)
    sampler = f", {steps} sampling steps" if steps else ""
    print(f"{name:18s} best {min(times):6.2f} s, median {statistics.median(times):6.2f} s "
          f"({args.n / min(times):.0f} images/s{sampler})", flush=True)
