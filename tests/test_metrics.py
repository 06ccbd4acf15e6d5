"""The protocol's metrics on cases with known answers, and SSIM against an independent 2-D reference."""

from __future__ import annotations

import math

import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view
from PIL import Image

from conftest import gradient_image
from srcli.metrics import (
    border_for, degrade, diversity_sigma, lr_psnr, psnr, psnr_y, rgb_to_y, sigma_map, ssim, ssim_y,
)

Y_GAIN = (65.481 + 128.553 + 24.966) / 255.0  # change of Y for +1 on all of R, G and B


def textured(h: int = 48, w: int = 40, seed: int = 0, lo: int = 20, hi: int = 200) -> np.ndarray:
    return gradient_image(h, w, seed, slopes=(3, 3, 2), offset=(40, 30, 50), noise=12, lo=lo, hi=hi)


def ssim_reference(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM written out directly: a full 11x11 Gaussian window slid over every valid position."""
    x = np.arange(11) - 5.0
    g = np.exp(-(x**2) / (2 * 1.5**2))
    window = np.outer(g, g) / np.outer(g, g).sum()
    wa, wb = sliding_window_view(a.astype(np.float64), (11, 11)), sliding_window_view(b.astype(np.float64), (11, 11))
    mu_a, mu_b = (wa * window).sum((-1, -2)), (wb * window).sum((-1, -2))
    var_a = (wa**2 * window).sum((-1, -2)) - mu_a**2
    var_b = (wb**2 * window).sum((-1, -2)) - mu_b**2
    cov = (wa * wb * window).sum((-1, -2)) - mu_a * mu_b
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    m = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return float(m.mean())


def test_y_channel_is_bt601_studio_range():
    assert rgb_to_y(np.zeros((1, 1, 3), np.uint8))[0, 0] == pytest.approx(16.0)
    assert rgb_to_y(np.full((1, 1, 3), 255, np.uint8))[0, 0] == pytest.approx(235.0)
    assert rgb_to_y(np.array([[[255, 0, 0]]], np.uint8))[0, 0] == pytest.approx(16 + 65.481)


def test_identical_images():
    a = textured()
    assert psnr(a, a) == math.inf
    assert psnr_y(a, a, border=4) == math.inf
    assert ssim_y(a, a, border=4) == pytest.approx(1.0, abs=1e-12)
    assert lr_psnr(a, degrade(a, (10, 12))) == math.inf


@pytest.mark.parametrize("offset", [1, 3, 10])
def test_constant_offset_has_closed_form_psnr(offset):
    hr = textured()
    sr = hr + np.uint8(offset)  # no overflow: textured() stays within [20, 200]
    assert psnr(sr, hr) == pytest.approx(20 * math.log10(255 / offset), abs=1e-9)
    expected_y = 20 * math.log10(255 / (offset * Y_GAIN))
    assert psnr_y(sr, hr) == pytest.approx(expected_y, abs=1e-9)
    assert psnr_y(sr, hr, border=4) == pytest.approx(expected_y, abs=1e-9)


def test_lr_psnr_of_a_constant_offset():
    sr = np.full((32, 24, 3), 100, np.uint8)
    lr = np.full((8, 6, 3), 90, np.uint8)
    assert lr_psnr(sr, lr) == pytest.approx(20 * math.log10(255 / 10), abs=1e-9)


def test_border_crops_before_measuring():
    hr = textured()
    sr = hr.copy()
    sr[:3] = 0  # damage only inside a 3px border
    assert psnr_y(sr, hr, border=3) == math.inf
    assert psnr_y(sr, hr, border=2) < 40
    assert border_for(4) == 4 and border_for(2.5) == 3 and border_for(8.0) == 8


def test_ssim_of_constant_images_has_closed_form():
    a, b = np.full((20, 20), 100.0), np.full((20, 20), 140.0)
    c1 = (0.01 * 255) ** 2
    assert ssim(a, b) == pytest.approx((2 * 100 * 140 + c1) / (100**2 + 140**2 + c1), abs=1e-12)


def test_ssim_matches_reference_symmetric_and_below_one_for_noise():
    rng = np.random.default_rng(1)
    hr = textured(seed=2)
    noisy = np.clip(hr + rng.normal(0, 15, hr.shape), 0, 255).astype(np.uint8)
    ya, yb = rgb_to_y(hr), rgb_to_y(noisy)
    value = ssim(ya, yb)
    assert value == pytest.approx(ssim_reference(ya, yb), abs=1e-10)
    assert value == pytest.approx(ssim(yb, ya), abs=1e-12)
    assert 0 < value < 1
    assert ssim_y(noisy, hr, border=4) == pytest.approx(ssim_reference(ya[4:-4, 4:-4], yb[4:-4, 4:-4]), abs=1e-10)


def test_degrade_is_pillow_bicubic():
    hr = textured()
    expected = np.asarray(Image.fromarray(hr).resize((10, 12), Image.BICUBIC))
    np.testing.assert_array_equal(degrade(hr, (10, 12)), expected)


def test_sigma():
    a = textured()
    assert diversity_sigma([a, a, a]) == 0.0
    assert diversity_sigma([a]) == 0.0
    # two samples differing by 2 everywhere: population std 1 at every pixel
    assert diversity_sigma([a, a + np.uint8(2)]) == pytest.approx(1.0)
    np.testing.assert_allclose(sigma_map([a, a + np.uint8(2)]), np.ones(a.shape[:2]))


def test_bad_inputs_raise():
    a = textured()
    with pytest.raises(ValueError, match="shape"):
        psnr_y(a, a[:-1])
    with pytest.raises(ValueError, match="border"):
        psnr_y(a, a, border=30)
    with pytest.raises(ValueError, match="11x11"):
        ssim_y(a[:14, :14], a[:14, :14], border=2)
    with pytest.raises(ValueError, match="uint8"):
        degrade(a.astype(np.float32), (4, 4))
