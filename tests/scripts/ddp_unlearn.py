"""Run by tests/test_unlearn.py under `accelerate launch --cpu --num_processes 2`: a few steps of
unlearning on sharded batches; each process prints its rank and a checksum of its weights."""
import sys

import torch
from accelerate import PartialState

from i2i_unlearn import zoo
from i2i_unlearn.data import load_dataset
from i2i_unlearn.loop import LoopConfig
from i2i_unlearn.unlearn import UnlearnConfig, run_unlearning

torch.set_num_threads(1)
data = load_dataset("mnist")
forget, _ = data.images([0, 1, 2])
retain, _ = data.images([3, 4, 5])
config = UnlearnConfig(method="ours", alpha=0.25, batch_size=4, loop=LoopConfig(steps=3, lr=1e-3))
model, _ = run_unlearning(zoo.load("mae-mnist"), forget, retain, config, progress=False)
total = sum(p.double().sum().item() for p in model.parameters())
# one write per line: print() writes the text and the newline separately, and the two
# processes share stdout, so their lines could run together
sys.stdout.write(f"rank {PartialState().process_index} checksum {total:.10f}\n")
sys.stdout.flush()
