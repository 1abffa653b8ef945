"""Bringing your own model: the contract check, the template ConvInpainter, training it with the
package's loop, unlearning it, and saving / loading a family the package does not know."""
import copy
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from conftest import centre_mask, images, small_mae
from test_diffusion import dummy as dummy_diffusion
from test_vqgan import dummy as dummy_vqgan
from i2i_unlearn import zoo
from i2i_unlearn.data import load_dataset
from i2i_unlearn.loop import LoopConfig
from i2i_unlearn.models.contract import ContractError, check_contract
from i2i_unlearn.models.convnet import ConvInpainter, ConvInpainterConfig
from i2i_unlearn.pretrain import fit
from i2i_unlearn.unlearn import resolve_defaults, unlearn_classes


def conv(seed: int = 0, **kw) -> ConvInpainter:
    torch.manual_seed(seed)
    return ConvInpainter(ConvInpainterConfig(width=8, **kw)).eval()


@pytest.mark.parametrize("build", [small_mae, dummy_diffusion, dummy_vqgan, conv,
                                   lambda: conv(latent_dim=0)],
                         ids=["mae", "diffusion", "vqgan", "convnet", "convnet-local"])
def test_every_family_and_the_template_pass_the_contract_check(build):
    model = build()
    mode, state, rng = model.training, copy.deepcopy(model.state_dict()), torch.get_rng_state()
    table = check_contract(model)
    assert len(table) == 15 and set(table["status"]) == {"ok"}, table.to_string()
    # left as it was: mode, weights and buffers, the caller's random state
    assert model.training == mode and torch.equal(torch.get_rng_state(), rng)
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())


class RepaintsTheImage(ConvInpainter):
    @torch.no_grad()
    def generate(self, x, mask, generator=None):
        return self.decode(self.encode(x, mask))


class GlobalRandomness(ConvInpainter):
    def sample_corruption(self, x, mask, generator=None):
        return super().sample_corruption(x, mask, None)  # ignores the generator it is given


class EncoderIsEverything(ConvInpainter):
    @property
    def encoder(self):
        return self


class GenerateWithoutEncoder(ConvInpainter):
    """Generates from a frozen copy of the encoder: unlearning would change nothing scored."""
    def __init__(self, config):
        super().__init__(config)
        self.frozen_twin = [copy.deepcopy(self.down)]  # a list: not a sub-module

    @torch.no_grad()
    def generate(self, x, mask, generator=None):
        hidden = (mask > 0).float()
        z = self.frozen_twin[0](torch.cat([x * (1 - hidden), hidden], dim=1))
        return x * (1 - hidden) + self.decode(z) * hidden


class IgnoresTarget(ConvInpainter):
    def task_loss(self, x, mask, corruption, target=None):
        return super().task_loss(x, mask, corruption)


class NoFamily(ConvInpainter):
    family = "base"


class DropoutInEncoder(ConvInpainter):
    def __init__(self, config):
        super().__init__(config)
        self.down.append(nn.Dropout(0.5))


@pytest.mark.parametrize("cls, method, words", [
    (RepaintsTheImage, "generate", "changes visible pixels"),
    (GlobalRandomness, "sample_corruption", "draw every random number from `generator`"),
    (EncoderIsEverything, "encoder", "holds every parameter"),
    (GenerateWithoutEncoder, "generate", "changes nothing generate returns"),
    (IgnoresTarget, "task_loss", "`target` is ignored"),
    (NoFamily, "config", "set a class attribute `family`"),
])
def test_a_broken_model_fails_the_check_naming_the_method(cls, method, words):
    torch.manual_seed(0)
    model = cls(ConvInpainterConfig(width=8))
    with pytest.raises(ContractError, match=rf"(?s){method}: .*\n +.*{words}"):
        check_contract(model)
    table = check_contract(model, raise_on_failure=False)
    assert (table[table["status"] == "fail"]["method"] == method).all()


def test_dropout_in_the_encoder_is_a_warning_not_a_failure():
    torch.manual_seed(0)
    with pytest.warns(UserWarning, match="DropoutInEncoder.encode: differ by"):
        table = check_contract(DropoutInEncoder(ConvInpainterConfig(width=8)))
    warned = table[table["status"] == "warn"]
    assert "train() and eval()" in " ".join(warned["check"]), table.to_string()
    # and a subclass that keeps the template's family would reload as the template
    assert "belongs to ConvInpainter" in " ".join(warned["detail"])
    assert "fail" not in set(table["status"])


class BatchNormEncoder(ConvInpainter):
    family = "bn-convnet"

    def __init__(self, config):
        super().__init__(config)
        self.down.insert(1, nn.BatchNorm2d(config.width))


def test_batch_norm_statistics_are_restored_and_a_frozen_decoder_is_fine():
    torch.manual_seed(0)
    model = BatchNormEncoder(ConvInpainterConfig(width=8)).eval()
    for p in model.up.parameters():  # the user froze the decoder already
        p.requires_grad_(False)
    before = copy.deepcopy(model.state_dict())
    with pytest.warns(UserWarning):  # train/eval differ (batch norm), family not registered
        table = check_contract(model)
    assert "fail" not in set(table["status"]), table.to_string()
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


class ConfigIsNotADataclass(ConvInpainter):
    family = "namespace-config"

    def __init__(self, config=None):
        super().__init__(ConvInpainterConfig(width=8))
        self.config = SimpleNamespace(**vars(self.config))


def test_a_config_that_cannot_be_saved_fails_before_any_training():
    with pytest.raises(ContractError, match=r"(?s)config: .*\n +raised TypeError: asdict"):
        check_contract(ConfigIsNotADataclass())


def test_check_contract_rejects_what_is_not_a_model_and_bad_images():
    with pytest.raises(ContractError, match="^model:"):
        check_contract(nn.Linear(2, 2))
    table = check_contract(conv(), images(2, c=3), centre_mask(2), raise_on_failure=False)
    last = table.iloc[-1]  # the config check, then the images: nothing runs on rejected images
    assert len(table) == 2 and last["method"] == "check_inputs" and last["status"] == "fail"
    assert "x:" in last["detail"]


def test_fit_runs_each_pretraining_stage_of_a_staged_model():
    model = dummy_vqgan()
    history = fit(model, images(8), LoopConfig(steps=4, lr=1e-3, warmup_steps=1, log_every=1),
                  batch_size=4, progress=False)
    stages = [r["stage"] for r in history]  # logged every step, stage by stage
    assert len(stages) == 4 and stages == sorted(stages, key=["tokenizer", "transformer"].index)
    assert set(stages) == {"tokenizer", "transformer"}


def test_fit_trains_any_model_reproducibly_and_the_loss_falls():
    data = load_dataset("mnist").images([3, 4], split="train")[0][:256]
    loop = LoopConfig(steps=40, lr=3e-3, warmup_steps=4, seed=0, log_every=1)
    a, b = conv(), conv()
    history = fit(a, data, loop, batch_size=32, progress=False)
    fit(b, data, loop, batch_size=32, progress=False)
    first, last = [sum(r["loss"] for r in rows) / 5 for rows in (history[:5], history[-5:])]
    assert last < 0.8 * first, (first, last)
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))


def test_own_model_unlearns_through_the_same_entry_point():
    model = conv()
    with pytest.raises(ValueError, match="^dataset:"):
        unlearn_classes(model, [0, 1, 2], alpha=1, steps=2, lr=1e-3, batch_size=4)
    with pytest.raises(ValueError, match=r"^alpha, lr: no tuned defaults for the 'convnet'"):
        unlearn_classes(model, [0, 1, 2], dataset=load_dataset("mnist"), steps=2, batch_size=4)
    unlearned, manifest = unlearn_classes(model, [0, 1, 2], dataset=load_dataset("mnist"), alpha=1,
                                          steps=3, lr=1e-3, batch_size=4, progress=False)
    assert manifest["recipe"]["loop"]["steps"] == 3 and manifest["family"] == "convnet"
    assert {"retain", "forget"} <= set(manifest["metrics"])
    changed = [not torch.equal(p, q) for p, q in zip(model.encoder.parameters(),
                                                     unlearned.encoder.parameters())]
    assert any(changed)
    assert all(torch.equal(p, q) for p, q in zip(model.up.parameters(), unlearned.up.parameters()))
    assert resolve_defaults("mae")["steps"] > 0  # the zoo's families keep their defaults


class MyConfig(ConvInpainterConfig):
    pass


class MyModel(ConvInpainter):
    family = "my-model"


class Impostor(ConvInpainter):
    family = "mae"


def test_a_registered_family_saves_and_loads(tmp_path, monkeypatch):
    monkeypatch.setattr(zoo, "_REGISTERED", {})  # registrations are per process
    torch.manual_seed(0)
    model = MyModel(MyConfig(width=8)).eval()
    zoo.save(model, tmp_path / "mine", {"data": {"dataset": "mnist"}})
    with pytest.raises(ValueError, match="register_family"):
        zoo.load(tmp_path / "mine")
    with pytest.raises(ValueError, match="^family:"):
        zoo.register_family("other-name", MyConfig, MyModel)
    with pytest.raises(ValueError, match="^family: 'mae' is a built-in"):
        zoo.register_family("mae", MyConfig, Impostor)
    zoo.register_family("my-model", MyConfig, MyModel)
    loaded = zoo.load(tmp_path / "mine")
    x, m = images(2), centre_mask(2)
    assert type(loaded) is MyModel and torch.equal(loaded.generate(x, m), model.generate(x, m))


def test_the_cli_imports_a_module_that_registers_a_family(tmp_path, monkeypatch, capsys):
    from i2i_unlearn import cli
    monkeypatch.setattr(zoo, "_REGISTERED", {})
    torch.manual_seed(0)
    zoo.save(MyModel(MyConfig(width=8)).eval(), tmp_path / "mine", {"data": {"dataset": "mnist"}})
    (tmp_path / "my_models.py").write_text(
        "from i2i_unlearn import zoo\nfrom test_own_model import MyConfig, MyModel\n"
        "zoo.register_family('my-model', MyConfig, MyModel)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    args = ["evaluate", "--model", str(tmp_path / "mine"), "--forget", "0-2",
            "--json", str(tmp_path / "s.json")]
    assert cli.main(args) != 0 and "register_family" in capsys.readouterr().err
    assert cli.main(["--import", "my_models", *args]) == 0
    assert (tmp_path / "s.json").exists()


def test_unlearn_classes_rejects_an_unsavable_config_before_training():
    with pytest.raises(ValueError, match="^model: its config cannot be stored"):
        unlearn_classes(ConfigIsNotADataclass(), [0, 1, 2], dataset=load_dataset("mnist"),
                        alpha=1, steps=1000, lr=1e-3, batch_size=4, progress=False)


class Repainter(RepaintsTheImage):
    family = "repainter"


def test_cli_check_passes_a_zoo_model_and_fails_a_broken_one(tmp_path, monkeypatch, capsys):
    from i2i_unlearn import cli
    assert cli.main(["check", "--model", "mae-mnist", "--images", "4"]) == 0
    assert "MaskedAutoencoder (mae-mnist): 15 of 15 checks pass" in capsys.readouterr().out
    monkeypatch.setattr(zoo, "_REGISTERED", {"repainter": (ConvInpainterConfig, Repainter)})
    torch.manual_seed(0)
    zoo.save(Repainter(ConvInpainterConfig(width=8)), tmp_path / "r", {"data": {"dataset": "mnist"}})
    assert cli.main(["check", "--model", str(tmp_path / "r")]) == 1
    out = capsys.readouterr().out
    assert "14 of 15 checks pass, 1 fail" in out and "changes visible pixels" in out
