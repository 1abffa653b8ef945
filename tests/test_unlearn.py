"""Tests of the unlearning objective, the baselines and the loop (seeds, resume, failures)."""
import copy

import pytest
import torch
from conftest import small_mae

from i2i_unlearn import masks
from i2i_unlearn.data import load_dataset
from i2i_unlearn.loop import LoopConfig, train
from i2i_unlearn.models.base import freeze
from i2i_unlearn.unlearn import (METHODS, UnlearnConfig, make_noise, run_unlearning,
                                 unlearn_classes, unlearning_loss)


def mnist_sets(n: int = 64):
    d = load_dataset("mnist")
    return d.images([0, 1], per_class=n // 2)[0], d.images([3, 4], per_class=n // 2)[0]


def config(method="ours", steps=15, seed=0, **kw):
    return UnlearnConfig(method=method, batch_size=8,
                         loop=LoopConfig(steps=steps, lr=1e-3, warmup_steps=2, seed=seed, **kw))


def changed(before, after) -> set[str]:
    b, a = before.state_dict(), after.state_dict()
    return {k for k in b if not torch.equal(b[k], a[k])}


@pytest.mark.parametrize("method", METHODS)
def test_each_method_trains_what_the_paper_says(method):
    model = small_mae()
    x_f, x_r = mnist_sets()
    unlearned, history = run_unlearning(model, x_f, x_r, config(method, steps=3), progress=False)
    moved = changed(model, unlearned)
    assert moved, "nothing was trained"
    decoder = {k for k in moved if k.startswith(("decoder", "mask_token"))}
    if method in ("ours", "random-encoder"):
        assert not decoder  # encoder only: the decoder stays the original one
    else:
        assert decoder  # the baselines train the whole model
    assert not changed(small_mae(), model)  # the input model is never modified
    assert {"retain", "forget", "loss"} <= set(history[0])


def test_ours_student_and_teacher_share_the_corruption():
    """At step 0 the student is the teacher: the retain term is exactly zero only if both saw
    the same T (same kept patches)."""
    model = small_mae()
    teacher = freeze(copy.deepcopy(model))
    x_f, x_r = mnist_sets(16)
    mask = masks.random_boxes(16, 32, torch.Generator().manual_seed(0))
    loss, logs = unlearning_loss("ours", model, teacher, x_f, x_r, mask, 0.5, "standard",
                                 torch.Generator().manual_seed(0))
    assert logs["retain"] == 0.0 and logs["forget"] > 0
    assert loss.item() == pytest.approx(0.5 * logs["forget"])


def test_ours_pulls_forget_embeddings_to_the_teachers_noise_embedding():
    """After unlearning, forget embeddings sit near the original encoder's embedding of noise
    (averaged over draws: the student can only match the mean of a random target), retain
    embeddings near the original ones."""
    model = small_mae()
    x_f, x_r = mnist_sets()
    cfg = config("ours", steps=100)
    cfg.loop.lr = 3e-3
    student, _ = run_unlearning(model, x_f, x_r, cfg, progress=False)
    mask = masks.centre_box(len(x_f), 32, 0.5)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        noise_target = torch.stack([model.encode(make_noise(x_f, "standard", g), mask)
                                    for _ in range(8)]).mean(0)
        before = torch.mean((model.encode(x_f, mask) - noise_target) ** 2)
        after = torch.mean((student.encode(x_f, mask) - noise_target) ** 2)
        drift = torch.mean((student.encode(x_r, mask) - model.encode(x_r, mask)) ** 2)
    assert after < 0.75 * before, (after, before)
    assert drift < 0.1 * before, (drift, before)


def test_max_loss_pushes_forget_loss_up():
    from i2i_unlearn import zoo
    model = zoo.load("mae-mnist")  # gradient ascent on a model that has learnt the forget set
    x_f, x_r = mnist_sets()
    cfg = config("max-loss", steps=30)
    cfg.alpha = 1.0
    _, history = run_unlearning(model, x_f, x_r, cfg, progress=False)
    assert history[-1]["forget"] > history[0]["forget"]


def test_matched_noise_follows_the_batch():
    x = torch.rand(8, 1, 32, 32) * 0.5 - 0.8
    n = make_noise(x, "matched", torch.Generator().manual_seed(0))
    assert n.shape == x.shape and n.min() >= -1 and n.max() <= 1
    assert abs(n.mean() - x.mean()) < 0.05
    s = make_noise(x, "standard", torch.Generator().manual_seed(0))
    assert abs(s.std() - 1) < 0.05


def test_same_seed_gives_bit_identical_weights():
    x_f, x_r = mnist_sets()
    a, _ = run_unlearning(small_mae(), x_f, x_r, config(seed=3), progress=False)
    b, _ = run_unlearning(small_mae(), x_f, x_r, config(seed=3), progress=False)
    c, _ = run_unlearning(small_mae(), x_f, x_r, config(seed=4), progress=False)
    assert not changed(a, b)
    assert changed(a, c)


def test_killed_and_resumed_run_equals_uninterrupted_run(tmp_path, monkeypatch):
    x_f, x_r = mnist_sets()
    cfg = config(steps=12, checkpoint_every=4)
    full, full_hist = run_unlearning(small_mae(), x_f, x_r, cfg, checkpoint_dir=tmp_path / "a",
                                     progress=False)

    import i2i_unlearn.unlearn as unlearn_module
    real = unlearn_module.unlearning_loss

    def dies_at_step_9(*args, **kw):
        dies_at_step_9.calls += 1
        if dies_at_step_9.calls == 10:
            raise KeyboardInterrupt  # the process is killed mid-run
        return real(*args, **kw)
    dies_at_step_9.calls = 0
    monkeypatch.setattr(unlearn_module, "unlearning_loss", dies_at_step_9)
    with pytest.raises(KeyboardInterrupt):
        run_unlearning(small_mae(), x_f, x_r, cfg, checkpoint_dir=tmp_path / "b", progress=False)
    monkeypatch.setattr(unlearn_module, "unlearning_loss", real)
    assert (tmp_path / "b" / "state.json").exists()
    resumed, hist = run_unlearning(small_mae(), x_f, x_r, cfg, checkpoint_dir=tmp_path / "b",
                                   resume=True, progress=False)
    assert not changed(full, resumed)
    assert hist == full_hist


@pytest.mark.parametrize("kw,arg", [({"alpha": -0.1}, "alpha"), ({"method": "forgetful"}, "method"),
                                    ({"noise": "pink"}, "noise"), ({"batch_size": 0}, "batch_size")])
def test_bad_config_names_the_argument(kw, arg):
    with pytest.raises(ValueError, match=arg):
        UnlearnConfig(**kw)


def test_empty_sets_and_wrong_images_fail_early():
    model = small_mae()
    x_f, x_r = mnist_sets()
    with pytest.raises(ValueError, match="forget_images"):
        run_unlearning(model, x_f[:0], x_r, config(), progress=False)
    with pytest.raises(ValueError, match="x: expected"):
        run_unlearning(model, x_f.repeat(1, 3, 1, 1), x_r, config(), progress=False)


def test_nan_loss_stops_with_the_step():
    model = small_mae()

    def step_fn(step, generator):
        return model.cls_token.sum() * (float("nan") if step == 2 else 1.0), {}

    with pytest.raises(FloatingPointError, match="step 2"):
        train(model, list(model.parameters()), step_fn, LoopConfig(steps=5), progress=False)


def test_unlearn_classes_writes_a_loadable_checkpoint(small_checkpoint, tmp_path):
    from i2i_unlearn import zoo
    out = tmp_path / "unlearned"
    model, manifest = unlearn_classes(small_checkpoint, [0, 1, 2], method="ours", steps=4,
                                      batch_size=4, out_dir=out, progress=False)
    loaded = zoo.load(out)
    assert not changed(model, loaded)
    m = loaded.manifest
    assert m["recipe"]["method"] == "ours" and m["recipe"]["loop"]["steps"] == 4
    assert m["data"]["forget"] == [0, 1, 2] and m["data"]["retain"] == [3, 4, 5]
    assert set(m["metrics"]) == {"mask", "retain", "forget"}
    assert not (out / "checkpoint").exists()
    _, proxy = unlearn_classes(small_checkpoint, [0, 1, 2], retain_set="proxy", steps=2, batch_size=4,
                               progress=False)
    assert proxy["data"]["unlearning_retain_set"] == "proxy"
    assert proxy["data"]["retain_images"] == 4 * 450  # classes 6..9


def test_retain_set_choices_other_dataset_and_none(small_checkpoint, monkeypatch):
    _, scenes = unlearn_classes(small_checkpoint, [0, 1, 2], retain_set="scenes", steps=2,
                                batch_size=4, progress=False)
    assert scenes["data"]["unlearning_retain_set"] == "scenes"
    assert scenes["data"]["retain_images"] == 450 * load_dataset("scenes").num_classes
    _, none = unlearn_classes(small_checkpoint, [0, 1, 2], retain_set="none", steps=3,
                              batch_size=4, progress=False)
    assert none["recipe"]["retain_weight"] == 0.0
    assert all(h["retain"] == 0.0 for h in none["history"] if "retain" in h)
    with pytest.raises(ValueError, match="retain_set"):
        unlearn_classes(small_checkpoint, [0, 1, 2], retain_set="mnist", steps=1, progress=False)
    with pytest.raises(ValueError, match="retain_set"):
        unlearn_classes(small_checkpoint, [0, 1, 2], retain_set="cifar10", steps=1, progress=False)
    monkeypatch.delenv("I2I_UNLEARN_IMAGENET", raising=False)  # paper folders: named where
    with pytest.raises(ValueError, match="I2I_UNLEARN_IMAGENET"):
        unlearn_classes(small_checkpoint, [0, 1, 2], retain_set="imagenet", steps=1, progress=False)


def test_convert_channels_round_trip():
    from i2i_unlearn.data import convert_channels
    grey = torch.rand(2, 1, 8, 8)
    rgb = convert_channels(grey, 3)
    assert rgb.shape == (2, 3, 8, 8)
    assert torch.allclose(convert_channels(rgb, 1), grey, atol=1e-6)  # luma weights sum to 1
    with pytest.raises(ValueError, match="channels"):
        convert_channels(torch.rand(1, 2, 4, 4), 3)


@pytest.mark.slow
def test_data_parallel_processes_see_different_rows_and_stay_in_sync():
    # torchrun with 2 CPU processes (what `accelerate launch` does on GPUs): sharded batches,
    # averaged gradients -> both processes end with the same weights, which differ from one
    # process's (it saw other rows).
    import os
    import re
    import subprocess
    import sys
    from pathlib import Path
    script = Path(__file__).parent / "scripts" / "ddp_unlearn.py"
    torchrun = Path(sys.executable).with_name("torchrun")
    env = {**os.environ, "ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1"}
    two = subprocess.run([str(torchrun), "--nproc_per_node", "2", str(script)], env=env,
                         capture_output=True, text=True, timeout=600)
    assert two.returncode == 0, two.stderr[-2000:]
    sums = dict(re.findall(r"rank (\d) checksum (-?\d+\.\d{10})", two.stdout))
    assert set(sums) == {"0", "1"} and sums["0"] == sums["1"]
    one = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True,
                         timeout=600)
    assert one.returncode == 0, one.stderr[-2000:]
    assert re.findall(r"checksum (-?\d+\.\d{10})", one.stdout) != [sums["0"]]
