"""The image border: smooth ramps upscaled by the shipped model stay as close to bicubic at the
edges as inside (the U-Net runs with a mirrored margin, ``unet.DEFAULT_UNET_MARGIN``)."""

from __future__ import annotations

import numpy as np
import pytest

from srcli.ops import array_to_tensor, resize, tensor_to_array
from srcli.pipeline import SRPipeline

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def shipped():
    return SRPipeline.from_pretrained(device="cpu")


def ramp(n: int, axis: int) -> np.ndarray:
    """An (n, n, 3) grey ramp from 40 to 200 along ``axis`` (0: top to bottom, 1: left to right)."""
    values = 40 + 160 * np.arange(n) / (n - 1)
    grid = np.broadcast_to(values[:, None] if axis == 0 else values[None, :], (n, n))
    return np.repeat(grid[..., None], 3, 2).round().astype(np.uint8)


def border_error(pipe: SRPipeline, lr: np.ndarray, scale: float) -> float:
    """The largest difference from bicubic on the outermost rows and columns of the output."""
    sr = np.asarray(pipe.upscale(lr, scale=scale, steps=10, seed=0, tile=0)).astype(int)
    bicubic = tensor_to_array(resize(array_to_tensor(lr), sr.shape[:2])).astype(int)
    diff = np.abs(sr - bicubic).max(axis=2)
    return float(max(diff[0].max(), diff[-1].max(), diff[:, 0].max(), diff[:, -1].max()))


@pytest.mark.parametrize("scale", [2, 3, 4])
@pytest.mark.parametrize("axis", [0, 1])
def test_ramp_borders_stay_within_8_levels_of_bicubic(shipped, scale, axis):
    assert border_error(shipped, ramp(64, axis), scale) <= 8


def test_without_the_margin_the_border_breaks(shipped):
    """The check above can fail: the network run on the bare image leaves noise on the last row."""
    shipped.unet_margin = 0
    try:
        assert border_error(shipped, ramp(64, 1), 4) > 16
    finally:
        shipped.unet_margin = SRPipeline.from_pretrained(device="cpu").unet_margin
