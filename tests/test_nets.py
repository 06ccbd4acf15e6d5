"""Shapes through the encoder and the U-Net, and the checkpoint format round trip."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from conftest import tiny_config, tiny_model
from srcli.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from srcli.diffusion import NoiseSchedule
from srcli.engine import Conditioned
from srcli.nets import ModelConfig, SRDiffModel, count_parameters


@pytest.mark.parametrize("lr_size,scale", [((16, 16), 2), ((16, 12), 3), ((10, 13), 4), ((9, 9), 2.5), ((7, 11), 8)])
def test_scale_free_shapes(lr_size, scale):
    model = tiny_model()
    x_lr = torch.rand(2, 3, *lr_size) * 2 - 1
    hr = (round(lr_size[0] * scale), round(lr_size[1] * scale))
    feats = model.rrdb.features(x_lr)
    assert len(feats) == model.config.rrdb_blocks + 1
    assert all(f.shape == (2, model.config.rrdb_nf, *lr_size) for f in feats)
    assert model.rrdb(x_lr, hr).shape == (2, 3, *hr)
    cond = Conditioned(model, x_lr, hr)
    assert cond.cond_hr.shape == (2, model.config.unet_dim, *hr)
    eps = model.denoise_fn(torch.randn(2, 3, *hr), torch.tensor([0, 19]), cond.cond_hr, cond.scale)
    assert eps.shape == (2, 3, *hr)


@pytest.mark.parametrize("margin", [0, 4])
def test_padding_is_a_mirror_cropped_back(margin):
    """Any size runs: the input is mirrored by ``margin`` on every side and further at the
    bottom/right to a multiple of 2**(levels-1), and the output is the matching crop, never a
    resize.  Checked against the network run by hand on the mirrored input."""
    model = tiny_model(unet_mults=(1, 2, 2))
    x_lr = torch.rand(1, 3, 5, 7) * 2 - 1
    cond = Conditioned(model, x_lr, (15, 21))
    x_t, t = torch.randn(1, 3, 15, 21), torch.tensor([3])
    with torch.no_grad():
        eps = model.denoise_fn(x_t, t, cond.cond_hr, cond.scale, margin)
        # 15 + 2 margin -> next multiple of 4 at the bottom, likewise 21 at the right
        pads = (margin, margin + (-(21 + 2 * margin)) % 4, margin, margin + (-(15 + 2 * margin)) % 4)
        mirrored = [torch.nn.functional.pad(v, pads, mode="reflect") for v in (x_t, cond.cond_hr)]
        by_hand = model.denoise_fn(*mirrored[:1], t, mirrored[1], cond.scale)[..., margin : margin + 15, margin : margin + 21]
    assert eps.shape == (1, 3, 15, 21)
    torch.testing.assert_close(eps, by_hand, atol=1e-6, rtol=1e-6)
    if margin:
        with torch.no_grad():
            bare = model.denoise_fn(x_t, t, cond.cond_hr, cond.scale, 0)
        assert (bare - eps).abs().max() > 1e-4  # the margin changes what the border sees


@pytest.mark.parametrize("scale", [2, 4, 8])
def test_fixed_scale_transposed_projection(scale):
    model = tiny_model(projection="transposed", scale=scale, scale_embedding=False)
    x_lr = torch.rand(1, 3, 6, 5) * 2 - 1
    hr = (6 * scale, 5 * scale)
    assert model.rrdb(x_lr, hr).shape == (1, 3, *hr)
    cond = Conditioned(model, x_lr, hr)
    assert cond.cond_hr.shape[-2:] == hr
    with pytest.raises(ValueError, match="fixed to"):
        Conditioned(model, x_lr, (6 * scale + 1, 5 * scale))


def test_cond_channels_follow_every_third_feature():
    # the authors' configurations: 8 blocks -> 3 features (96 ch), 15 blocks -> 5 features (160 ch)
    assert ModelConfig(rrdb_blocks=8).cond_channels == 96
    assert ModelConfig(rrdb_blocks=15).cond_channels == 160


def test_paper_face_model_size():
    """The paper's face configuration (c=64, 1|2|2|4, 8 blocks) has ~12M parameters in total."""
    cfg = ModelConfig(unet_dim=64, unet_mults=(1, 2, 2, 4), rrdb_blocks=8, projection="transposed", scale=8, scale_embedding=False)
    model = SRDiffModel(cfg)
    assert count_parameters(model.denoise_fn) == 10545795  # the authors' released checkpoint
    assert count_parameters(model.rrdb) == 1488003


def test_config_json_round_trip():
    cfg = tiny_config(train_scales=(1.5, 3.0))
    assert ModelConfig.from_json(cfg.to_json()) == cfg
    with pytest.raises(ValueError, match="unknown"):
        ModelConfig.from_json(json.dumps({**json.loads(cfg.to_json()), "bogus": 1}))


def test_checkpoint_round_trip(tmp_path):
    model = tiny_model(seed=3)
    schedule = NoiseSchedule.named("cosine", model.config.timesteps)
    path = tmp_path / "m.safetensors"
    save_checkpoint(path, model, schedule, info={"steps": 7}, half=False)
    loaded, sched2, info = load_checkpoint(path)
    assert info == {"steps": 7}
    assert loaded.config == model.config
    for (k, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), k
    assert torch.equal(sched2.betas, schedule.betas)


def test_checkpoint_fp16_is_close(tmp_path):
    model = tiny_model(seed=4)
    path = tmp_path / "h.safetensors"
    save_checkpoint(path, model, NoiseSchedule.named("cosine", 20))
    loaded, _, _ = load_checkpoint(path)
    assert all(v.dtype == torch.float16 for k, v in load_file(str(path)).items() if k != "schedule.betas")
    for a, b in zip(model.parameters(), loaded.parameters()):
        assert torch.allclose(a, b, atol=1e-3, rtol=1e-3)


def test_checkpoint_errors(tmp_path, tiny_checkpoint):
    tensors = load_file(str(tiny_checkpoint))
    bad = tmp_path / "bad.safetensors"
    # a shape that does not match the config
    name = "denoise_fn.final_conv.1.weight"
    save_file({**tensors, name: torch.zeros(3, 5, 1, 1)}, str(bad), metadata={"format": "srcli", "format_version": "1", "config": tiny_config().to_json()})
    with pytest.raises(CheckpointError, match="shape"):
        load_checkpoint(bad)
    # a missing tensor
    save_file({k: v for k, v in tensors.items() if k != name}, str(bad), metadata={"format": "srcli", "format_version": "1", "config": tiny_config().to_json()})
    with pytest.raises(CheckpointError, match="missing"):
        load_checkpoint(bad)
    # not srcli metadata
    save_file(tensors, str(bad))
    with pytest.raises(CheckpointError, match="not a srcli checkpoint"):
        load_checkpoint(bad)
    # not safetensors at all
    bad.write_bytes(b"\x00garbage")
    with pytest.raises(CheckpointError, match="not a readable"):
        load_checkpoint(bad)


@pytest.mark.parametrize("dtype, rel", [(torch.float32, 1e-6), (torch.bfloat16, 0.005)])  # bf16: one rounding
def test_mish_matches_the_definition_in_every_cpu_precision(dtype, rel):
    import torch.nn.functional as F

    from srcli.unet import mish

    x = torch.cat([torch.linspace(-40, 40, 4001), torch.randn(4000) * 3]).to(dtype)
    exact = x.double() * torch.tanh(F.softplus(x.double()))
    with torch.inference_mode():
        out = mish(x)
        assert out.dtype == dtype and torch.isfinite(out).all()
        assert ((out.double() - exact).abs() <= rel * exact.abs() + 1e-30).all()  # relative, even in the tails
        again = x.clone()
        assert torch.equal(mish(again, inplace=True), out) and torch.equal(again, out)  # in place: same numbers
        special = torch.tensor([float("inf"), -float("inf"), float("nan"), 3e38, -3e38, 0.0, -0.0]).to(dtype)
        assert torch.equal(mish(special).isnan(), F.mish(special).isnan())  # -inf * 0 and nan: nan, as ATen
        finite = ~F.mish(special).isnan()
        assert torch.equal(mish(special)[finite], F.mish(special)[finite])
        assert mish(x[:0]).shape == (0,)
    mine, aten = x.float().requires_grad_(), x.float().requires_grad_()
    mish(mine).sum().backward()  # under autograd it is ATen's differentiable kernel
    F.mish(aten).sum().backward()
    assert torch.equal(mine.grad, aten.grad)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_mish_in_chunks_equals_mish_in_one_piece_in_any_layout(dtype, monkeypatch):
    import srcli.unet as unet

    x = (torch.randn(2, 8, 29, 31) * 4).to(dtype).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        whole = unet.mish(x)  # 14384 elements: one chunk
        monkeypatch.setattr(unet, "_MISH_CHUNK", 1024)  # 15 chunks, the last one partial
        chunked = unet.mish(x)
        assert torch.equal(chunked, whole) and chunked.stride() == x.stride()  # same numbers, same layout
        again = x.clone()
        assert unet.mish(again, inplace=True) is again and torch.equal(again, whole)
        base = (torch.randn(2, 8, 29, 62) * 4).to(dtype)
        strided = base[..., ::2]  # not dense: computed on a copy
        assert torch.equal(unet.mish(strided), unet.mish(strided.contiguous()))
        kept = base[..., 1::2].clone()
        expected = unet.mish(strided.contiguous())
        assert unet.mish(strided, inplace=True) is strided
        assert torch.equal(base[..., ::2], expected) and torch.equal(base[..., 1::2], kept)
