"""The experiment cache: each configuration runs once; any changed setting runs anew."""
import pandas as pd
import pytest
import torch

from i2i_unlearn import experiments, unlearn, zoo
from i2i_unlearn.loop import LoopConfig
from i2i_unlearn.pretrain import pretrain


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv(experiments.CACHE_ENV, str(tmp_path / "cache"))
    return tmp_path / "cache"


def count_calls(monkeypatch, module, name):
    calls = []
    real = getattr(module, name)
    monkeypatch.setattr(module, name, lambda *a, **k: calls.append(1) or real(*a, **k))
    return calls


def test_unlearned_runs_once_per_configuration(small_checkpoint, monkeypatch, cache):
    calls = count_calls(monkeypatch, unlearn, "unlearn_classes")
    first = experiments.unlearned(small_checkpoint, [0, 1, 2], steps=3, batch_size=4)
    again = experiments.unlearned(small_checkpoint, [2, 1, 0], steps=3, batch_size=4)
    assert len(calls) == 1
    for (k, a), b in zip(first.state_dict().items(), again.state_dict().values()):
        assert torch.equal(a, b), k
    other = experiments.unlearned(small_checkpoint, [0, 1, 2], steps=3, batch_size=4, seed=1)
    assert len(calls) == 2
    assert not torch.equal(first.encoder.patch_embed.proj.weight, other.encoder.patch_embed.proj.weight)
    assert other.manifest["recipe"]["loop"]["seed"] == 1
    assert not list(cache.rglob("*.tmp*")), "no half-written entry is left behind"


def test_unlearned_failure_leaves_nothing(small_checkpoint, cache):
    with pytest.raises(ValueError, match="^alpha"):
        experiments.unlearned(small_checkpoint, [0], steps=2, alpha=-1.0)
    assert not list(cache.rglob(zoo.MANIFEST))


def test_retrained_uses_the_recipe_without_the_forget_classes(tmp_path, monkeypatch):
    model, info = pretrain("mae", "mnist", loop=LoopConfig(steps=2, warmup_steps=1), batch_size=4,
                           progress=False)
    original = zoo.save(model, tmp_path / "original", info)
    import i2i_unlearn.pretrain
    calls = count_calls(monkeypatch, i2i_unlearn.pretrain, "pretrain")
    reference = experiments.retrained(original, [0, 1, 2])
    assert reference.manifest["recipe"] == {**zoo.read_manifest(original)["recipe"],
                                            "exclude_classes": [0, 1, 2]}
    assert reference.manifest["data"]["classes"] == list(range(3, 10))
    same = experiments.retrained(original, [2, 0, 1])
    assert same.manifest["sha256"] == reference.manifest["sha256"] and len(calls) == 1


def test_retrained_uses_a_shipped_reference_stored_in_float16(monkeypatch):
    import i2i_unlearn.pretrain
    calls = count_calls(monkeypatch, i2i_unlearn.pretrain, "pretrain")
    reference = experiments.retrained("vqgan-mnist", [2, 0, 1])
    assert reference.checkpoint_dir == zoo.resolve("vqgan-mnist-retrained") and not calls
    assert reference.manifest["recipe"]["weights_dtype"] == "float16"


def test_shipped_retrained_names_the_zoo_reference_or_none():
    assert experiments.shipped_retrained("mae-mnist", [2, 1, 0]) == "mae-mnist-retrained"
    assert experiments.shipped_retrained("diffusion-mnist", [0, 1, 2]) == "diffusion-mnist-retrained"
    assert experiments.shipped_retrained("mae-mnist", [0, 1]) is None  # other forget classes
    assert experiments.shipped_retrained("vqgan-scenes", [0, 1, 2]) is None  # none ships


def test_retrained_needs_a_pretrain_recipe(small_checkpoint):
    with pytest.raises(ValueError, match="^model: .*not made by pretrain"):
        experiments.retrained(small_checkpoint, [0])


def test_table_is_computed_once():
    calls = []

    def compute():
        calls.append(1)
        return pd.DataFrame({"metric": ["mse"], "value": [0.5]})

    a = experiments.table("demo", {"x": 1}, compute)
    b = experiments.table("demo", {"x": 1}, compute)
    experiments.table("demo", {"x": 2}, compute)
    assert len(calls) == 2 and a.equals(b) and a["value"].tolist() == [0.5]


def test_equal_runs_share_one_entry_however_spelled(small_checkpoint, monkeypatch):
    calls = count_calls(monkeypatch, unlearn, "unlearn_classes")
    experiments.unlearned(small_checkpoint, [0], steps=2, batch_size=4)
    experiments.unlearned(small_checkpoint, [0], "ours", steps=2, batch_size=4, retain_set="retain",
                          retain=None, seed=0)
    # the family's defaults and the default retain classes, spelled out: still the same run
    mae = unlearn.FAMILY_DEFAULTS["mae"]
    experiments.unlearned(small_checkpoint, [0], steps=2, batch_size=4, alpha=mae["alpha"],
                          lr=mae["lr"], retain=[3, 4, 5])
    assert len(calls) == 1
    experiments.unlearned(small_checkpoint, [0], steps=2, batch_size=4, alpha=0.5)
    assert len(calls) == 2
    with pytest.raises(ValueError, match="^options: .*'stpes'"):
        experiments.unlearned(small_checkpoint, [0], stpes=2)
