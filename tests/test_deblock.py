"""The JPEG deblocking filter (srcli.deblock) and where it runs: on the real model's inputs by
default, --deblock/--no-deblock, the JSON record and the output fingerprint."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from srcli.cli import app
from srcli.deblock import EDGE_LEVELS, MIN_FIND_PX, deblock, grid_offsets
from srcli.metrics import block_edge_steps, block_grid
from srcli.ops import tensor_to_uint8

from conftest import gradient_image


def flat_with_step(step: int, at: int, size: int = 24, base: int = 100, dtype=np.uint8) -> np.ndarray:
    """A flat (size, size, 3) image whose columns from ``at`` on are ``step`` levels brighter."""
    img = np.full((size, size, 3), base, dtype=np.float64)
    img[:, at:] += step
    peak = np.iinfo(dtype).max
    return (img * (peak / 255.0)).round().astype(dtype)


def smooth_field(size: int, seed: int = 0) -> np.ndarray:
    """A smooth random colour field (low frequencies only, 8-bit), no grid of any kind."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(40, 216, (size // 16 + 2, size // 16 + 2, 3), dtype=np.uint8)
    from PIL import Image

    return np.asarray(Image.fromarray(coarse).resize((size, size), Image.BICUBIC))


def jpeg(rgb: np.ndarray, quality: int = 20) -> np.ndarray:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG", quality=quality)
    return np.asarray(Image.open(buf).convert("RGB"))


def test_a_step_on_a_block_edge_loses_its_excess_half_from_each_side():
    out = deblock(flat_with_step(8, at=8))  # the step between pixels 7 and 8: a block edge
    row = out[5, :, 0].astype(int)
    assert row.tolist() == [100] * 7 + [104, 104] + [108] * 15  # only the two pixels beside the edge move
    assert (out == out[:1]).all()  # every row alike; the horizontal edges had nothing to do


def test_the_excess_is_over_the_neighbouring_steps():
    img = np.full((24, 24, 3), 100.0)
    img[:, 7:] += 2  # a soft edge: steps of 2 at x 6|7 and 8|9 around a step of 10 at the block edge 7|8
    img[:, 8:] += 10
    img[:, 9:] += 2
    out = deblock(img.astype(np.uint8))[0, :, 0].astype(int)
    # excess 10 - (2 + 2) / 2 = 9: pixel 7 gains 4.5, pixel 8 loses 4.5 (rounded half to even)
    assert out[5:11].tolist() == [100, 100, 102 + 4, 112 - 4, 114, 114]


def test_a_large_step_is_an_edge_of_the_picture_and_stays():
    img = flat_with_step(int(EDGE_LEVELS) + 4, at=8)
    assert np.array_equal(deblock(img), img)


def test_steps_away_from_the_block_edges_are_untouched():
    img = flat_with_step(8, at=5)  # between pixels 4 and 5: inside the first block
    assert np.array_equal(deblock(img), img)


def test_an_image_of_one_block_has_no_edges_to_soften():
    img = flat_with_step(8, at=4, size=8)
    assert np.array_equal(deblock(img), img)


def test_sixteen_bit_input_is_filtered_in_its_own_levels():
    out8 = deblock(flat_with_step(8, at=8))
    out16 = deblock(flat_with_step(8, at=8, dtype=np.uint16))
    assert out16.dtype == np.uint16
    assert np.abs(out16.astype(float) / 257 - out8).max() <= 0.5


def test_deblocking_a_blocky_input_lowers_its_grid_measure():
    rng = np.random.default_rng(0)
    offsets = np.kron(rng.normal(0, 3, (8, 8)), np.ones((8, 8)))  # a per-block offset of an 8 px grid
    img = np.clip(gradient_image(64, 64, slopes=(0.3, 0.2, 0.1), noise=1.0).astype(float) + offsets[..., None], 0, 255).astype(np.uint8)
    before, after = block_grid(img, 1.0), block_grid(deblock(img), 1.0)
    assert before > 1.5 and after < 1.2


def test_deblock_refuses_what_is_not_an_image():
    with pytest.raises(ValueError):
        deblock(np.zeros((8, 8, 3), np.float32))
    with pytest.raises(ValueError):
        deblock(np.zeros((8, 8), np.uint8))


@pytest.fixture
def real_checkpoint(tiny_checkpoint):
    from srcli.checkpoint import update_info

    update_info(tiny_checkpoint, degradation="real")
    return tiny_checkpoint


def test_the_real_model_deblocks_its_input_by_default_and_the_clean_one_does_not(tiny_checkpoint):
    from srcli.checkpoint import update_info
    from srcli.pipeline import SRPipeline

    lr = gradient_image(24, 24, seed=1)
    clean = SRPipeline.from_pretrained(str(tiny_checkpoint), device="cpu")
    assert clean.default_deblock is False
    raw = clean.upscale(lr, scale=4, steps=2, seed=0, output="numpy")
    assert np.array_equal(clean.upscale(lr, scale=4, steps=2, seed=0, output="numpy", deblock=False), raw)
    forced = clean.upscale(lr, scale=4, steps=2, seed=0, output="numpy", deblock=True)
    assert np.array_equal(forced, clean.upscale(deblock(lr), scale=4, steps=2, seed=0, output="numpy"))
    assert not np.array_equal(forced, raw)
    update_info(tiny_checkpoint, degradation="real")
    real = SRPipeline.from_pretrained(str(tiny_checkpoint), device="cpu")
    assert real.default_deblock is True and real.describe()["default_deblock"] is True
    deblocked_by_hand = real.upscale(deblock(lr), scale=4, steps=2, seed=0, output="numpy", deblock=False)
    assert np.array_equal(real.upscale(lr, scale=4, steps=2, seed=0, output="numpy"), deblocked_by_hand)
    update_info(tiny_checkpoint, deblock=False)  # a checkpoint may say otherwise
    assert SRPipeline.from_pretrained(str(tiny_checkpoint), device="cpu").default_deblock is False


def test_a_cascade_deblocks_only_the_given_input(real_checkpoint):
    from srcli.pipeline import SRPipeline

    pipe = SRPipeline.from_pretrained(str(real_checkpoint), device="cpu")
    lr = gradient_image(16, 16, seed=2)
    assert len(pipe.passes(8.0)) == 2
    by_hand = pipe.upscale(deblock(lr), scale=8, steps=2, seed=0, output="numpy", deblock=False)
    assert np.array_equal(pipe.upscale(lr, scale=8, steps=2, seed=0, output="numpy"), by_hand)


def test_diverse_samples_are_the_upscales_of_the_deblocked_input(real_checkpoint):
    from srcli.explore import sample_diverse
    from srcli.pipeline import SRPipeline

    pipe = SRPipeline.from_pretrained(str(real_checkpoint), device="cpu")
    lr = gradient_image(24, 24, seed=3)
    result = sample_diverse(pipe, lr, n=2, scale=4, seed=5, steps=2, output="numpy")
    assert np.array_equal(result.lr, lr)  # the input as given
    for k, sample in enumerate(result.samples):
        assert np.array_equal(sample, pipe.upscale(lr, scale=4, seed=5 + k, tile=0, steps=2, strength=1.0, output="numpy"))
    raw = sample_diverse(pipe, lr, n=1, scale=4, seed=5, steps=2, output="numpy", strength=1.0, deblock=False)
    assert not np.array_equal(raw.samples[0], result.samples[0])


def test_cli_deblock_flags_reach_the_record_and_the_fingerprint(tmp_path, real_checkpoint):
    from PIL import Image

    src = tmp_path / "in.png"
    Image.fromarray(gradient_image(24, 24, seed=4)).save(src)
    runner = CliRunner()
    base = ["upscale", str(src), "--weights", str(real_checkpoint), "--scale", "4", "--steps", "2", "--json", "-o", str(tmp_path / "out.png")]
    first = runner.invoke(app, base)
    assert first.exit_code == 0, first.output
    assert json.loads(first.stdout.splitlines()[-1])["deblock"] is True
    again = runner.invoke(app, [*base, "--no-deblock"])
    assert again.exit_code == 0, again.output
    record = json.loads(again.stdout.splitlines()[-1])
    assert record["deblock"] is False and record["status"] == "ok" and record["redone"] is True


def test_training_patches_can_be_deblocked_as_the_model_will_see_them(tmp_path):
    from PIL import Image

    from srcli.data import PatchSampler

    for i in range(2):
        Image.fromarray(gradient_image(96, 96, seed=i, noise=12.0)).save(tmp_path / f"p{i}.png")
    plain = PatchSampler(tmp_path, patch=64, degradation="real", clean_fraction=0.5, seed=7).batch(3, scale=4.0)
    deblocked = PatchSampler(tmp_path, patch=64, degradation="real", clean_fraction=0.5, seed=7, deblock_lr=True).batch(3, scale=4.0)
    assert torch.equal(plain.hr, deblocked.hr)  # the same draws: only the LR differs
    for k in range(3):
        lr = tensor_to_uint8(plain.lr[k : k + 1])
        assert np.array_equal(tensor_to_uint8(deblocked.lr[k : k + 1]), deblock(lr))


def test_train_deblock_is_recorded_and_makes_the_model_deblock(tmp_path, tiny_checkpoint):
    from PIL import Image

    from srcli.checkpoint import load_checkpoint
    from srcli.pipeline import SRPipeline

    data = tmp_path / "data"
    data.mkdir()
    for i in range(2):
        Image.fromarray(gradient_image(96, 96, seed=i, noise=12.0)).save(data / f"p{i}.png")
    out = tmp_path / "m.safetensors"
    args = ["train", "--data", str(data), "--out", str(out), "--state-dir", str(tmp_path / "state"), "--deblock",
            "--init-from", str(tiny_checkpoint), "--encoder-steps", "1", "--steps", "1", "--batch", "2", "--patch", "32",
            "--save-every", "1", "--val-every", "1000"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    _, _, info = load_checkpoint(out)
    assert info["train"]["deblock"] is True and info["deblock"] is True
    assert SRPipeline.from_pretrained(str(out), device="cpu").default_deblock is True  # though trained on bicubic LR


def test_the_encoder_baseline_sees_the_input_as_the_model_takes_it(real_checkpoint):
    from srcli.evaluate import evaluate_images
    from srcli.pipeline import SRPipeline

    pipe = SRPipeline.from_pretrained(str(real_checkpoint), device="cpu")
    hr = gradient_image(96, 96, seed=6, noise=12.0)
    outs: dict[bool, np.ndarray] = {}
    for on in (True, False):
        evaluate_images([("a.png", hr)], pipe, scale=4, baselines=["encoder"], steps=1, degradation="real", deblock=on,
                        on_output=lambda name, method, out, _hr, on=on: outs.__setitem__(on, out) if method == "encoder" else None)
    assert outs[True].shape == outs[False].shape == hr.shape and not np.array_equal(outs[True], outs[False])


def test_a_deblock_option_that_is_not_a_switch_is_a_usage_error():
    from srcli.options import SamplingOptions
    from srcli.pipeline import UsageError

    with pytest.raises(UsageError, match="deblock must be"):
        SamplingOptions(deblock="yes")
    assert SamplingOptions(deblock=np.bool_(True)).deblock is True  # normalised to a plain bool


def test_block_edges_can_start_anywhere_in_the_first_block():
    assert block_edge_steps(40, 1.0) == [7, 15, 23, 31]
    assert block_edge_steps(40, 1.0, offset=3) == [2, 10, 18, 26, 34]
    assert block_edge_steps(40, 1.0, offset=8) == block_edge_steps(40, 1.0)
    assert block_edge_steps(40, 2.0, offset=3) == [5, 21, 37]


def test_the_grid_of_a_cropped_jpeg_is_found_where_it_lies():
    """A JPEG cropped 3 rows and 5 columns in from its top-left has its blocks' edges between pixels
    8k + 4 | 8k + 5 down and 8k + 2 | 8k + 3 across: offsets 5 and 3."""
    blocky = jpeg(smooth_field(176) + np.random.default_rng(1).integers(0, 6, (176, 176, 3), dtype=np.uint8))
    assert grid_offsets(blocky) == (0, 0)
    cropped = np.ascontiguousarray(blocky[3:3 + 160, 5:5 + 160])
    assert grid_offsets(cropped) == (5, 3)
    # deblocking at the found grid lowers the grid measure read there; at the top-left it does not
    at_grid = lambda img: block_grid(img[5:, 3:], 1.0)  # noqa: E731
    assert at_grid(deblock(cropped)) < at_grid(cropped) - 0.05
    assert at_grid(deblock(cropped, offsets=(0, 0))) > at_grid(deblock(cropped)) + 0.05


def test_without_a_grid_that_stands_out_the_grid_is_taken_at_the_top_left():
    """No grid at all, and an axis too short to find one: offset 0, as a JPEG file decodes."""
    clean = smooth_field(160)
    assert grid_offsets(clean) == (0, 0)
    assert grid_offsets(clean.astype(np.uint16) * 257) == (0, 0)
    blocky = jpeg(smooth_field(176) + np.random.default_rng(1).integers(0, 6, (176, 176, 3), dtype=np.uint8))
    short = np.ascontiguousarray(blocky[3 : 3 + MIN_FIND_PX - 8, 5 : 5 + 160])  # too few blocks down
    assert grid_offsets(short) == (0, 3)  # each axis on its own
    assert np.array_equal(deblock(short), deblock(short, offsets=(0, 3)))


def test_deblock_at_given_offsets_moves_the_steps_there_only():
    img = flat_with_step(8, at=11)  # a step between columns 10 and 11: a grid at offset 3
    out = deblock(img, offsets=(0, 3))
    assert out[5, :, 0].astype(int).tolist() == [100] * 10 + [104, 104] + [108] * 12
    assert np.array_equal(deblock(img, offsets=(0, 0)), img)  # off that grid: untouched
