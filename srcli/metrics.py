"""The SR literature's quality metrics, in one place (docs/protocol.md, "Metrics").

All functions take uint8 RGB arrays (H, W, 3) as written to disk, so numbers match what a user
measures on the files: PSNR and SSIM on the BT.601 Y channel (float, not rounded to 8 bits) with
``border`` pixels cropped at each side (``border_for(scale)`` = ceil(scale)), SSIM with an 11x11
Gaussian window (sigma 1.5) over the valid region, LR-PSNR in RGB against the input, and the
diversity sigma (mean per-pixel standard deviation across samples, 0-255, population std).
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from PIL import Image


Y_RANGE = 219.0  # BT.601 luma spans 16-235: a step of 255 levels in RGB is 219 in Y


def rgb_to_y(rgb: np.ndarray) -> np.ndarray:
    """ITU-R BT.601 luma, 16-235, float64."""
    rgb = rgb.astype(np.float64)
    return 16.0 + (65.481 * rgb[..., 0] + 128.553 * rgb[..., 1] + 24.966 * rgb[..., 2]) / 255.0


def border_for(scale: float) -> int:
    """Pixels cropped at each side before PSNR/SSIM: ceil(scale) (the protocol's ``scale`` pixels)."""
    return math.ceil(scale)


def _crop(a: np.ndarray, border: int) -> np.ndarray:
    if border < 0:
        raise ValueError(f"border must be >= 0, got {border}")
    if 2 * border >= min(a.shape[:2]):
        raise ValueError(f"a border of {border}px leaves nothing of a {a.shape[1]}x{a.shape[0]} image")
    return a[border:-border, border:-border] if border > 0 else a


def _check_pair(a: np.ndarray, b: np.ndarray) -> None:
    if a.shape != b.shape:
        raise ValueError(f"images differ in shape: {a.shape} vs {b.shape}")


def psnr(a: np.ndarray, b: np.ndarray, peak: float = 255.0) -> float:
    """PSNR of two arrays on a 0-``peak`` scale; inf when identical."""
    _check_pair(a, b)
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10.0 * np.log10(peak**2 / mse)


def psnr_y(sr: np.ndarray, hr: np.ndarray, border: int = 0) -> float:
    """PSNR on the BT.601 Y channel (0-255 scale) with ``border`` pixels cropped at each side."""
    _check_pair(sr, hr)
    return psnr(_crop(rgb_to_y(sr), border), _crop(rgb_to_y(hr), border))


def _gaussian_window(size: int = 11, sigma: float = 1.5) -> np.ndarray:
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2
    g = np.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


def _filter_valid(img: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Separable 'valid' correlation with the 1-D window g along both axes."""
    k = len(g)
    rows = sum(g[i] * img[i : img.shape[0] - k + 1 + i, :] for i in range(k))
    return sum(g[i] * rows[:, i : rows.shape[1] - k + 1 + i] for i in range(k))


def ssim(a: np.ndarray, b: np.ndarray, peak: float = 255.0) -> float:
    """SSIM of two single-channel arrays (Wang et al. 2004, Gaussian 11x11, sigma 1.5, valid region)."""
    _check_pair(a, b)
    a = a.astype(np.float64)
    b = b.astype(np.float64)
    if min(a.shape) < 11:
        raise ValueError("SSIM needs images of at least 11x11 pixels after the border crop")
    c1, c2 = (0.01 * peak) ** 2, (0.03 * peak) ** 2
    g = _gaussian_window()
    mu_a, mu_b = _filter_valid(a, g), _filter_valid(b, g)
    var_a = _filter_valid(a * a, g) - mu_a**2
    var_b = _filter_valid(b * b, g) - mu_b**2
    cov = _filter_valid(a * b, g) - mu_a * mu_b
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return float(s.mean())


def ssim_y(sr: np.ndarray, hr: np.ndarray, border: int = 0) -> float:
    """SSIM on the BT.601 Y channel with ``border`` pixels cropped at each side."""
    _check_pair(sr, hr)
    return ssim(_crop(rgb_to_y(sr), border), _crop(rgb_to_y(hr), border))


def degrade(hr: np.ndarray, lr_size: tuple[int, int]) -> np.ndarray:
    """The degradation of the protocol: Pillow bicubic (antialiased) on 8-bit RGB; size is (W, H)."""
    if hr.dtype != np.uint8 or hr.ndim != 3 or hr.shape[2] != 3:
        raise ValueError("degrade() takes an (H, W, 3) uint8 RGB array")
    return np.asarray(Image.fromarray(hr).resize(tuple(lr_size), Image.BICUBIC))


def lr_psnr(sr: np.ndarray, lr: np.ndarray) -> float:
    """Consistency with the input: PSNR (RGB, 0-255) between LR and the SR output downsampled by
    the protocol's operator to the LR size."""
    return psnr(degrade(sr, (lr.shape[1], lr.shape[0])), lr)


JPEG_BLOCK = 8


def block_edge_steps(n_pixels: int, scale: float, block: int = JPEG_BLOCK, offset: int = 0) -> list[int]:
    """The one-pixel steps of an output axis of ``n_pixels`` that straddle the LR's JPEG block edges
    (the LR's multiples of ``block`` px, shifted by ``offset`` px for a grid that does not start at
    the top-left, times ``scale``): indices i of the steps between pixels i and i + 1, in order.
    ``block_grid`` reads these steps; the block-edge training loss matches them."""
    n_lr = n_pixels / scale
    edges = (offset % block + k * block for k in range(int(n_lr // block) + 2))
    steps = sorted({round(e * scale) - 1 for e in edges if 0 < e < n_lr + 1e-9})
    return [i for i in steps if 0 <= i < n_pixels - 1]


def block_grid(sr: np.ndarray, scale: float, block: int = JPEG_BLOCK) -> float:
    """How visible the LR's JPEG block grid is in an output: the mean |gradient| of Y across the
    grid lines (the LR's multiples of ``block`` px, times ``scale``) over the mean |gradient|
    elsewhere, horizontal and vertical steps pooled.  1.0: no grid; a blocky JPEG enlarged with
    bicubic scores about 1.4."""
    y = rgb_to_y(sr)
    on, off = [], []
    for axis in (1, 0):  # vertical grid lines (steps along x), then horizontal ones
        grad = np.abs(np.diff(y, axis=axis))
        mask = np.zeros(grad.shape[axis], dtype=bool)  # step i lies between pixels i and i + 1
        mask[block_edge_steps(y.shape[axis], scale, block)] = True
        on.append(np.compress(mask, grad, axis=axis).ravel())
        off.append(np.compress(~mask, grad, axis=axis).ravel())
    on_mean, off_mean = np.concatenate(on).mean() if sum(map(len, on)) else 0.0, np.concatenate(off).mean()
    return float(on_mean / off_mean) if off_mean > 0 else 1.0


def block_grid_at_input_scale(sr: np.ndarray, scale: float, block: int = JPEG_BLOCK) -> float:
    """``block_grid`` read at the scale of the input: the mean |Y difference| between the output
    pixels at the centres of neighbouring LR pixels across the LR's ``block``-px edges, over the
    same elsewhere.  A filter that flattens only the one output step on each grid line cannot move
    it; a block offset drawn as a band a few pixels wide shows in it.  1.0: no grid."""
    y = rgb_to_y(sr)
    on, off = [], []
    for axis in (1, 0):
        n = y.shape[axis]
        n_lr = max(1, int(round(n / scale)))
        centres = np.clip(np.round((np.arange(n_lr) + 0.5) * scale - 0.5).astype(int), 0, n - 1)
        steps = np.abs(np.diff(np.take(y, centres, axis=axis), axis=axis))
        edge = np.arange(1, n_lr) % block == 0  # step j - 1 -> j with j a multiple of block
        on.append(np.compress(edge, steps, axis=axis).ravel())
        off.append(np.compress(~edge, steps, axis=axis).ravel())
    on_all, off_all = np.concatenate(on), np.concatenate(off)
    if on_all.size == 0 or off_all.size == 0 or off_all.mean() == 0:
        return 1.0
    return float(on_all.mean() / off_all.mean())


def diversity_sigma(samples: Sequence[np.ndarray]) -> float:
    """Mean over pixels and channels of the per-pixel standard deviation (0-255) across samples
    (population std, ddof=0); 0 for fewer than two samples."""
    if len(samples) < 2:
        return 0.0
    stack = np.stack([s.astype(np.float64) for s in samples])
    return float(stack.std(axis=0).mean())


def sigma_map(samples: Sequence[np.ndarray]) -> np.ndarray:
    """Per-pixel standard deviation across samples, averaged over RGB: (H, W) float64."""
    stack = np.stack([s.astype(np.float64) for s in samples])
    return stack.std(axis=0).mean(axis=-1)
