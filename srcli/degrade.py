"""Real-world degradation: the second-order model of Real-ESRGAN (Wang et al., 2021), written here.

A clean HR image becomes a plausible "photo you were sent": blurred, resized, noisy, JPEG-compressed,
and all of that twice, the second time milder, then brought to the LR size with a last JPEG and an
optional sinc (ringing) filter in random order.  The operators are plain functions of an image and
their parameters; :func:`degrade_real` draws every parameter (and every noise value) from one
``numpy.random.Generator``, so a seed fixes the whole degradation.  ``docs/degradation.md`` lists the
ranges and says where they come from.

Images are float32 arrays (H, W, 3) in [0, 1] inside the pipeline; the entry point takes and returns
(H, W, 3) uint8 like :func:`srcli.metrics.degrade`, with sizes given as (W, H).
"""

from __future__ import annotations

import contextlib
import io
import math
from dataclasses import dataclass, field
from typing import Iterator, Optional

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .metrics import degrade

KERNEL_TYPES = ("iso", "aniso", "generalized_iso", "generalized_aniso", "plateau_iso", "plateau_aniso")
RESIZE_MODES = ("area", "bilinear", "bicubic")


# -- kernels ----------------------------------------------------------------------------------------
def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    r = np.arange(size, dtype=np.float64) - (size - 1) / 2
    return np.meshgrid(r, r, indexing="xy")  # (x, y), each (size, size)


def _quadratic_form(size: int, sigma_x: float, sigma_y: float, theta: float) -> np.ndarray:
    """x^T Sigma^-1 x on the kernel grid, Sigma = R diag(sigma_x^2, sigma_y^2) R^T (R: rotation by theta)."""
    x, y = _grid(size)
    c, s = math.cos(theta), math.sin(theta)
    u = c * x + s * y  # coordinates in the rotated frame
    v = -s * x + c * y
    return (u / sigma_x) ** 2 + (v / sigma_y) ** 2


def _normalized(k: np.ndarray) -> np.ndarray:
    return (k / k.sum()).astype(np.float32)


def gaussian_kernel(size: int, sigma_x: float, sigma_y: float | None = None, theta: float = 0.0) -> np.ndarray:
    """Isotropic (sigma_y None) or anisotropic Gaussian blur kernel, summing to 1."""
    q = _quadratic_form(size, sigma_x, sigma_x if sigma_y is None else sigma_y, theta)
    return _normalized(np.exp(-0.5 * q))


def generalized_gaussian_kernel(
    size: int, sigma_x: float, sigma_y: float | None = None, theta: float = 0.0, beta: float = 1.0
) -> np.ndarray:
    """exp(-0.5 q^beta) with q = x^T Sigma^-1 x: beta < 1 gives heavier tails, beta > 1 a flatter top;
    beta 1 is the Gaussian."""
    q = _quadratic_form(size, sigma_x, sigma_x if sigma_y is None else sigma_y, theta)
    return _normalized(np.exp(-0.5 * q**beta))


def plateau_kernel(size: int, sigma_x: float, sigma_y: float | None = None, theta: float = 0.0, beta: float = 1.0) -> np.ndarray:
    """1 / (1 + q^beta): flat-topped with heavy tails."""
    q = _quadratic_form(size, sigma_x, sigma_x if sigma_y is None else sigma_y, theta)
    return _normalized(1.0 / (1.0 + q**beta))


def sinc_kernel(size: int, cutoff: float) -> np.ndarray:
    """The ideal circular low-pass filter with cutoff ``cutoff`` (radians per pixel), truncated to
    ``size``: k(r) = cutoff * J1(cutoff r) / (2 pi r), k(0) = cutoff^2 / (4 pi).  Makes ringing and
    overshoot like those of sharpened or band-limited photos."""
    x, y = _grid(size)
    r = np.hypot(x, y)
    safe_r = np.where(r == 0, 1.0, r)  # the centre takes the limit below
    k = cutoff * torch.special.bessel_j1(torch.from_numpy(cutoff * safe_r)).numpy() / (2 * math.pi * safe_r)
    k[r == 0] = cutoff**2 / (4 * math.pi)
    return _normalized(k)


# -- operators ------------------------------------------------------------------------------------
def _to_tensor(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(img, dtype=np.float32)).permute(2, 0, 1).unsqueeze(0)


def _to_array(x: torch.Tensor) -> np.ndarray:
    return x[0].permute(1, 2, 0).numpy()


def blur(img: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Convolve every channel with ``kernel`` (odd size), reflecting at the borders."""
    pad = kernel.shape[0] // 2
    x = _to_tensor(img)
    mode = "reflect" if pad < min(x.shape[-2:]) else "replicate"
    x = F.pad(x, (pad, pad, pad, pad), mode=mode)
    w = torch.from_numpy(np.ascontiguousarray(kernel[::-1, ::-1])).expand(3, 1, *kernel.shape)  # true convolution
    return _to_array(F.conv2d(x, w.contiguous(), groups=3))


def resize_to(img: np.ndarray, size: tuple[int, int], mode: str) -> np.ndarray:
    """Resize to ``size`` = (W, H) with PyTorch's area, bilinear or bicubic (no antialiasing, as in
    Real-ESRGAN: downscaling with bilinear/bicubic aliases, part of the degradation)."""
    if mode not in RESIZE_MODES:
        raise ValueError(f"resize mode {mode!r}: expected one of {RESIZE_MODES}")
    w, h = size
    if (h, w) == img.shape[:2]:
        return img
    kwargs = {} if mode == "area" else {"align_corners": False}
    return _to_array(F.interpolate(_to_tensor(img), size=(h, w), mode=mode, **kwargs))


def gaussian_noise(img: np.ndarray, sigma: float, gray: bool, rng: np.random.Generator) -> np.ndarray:
    """Add N(0, (sigma/255)^2) noise; ``gray`` puts the same value in every channel (luminance noise)."""
    shape = img.shape[:2] + ((1,) if gray else (3,))
    return img + rng.standard_normal(shape).astype(np.float32) * np.float32(sigma / 255.0)


def poisson_noise(img: np.ndarray, scale: float, gray: bool, rng: np.random.Generator) -> np.ndarray:
    """Shot noise: Poisson(255 x) / 255 - x, times ``scale``; ``gray`` draws it on the luma only."""
    clean = np.clip(img, 0, 1)
    if gray:
        clean = (clean @ np.array([0.299, 0.587, 0.114], dtype=np.float32))[..., None]
    counts = clean * 255.0
    noise = (rng.poisson(counts).astype(np.float32) - counts) / 255.0
    return img + noise * np.float32(scale)


def to_uint8(img: np.ndarray) -> np.ndarray:
    return np.clip(np.round(img * 255.0), 0, 255).astype(np.uint8)


def jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    """Round-trip through Pillow's JPEG encoder at ``quality`` (4:2:0 chroma subsampling, Pillow's default)."""
    buf = io.BytesIO()
    Image.fromarray(to_uint8(img)).save(buf, format="JPEG", quality=int(quality))
    buf.seek(0)
    with Image.open(buf) as im:
        return np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0


# -- the random pipeline --------------------------------------------------------------------------
@dataclass(frozen=True)
class StageRanges:
    """The parameter ranges of one order of the model."""

    blur_prob: float
    sigma: tuple[float, float]
    resize_probs: tuple[float, float, float]  # up, down, keep
    resize_up: tuple[float, float]
    resize_down: tuple[float, float]
    gaussian_noise_prob: float
    noise_sigma: tuple[float, float]
    poisson_scale: tuple[float, float]
    gray_noise_prob: float
    jpeg_quality: tuple[int, int]
    sinc_prob: float = 0.1
    kernel_sizes: tuple[int, int] = (7, 21)
    kernel_probs: tuple[float, ...] = (0.45, 0.25, 0.12, 0.03, 0.12, 0.03)  # KERNEL_TYPES' odds
    generalized_beta: tuple[float, float] = (0.5, 4.0)
    plateau_beta: tuple[float, float] = (1.0, 2.0)


@dataclass(frozen=True)
class RealDegradation:
    """Real-ESRGAN's published settings: a first order, a milder second, a final sinc with p 0.8."""

    first: StageRanges = field(default_factory=lambda: StageRanges(
        blur_prob=1.0, sigma=(0.2, 3.0), resize_probs=(0.2, 0.7, 0.1), resize_up=(1.0, 1.5),
        resize_down=(0.15, 1.0), gaussian_noise_prob=0.5, noise_sigma=(1.0, 30.0), poisson_scale=(0.05, 3.0),
        gray_noise_prob=0.4, jpeg_quality=(30, 95)))
    second: StageRanges = field(default_factory=lambda: StageRanges(
        blur_prob=0.8, sigma=(0.2, 1.5), resize_probs=(0.3, 0.4, 0.3), resize_up=(1.0, 1.2),
        resize_down=(0.3, 1.0), gaussian_noise_prob=0.5, noise_sigma=(1.0, 25.0), poisson_scale=(0.05, 2.5),
        gray_noise_prob=0.4, jpeg_quality=(30, 95)))
    final_sinc_prob: float = 0.8


def random_kernel(r: StageRanges, rng: np.random.Generator) -> np.ndarray:
    """One blur kernel: with ``sinc_prob`` a sinc, else one of the six Gaussian-family shapes."""
    lo, hi = r.kernel_sizes
    size = int(rng.choice(np.arange(lo, hi + 1, 2)))
    if rng.random() < r.sinc_prob:
        cutoff = rng.uniform(math.pi / 3, math.pi) if size < 13 else rng.uniform(math.pi / 5, math.pi)
        return sinc_kernel(size, cutoff)
    kind = KERNEL_TYPES[int(rng.choice(len(KERNEL_TYPES), p=np.asarray(r.kernel_probs) / sum(r.kernel_probs)))]
    sx = rng.uniform(*r.sigma)
    sy, theta = (rng.uniform(*r.sigma), rng.uniform(-math.pi, math.pi)) if kind.endswith("aniso") else (sx, 0.0)
    if kind.startswith("generalized"):
        return generalized_gaussian_kernel(size, sx, sy, theta, rng.uniform(*r.generalized_beta))
    if kind.startswith("plateau"):
        return plateau_kernel(size, sx, sy, theta, rng.uniform(*r.plateau_beta))
    return gaussian_kernel(size, sx, sy, theta)


def _random_noise(img: np.ndarray, r: StageRanges, rng: np.random.Generator) -> np.ndarray:
    gray = rng.random() < r.gray_noise_prob
    if rng.random() < r.gaussian_noise_prob:
        return gaussian_noise(img, rng.uniform(*r.noise_sigma), gray, rng)
    return poisson_noise(img, rng.uniform(*r.poisson_scale), gray, rng)


def make_lr(hr: np.ndarray, lr_size: tuple[int, int], degradation: str, rng: Optional[np.random.Generator] = None) -> np.ndarray:
    """The LR input of an HR image by name: "bicubic" (the clean protocol, ``metrics.degrade``) or
    "real" (``degrade_real``, drawing from ``rng``).  The one dispatch training, validation and
    ``srcli eval`` share."""
    if degradation == "real":
        return degrade_real(hr, lr_size, rng)
    return degrade(hr, lr_size)


def _blur_resize_noise(img: np.ndarray, r: StageRanges, rng: np.random.Generator, base: tuple[int, int]) -> np.ndarray:
    """One order's blur, random resize (a factor of ``base`` = (W, H)) and noise."""
    if rng.random() < r.blur_prob:
        img = blur(img, random_kernel(r, rng))
    kind = int(rng.choice(3, p=np.asarray(r.resize_probs)))
    factor = rng.uniform(*r.resize_up) if kind == 0 else rng.uniform(*r.resize_down) if kind == 1 else 1.0
    mode = RESIZE_MODES[int(rng.integers(3))]
    img = resize_to(img, (max(2, int(base[0] * factor)), max(2, int(base[1] * factor))), mode)
    return np.clip(_random_noise(img, r, rng), 0, 1)


def _quality(r: StageRanges, rng: np.random.Generator) -> int:
    return int(rng.integers(r.jpeg_quality[0], r.jpeg_quality[1] + 1))


def degrade_real(
    hr: np.ndarray, lr_size: tuple[int, int], rng: np.random.Generator, model: RealDegradation = RealDegradation()
) -> np.ndarray:
    """Degrade an (H, W, 3) uint8 HR image to ``lr_size`` = (W, H) with the second-order model; every
    random choice comes from ``rng``.  Returns (H', W', 3) uint8.

    First order: blur, resize by a factor of the HR size, noise, JPEG.  Second order: blur, resize by
    a factor of the LR size, noise, then (resize to the LR size + sinc) and JPEG in random order.
    """
    if hr.dtype != np.uint8 or hr.ndim != 3 or hr.shape[2] != 3:
        raise ValueError("degrade_real() takes an (H, W, 3) uint8 RGB array")
    with _one_thread():
        return _degrade_real(hr, tuple(lr_size), rng, model)


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    """Run the small tensor ops single-threaded: on a patch they take microseconds, and beside a
    training step that holds every core, a thread pool turns them into tens of milliseconds."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _degrade_real(hr: np.ndarray, lr_size: tuple[int, int], rng: np.random.Generator, model: RealDegradation) -> np.ndarray:
    img = hr.astype(np.float32) / 255.0
    img = _blur_resize_noise(img, model.first, rng, (hr.shape[1], hr.shape[0]))
    img = jpeg(img, _quality(model.first, rng))
    img = _blur_resize_noise(img, model.second, rng, lr_size)
    mode = RESIZE_MODES[int(rng.integers(3))]
    sinc = None
    if rng.random() < model.final_sinc_prob:
        sinc = sinc_kernel(int(rng.choice(np.arange(7, 22, 2))), rng.uniform(math.pi / 3, math.pi))
    quality = _quality(model.second, rng)
    if rng.random() < 0.5:  # resize + sinc, then JPEG
        img = resize_to(img, lr_size, mode)
        img = jpeg(np.clip(blur(img, sinc) if sinc is not None else img, 0, 1), quality)
    else:  # JPEG, then resize + sinc
        img = resize_to(jpeg(img, quality), lr_size, mode)
        img = blur(img, sinc) if sinc is not None else img
    return to_uint8(img)
