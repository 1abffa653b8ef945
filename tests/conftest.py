"""Shared fixtures: a small MAE saved as a checkpoint directory (no shipped weights needed)."""
import pytest
import torch

from i2i_unlearn import zoo
from i2i_unlearn.models.mae import build_mae

SMALL = dict(in_chans=1, embed_dim=32, depth=1, num_heads=2, decoder_embed_dim=32,
             decoder_depth=1, decoder_num_heads=2)


def small_mae(seed: int = 0):
    torch.manual_seed(seed)
    return build_mae("mae-tiny", **SMALL)


@pytest.fixture(scope="session")
def small_checkpoint(tmp_path_factory):
    """A small untrained MAE over the mnist data, saved like a zoo entry."""
    out = tmp_path_factory.mktemp("ckpt") / "small-mae-mnist"
    zoo.save(small_mae(), out, {"data": {"dataset": "mnist"}, "recipe": {"command": "test"}})
    return out
