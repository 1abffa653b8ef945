"""Tests of the MAE family: official layout, visible-only encoder, corruption, training."""
import json
from dataclasses import asdict

import pytest
import torch

from i2i_unlearn.models.mae import (PRESETS, MAECorruption, MAEConfig, MaskedAutoencoder,
                                    build_mae, load_official_mae, sincos_pos_embed_2d)


def tiny(**kw) -> MaskedAutoencoder:
    torch.manual_seed(0)
    return build_mae("mae-tiny", **kw).eval()


def centre_mask(b: int, size: int = 32, box: int = 12) -> torch.Tensor:
    """(b, 1, size, size), 1 in a centred box of side `box`."""
    m = torch.zeros(b, 1, size, size)
    s = (size - box) // 2
    m[:, :, s:s + box, s:s + box] = 1
    return m


def images(b: int, c: int = 1, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, c, 32, 32, generator=g) * 2 - 1


def official_vit_large_shapes() -> dict[str, tuple[int, ...]]:
    """Key -> shape of facebookresearch/mae `mae_vit_large_patch16` (models_mae.py), written out
    from its definition: ViT-L/16 encoder (1024 wide, 24 blocks), 512-wide 8-block decoder."""
    D, Dd, p, L = 1024, 512, 16, (224 // 16) ** 2

    def block(prefix: str, d: int) -> dict:
        return {f"{prefix}.norm1.weight": (d,), f"{prefix}.norm1.bias": (d,),
                f"{prefix}.attn.qkv.weight": (3 * d, d), f"{prefix}.attn.qkv.bias": (3 * d,),
                f"{prefix}.attn.proj.weight": (d, d), f"{prefix}.attn.proj.bias": (d,),
                f"{prefix}.norm2.weight": (d,), f"{prefix}.norm2.bias": (d,),
                f"{prefix}.mlp.fc1.weight": (4 * d, d), f"{prefix}.mlp.fc1.bias": (4 * d,),
                f"{prefix}.mlp.fc2.weight": (d, 4 * d), f"{prefix}.mlp.fc2.bias": (d,)}

    shapes = {"cls_token": (1, 1, D), "pos_embed": (1, L + 1, D),
              "patch_embed.proj.weight": (D, 3, p, p), "patch_embed.proj.bias": (D,)}
    for i in range(24):
        shapes |= block(f"blocks.{i}", D)
    shapes |= {"norm.weight": (D,), "norm.bias": (D,),
               "decoder_embed.weight": (Dd, D), "decoder_embed.bias": (Dd,),
               "mask_token": (1, 1, Dd), "decoder_pos_embed": (1, L + 1, Dd)}
    for i in range(8):
        shapes |= block(f"decoder_blocks.{i}", Dd)
    shapes |= {"decoder_norm.weight": (Dd,), "decoder_norm.bias": (Dd,),
               "decoder_pred.weight": (p * p * 3, Dd), "decoder_pred.bias": (p * p * 3,)}
    return shapes


# -- official layout ----------------------------------------------------------------------
def test_official_vit_large_layout_and_strict_load():
    with torch.device("meta"):
        model = build_mae("mae_vit_large_patch16")
    official = official_vit_large_shapes()
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert ours == official  # same keys, same shapes; no normalisation buffers
    state = {k: torch.empty(s, device="meta") for k, s in official.items()}
    assert load_official_mae(model, {"model": state}) is model
    assert not model.pos_embed.requires_grad and model.cls_token.requires_grad

    extra = dict(state, **{"head.weight": torch.empty(10, device="meta")})
    with pytest.raises(ValueError, match="head.weight"):
        load_official_mae(model, extra)
    missing = {k: v for k, v in state.items() if not k.startswith("decoder_pred")}
    with pytest.raises(ValueError, match="decoder_pred.weight"):
        load_official_mae(model, missing)


def test_load_official_from_file_roundtrip(tmp_path):
    src, dst = tiny(), build_mae("mae-tiny")
    torch.save({"model": src.state_dict(), "epoch": 3}, tmp_path / "ckpt.pth")
    load_official_mae(dst, tmp_path / "ckpt.pth")
    for (k, a), b in zip(src.state_dict().items(), dst.state_dict().values()):
        assert torch.equal(a, b), k


def test_presets_config_and_errors():
    assert {"mae-tiny", "mae_vit_base_patch16", "mae_vit_large_patch16",
            "mae_vit_huge_patch14"} <= set(PRESETS)
    cfg = tiny(in_chans=3).config
    back = MAEConfig(**json.loads(json.dumps(asdict(cfg))))
    assert back == cfg and isinstance(back.train_mask_ratio, tuple)
    with pytest.raises(ValueError, match="preset.*mae-tiny"):
        build_mae("mae_vit_gigantic")
    with pytest.raises(ValueError, match="input_norm"):
        build_mae("mae-tiny", input_norm="imagenet")  # 1 channel cannot use ImageNet stats


def test_sincos_table():
    t = sincos_pos_embed_2d(16, 4)
    assert t.shape == (17, 16) and torch.all(t[0] == 0)
    # position (row 0, col 0): sin 0 = 0 and cos 0 = 1 on both axes
    assert torch.equal(t[1], torch.tensor([0.0] * 4 + [1.0] * 4 + [0.0] * 4 + [1.0] * 4))
    assert torch.allclose(t[1:, :8].reshape(4, 4, 8)[0], t[1:, :8].reshape(4, 4, 8)[3])  # cols
    assert len({tuple(r.tolist()) for r in t[1:]}) == 16  # every patch distinct


# -- encoder sees only the visible patches -------------------------------------------------
def test_encoder_sees_only_visible_patches():
    model, x, mask = tiny(), images(2), centre_mask(2, box=12)  # pixels 10..21 -> patches 2..5, 4x4
    n_visible = int((~model.hidden_patches(mask)).sum(1)[0])
    assert n_visible == 64 - 16
    z = model.encode(x, mask)
    assert z.shape == (2, 1 + n_visible, 128)

    x_hidden = torch.where(mask > 0, torch.randn_like(x), x)
    assert torch.equal(model.encode(x_hidden, mask), z)
    x_vis = x.clone()
    x_vis[:, :, 0, 0] += 0.5  # a visible pixel
    assert not torch.allclose(model.encode(x_vis, mask), z)


def test_partially_hidden_patch_counts_as_hidden():
    model = tiny()
    mask = torch.zeros(1, 1, 32, 32)
    mask[0, 0, 5, 9] = 1  # a single pixel in patch (row 1, col 2)
    hidden = model.hidden_patches(mask)
    assert hidden.sum() == 1 and hidden[0, 1 * 8 + 2]
    assert model.encode(images(1), mask).shape[1] == 1 + 63


def test_ragged_visible_counts_keep_first_k_in_raster_order():
    model, mask = tiny(), centre_mask(2)
    mask[1, :, :4, :] = 1  # the second image also hides its top row of patches
    c = model.deterministic_corruption(mask)
    visible0, visible1 = (row.nonzero().flatten() for row in ~model.hidden_patches(mask))
    assert c.ids_keep.shape == (2, len(visible1)) and len(visible0) > len(visible1)
    assert torch.equal(c.ids_keep[1], visible1)
    assert torch.equal(c.ids_keep[0], visible0[:len(visible1)])


# -- generate -------------------------------------------------------------------------------
@pytest.mark.parametrize("input_norm", ["none", "imagenet"])
def test_generate_keeps_visible_pixels(input_norm):
    model, x, mask = tiny(in_chans=3, input_norm=input_norm), images(3, 3), centre_mask(3)
    out = model.generate(x, mask)
    assert out.shape == x.shape and out.min() >= -1 and out.max() <= 1
    assert torch.equal(out[mask.expand_as(x) == 0], x[mask.expand_as(x) == 0])
    assert not torch.equal(out, x)
    assert "in_mean" not in model.state_dict()


def test_shape_errors_name_the_argument():
    model = tiny()
    with pytest.raises(ValueError, match="^x:"):
        model.generate(images(2, 3), centre_mask(2))
    with pytest.raises(ValueError, match="^mask:"):
        model.generate(images(2), centre_mask(2, size=32)[:, :, :16])
    with pytest.raises(ValueError, match="^mask:"):
        model.encode(images(2), centre_mask(3))


# -- corruption -------------------------------------------------------------------------------
def test_sample_corruption_seeded_and_hides_masked_patches():
    model, x, mask = tiny(), images(4), centre_mask(4)

    def draw(seed):
        return model.sample_corruption(x, mask, torch.Generator().manual_seed(seed))

    a, b, c = draw(1), draw(1), draw(2)
    assert isinstance(a, MAECorruption)
    assert torch.equal(a.ids_keep, b.ids_keep) and torch.equal(a.ids_restore, b.ids_restore)
    assert not torch.equal(a.ids_keep, c.ids_keep)
    hidden = model.hidden_patches(mask)
    assert not torch.gather(hidden, 1, a.ids_keep).any()
    K = a.ids_keep.shape[1]
    assert round(64 * 0.25) <= K <= 64 - 16
    assert model.encode(x, mask, a).shape == (4, 1 + K, 128)
    assert torch.equal(a.removed().sum(1), torch.full((4,), 64.0 - K))


def test_task_loss_trains_and_uses_target():
    torch.manual_seed(0)
    model = build_mae("mae-tiny").train()
    x, mask = images(8), centre_mask(8)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for step in range(30):
        c = model.sample_corruption(x, mask, torch.Generator().manual_seed(step % 3))
        loss = model.task_loss(x, mask, c)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses
    c = model.deterministic_corruption(mask)
    assert not torch.isclose(model.task_loss(x, mask, c), model.task_loss(x, mask, c, target=-x))
    with pytest.raises(ValueError, match="^target:"):
        model.task_loss(x, mask, c, target=x[:2])


def test_encoder_only_optimisation_leaves_decoder_untouched():
    model, x, mask = tiny(), images(4), centre_mask(4)
    enc = model.encoder
    names = {n for n, p in model.named_parameters() if any(p is q for q in enc.parameters())}
    top = ("cls_token", "pos_embed", "patch_embed", "blocks", "norm")
    assert names == {n for n, _ in model.named_parameters() if n.split(".")[0] in top}
    assert list(model.state_dict()) == list(build_mae("mae-tiny").state_dict())  # no new keys
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = torch.optim.SGD(model.encoder.parameters(), lr=0.1)
    c = model.sample_corruption(x, mask, torch.Generator().manual_seed(0))
    model.task_loss(x, mask, c).backward()
    opt.step()
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert changed and changed <= names
    assert "blocks.0.attn.qkv.weight" in changed
