"""The real-world degradation model (srcli.degrade), its block-grid measure, and where they plug in:
training patches, the degraded evaluation protocol, ``train --degradation real --init-from``."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from srcli.cli import app
from srcli.data import PatchSampler
from srcli.degrade import (
    blur, degrade_real, gaussian_kernel, gaussian_noise, generalized_gaussian_kernel, jpeg, plateau_kernel,
    poisson_noise, random_kernel, RealDegradation, resize_to, sinc_kernel,
)
from srcli.evaluate import evaluate_images, protocol_pair
from srcli.metrics import block_grid, psnr


def photo(seed: int = 0, size: int = 96, grain: float = 12.0) -> np.ndarray:
    """Smooth colour gradients plus texture, uint8."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    base = np.stack([200 * x, 180 * y, 120 * (x + y)], axis=-1) + 30
    return np.clip(base + rng.normal(0, grain, base.shape), 0, 255).astype(np.uint8)


# -- the whole pipeline ----------------------------------------------------------------------------
def test_same_seed_same_degradation_other_seed_other():
    hr = photo()
    a = degrade_real(hr, (24, 24), np.random.default_rng(5))
    b = degrade_real(hr, (24, 24), np.random.default_rng(5))
    c = degrade_real(hr, (24, 24), np.random.default_rng(6))
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize("lr_size", [(24, 24), (31, 17), (48, 40)])
def test_output_size_dtype_and_range(lr_size):
    for seed in range(8):  # different draws take different branches (up/down/keep, noise kinds, orders)
        out = degrade_real(photo(seed), lr_size, np.random.default_rng(seed))
        assert out.dtype == np.uint8 and out.shape == (lr_size[1], lr_size[0], 3)


def test_degradation_is_not_the_clean_downscale():
    # averaged over draws, the real-world LR is far from the clean bicubic LR (blur, noise, JPEG)
    from srcli.metrics import degrade

    hr = photo(1)
    clean = degrade(hr, (24, 24))
    psnrs = [psnr(degrade_real(hr, (24, 24), np.random.default_rng(s)), clean) for s in range(6)]
    assert np.mean(psnrs) < 32


def test_rejects_non_rgb8():
    with pytest.raises(ValueError):
        degrade_real(photo().astype(np.float32), (24, 24), np.random.default_rng(0))


# -- each operator against a hand-computed case -----------------------------------------------------
def test_isotropic_gaussian_kernel_values():
    k = gaussian_kernel(3, 1.0)
    e1, e2 = math.exp(-0.5), math.exp(-1.0)
    total = 1 + 4 * e1 + 4 * e2
    assert k[1, 1] == pytest.approx(1 / total, rel=1e-6)
    assert k[0, 1] == pytest.approx(e1 / total, rel=1e-6)
    assert k[0, 0] == pytest.approx(e2 / total, rel=1e-6)


def test_anisotropic_kernel_orientation():
    wide = gaussian_kernel(7, 2.0, 0.5, theta=0.0)  # sigma 2 along x, 0.5 along y
    assert wide[3, 4] > wide[4, 3] * 5  # spreads along the row, not the column
    turned = gaussian_kernel(7, 2.0, 0.5, theta=math.pi / 2)
    np.testing.assert_allclose(turned, wide.T, atol=1e-7)


def test_generalized_gaussian_with_beta_one_is_gaussian_and_plateau_values():
    np.testing.assert_allclose(generalized_gaussian_kernel(5, 1.3, 0.8, 0.4, beta=1.0), gaussian_kernel(5, 1.3, 0.8, 0.4), atol=1e-7)
    k = plateau_kernel(3, 1.0, beta=1.0)  # 1 / (1 + q): 1, 1/2 (edge, q = 1), 1/3 (corner, q = 2)
    assert k[0, 1] / k[1, 1] == pytest.approx(0.5, rel=1e-6)
    assert k[0, 0] / k[1, 1] == pytest.approx(1 / 3, rel=1e-6)


def test_sinc_kernel_center_and_first_ring():
    k = sinc_kernel(7, math.pi)  # k(0) = pi^2 / (4 pi) = pi / 4; k(1) = pi J1(pi) / (2 pi) = J1(pi) / 2
    j1_pi = 0.28461534317975275
    assert k[3, 4] / k[3, 3] == pytest.approx((j1_pi / 2) / (math.pi / 4), rel=1e-5)
    assert k.sum() == pytest.approx(1.0, abs=1e-5)


def test_blur_is_a_convolution_with_reflected_borders():
    kernel = np.zeros((3, 3), np.float32)
    kernel[1, 2] = 1.0  # an off-centre tap: a convolution shifts the image by one pixel to the right
    img = np.random.default_rng(0).random((8, 9, 3)).astype(np.float32)
    out = blur(img, kernel)
    np.testing.assert_allclose(out[:, 1:], img[:, :-1], atol=1e-6)
    np.testing.assert_allclose(out[:, 0], img[:, 1], atol=1e-6)  # reflect padding brings in column 1
    flat = np.full((10, 10, 3), 0.3, np.float32)
    np.testing.assert_allclose(blur(flat, gaussian_kernel(7, 2.0)), flat, atol=1e-6)


def test_area_resize_averages_blocks():
    img = np.random.default_rng(0).random((4, 6, 3)).astype(np.float32)
    out = resize_to(img, (3, 2), "area")
    expected = img.reshape(2, 2, 3, 2, 3).mean(axis=(1, 3))
    np.testing.assert_allclose(out, expected, atol=1e-6)
    assert resize_to(img, (6, 4), "bicubic") is img  # the keep branch changes nothing
    with pytest.raises(ValueError):
        resize_to(img, (3, 2), "lanczos")


def test_gaussian_noise_level_and_gray():
    img = np.full((200, 200, 3), 0.5, np.float32)
    noisy = gaussian_noise(img, 10.0, gray=False, rng=np.random.default_rng(0))
    assert (noisy - img).std() * 255 == pytest.approx(10.0, rel=0.03)
    gray = gaussian_noise(img, 10.0, gray=True, rng=np.random.default_rng(0))
    assert np.array_equal(gray[..., 0], gray[..., 1]) and np.array_equal(gray[..., 1], gray[..., 2])


def test_poisson_noise_variance_follows_the_signal():
    # Poisson(255 x) / 255 - x has variance x / 255; scaled by s: s^2 x / 255
    for level in (0.1, 0.6):
        img = np.full((300, 300, 3), level, np.float32)
        noise = poisson_noise(img, 2.0, gray=False, rng=np.random.default_rng(1)) - img
        assert noise.std() == pytest.approx(2.0 * math.sqrt(level / 255), rel=0.05)
        assert abs(noise.mean()) < 0.002
    gray = poisson_noise(np.full((20, 20, 3), 0.4, np.float32), 1.0, gray=True, rng=np.random.default_rng(2))
    assert np.array_equal(gray[..., 0], gray[..., 2])


def test_jpeg_quality_and_blocks():
    img = photo(2, 64, grain=3.0).astype(np.float32) / 255
    high, low = jpeg(img, 95), jpeg(img, 30)
    to8 = lambda a: np.clip(np.round(a * 255), 0, 255).astype(np.uint8)  # noqa: E731
    assert psnr(to8(high), to8(img)) > psnr(to8(low), to8(img)) + 3
    assert block_grid(to8(low), 1.0) > block_grid(to8(img), 1.0) + 0.1  # the 8x8 grid shows


def test_random_kernel_sizes_are_odd_and_in_range():
    rng = np.random.default_rng(0)
    for _ in range(50):
        k = random_kernel(RealDegradation().first, rng)
        assert k.shape[0] == k.shape[1] and k.shape[0] % 2 == 1 and 7 <= k.shape[0] <= 21
        assert k.sum() == pytest.approx(1.0, abs=1e-4)


# -- the block-grid measure -------------------------------------------------------------------------
def test_block_grid_finds_steps_on_the_scaled_grid():
    rng = np.random.default_rng(0)
    texture = rng.normal(128, 4, (64, 64, 3))
    assert block_grid(np.clip(texture, 0, 255).astype(np.uint8), 2.0) == pytest.approx(1.0, abs=0.1)
    stepped = texture.copy()
    for k in range(4):  # 16-px blocks at scale 2 = the 8-px grid of the LR, each block its own level
        for j in range(4):
            stepped[16 * k : 16 * (k + 1), 16 * j : 16 * (j + 1)] += 20 * ((k + j) % 2)
    assert block_grid(np.clip(stepped, 0, 255).astype(np.uint8), 2.0) > 2.0
    assert block_grid(np.clip(stepped, 0, 255).astype(np.uint8), 2.5) < 1.5  # not on a 20-px grid



def test_the_input_scale_grid_sees_bands_that_a_one_step_filter_hides():
    from srcli.metrics import block_grid_at_input_scale

    rng = np.random.default_rng(1)
    texture = rng.normal(128, 4, (128, 128, 3))
    assert block_grid_at_input_scale(np.clip(texture, 0, 255).astype(np.uint8), 4.0) == pytest.approx(1.0, abs=0.15)
    # each 32 px block (8 LR px at 4x) its own level, reached over a ramp 8 px wide centred on the edge
    level = np.kron(rng.choice([0.0, 12.0], (4, 4)), np.ones((32, 32)))
    ramp = np.clip((np.arange(-8, 8) + 0.5) / 8 + 0.5, 0, 1)
    for axis in (0, 1):
        for k in range(1, 4):
            lo, hi = 32 * k - 8, 32 * k + 8
            a = np.take(level, [lo - 1], axis=axis)
            b = np.take(level, [hi], axis=axis)
            shape = [1, 1]
            shape[axis] = 16
            band = a + (b - a) * ramp.reshape(shape)
            if axis == 0:
                level[lo:hi] = band
            else:
                level[:, lo:hi] = band
    banded = np.clip(texture + level[..., None], 0, 255).astype(np.uint8)
    flattened = banded.astype(np.float64)
    for axis in (1, 0):  # make the one step across each edge the mean of its neighbours, moving 2 pixels
        v = np.moveaxis(flattened, axis, 0)
        for i in (31, 63, 95):
            excess = (v[i + 1] - v[i]) - 0.5 * ((v[i] - v[i - 1]) + (v[i + 2] - v[i + 1]))
            v[i] += excess / 2
            v[i + 1] -= excess / 2
    flattened = np.clip(flattened, 0, 255).astype(np.uint8)
    assert block_grid_at_input_scale(banded, 4.0) > 1.3
    assert block_grid_at_input_scale(flattened, 4.0) > 1.3  # the bands are still there
    assert block_grid(flattened, 4.0) < block_grid(banded, 4.0)


# -- where the degradation plugs in -------------------------------------------------------------------
def test_patch_sampler_real_degradation_resumes_exactly(tmp_path):
    from PIL import Image

    for i in range(2):
        Image.fromarray(photo(i, 128)).save(tmp_path / f"p{i}.png")
    a = PatchSampler(tmp_path, patch=48, degradation="real", seed=3)
    a.batch(2)
    state = a.state()
    first = a.batch(2)
    b = PatchSampler(tmp_path, patch=48, degradation="real", seed=99)
    b.set_state(state)
    second = b.batch(2)
    assert np.array_equal(first.lr.numpy(), second.lr.numpy()) and np.array_equal(first.hr.numpy(), second.hr.numpy())
    clean = PatchSampler(tmp_path, patch=48, seed=3)
    clean.batch(2)
    assert not np.array_equal(clean.batch(2).lr.numpy(), first.lr.numpy())
    with pytest.raises(ValueError):
        PatchSampler(tmp_path, patch=48, degradation="jpeg")


def test_clean_fraction_mixes_plain_bicubic_patches_into_a_real_run(tmp_path):
    from PIL import Image

    from srcli.metrics import degrade

    Image.fromarray(photo(0, 128)).save(tmp_path / "p.png")
    all_clean = PatchSampler(tmp_path, patch=48, degradation="real", clean_fraction=1.0, seed=5)
    batch = all_clean.batch(3, scale=4.0)
    to8 = lambda t: ((t.permute(1, 2, 0).numpy() + 1) * 127.5).round().astype(np.uint8)  # noqa: E731  [-1, 1] -> 8 bit
    for hr, lr in zip(batch.hr, batch.lr):
        assert np.array_equal(to8(lr), degrade(to8(hr), (12, 12)))
    # a share of 0 draws nothing extra: the same stream as a run made before the option existed
    a = PatchSampler(tmp_path, patch=48, degradation="real", clean_fraction=0.0, seed=5).batch(2)
    b = PatchSampler(tmp_path, patch=48, degradation="real", seed=5).batch(2)
    assert torch.equal(a.lr, b.lr)
    half = PatchSampler(tmp_path, patch=48, degradation="real", clean_fraction=0.5, seed=5)
    kinds = []
    for _ in range(40):
        hr = np.ascontiguousarray(photo(1, 48))
        kinds.append(np.array_equal(half.degrade(hr, (12, 12)), degrade(hr, (12, 12))))
    assert 8 < sum(kinds) < 32  # about half of the patches are the clean downscale
    for bad in (-0.1, 1.5, float("nan")):
        with pytest.raises(ValueError):
            PatchSampler(tmp_path, patch=48, degradation="real", clean_fraction=bad)


def test_train_clean_fraction_is_checked_and_may_change_on_resume(tmp_path, tiny_checkpoint):
    from PIL import Image

    from srcli.checkpoint import load_checkpoint

    data = tmp_path / "data"
    data.mkdir()
    Image.fromarray(photo(0, 96)).save(data / "p.png")
    out = tmp_path / "m.safetensors"
    runner = CliRunner()
    base = ["train", "--data", str(data), "--out", str(out), "--state-dir", str(tmp_path / "state"),
            "--encoder-steps", "1", "--steps", "1", "--batch", "1", "--patch", "32", "--val-every", "1000"]
    assert runner.invoke(app, [*base, "--clean-fraction", "0.5"]).exit_code == 2  # bicubic runs are all clean
    assert runner.invoke(app, [*base, "--degradation", "real", "--clean-fraction", "2"]).exit_code == 2
    result = runner.invoke(app, [*base, "--degradation", "real", "--clean-fraction", "0.5",
                                 "--init-from", str(tiny_checkpoint)])
    assert result.exit_code == 0, result.output
    assert load_checkpoint(out)[2]["train"]["clean_fraction"] == 0.5
    resumed = runner.invoke(app, [*base, "--resume", "--steps", "2", "--clean-fraction", "0.2"])
    assert resumed.exit_code == 0, resumed.output
    assert "clean_fraction: 0.5 -> 0.2 (given on resume)" in resumed.output
    assert load_checkpoint(out)[2]["train"]["clean_fraction"] == 0.2


def test_degraded_protocol_is_seeded_per_image():
    hr = photo(0, 96)
    _, a = protocol_pair(hr, 4, "real", 0, "a.png")
    _, a2 = protocol_pair(hr, 4, "real", 0, "a.png")
    _, b = protocol_pair(hr, 4, "real", 0, "b.png")
    _, a_seed1 = protocol_pair(hr, 4, "real", 1, "a.png")
    assert np.array_equal(a, a2) and not np.array_equal(a, b) and not np.array_equal(a, a_seed1)
    report = evaluate_images([("a.png", hr)], None, scale=4, baselines=["bicubic"], degradation="real")
    assert report.settings["degradation_seed"] == 0
    assert report.mean()["bicubic"].block_grid is not None
    clean = evaluate_images([("a.png", hr)], None, scale=4, baselines=["bicubic"])
    assert clean.mean()["bicubic"].block_grid is None


def test_eval_cli_degradation_real_reports_the_grid(tmp_path, tiny_checkpoint):
    from PIL import Image

    hr_dir = tmp_path / "hr"
    hr_dir.mkdir()
    Image.fromarray(photo(0, 64)).save(hr_dir / "x.png")
    runner = CliRunner()
    result = runner.invoke(app, ["eval", str(hr_dir), "--scale", "4", "--weights", str(tiny_checkpoint), "--steps", "2",
                                 "--degradation", "real", "--degradation-seed", "3", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["settings"]["degradation_seed"] == 3
    assert report["mean"]["srcli"]["block_grid"] > 0
    bad = runner.invoke(app, ["eval", str(hr_dir), "--weights", str(tiny_checkpoint), "--degradation", "gif"])
    assert bad.exit_code == 2


def test_train_fine_tunes_a_checkpoint_on_real_degradations(tmp_path, tiny_checkpoint):
    from PIL import Image

    from srcli.checkpoint import load_checkpoint

    data = tmp_path / "data"
    data.mkdir()
    for i in range(2):
        Image.fromarray(photo(i, 96)).save(data / f"p{i}.png")
    out = tmp_path / "real.safetensors"
    runner = CliRunner()
    args = ["train", "--data", str(data), "--out", str(out), "--state-dir", str(tmp_path / "state"),
            "--degradation", "real", "--init-from", str(tiny_checkpoint), "--encoder-steps", "2", "--steps", "2",
            "--batch", "2", "--patch", "32", "--save-every", "2", "--val-every", "1000", "--block-edge-weight", "1"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    model, _, info = load_checkpoint(out)
    assert info["train"]["block_edge_weight"] == 1.0
    source, _, _ = load_checkpoint(tiny_checkpoint)
    assert info["degradation"] == "real" and info["train"]["init_from"] == str(tiny_checkpoint)
    assert info["encoder_steps_done"] == 2 and info["diffusion_steps_done"] == 2  # counters restart for a fine-tune
    assert model.config.unet_dim == source.config.unet_dim  # the architecture comes from the source file
    # the fine-tune moved the weights away from the source, but it started there: close, not equal
    w, w0 = model.rrdb.conv_first.weight, source.rrdb.conv_first.weight
    assert 0 < (w - w0).abs().max() < 0.05
    conflict = runner.invoke(app, [*args, "--resume"])
    assert conflict.exit_code == 2 and "--init-from" in conflict.output


def test_a_model_carries_its_own_default_strengths(tiny_checkpoint):
    from srcli.checkpoint import load_checkpoint, update_info
    from srcli.cascade import default_strength
    from srcli.pipeline import SRPipeline, UsageError

    before = load_checkpoint(tiny_checkpoint)[0].state_dict()
    update_info(tiny_checkpoint, default_strength={"encoder": {"2": 0.2, "4": 0.6}}, degradation="real")
    model, _, info = load_checkpoint(tiny_checkpoint)
    assert info["test"] is True and info["degradation"] == "real"  # merged, not replaced
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())  # tensors untouched
    pipe = SRPipeline.from_pretrained(str(tiny_checkpoint), device="cpu")
    assert [s.strength for s in pipe.passes(3.0)] == [pytest.approx(0.4)]  # interpolated in the model's table
    assert pipe.passes(4.0, init="bicubic")[0].strength == default_strength(4.0, "bicubic")  # no entry: the global table
    assert pipe.default_consistency == 0
    update_info(tiny_checkpoint, default_strength={"encoder": {"4": 1.5}})
    with pytest.raises(UsageError, match="default_strength"):
        SRPipeline.from_pretrained(str(tiny_checkpoint), device="cpu")


@pytest.mark.slow
def test_shipped_real_model_loads_and_upscales():
    from srcli.pipeline import SRPipeline

    pipe = SRPipeline.from_pretrained(model="real", device="cpu", precision="fp32")
    assert pipe.info["degradation"] == "real" and pipe.default_consistency == 0
    assert pipe.passes(4.0)[0].strength == pytest.approx(0.1)  # its own default, not the clean model's
    out = np.asarray(pipe.upscale(photo(0, 24), scale=2, seed=0, steps=4))
    assert out.shape == (48, 48, 3)


def test_block_edge_loss_sees_only_the_steps_across_the_lr_block_edges():
    from srcli.train.loop import block_edge_l1

    hr = torch.zeros(1, 3, 64, 64)
    sr = hr.clone()
    sr[..., 20:40, 20:40] = 0.5  # a square whose edges miss the 4x grid lines (32 px apart)
    assert block_edge_l1(sr, hr, lr_size=16) == 0
    sr[..., 32:] += 0.25  # a step across the vertical block edge at x = 32 (LR x = 8)
    # one of the two axes has |0.25| on every row of its single line; the other has none
    assert block_edge_l1(sr, hr, lr_size=16) == pytest.approx(0.125)
    assert block_edge_l1(sr, sr, lr_size=16) == 0  # matching the HR's own steps costs nothing
    assert block_edge_l1(sr, hr, lr_size=8) == 0  # an LR of one block has no inner edges


def test_train_rejects_a_bad_block_edge_weight(tmp_path):
    result = CliRunner().invoke(app, ["train", "--data", str(tmp_path), "--out", str(tmp_path / "o.safetensors"),
                                      "--block-edge-weight", "-1"])
    assert result.exit_code == 2 and "--block-edge-weight" in result.output
