"""The resampling operators against independent references: ``resize`` against Pillow's float
path, ``matlab_resize`` against values worked out by hand, and back-projection's fixed point."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from srcli.engine import back_project
from srcli.ops import matlab_resize, resize


def pillow_float_resize(channel: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Pillow's bicubic on a 32-bit float image (mode F): no 8-bit rounding anywhere."""
    return np.asarray(Image.fromarray(channel.astype(np.float32), mode="F").resize((size[1], size[0]), Image.BICUBIC))


@pytest.mark.parametrize("size_in, size_out", [((24, 30), (72, 90)), ((40, 36), (13, 17)), ((17, 23), (40, 31))])
def test_resize_is_pillows_bicubic(size_in, size_out):
    """Up, down (antialiased) and mixed: the engine's resize equals Pillow's float bicubic."""
    x = torch.rand(1, 3, *size_in, generator=torch.Generator().manual_seed(0)) * 2 - 1
    ours = resize(x, size_out)[0].numpy()
    for c in range(3):
        np.testing.assert_allclose(ours[c], pillow_float_resize(x[0, c].numpy(), size_out), atol=2e-5)
    bilinear = np.asarray(Image.fromarray(x[0, 0].numpy(), mode="F").resize(size_out[::-1], Image.BILINEAR))
    assert np.abs(ours[0] - bilinear).max() > 1e-2  # the kernel matters: the comparison is not vacuous


def test_matlab_resize_of_a_ramp():
    """imresize(0:7, 2) bicubic: pixel j (1-based) reads u = j/2 + 1/4, so the interior is the ramp
    itself, u - 1; the first pixel mirrors the edge: taps at 0-based -3..2 read 2 1 0 0 1 2 with
    weights 0, -0.0234375, 0.2265625, 0.8671875, -0.0703125, 0 -> -0.09375 (not the -0.25 of
    extending the ramp)."""
    ramp = torch.arange(8, dtype=torch.float64).reshape(1, 1, 1, 8).expand(1, 1, 4, 8)
    out = matlab_resize(ramp, (8, 16))[0, 0, 0].numpy()
    expected_interior = np.arange(1, 17) / 2 + 0.25 - 1
    np.testing.assert_allclose(out[3:-3], expected_interior[3:-3], atol=1e-12)  # taps inside the image
    assert out[0] == pytest.approx(-0.09375, abs=1e-12)
    assert out[-1] == pytest.approx(7 + 0.09375, abs=1e-12)  # the mirror image at the other end


def test_matlab_resize_shrinks_with_a_widened_kernel():
    """Halving a 2-periodic pattern averages it out (antialiasing); without the widened kernel
    the result would alternate."""
    stripes = torch.tensor([0.0, 1.0] * 8, dtype=torch.float64).reshape(1, 1, 1, 16).expand(1, 1, 2, 16)
    half = matlab_resize(stripes, (2, 8))[0, 0, 0].numpy()
    assert np.ptp(half[2:-2]) < 1e-12 and half[3] == pytest.approx(0.5, abs=1e-12)


def test_back_projection_output_downscales_to_its_input():
    gen = torch.Generator().manual_seed(3)
    x_lr = torch.rand(1, 3, 12, 10, generator=gen) * 1.2 - 0.6
    x_sr = (resize(x_lr, (48, 40)) + 0.3 * torch.randn(1, 3, 48, 40, generator=gen)).clamp(-1, 1)
    before = float((resize(x_sr, (12, 10)) - x_lr).abs().max())
    after = float((resize(back_project(x_sr, x_lr, 30), (12, 10)) - x_lr).abs().max())
    assert before > 0.05 and after < 2e-3
    # and it leaves the detail above the LR band in place: the SR images stay different
    assert float((back_project(x_sr, x_lr, 30) - resize(x_lr, (48, 40))).abs().mean()) > 0.05
