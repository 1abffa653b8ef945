"""Tests of the VQ-GAN family: tokenizer, MAGE corruption, MaskGIT decoding, unlearning, MAGE weights."""
import json
import math

import pytest
import torch
import torch.nn.functional as F

from i2i_unlearn.loop import LoopConfig
from i2i_unlearn.models.mage import (MAGE_DDCONFIG, load_mage, mage_config, mage_to_ours,
                                     official_mage_shapes, official_vqgan_shapes,
                                     tokenizer_config, vqgan_to_diffusers)
from i2i_unlearn.models.vqgan import PRESETS, VQCorruption, VQGANConfig, VQGANInpainter, build_vqgan
from i2i_unlearn.unlearn import METHODS, UnlearnConfig, run_unlearning
from conftest import centre_mask, gen, images  # shared test helpers

# a dummy model: 8x8 grid of 4x4-pixel tokens, 16 codes, one-block transformer, 2 decoding steps
DUMMY = dict(vq_channels=(8, 8, 8), vq_latent_channels=4, vq_embed_dim=4, codebook_size=16,
             vq_norm_groups=4, embed_dim=32, depth=1, num_heads=2, decoder_embed_dim=32,
             decoder_depth=1, decoder_num_heads=2, decode_steps=2)


def dummy(seed: int = 0, **kw) -> VQGANInpainter:
    torch.manual_seed(seed)
    return build_vqgan("vqgan-tiny", **{**DUMMY, **kw}).eval()


def seeded_weights(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Weights from one generator in sorted key order: independent of library initialisers."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, p in sorted(model.named_parameters()):
            r = torch.randn(p.shape, generator=g)
            p.copy_(r / math.sqrt(p[0].numel()) if p.ndim > 1 else 0.1 * r + 1.0 * p.eq(1).all())
    model.sync_output_embedding()
    return model


# -- config, presets, tokens ------------------------------------------------------------------
def test_presets_config_roundtrip_and_errors():
    assert {"vqgan-tiny", "mage-vit-base"} <= set(PRESETS)
    model = build_vqgan("vqgan-tiny")
    assert sum(p.numel() for p in model.parameters()) * 4 / 1e6 < 5  # a few MB in float32
    assert model.family == "vqgan" and model.image_shape == (1, 32, 32)
    c = model.config
    assert (c.grid, c.vocab_size, model.cls_id, model.mask_id) == (8, 34, 32, 33)  # codebook 32
    back = VQGANConfig(**json.loads(json.dumps(model.config_dict())))
    assert back == c and isinstance(back.vq_channels, tuple)
    assert all(not p.requires_grad for p in model.vqgan.parameters())  # the tokenizer is frozen
    for kw, field in [(dict(img_size=30), "img_size"), (dict(vq_channels=(16, 12)), "vq_channels"),
                      (dict(num_heads=5), "num_heads"), (dict(vq_input="x"), "vq_input"),
                      (dict(fake_class_offset=1), "fake_class_offset"),
                      (dict(mask_ratio_min=0.0), "mask_ratio_min"), (dict(token_margin=-1), "token_margin"),
                      (dict(temperature=-1.0), "temperature"), (dict(decode_steps=0), "decode_steps"),
                      (dict(tokenizer_share=1.0), "tokenizer_share"),
                      (dict(label_smoothing=1.0), "label_smoothing")]:
        with pytest.raises(ValueError, match=f"^{field}:"):
            build_vqgan("vqgan-tiny", **kw)
    with pytest.raises(ValueError, match="^preset:.*vqgan-tiny"):
        build_vqgan("vqgan-huge")
    with pytest.raises(ValueError, match="^overrides:.*patch_size"):
        build_vqgan("vqgan-tiny", patch_size=4)


def test_tokens_hole_and_margin():
    model, x = dummy(), images(2)
    ids = model.tokenize(x)
    assert ids.shape == (2, 64) and ids.dtype == torch.long and 0 <= ids.min() and ids.max() < 16
    assert model.detokenize(ids).shape == x.shape
    mask = centre_mask(2)  # pixels 8..23 = tokens 2..5; with the margin 1..6
    hole = model.hidden_tokens(mask, margin=0).view(2, 8, 8)
    grown = model.hidden_tokens(mask).view(2, 8, 8)
    assert hole.sum() == 2 * 16 and hole[0, 2:6, 2:6].all()
    assert grown.sum() == 2 * 36 and grown[0, 1:7, 1:7].all()
    odd = torch.zeros(1, 1, 32, 32)
    odd[..., 5, 9] = 1  # one pixel hides its token (1, 2) and the ring around it
    assert model.hidden_tokens(odd).view(8, 8).nonzero().tolist() == [
        [r, c] for r in range(3) for c in range(1, 4)]


# -- MAGE's corruption ----------------------------------------------------------------------------
def test_sample_corruption_mage_masking():
    model, x, mask = dummy(), images(6), centre_mask(6)
    a, b, c = (model.sample_corruption(x, mask, gen(s)) for s in (1, 1, 2))
    assert isinstance(a, VQCorruption)
    assert torch.equal(a.masked, b.masked) and torch.equal(a.ids_keep, b.ids_keep)
    assert not torch.equal(a.masked, c.masked)
    hidden = model.hidden_tokens(mask)
    for corr in (a, c):
        assert corr.masked[hidden].all()  # the hole (and margin) is always masked
        assert corr.ids_keep.shape == (6, 32)  # ceil(0.5 * 64) tokens dropped
        kept = torch.zeros_like(corr.masked).scatter_(1, corr.ids_keep, True)
        assert corr.masked[~kept].all()  # only masked tokens are dropped
        assert torch.all(corr.ids_keep.diff(dim=1) > 0)  # raster order
        assert corr.masked.sum(1).min() >= 32
    rates = torch.tensor([model.mask_rate(gen(s)) for s in range(400)])
    assert rates.min() >= 0.5 and rates.max() <= 1.0
    # truncnorm(0.55, 0.25) on [0.5, 1]: mean 0.7016, median 0.6818 (our derivation, see mask_rate)
    assert abs(rates.mean() - 0.7016) < 0.02 and abs(rates.median() - 0.6818) < 0.03
    det = model.deterministic_corruption(mask)
    assert torch.equal(det.masked, hidden) and det.ids_keep.shape == (6, 64)


def test_encode_shapes_and_no_leak_from_the_hole():
    model, x, mask = dummy(), images(3), centre_mask(3)
    corr = model.sample_corruption(x, mask, gen(0))
    z = model.encode(x, mask, corr)
    assert z.shape == (3, 1 + 32, 32)
    other = torch.where(mask > 0, images(3, seed=9), x)  # different hidden pixels
    assert torch.equal(model.encode(other, mask, corr), z)
    assert torch.equal(model.encode(other, mask), model.encode(x, mask))
    assert torch.equal(model.generate(other, mask, gen(4)), model.generate(x, mask, gen(4)))
    # an image's embedding does not depend on its batch
    assert torch.allclose(model.encode(x, mask)[1:2], model.encode(x[1:2], mask[1:2]), atol=1e-5)
    logits = model.forward_decoder(z, corr)
    assert logits.shape == (3, 64, 16)


# -- decoding ---------------------------------------------------------------------------------
def test_generate_expected_slice_and_bit_identical_reruns():
    model = seeded_weights(dummy(decode_steps=4))
    x, mask = images(2), centre_mask(2)
    out = model.generate(x, mask, gen(0))
    assert torch.equal(out, model.generate(x, mask, gen(0)))
    assert not torch.equal(out, model.generate(x, mask, gen(1)))
    visible = mask.expand_as(x) == 0
    assert torch.equal(out[visible], x[visible]) and out.min() >= -1 and out.max() <= 1
    got = out[0, 0, 12, 8:20]
    assert torch.allclose(got, torch.tensor(EXPECTED_SLICE), atol=1e-4), got.tolist()
    greedy = seeded_weights(dummy(decode_steps=4, temperature=0.0, choice_temperature=0.0))
    assert torch.equal(greedy.generate(x, mask, gen(0)), greedy.generate(x, mask, gen(1)))


EXPECTED_SLICE = [-0.337356, 0.51938, 0.371673, 0.731705, -0.533432, -0.636568, -0.017435,
                  0.375028, 0.565521, 0.419091, 0.506135, 0.556201]


def test_generate_fills_every_hidden_token_in_steps():
    model = dummy(decode_steps=3)
    x = images(2)
    mask = torch.cat([centre_mask(1), torch.zeros(1, 1, 32, 32)])  # second image: nothing hidden
    calls = []
    model.forward_decoder = (lambda f: (lambda z, c: (calls.append(c.masked.sum(1).tolist()),
                                                      f(z, c))[1]))(model.forward_decoder)
    out = model.generate(x, mask, gen(0))
    assert torch.equal(out[1], x[1])
    # 36 tokens masked, then floor(36 cos(pi/6)) = 31, floor(36 cos(pi/3)) = 18
    assert [c[0] for c in calls] == [36, 31, 18] and all(c[1] == 0 for c in calls)


# -- training ---------------------------------------------------------------------------------
def test_task_loss_label_smoothing_target_and_training():
    model, x, mask = dummy(), images(8), centre_mask(8)
    corr = model.sample_corruption(x, mask, gen(0))
    logits = model.forward_decoder(model.encode(x, mask, corr), corr)
    ce = F.cross_entropy(logits[corr.masked], model.tokenize(x)[corr.masked], label_smoothing=0.1)
    assert torch.allclose(model.task_loss(x, mask, corr), ce, atol=1e-5)
    target = -x
    with_target = model.task_loss(x, mask, corr, target=target)
    ce_t = F.cross_entropy(logits[corr.masked], model.tokenize(target)[corr.masked], label_smoothing=0.1)
    assert torch.allclose(with_target, ce_t, atol=1e-5)
    with pytest.raises(ValueError, match="^target:"):
        model.task_loss(x, mask, corr, target=x[:2])
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    losses = []
    for step in range(15):
        loss = model.task_loss(x, mask, corr)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert sum(losses[-3:]) < 0.92 * sum(losses[:3]), losses
    # in training, the output layer follows the embedding table (MAGE's tie); in eval it stays
    table = model.token_emb.word_embeddings.weight
    assert not torch.equal(model.mlm_layer.output_embeddings, table)  # the last step moved it
    model.eval().task_loss(x, mask, corr)
    assert not torch.equal(model.mlm_layer.output_embeddings, table)
    model.train().task_loss(x, mask, corr)
    assert torch.equal(model.mlm_layer.output_embeddings, table)


def test_pretraining_stages_tokenizer_then_transformer():
    from i2i_unlearn.pretrain import _stages
    model = dummy().train()
    stages = _stages(model, LoopConfig(steps=10, warmup_steps=5))
    assert [(n, s.steps, s.warmup_steps) for n, _, s, _ in stages] == [
        ("tokenizer", 2, 0), ("transformer", 8, 0)]
    tok = {id(p) for p in model.vqgan.parameters()}
    assert {id(p) for p in stages[0][1]} == tok and not tok & {id(p) for p in stages[1][1]}
    x, mask = images(8), centre_mask(8)
    loss, logs = stages[0][3](x, mask, gen(0))
    assert loss.requires_grad is False  # the tokenizer is frozen until its stage turns it on
    for p in stages[0][1]:
        p.requires_grad_(True)
    loss, logs = stages[0][3](x, mask, gen(0))
    loss.backward()
    assert logs["codes_used"] > 4 and model.vqgan.encoder.conv_in.weight.grad is not None
    assert model.token_emb.word_embeddings.weight.grad is None


def test_encoder_only_optimisation_leaves_decoder_untouched():
    model, x, mask = dummy(), images(4), centre_mask(4)
    enc = {id(p) for p in model.encoder.parameters()}
    names = {n for n, p in model.named_parameters() if id(p) in enc}
    assert names == {n for n, _ in model.named_parameters()
                     if n.split(".")[0] in ("token_emb", "blocks", "norm")}
    before = {k: v.clone() for k, v in model.state_dict().items()}
    opt = torch.optim.SGD(model.encoder.parameters(), lr=0.5)
    model.encode(x, mask, model.sample_corruption(x, mask, gen(0))).pow(2).mean().backward()
    opt.step()
    changed = {k for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
    assert "token_emb.word_embeddings.weight" in changed and changed <= names
    assert "mlm_layer.output_embeddings" not in changed  # the decoder's own frozen copy


@pytest.mark.parametrize("method", METHODS)
def test_every_unlearning_method_runs(method):
    model = dummy()
    forget, retain = images(4, seed=1), images(4, seed=2)
    config = UnlearnConfig(method=method, alpha=0.25, batch_size=2,
                           loop=LoopConfig(steps=2, lr=1e-3, warmup_steps=1, log_every=1))
    student, history = run_unlearning(model, forget, retain, config, progress=False)
    assert len(history) == 2 and all(math.isfinite(r["loss"]) for r in history)
    new, old = student.state_dict(), model.state_dict()
    changed = [k for k in new if not torch.equal(new[k], old[k])]
    assert changed and not any(k.startswith("vqgan.") for k in changed)  # tokenizer frozen
    if method in ("ours", "random-encoder"):
        assert all(k.split(".")[0] in ("token_emb", "blocks", "norm") for k in changed), changed


# -- official MAGE layout -------------------------------------------------------------------------
def test_official_mage_layout_maps_without_missing_or_unexpected_keys():
    shapes = official_mage_shapes()
    assert shapes["token_emb.word_embeddings.weight"] == (2025, 768)
    assert shapes["mlm_layer.bias"] == (1, 1, 2025) and shapes["decoder_blocks.7.mlp.fc2.weight"] == (768, 3072)
    assert shapes["vqgan.encoder.conv_out.weight"] == (256, 512, 1, 1)
    assert shapes["vqgan.encoder.down.2.block.0.nin_shortcut.weight"] == (256, 256, 1, 1)
    assert shapes["vqgan.decoder.up.4.upsample.conv.weight"] == (512, 512, 3, 3)
    assert "vqgan.decoder.up.0.upsample.conv.weight" not in shapes
    assert len(official_vqgan_shapes()) == 168  # 79 encoder, 88 decoder, codebook
    state = {k: torch.empty(s, device="meta") for k, s in shapes.items()}
    ours = mage_to_ours(state)
    with torch.device("meta"):
        model = build_vqgan("mage-vit-base")
    assert model.config == mage_config() and model.config.vocab_size == 2025
    assert model.cls_id == 1100 and model.mask_id == 2024  # MAGE's fake class and mask ids
    assert {k: tuple(v.shape) for k, v in ours.items()} == {
        k: tuple(v.shape) for k, v in model.state_dict().items()}
    loaded = load_mage({"model": {f"module.{k}": v for k, v in state.items()}})
    assert loaded.config.num_heads == 12 and loaded.config.decoder_num_heads == 16
    tokenizer = {k.removeprefix("vqgan."): v for k, v in state.items() if k.startswith("vqgan.")}
    no_vq = {k: v for k, v in state.items() if not k.startswith("vqgan.")}
    assert isinstance(load_mage({"model": no_vq}, tokenizer={"state_dict": tokenizer}), VQGANInpainter)
    del state["blocks.3.attn.qkv.bias"]
    with pytest.raises(ValueError, match="^state_dict:.*blocks.3.attn.qkv.bias"):
        mage_to_ours(state)
    state["blocks.3.attn.qkv.bias"] = torch.empty(5, device="meta")
    with pytest.raises(ValueError, match="^state_dict: shapes"):
        mage_to_ours(state)


SMALL_DD = dict(ch=32, ch_mult=(1, 2), num_res_blocks=1, z_channels=8, in_channels=3, out_ch=3,
                resolution=16)


def official_tokenizer(sd: dict, dd: dict, x: torch.Tensor):
    """Our own minimal re-implementation of MAGE's tokenizer forward (taming Encoder/Decoder as
    ported from MaskGIT), written from its definition: -> (token ids (B, L), decoded images)."""
    def gn(h, p):
        return F.group_norm(h, 32, sd[p + ".weight"], sd[p + ".bias"], eps=1e-6)

    def res(h, p):
        a = F.conv2d(F.silu(gn(h, p + ".norm1")), sd[p + ".conv1.weight"], padding=1)
        a = F.conv2d(F.silu(gn(a, p + ".norm2")), sd[p + ".conv2.weight"], padding=1)
        if p + ".nin_shortcut.weight" in sd:  # MaskGIT: the shortcut maps the output, no skip
            return a + F.conv2d(a, sd[p + ".nin_shortcut.weight"])
        return h + a

    n, nres = len(dd["ch_mult"]), dd["num_res_blocks"]
    h = F.conv2d(x, sd["encoder.conv_in.weight"], padding=1)
    for lv in range(n):
        for j in range(nres):
            h = res(h, f"encoder.down.{lv}.block.{j}")
        if lv != n - 1:
            h = F.avg_pool2d(h, 2)
    h = res(res(h, "encoder.mid.block_1"), "encoder.mid.block_2")
    h = F.conv2d(F.silu(gn(h, "encoder.norm_out")), sd["encoder.conv_out.weight"],
                 sd["encoder.conv_out.bias"])
    e = sd["quantize.embedding.weight"]
    z = h.permute(0, 2, 3, 1).reshape(-1, h.shape[1])
    ids = ((z ** 2).sum(1, keepdim=True) + (e ** 2).sum(1) - 2 * z @ e.T).argmin(1)
    h = e[ids].view(h.shape[0], h.shape[2], h.shape[3], -1).permute(0, 3, 1, 2)
    h = F.conv2d(h, sd["decoder.conv_in.weight"], sd["decoder.conv_in.bias"], padding=1)
    h = res(res(h, "decoder.mid.block_1"), "decoder.mid.block_2")
    for lv in reversed(range(n)):
        for j in range(nres):
            h = res(h, f"decoder.up.{lv}.block.{j}")
        if lv:
            h = F.conv2d(F.interpolate(h, scale_factor=2.0, mode="nearest"),
                         sd[f"decoder.up.{lv}.upsample.conv.weight"],
                         sd[f"decoder.up.{lv}.upsample.conv.bias"], padding=1)
    h = F.conv2d(F.silu(gn(h, "decoder.norm_out")), sd["decoder.conv_out.weight"],
                 sd["decoder.conv_out.bias"], padding=1)
    return ids.view(x.shape[0], -1), h


def test_small_mage_tokenizer_converts_numerically():
    g = gen(0)
    sd = {k: torch.randn(s, generator=g) * (0.2 if len(s) > 1 else 0.1) + (1.0 if "norm" in k and k.endswith("weight") else 0.0)
          for k, s in official_vqgan_shapes(SMALL_DD, 16, 8).items()}
    config = VQGANConfig(**tokenizer_config(SMALL_DD, 16, 8), embed_dim=32, depth=1, num_heads=2,
                         decoder_embed_dim=32, decoder_depth=1, decoder_num_heads=2)
    model = VQGANInpainter(config).eval()
    model.vqgan.load_state_dict(vqgan_to_diffusers(sd, SMALL_DD, 16, 8), strict=True)
    x = images(2, 3, 16)
    with torch.no_grad():
        ids, ref = official_tokenizer(sd, SMALL_DD, (x + 1) / 2)  # MAGE reads [0, 1] images
        ours = model.vqgan.decode(model.vqgan.quantize.get_codebook_entry(
            ids.flatten(), (2, 8, 8, 8)), force_not_quantize=True).sample
    assert torch.equal(model.tokenize(x), ids) and len(ids.unique()) > 3
    assert ref.abs().mean() > 0.1 and torch.allclose(ours, ref, atol=1e-4, rtol=1e-4)
    assert torch.allclose(model.detokenize(ids), (ref * 2 - 1).clamp(-1, 1), atol=1e-4)
    assert MAGE_DDCONFIG["ch_mult"] == (1, 1, 2, 2, 4)


# -- zoo and CLI ------------------------------------------------------------------------------------
def test_zoo_and_cli_run_a_vqgan_checkpoint(tmp_path):
    from i2i_unlearn import zoo
    from i2i_unlearn.cli import main
    model = dummy()
    src = zoo.save(model, tmp_path / "vqgan-mnist",
                   {"recipe": {"command": "test"}, "data": {"dataset": "mnist"}})
    assert zoo.load(src).family == "vqgan"
    out = tmp_path / "ours"
    assert main(["unlearn", "--model", str(src), "--forget", "0", "1", "2", "--method", "ours",
                 "--steps", "2", "--batch-size", "2", "--out", str(out), "--quiet"]) == 0
    unlearned = zoo.load(out)
    assert unlearned.manifest["recipe"]["method"] == "ours"
    decoder = [k for k in model.state_dict() if not k.startswith(("token_emb", "blocks", "norm."))]
    assert all(torch.equal(unlearned.state_dict()[k], model.state_dict()[k]) for k in decoder)
