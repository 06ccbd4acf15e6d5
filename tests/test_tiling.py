"""srcli.tiling and the pipeline's tiled path: position-keyed noise, the tile grid, seamless blending,
and tiled output that agrees with untiled output."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import gradient_image, tiny_model
from srcli.diffusion import NoiseSchedule
from srcli.imageio import ImageData
from srcli.nets import ModelConfig
from srcli.ops import tensor_to_uint8
from srcli.pipeline import SRPipeline, UsageError
from srcli.noise import _GOLDEN, _mix64, field_noise, mix_seed
from srcli.tiling import MAX_TILE_OVERLAP, TiledCondition, auto_tile, plan_axis, plan_tiles, tile_overlap


def smooth_image(h: int = 64, w: int = 64, seed: int = 0) -> np.ndarray:
    return gradient_image(h, w, seed, slopes=(3, 3, 2), offset=30, noise=15)


# -- noise ------------------------------------------------------------------------------------------


def test_field_noise_depends_only_on_position():
    like = torch.empty(1, 3, 150, 170)
    whole = field_noise([7])(3, like)
    # windows at arbitrary origins, batched together, see the same numbers as the whole field
    origins = [(0, 0), (37, 5), (64, 64), (100, 121)]
    windows = field_noise([7] * 4, origins)(3, torch.empty(4, 3, 50, 49))
    for window, (y, x) in zip(windows, origins):
        assert torch.equal(window, whole[0, :, y : y + 50, x : x + 49])
    # and another seed in the same batch does not change them
    mixed = field_noise([7, 8], [(37, 5), (37, 5)])(3, torch.empty(2, 3, 50, 49))
    assert torch.equal(mixed[0], windows[1]) and not torch.equal(mixed[1], windows[1])


def test_field_noise_steps_and_seeds_differ_and_are_standard_normal():
    like = torch.empty(1, 3, 128, 128)
    a, b, c = field_noise([1])(0, like), field_noise([1])(1, like), field_noise([2])(0, like)
    assert not torch.equal(a, b) and not torch.equal(a, c)
    assert abs(float(a.mean())) < 0.03 and abs(float(a.std()) - 1) < 0.03
    # neighbouring runs are not copies of each other
    assert not torch.equal(a[..., :64, :64], a[..., :64, 64:])
    assert field_noise([1])(0, like.to(torch.float64)).dtype == torch.float64


def _lowbias32(x: int) -> int:
    for shift, factor in ((16, 0x7FEB352D), (15, 0x846CA68B), (16, 1)):
        x = ((x ^ (x >> shift)) * factor) & 0xFFFFFFFF
    return x


def reference_noise(seed: int, k: int, c: int, y: int, x: int) -> float:
    """The documented noise field, pixel by pixel, in Python integers and float64."""
    row = _mix64((((c << 21) | y) * _GOLDEN + mix_seed(seed, k)) & ((1 << 64) - 1))
    first = x - x % 64 + x % 32
    h1 = _lowbias32((first * 0x9E3779B9 + (row & 0xFFFFFFFF)) & 0xFFFFFFFF)
    h2 = _lowbias32(h1 ^ (row >> 32))
    radius = math.sqrt(-2 * math.log(((h1 >> 8) + 1) * 2.0**-24))
    angle = 2 * math.pi * (h2 >> 8) * 2.0**-24
    return radius * (math.cos(angle) if x % 64 < 32 else math.sin(angle))


def test_field_noise_is_the_documented_counter_hash(monkeypatch):
    def no_generators(*args, **kwargs):
        raise AssertionError("the noise field must not use a torch generator")

    monkeypatch.setattr(torch, "Generator", no_generators)
    monkeypatch.setattr(torch, "randn", no_generators)
    field = field_noise([11], [(1000, 2000)])(4, torch.empty(1, 3, 40, 90))
    for c, y, x in ((0, 0, 0), (1, 7, 31), (2, 39, 32), (0, 20, 63), (1, 3, 64), (2, 12, 89)):
        assert float(field[0, c, y, x]) == pytest.approx(reference_noise(11, 4, c, 1000 + y, 2000 + x), abs=2e-5)


def test_field_noise_has_no_visible_structure():
    f = field_noise([3])(0, torch.empty(1, 3, 256, 256))[0].double()
    assert abs(float((f**4).mean()) - 3) < 0.1  # Gaussian kurtosis
    assert float(f.abs().max()) < 6.5
    for dy, dx in ((0, 1), (1, 0), (0, 32), (1, 1)):  # neighbours and Box-Muller partners
        a, b = f[:, : 256 - dy, : 256 - dx].flatten(), f[:, dy:, dx:].flatten()
        assert abs(float(torch.corrcoef(torch.stack([a, b]))[0, 1])) < 0.01
    assert abs(float(torch.corrcoef(torch.stack([f[0].flatten(), f[1].flatten()]))[0, 1])) < 0.01


def test_field_noise_checks_batch():
    with pytest.raises(ValueError):
        field_noise([1, 2])(0, torch.empty(3, 3, 8, 8))
    with pytest.raises(ValueError):
        field_noise([1], [(-1, 0)])


# -- the grid -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "n_lr, n_hr, tile, overlap",
    [(64, 256, 128, 32), (64, 160, 64, 16), (37, 92, 40, 10), (100, 400, 128, 32), (10, 40, 32, 8), (7, 28, 32, 8), (300, 300 * 3, 256, 64)],
)
def test_plan_axis_covers_with_a_partition_of_unity(n_lr, n_hr, tile, overlap):
    spans = plan_axis(n_lr, n_hr, tile, overlap)
    assert spans[0].lr0 == 0 and spans[0].hr0 == 0 and spans[-1].lr1 == n_lr and spans[-1].hr1 == n_hr
    assert len({s.hr1 - s.hr0 for s in spans}) == 1 and len({s.lr1 - s.lr0 for s in spans}) == 1
    total = torch.zeros(n_hr)
    for s in spans:
        total[s.hr0 : s.hr1] += s.weights()
    assert torch.allclose(total, torch.ones(n_hr), atol=1e-6)
    if n_hr % n_lr == 0:  # integer scale: tiles land exactly on the global grid
        assert all(s.hr0 == s.lr0 * (n_hr // n_lr) for s in spans)


def test_plan_axis_fractional_scale_uses_exact_starts():
    spans = plan_axis(64, 160, 64, 16)  # 2.5x: even LR pixels map to whole HR pixels
    assert len(spans) > 1 and all(s.lr0 % 2 == 0 and s.hr0 * 2 == s.lr0 * 5 for s in spans)


def test_plan_tiles_row_major():
    tiles = plan_tiles((40, 50), (160, 200), 64)
    assert [t.y.hr0 for t in tiles] == sorted(t.y.hr0 for t in tiles)
    assert len(tiles) == len(plan_axis(40, 160, 64, 16)) * len(plan_axis(50, 200, 64, 16))


class _WindowCondition:
    """A stand-in tile condition: its noise prediction is ``field`` at the tile's place plus the
    crop of x_t it is given, so blending must give back ``field + x_t`` exactly."""

    def __init__(self, field: torch.Tensor, size: tuple[int, int], origins: list[tuple[int, int]]):
        self.windows = torch.stack([field[:, y : y + size[0], x : x + size[1]] for y, x in origins])

    def eps_fn(self):
        return lambda x_t, t: self.windows + x_t


def test_canvas_blending_reproduces_a_position_only_function_exactly():
    """If every tile predicts the global answer for its window, the canvas blend must be it: checks
    the tiles' crops of the canvas, their places, the windows and their normalisation at once."""
    h, w, s = 40, 52, 4
    y, x = torch.meshgrid(torch.arange(h * s), torch.arange(w * s), indexing="ij")
    field = torch.stack([torch.sin(y / 9.0), torch.cos(x / 7.0), torch.sin((x + y) / 13.0)]) * 0.9
    x_t = torch.randn(1, 3, h * s, w * s, generator=torch.Generator().manual_seed(0))
    for tile, batch in ((64, 1), (64, 5), (96, 2)):
        tiles = plan_tiles((h, w), (h * s, w * s), tile)
        assert len(tiles) > 4
        cond = TiledCondition(
            torch.zeros(1, 3, h, w), torch.zeros(1, 3, h * s, w * s), 1.0, tiles, batch,
            lambda crops, size, origins: _WindowCondition(field, size, origins),
        )
        blended = cond.eps_fn()(x_t, torch.zeros(1, dtype=torch.long))
        torch.testing.assert_close(blended, field[None] + x_t, atol=1e-5, rtol=1e-5)


def test_tiled_progress_counts_each_reverse_step_once(pipe):
    """The tiles share one reverse process: the progress is its steps, tiled or not."""
    img = smooth_image(32, 32)
    seen = {0: [], 64: []}
    for tile in seen:
        pipe.upscale(img, scale=4, steps=6, seed=1, tile=tile, strength=1.0, callback=lambda d, t, tile=tile: seen[tile].append((d, t)))
    assert seen[0] == seen[64] == [(k, 6) for k in range(1, 7)]


def test_auto_tile_is_bounded_and_follows_the_budget():
    cfg = ModelConfig()
    small, large = auto_tile(cfg, 4, 1, 64 << 20), auto_tile(cfg, 4, 1, 2 << 30)
    assert 64 <= small < large <= 2048 and small % 32 == 0
    assert auto_tile(cfg, 4, 4, 2 << 30) < large


# -- through the pipeline ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pipe():
    model = tiny_model()
    return SRPipeline(model, NoiseSchedule.named("cosine", model.config.timesteps), device="cpu")


@pytest.mark.parametrize("scale, tile", [(4, 64), (2.5, 64), (2, 48)])
def test_tiled_and_untiled_agree(pipe, scale, tile):
    """The tiles share one canvas at every step and back-projection runs once on the whole image, so
    only the network's view near tile borders differs.  Measured with the tiny random model (levels
    of 255): mean |diff| 0.019 / 0.006 / 0.008, max 1 at all three (independently sampled tiles
    with per-tile back-projection gave max 11).  Two seeds differ by 30-38 levels on average, so
    the agreement is not a model that ignores its noise."""
    img = smooth_image()
    untiled = np.asarray(pipe.upscale(img, scale=scale, steps=8, seed=3, tile=0)).astype(int)
    tiled = np.asarray(pipe.upscale(img, scale=scale, steps=8, seed=3, tile=tile, tile_batch=3)).astype(int)
    other_seed = np.asarray(pipe.upscale(img, scale=scale, steps=8, seed=4, tile=0)).astype(int)
    assert tiled.shape == untiled.shape == (round(64 * scale), round(64 * scale), 3)
    diff = np.abs(tiled - untiled)
    assert diff.mean() < 0.05 and diff.max() <= 2, (diff.mean(), diff.max())
    assert np.abs(other_seed - untiled).mean() > 20 * max(diff.mean(), 0.05)


def test_tile_batch_does_not_change_the_result(pipe):
    img = smooth_image(40, 40)
    one = np.asarray(pipe.upscale(img, scale=4, steps=4, seed=1, tile=64, tile_batch=1)).astype(int)
    many = np.asarray(pipe.upscale(img, scale=4, steps=4, seed=1, tile=64, tile_batch=4)).astype(int)
    assert np.abs(one - many).max() <= 1


def test_untiled_upscale_equals_sr_tensor(pipe):
    """One noise for everything: the image path and the tensor path draw the same numbers."""
    img = smooth_image(24, 20)
    a = np.asarray(pipe.upscale(img, scale=2, steps=5, seed=9, tile=0, strength=0.6))
    x = pipe.to_input(img)
    b = pipe.sr_tensor(x, (48, 40), [9], steps=5, strength=0.6)
    assert np.array_equal(a, tensor_to_uint8(b))


def test_tiny_images_are_padded_for_a_deep_unet():
    model = tiny_model(unet_mults=(1, 2, 2, 2))  # 4 levels: the U-Net needs 16 px or more
    deep = SRPipeline(model, NoiseSchedule.named("cosine", model.config.timesteps), device="cpu")
    for shape in ((1, 1, 3), (3, 5, 3)):
        out = deep.upscale(np.full(shape, 128, np.uint8), scale=4, steps=2)
        assert out.size == (shape[1] * 4, shape[0] * 4)


def test_image_level_modes(pipe):
    rgba = np.dstack([smooth_image(20, 24), np.full((20, 24), 200, np.uint8)])
    out = pipe.upscale(Image.fromarray(rgba, "RGBA"), scale=2, steps=2)
    assert out.mode == "RGBA" and out.size == (48, 40) and np.asarray(out)[..., 3].min() == 200
    gray = pipe.upscale(Image.fromarray(smooth_image(20, 24)[..., 0]), scale=2, steps=2)
    assert gray.mode == "L" and gray.size == (48, 40)


def test_sixteen_bit_precision_reaches_the_output(pipe):
    y, x = np.mgrid[0:24, 0:24]
    g16 = (x * 1500 + y * 900 + 7).astype(np.uint16)
    data = ImageData(np.repeat(g16[..., None], 3, axis=2), grayscale=True)
    out = pipe.upscale_image(data, scale=2, steps=3, tile=0)
    assert out.rgb.dtype == np.uint16 and out.size == (48, 48) and out.grayscale
    assert np.any(out.rgb % 257 != 0)  # not 8-bit values in disguise


def test_bad_arguments_are_usage_errors(pipe):
    img = smooth_image(8, 8)
    for kwargs in ({"scale": 0}, {"steps": 0}, {"steps": -2}, {"tile": 5}, {"tile_batch": 0}, {"sampler": "x"}, {"strength": 0}):
        with pytest.raises(UsageError):
            pipe.upscale(img, **{"scale": 2, **kwargs})
    with pytest.raises(UsageError):
        pipe.upscale(np.zeros((8, 8), np.uint8), scale=2)


def test_balanced_tiles_just_cover_the_image():
    """A 2048 px output at 4x with the 1024 px budget tile: the count stays 3 per axis, but the tiles
    shrink to just cover it with the quarter-tile overlap (3x3 tiles of 1024 would be 2.25x the pixels)."""
    spans = plan_axis(512, 2048, 1024, 256)
    assert len(spans) == 3 and spans[-1].hr1 == 2048
    side = spans[0].hr1 - spans[0].hr0
    assert side < 900
    assert all(a.hr1 - b.hr0 >= 256 for a, b in zip(spans, spans[1:]))  # the required overlap is kept
    tiles = plan_tiles((512, 512), (2048, 2048), 1024)
    covered = sum((t.y.hr1 - t.y.hr0) * (t.x.hr1 - t.x.hr0) for t in tiles)
    assert len(tiles) == 9 and covered / 2048**2 < 1.6
    for n_lr, tile in ((300, 256), (1000, 512), (77, 100)):  # never a tile larger than asked for
        assert {s.hr1 - s.hr0 for s in plan_axis(n_lr, n_lr * 4, tile, tile // 4)} <= set(range(tile // 2, tile + 1))


def test_tile_overlap_is_a_quarter_tile_up_to_a_cap():
    """Small tiles overlap by a quarter of their side, large ones by MAX_TILE_OVERLAP px only: the
    640x480 photo at 4x in the CPU's auto tiles (1472 px) is 2x2 tiles of 1344x1024, 1.12x the output's
    pixels of network work (1.36x with quarter-tile overlaps)."""
    assert tile_overlap(64) == 16 and tile_overlap(256) == 64
    assert tile_overlap(512) == tile_overlap(1472) == MAX_TILE_OVERLAP == 128
    tiles = plan_tiles((480, 640), (1920, 2560), 1472)
    assert len(tiles) == 4
    assert {(t.y.hr1 - t.y.hr0, t.x.hr1 - t.x.hr0) for t in tiles} == {(1024, 1344)}
    for axis in ("y", "x"):
        spans = sorted({getattr(t, axis) for t in tiles}, key=lambda span: span.hr0)
        assert [a.hr1 - b.hr0 for a, b in zip(spans, spans[1:])] == [128]  # the overlap kept, no more
    covered = sum((t.y.hr1 - t.y.hr0) * (t.x.hr1 - t.x.hr0) for t in tiles)
    assert covered / (1920 * 2560) < 1.15
