"""Shared fixtures and helpers: a small MAE saved as a checkpoint directory (no shipped weights
needed); random images, a centre mask and seeded generators for the model-family tests."""
import pytest
import torch

from i2i_unlearn import zoo
from i2i_unlearn.models.mae import build_mae
from notebook_fixtures import book_html, executed  # noqa: F401  (session fixtures)

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


def centre_mask(b: int, size: int = 32, box: int = 16) -> torch.Tensor:
    m = torch.zeros(b, 1, size, size)
    s = (size - box) // 2
    m[:, :, s:s + box, s:s + box] = 1
    return m


def images(b: int, c: int = 1, size: int = 32, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, c, size, size, generator=g) * 2 - 1


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)
