"""Print how well a method forgets on the tiny zoo: held-out hidden-region MSE before and after.

    python tools/measure_unlearning.py [--models mae-mnist mae-scenes] [--method ours] [--seed 0]

The issue targets: forget MSE >= 3x the original's, retain MSE <= 1.10x the original's.
"""
import argparse
import time

from i2i_unlearn import zoo
from i2i_unlearn.data import load_dataset, make_split
from i2i_unlearn.evaluate import evaluate_forgetting
from i2i_unlearn.unlearn import METHODS, unlearn_classes

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--models", nargs="+", default=list(zoo.TINY_MODELS))
parser.add_argument("--method", choices=METHODS, default="ours")
parser.add_argument("--forget", type=int, nargs="+", default=[0, 1, 2])
parser.add_argument("--alpha", type=float, default=None)
parser.add_argument("--steps", type=int, default=None)
parser.add_argument("--retain-set", default="retain")
parser.add_argument("--seed", type=int, default=0)
args = parser.parse_args()

for name in args.models:
    original = zoo.load(name)
    data = original.manifest["data"]["dataset"]
    split = make_split(load_dataset(data).num_classes, args.forget, dataset=data)
    before = evaluate_forgetting(original, load_dataset(data), split.forget, split.retain)
    start = time.time()
    _, manifest = unlearn_classes(name, args.forget, method=args.method, alpha=args.alpha,
                                  steps=args.steps, seed=args.seed, retain_set=args.retain_set,
                                  progress=False)
    seconds = time.time() - start
    after = manifest["metrics"]
    ratio = {s: after[s]["mse"] / before[s]["mse"] for s in ("retain", "forget")}
    print(f"{name:12s} {args.method:15s} alpha={manifest['recipe']['alpha']} "
          f"steps={manifest['recipe']['loop']['steps']} retain_set={args.retain_set} ({seconds:.0f} s)\n"
          f"  retain MSE {before['retain']['mse']:.4f} -> {after['retain']['mse']:.4f} "
          f"(x{ratio['retain']:.3f}, target <= 1.10)\n"
          f"  forget MSE {before['forget']['mse']:.4f} -> {after['forget']['mse']:.4f} "
          f"(x{ratio['forget']:.2f}, target >= 3)", flush=True)
