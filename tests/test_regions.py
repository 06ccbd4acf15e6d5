"""srcli.regions: outputs split into regions when one canvas would exceed the memory budget (the
plan respects the budget, the cross-fade is exact, and regions joined agree with the whole canvas)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import gradient_image, tiny_model
from srcli.diffusion import NoiseSchedule
from srcli.errors import UsageError
from srcli.pipeline import SRPipeline
from srcli.regions import CANVAS_BUDGET_ENV, blend_regions, canvas_budget, canvas_bytes_per_pixel, plan_regions, region_overlap

SCHEDULE_T = 20


def make_pipe(monkeypatch, megabytes: float | None) -> SRPipeline:
    """A tiny random model's pipeline whose canvas budget is ``megabytes`` (None: the default)."""
    if megabytes is None:
        monkeypatch.delenv(CANVAS_BUDGET_ENV, raising=False)
    else:
        monkeypatch.setenv(CANVAS_BUDGET_ENV, str(megabytes))
    model = tiny_model()
    pipe = SRPipeline(model, NoiseSchedule.named("cosine", SCHEDULE_T), device="cpu")
    pipe.canvas_budget()  # read now (once per pipeline), while the variable is set
    return pipe


def image(h: int = 64, w: int = 64) -> np.ndarray:
    return gradient_image(h, w, 0, slopes=(3, 3, 2), offset=30, noise=15)


@pytest.mark.parametrize("lr, hr", [((64, 64), (256, 256)), ((300, 200), (750, 500)), ((3000, 4000), (6000, 8000))])
@pytest.mark.parametrize("megabytes", [2, 8, 64, 4096])
def test_plan_respects_the_budget_and_covers_the_output(lr, hr, megabytes):
    per_pixel, budget = 320.0, megabytes << 20
    rows = plan_regions(lr, hr, budget, per_pixel, region_overlap(256), 32)
    regions = [r for row in rows for r in row]
    for r in regions:
        assert (r.y.hr1 - r.y.hr0) * (r.x.hr1 - r.x.hr0) * per_pixel <= budget
    # rows share their y span, columns their x span, and together they cover every pixel
    cover = np.zeros(hr, dtype=np.int32)
    for row in rows:
        assert len({(r.y.hr0, r.y.hr1) for r in row}) == 1
        for r in row:
            cover[r.y.hr0 : r.y.hr1, r.x.hr0 : r.x.hr1] += 1
    assert cover.min() >= 1 and cover.max() <= 4  # never three regions along an axis
    if hr[0] * hr[1] * per_pixel <= budget:
        assert len(regions) == 1
    else:
        assert len(regions) > 1


def test_plan_for_a_12_megapixel_photo_at_2x():
    """The shipped model (c=32, fp32) under the CPU default cap of 4 GiB: 48 MP in 3 x 3 regions."""
    from srcli.nets import ModelConfig

    per_pixel = canvas_bytes_per_pixel(ModelConfig())
    rows = plan_regions((3000, 4000), (6000, 8000), 4 << 30, per_pixel, region_overlap(512), 32)
    assert (len(rows), len(rows[0])) == (3, 3)
    r = rows[0][0]
    assert (r.y.hr1 - r.y.hr0) * (r.x.hr1 - r.x.hr0) * per_pixel <= 4 << 30


def test_blend_reproduces_a_position_only_function_exactly():
    """Regions that each return the global image's window must blend back to that image (places,
    Hann windows summing to one, the carried overlap between rows)."""
    h, w = 230, 310
    y, x = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    field = torch.stack([torch.sin(y / 9.0), torch.cos(x / 7.0), torch.sin((x + y) / 13.0)]) * 0.9
    rows = plan_regions((h, w), (h, w), 100 * 100 * 10, 10.0, 40, 32)
    assert len(rows) >= 3 and len(rows[0]) >= 3
    seen = []

    def sample(region):
        seen.append(region)
        return field[None, :, region.y.hr0 : region.y.hr1, region.x.hr0 : region.x.hr1]

    out = blend_regions(rows, (h, w), sample, np.uint16)
    assert len(seen) == sum(len(row) for row in rows)
    expected = np.rint((field.permute(1, 2, 0).numpy() + 1) * 65535 / 2).astype(np.int64)
    assert np.abs(out.astype(np.int64) - expected).max() <= 1


def test_canvas_budget_env_and_errors(monkeypatch):
    monkeypatch.setenv(CANVAS_BUDGET_ENV, "1.5")
    assert canvas_budget(torch.device("cpu")) == int(1.5 * (1 << 20))
    for bad in ("0", "-3", "lots", "nan", "inf"):
        monkeypatch.setenv(CANVAS_BUDGET_ENV, bad)
        with pytest.raises(UsageError):
            canvas_budget(torch.device("cpu"))
    monkeypatch.delenv(CANVAS_BUDGET_ENV)
    assert 0 < canvas_budget(torch.device("cpu")) <= 4 << 30


@pytest.fixture(scope="module")
def whole_and_split():
    """The same 4x upscale (64^2 -> 256^2, 64 px tiles) on one canvas and in 3 x 3 regions."""
    mp = pytest.MonkeyPatch()
    try:
        whole_pipe, split_pipe = make_pipe(mp, 4096), make_pipe(mp, 6)
    finally:
        mp.undo()
    kw = dict(scale=4, steps=8, seed=3, tile=64, output="numpy")
    return whole_pipe, split_pipe, kw


def test_split_plan_is_used_and_has_several_regions(whole_and_split):
    _, split_pipe, _ = whole_and_split
    per_pixel = canvas_bytes_per_pixel(split_pipe.config)
    rows = plan_regions((64, 64), (256, 256), split_pipe.canvas_budget(), per_pixel, region_overlap(64), 32)
    assert len(rows) * len(rows[0]) == 9


@pytest.mark.parametrize("scale, tile", [(4, 64), (2.5, 48)])
def test_regions_agree_with_the_whole_canvas(whole_and_split, scale, tile):
    """Regions share the noise and the U-Net grid with the whole canvas; only what the network sees
    near a region's border differs, and the cross-fade hides it.  Measured with the tiny random
    model (levels of 255): mean |diff| 0.040 at 4x (3 x 3 regions), 0.005 at 2.5x (2 x 2), max 1
    at both; two seeds differ by 30-38 levels on average."""
    whole_pipe, split_pipe, kw = whole_and_split
    kw = {**kw, "scale": scale, "tile": tile}
    img = image()
    size = round(64 * scale)
    per_pixel = canvas_bytes_per_pixel(split_pipe.config)
    assert len(plan_regions((64, 64), (size, size), split_pipe.canvas_budget(), per_pixel, region_overlap(tile), 32)) > 1
    whole = whole_pipe.upscale(img, **kw).astype(int)
    split = split_pipe.upscale(img, **kw).astype(int)
    other_seed = whole_pipe.upscale(img, **{**kw, "seed": 4}).astype(int)
    assert whole.shape == split.shape == (size, size, 3)
    diff = np.abs(split - whole)
    assert diff.mean() < 0.1 and diff.max() <= 2, (diff.mean(), diff.max())
    assert np.abs(other_seed - whole).mean() > 20 * max(diff.mean(), 0.1)


def test_regions_are_deterministic_and_count_progress(whole_and_split):
    _, split_pipe, kw = whole_and_split
    img = image(40, 56)
    seen = []
    a = split_pipe.upscale(img, **{**kw, "steps": 4}, callback=lambda d, t: seen.append((d, t)))
    b = split_pipe.upscale(img, **{**kw, "steps": 4})
    assert a.shape == (160, 224, 3) and np.array_equal(a, b)
    regions = len(seen) // 4
    assert regions > 1 and seen == [(k, 4 * regions) for k in range(1, 4 * regions + 1)]


def test_tile_zero_never_splits(whole_and_split):
    """--tile 0 asks for one network call over the whole image: the budget does not split it."""
    whole_pipe, split_pipe, kw = whole_and_split
    img = image(32, 32)
    a = split_pipe.upscale(img, **{**kw, "tile": 0, "steps": 3})
    b = whole_pipe.upscale(img, **{**kw, "tile": 0, "steps": 3})
    assert np.array_equal(a, b)


def test_cli_refuses_a_bad_canvas_budget_in_one_line(tmp_path, tiny_checkpoint):
    from PIL import Image
    from typer.testing import CliRunner

    from srcli.cli import app

    Image.fromarray(image(16, 16)).save(tmp_path / "a.png")
    result = CliRunner().invoke(
        app, ["upscale", str(tmp_path / "a.png"), "--scale", "2", "--weights", str(tiny_checkpoint)], env={CANVAS_BUDGET_ENV: "lots"}
    )
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and CANVAS_BUDGET_ENV in lines[0]
    assert not (tmp_path / "a_x2.png").exists()
