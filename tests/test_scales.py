"""Any scale from one model (issue 7): the cascade plan, output sizes, the Diff-SR strength start,
determinism of cascades, fixed-scale checkpoints and the CLI's scale checks."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from conftest import gradient_image, tiny_model
from srcli import diffusion, engine
from srcli import cascade as cascade_module
from srcli.cli import app
from srcli.diffusion import NoiseSchedule
from srcli.engine import Conditioned, back_project, super_resolve
from srcli.explore import sample_diverse
from srcli.ops import resize, tensor_to_uint8
from srcli.cascade import CascadePass, cascade_sizes, check_scale, default_strength, plan_cascade, stage_seed
from srcli.pipeline import (
    SRPipeline, UsageError,
)
from srcli.noise import field_noise
from srcli.options import SamplingOptions

runner = CliRunner()


def texture(h: int, w: int, seed: int = 0) -> np.ndarray:
    return gradient_image(h, w, seed, slopes=(9, 11, 5), offset=40)


def make_pipe(**overrides) -> SRPipeline:
    model = tiny_model(**overrides)
    return SRPipeline(model, NoiseSchedule.named("cosine", model.config.timesteps), device="cpu")


@pytest.fixture(scope="module")
def pipe():
    return make_pipe()


# -- the plan -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "scale, expected",
    [(1.5, [1.5]), (2, [2]), (2.7, [2.7]), (4, [4]), (4.5, [2.25, 2]), (5, [2.5, 2]), (6, [3, 2]), (8, [4, 2])],
)
def test_plan_cascade_scale_free(scale, expected):
    factors = plan_cascade(scale, (2.0, 4.0))
    assert factors == pytest.approx(expected)
    assert math.prod(factors) == pytest.approx(scale)


def test_plan_cascade_narrow_ranges():
    assert plan_cascade(4, (4.0, 4.0)) == [4]
    assert plan_cascade(8, (2.0, 2.0)) == pytest.approx([2, 2, 2])
    assert plan_cascade(16, (4.0, 4.0)) == pytest.approx([4, 4])
    for scale, rng in ((8, (4.0, 4.0)), (6, (2.0, 2.0)), (5, (4.0, 4.0))):
        with pytest.raises(ValueError):
            plan_cascade(scale, rng)
    with pytest.raises(ValueError):
        plan_cascade(2, (1.0, 4.0))


def test_stages_halve_the_steps_and_take_the_strength_per_pass(pipe, monkeypatch):
    monkeypatch.setattr(cascade_module, "DEFAULT_STRENGTH", {"encoder": {2.0: 0.2, 4.0: 0.4}, "bicubic": {2.0: 0.9}})
    assert default_strength(3) == pytest.approx(0.3) and default_strength(3, "bicubic") == 0.9
    assert default_strength(1.5) == pytest.approx(0.2) and default_strength(8) == pytest.approx(0.4)
    assert pipe.passes(8, steps=20) == [CascadePass(4.0, 20, 0.4), CascadePass(2.0, 10, 0.2)]
    assert pipe.passes(8, steps=20, strength=0.7) == [CascadePass(4.0, 20, 0.7), CascadePass(2.0, 10, 0.7)]
    assert pipe.passes(3, steps=None) == [CascadePass(3.0, None, pytest.approx(0.3))]
    assert pipe.passes(8, steps=None)[1].steps == pipe.schedule.T // 2
    assert "cascade" in pipe.plan_note(8, pipe.passes(8)) and pipe.plan_note(3, pipe.passes(3)) is None
    assert "below" in pipe.plan_note(1.5, pipe.passes(1.5))
    assert pipe.passes(8, steps=20, init="bicubic") == [CascadePass(4.0, 20, 0.9, "bicubic"), CascadePass(2.0, 10, 0.9, "bicubic")]
    with pytest.raises(UsageError, match="unknown init"):
        pipe.passes(4, init="lanczos")


def test_cascade_sizes_end_at_the_direct_size():
    assert cascade_sizes((7, 13), 8, [4, 2]) == [(28, 52), (56, 104)]
    assert cascade_sizes((7, 13), 2.5, [2.5]) == [(round(17.5), round(32.5))]
    assert cascade_sizes((9, 11), 6, [3, 2])[-1] == (54, 66)


def test_stage_seeds():
    assert stage_seed(7, 0) == 7
    assert len({stage_seed(7, 1), stage_seed(7, 2), stage_seed(8, 1), 7, 8}) == 5


@pytest.mark.parametrize("bad", [1.0, 1.49, 8.5, float("nan"), float("inf"), True, "4"])
def test_scale_bounds(bad):
    with pytest.raises(UsageError, match="scale must be"):
        check_scale(bad)
    assert check_scale(1.5) == 1.5 and check_scale(8) == 8.0


# -- sizes ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("scale", [1.5, 2.5, 3.7, 8])
@pytest.mark.parametrize("h, w", [(7, 13), (11, 9)])
def test_output_size_is_round_scale_times_input(pipe, scale, h, w):
    out = pipe.upscale(texture(h, w), scale=scale, steps=2, seed=0)
    assert out.size == (round(w * scale), round(h * scale))


def test_cascade_output_size_with_tiles_and_alpha(pipe):
    rgba = np.dstack([texture(12, 10), np.full((12, 10), 170, np.uint8)])
    out = pipe.upscale(Image.fromarray(rgba, "RGBA"), scale=6, steps=2, seed=1, tile=32)
    assert out.mode == "RGBA" and out.size == (60, 72) and np.asarray(out)[..., 3].min() == 170


# -- strength -------------------------------------------------------------------------------------------


def test_strength_one_is_the_standard_sampler_start(monkeypatch):
    """Strength 1.0 hands the reverse process the x_T ~ N(0, I) of Algorithm 2 (``diffusion.sample``)
    bit for bit, at t = T with the same steps; what the engine does after it is not the start's."""
    model = tiny_model()
    s = NoiseSchedule.named("cosine", model.config.timesteps)
    x_lr = torch.rand(1, 3, 9, 7) * 2 - 1
    starts = []

    def recording(eps_fn, schedule, x_t, t_start, noise, options, callback=None):
        starts.append((x_t.clone(), t_start, options.steps))
        return x_t

    monkeypatch.setattr(engine, "reverse_process", recording)
    monkeypatch.setattr(diffusion, "reverse_process", recording)
    with torch.inference_mode():
        cond = Conditioned(model, x_lr, (18, 14))
        super_resolve(model, s, x_lr, (18, 14), field_noise([5]), steps=6, strength=1.0, cond=cond)
        diffusion.sample(cond.eps_fn(), s, (1, 3, 18, 14), field_noise([5]), options=SamplingOptions(steps=6))
    (ours, t_ours, steps_ours), (standard, t_standard, steps_standard) = starts
    assert torch.equal(ours, standard) and t_ours == t_standard == s.T and steps_ours == steps_standard == 6


def test_default_strength_is_the_default_path(pipe, monkeypatch):
    img = texture(10, 12)
    explicit = np.asarray(pipe.upscale(img, scale=2, steps=4, seed=2, strength=default_strength(2)))
    assert np.array_equal(np.asarray(pipe.upscale(img, scale=2, steps=4, seed=2)), explicit)
    monkeypatch.setattr(cascade_module, "DEFAULT_STRENGTH", {"encoder": {2.0: 0.5}, "bicubic": {2.0: 0.5}})
    half = np.asarray(pipe.upscale(img, scale=2, steps=4, seed=2))
    assert np.array_equal(half, np.asarray(pipe.upscale(img, scale=2, steps=4, seed=2, strength=0.5)))
    assert not np.array_equal(half, np.asarray(pipe.upscale(img, scale=2, steps=4, seed=2, strength=1.0)))


def test_strength_near_zero_returns_nearly_the_bicubic_image():
    """With T = 1000, strength 0.001 starts at t = 1: noise of std ~0.003 around the bicubic image,
    which then gets the engine's consistency step like every output.  Measured: max 2, mean 0.28
    grey levels from it; full strength 33."""
    fine = make_pipe(timesteps=1000)
    img = texture(12, 14)
    x_lr = fine.to_input(img)
    bicubic = tensor_to_uint8(back_project(resize(x_lr, (24, 28)), x_lr)).astype(int)
    near = np.asarray(fine.upscale(img, scale=2, steps=10, seed=0, strength=0.001, init="bicubic")).astype(int)
    full = np.asarray(fine.upscale(img, scale=2, steps=10, seed=0, strength=1.0)).astype(int)
    assert np.abs(near - bicubic).max() <= 3 and np.abs(near - bicubic).mean() < 0.6
    assert np.abs(full - bicubic).mean() > 10 * np.abs(near - bicubic).mean()


def test_strength_near_zero_from_the_encoder_returns_nearly_its_regression():
    """The default init: the same start at t = 1 around the encoder's regression output instead."""
    fine = make_pipe(timesteps=1000)
    # a random encoder adds next to nothing to bicubic: give its output a pattern back-projection keeps
    checker = (torch.arange(24).view(-1, 1) + torch.arange(28)) % 2 * 0.4 - 0.2
    plain_head = fine.model.rrdb.head
    fine.model.rrdb.head = lambda fea, x, size: (plain_head(fea, x, size) + checker).clamp(-1, 1)
    img = texture(12, 14)
    x_lr = fine.to_input(img)
    with torch.inference_mode():
        regression = fine.model.rrdb(x_lr, (24, 28))
        cond = Conditioned(fine.model, x_lr, (24, 28))  # the residual range clips as in the engine
        expected = cond.to_image(cond.to_residual(back_project(cond.to_image(cond.to_residual(regression)), x_lr)))
    expected = tensor_to_uint8(expected).astype(int)
    near = np.asarray(fine.upscale(img, scale=2, steps=10, seed=0, strength=0.001, init="encoder")).astype(int)
    bicubic = np.asarray(fine.upscale(img, scale=2, steps=10, seed=0, strength=0.001, init="bicubic")).astype(int)
    assert np.abs(near - expected).max() <= 3 and np.abs(near - expected).mean() < 0.6
    assert np.abs(bicubic - expected).mean() > 5 * np.abs(near - expected).mean()


def test_start_residual_reuses_the_encoders_trunk():
    """``Conditioned`` takes the regression output from the trunk features it encoded for the
    condition: the same as a separate forward pass, also for an expanded (diverse) batch."""
    model = tiny_model()
    x_lr = torch.rand(1, 3, 9, 7) * 2 - 1
    with torch.inference_mode():
        cond = Conditioned(model, x_lr, (27, 21))
        regression = model.rrdb(x_lr, (27, 21))
        assert torch.allclose(cond.to_image(cond.start_residual("encoder")), regression.clamp(cond.x_up - 0.5, cond.x_up + 0.5), atol=1e-6)
        assert torch.equal(cond.start_residual("bicubic"), torch.zeros(1, 3, 27, 21))
        assert torch.allclose(cond.expand(3).start_residual("encoder"), cond.start_residual("encoder").expand(3, -1, -1, -1), atol=1e-6)
        with pytest.raises(ValueError):
            cond.start_residual("nearest")


# -- cascades ---------------------------------------------------------------------------------------


def test_cascades_are_deterministic_under_a_seed(pipe):
    img = texture(9, 11)
    a = np.asarray(pipe.upscale(img, scale=8, steps=3, seed=4))
    b = np.asarray(pipe.upscale(img, scale=8, steps=3, seed=4))
    other = np.asarray(pipe.upscale(img, scale=8, steps=3, seed=5))
    assert np.array_equal(a, b) and a.shape == (72, 88, 3)
    assert np.abs(a.astype(int) - other.astype(int)).mean() > 5


def test_cascade_progress_counts_every_pass(pipe):
    seen = []
    pipe.upscale(texture(8, 8), scale=8, steps=4, seed=0, tile=0, strength=1.0, callback=lambda d, t: seen.append((d, t)))
    assert [d for d, _ in seen] == list(range(1, 4 + 2 + 1)) and seen[-1] == (6, 6)


def test_diverse_samples_of_a_cascade_equal_single_upscales(pipe):
    """The batch path (``sr_cascade``) hands 16-bit images between passes as the image path does."""
    img = texture(8, 10)
    single = np.asarray(pipe.upscale(img, scale=6, steps=3, seed=11, strength=0.8, tile=0))
    alone = sample_diverse(pipe, img, n=1, scale=6, steps=3, seed=11, strength=0.8, output="numpy")
    assert np.array_equal(alone.samples[0], single)
    batch = sample_diverse(pipe, img, n=2, scale=6, steps=3, seed=10, strength=0.8, output="numpy")
    # batched convolutions may round differently in the last bit
    assert np.abs(batch.samples[1].astype(int) - single).mean() < 0.5
    assert batch.bicubic.shape == batch.samples[0].shape == (48, 60, 3)


# -- fixed-scale checkpoints --------------------------------------------------------------------------


def test_fixed_scale_checkpoint_runs_its_powers_and_refuses_the_rest():
    fixed2 = make_pipe(projection="transposed", scale=2)
    assert [s.scale for s in fixed2.passes(8)] == [2, 2, 2]
    assert fixed2.upscale(texture(6, 5), scale=4, steps=2).size == (20, 24)
    # the paper's RRDB head gives the encoder start of a fixed-scale checkpoint
    assert fixed2.upscale(texture(6, 5), scale=4, steps=2, strength=0.5, init="encoder").size == (20, 24)
    with pytest.raises(UsageError, match=r"fixed to 2x .*2x, 4x or 8x"):
        fixed2.passes(3)
    fixed4 = make_pipe(projection="transposed", scale=4)
    for scale in (2, 8):
        with pytest.raises(UsageError, match=r"fixed to 4x.* 4x only"):
            fixed4.passes(scale)


# -- the command line ---------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["upscale", "sample-diverse", "eval"])
@pytest.mark.parametrize("args, message", [(["--scale", "1.0"], "scale must be"), (["--scale", "8.5"], "scale must be"),
                                           (["--scale", "nan"], "scale must be"), (["--scale", "2", "--strength", "0"], "strength"),
                                           (["--scale", "2", "--init", "nearest"], "unknown init")])
def test_cli_out_of_range_is_a_usage_error(tmp_path, command, args, message):
    src = tmp_path / "a.png"
    Image.fromarray(texture(8, 8)).save(src)
    target = tmp_path if command == "eval" else src
    result = runner.invoke(app, [command, str(target), *args, "--weights", str(tmp_path / "missing.safetensors")])
    assert result.exit_code == 2, result.output
    assert message in result.stderr


def test_cli_cascade_reports_its_passes(tmp_path, tiny_checkpoint):
    src = tmp_path / "a.png"
    Image.fromarray(texture(6, 7)).save(src)
    result = runner.invoke(app, ["upscale", str(src), "--scale", "8", "--steps", "2", "--json", "--weights", str(tiny_checkpoint)])
    assert result.exit_code == 0, result.output
    assert "cascade" in result.stderr
    assert Image.open(tmp_path / "a_x8.png").size == (56, 48)
