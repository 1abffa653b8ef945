"""Bringing your own model: the contract check, the template ConvInpainter, training it with the
package's loop, unlearning it, and saving / loading a family the package does not know."""
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
    mode = model.training
    table = check_contract(model)
    assert len(table) == 12 and set(table["status"]) == {"ok"}, table.to_string()
    assert model.training == mode  # left as it was


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


class DropoutInEncoder(ConvInpainter):
    def __init__(self, config):
        super().__init__(config)
        self.down.append(nn.Dropout(0.5))


@pytest.mark.parametrize("cls, method, words", [
    (RepaintsTheImage, "generate", "changes visible pixels"),
    (GlobalRandomness, "sample_corruption", "draw every random number from `generator`"),
    (EncoderIsEverything, "encoder", "holds every trainable parameter"),
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
    table = check_contract(DropoutInEncoder(ConvInpainterConfig(width=8)))
    warned = table[table["status"] == "warn"]
    assert "train() and eval()" in " ".join(warned["check"]), table.to_string()
    assert "fail" not in set(table["status"])


def test_check_contract_rejects_what_is_not_a_model_and_bad_images():
    with pytest.raises(ContractError, match="^model:"):
        check_contract(nn.Linear(2, 2))
    table = check_contract(conv(), images(2, c=3), centre_mask(2), raise_on_failure=False)
    assert len(table) == 1 and table.iloc[0]["status"] == "fail" and "x:" in table.iloc[0]["detail"]


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
