"""The evaluation report: scores of one method on one image, their means over images, JSON form."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Optional, Sequence

import numpy as np

from .metrics import block_grid, border_for, diversity_sigma, lr_psnr, psnr_y, ssim_y


@dataclass
class Scores:
    """One method on one image (or averaged over images).  With several samples PSNR, SSIM and
    LR-PSNR are means over the samples, ``sigma`` their diversity and ``seconds`` the time per sample."""

    psnr_y: float
    ssim_y: float
    lr_psnr: float
    seconds: float
    sigma: Optional[float] = None
    block_grid: Optional[float] = None  # JPEG grid visibility (metrics.block_grid), degraded protocol only


@dataclass
class ImageResult:
    name: str
    hr_size: tuple[int, int]  # (W, H) of the cropped HR image
    lr_size: tuple[int, int]  # (W, H)
    scores: dict[str, Scores] = field(default_factory=dict)


@dataclass
class EvalReport:
    settings: dict[str, Any]
    images: list[ImageResult] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (name, reason)
    # why the --save-dir outputs stopped being written (a full disk, say); the scores are complete
    save_error: Optional[str] = None

    @property
    def methods(self) -> list[str]:
        seen: dict[str, None] = {}
        for image in self.images:
            seen.update(dict.fromkeys(image.scores))
        return list(seen)

    def mean(self) -> dict[str, Scores]:
        """Per-method means over images (PSNR averaged in dB, as the SR literature reports it)."""
        out = {}
        for method in self.methods:
            rows = [im.scores[method] for im in self.images if method in im.scores]
            sigmas = [r.sigma for r in rows if r.sigma is not None]
            out[method] = Scores(
                psnr_y=float(np.mean([r.psnr_y for r in rows])),
                ssim_y=float(np.mean([r.ssim_y for r in rows])),
                lr_psnr=pooled_psnr([r.lr_psnr for r in rows]),
                seconds=float(np.mean([r.seconds for r in rows])),
                sigma=float(np.mean(sigmas)) if sigmas else None,
                block_grid=_mean_or_none([r.block_grid for r in rows]),
            )
        return out

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data; an infinite PSNR (identical images) becomes null."""
        return _finite(
            {
                "settings": self.settings,
                "methods": self.methods,
                "images": [asdict(im) for im in self.images],
                "mean": {m: asdict(s) for m, s in self.mean().items()},
                "failed": [{"name": n, "error": e} for n, e in self.failed],
                "save_error": self.save_error,
            }
        )


def _mean_or_none(values: Sequence[Optional[float]]) -> Optional[float]:
    present = [v for v in values if v is not None]
    return float(np.mean(present)) if present else None


def pooled_psnr(values: Sequence[float]) -> float:
    """The PSNR of the mean squared error over images: a mean in dB would be infinite as soon as one
    output downscales exactly to its input (LR-PSNR inf), which hides the others."""
    mse = float(np.mean([10.0 ** (-v / 10.0) for v in values]))  # relative to peak^2; inf -> 0
    return float("inf") if mse == 0 else -10.0 * math.log10(mse)


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def score(sr: np.ndarray, hr: np.ndarray, lr: np.ndarray, scale: float, seconds: float, grid: bool = False) -> Scores:
    """PSNR/SSIM-Y against the HR, LR-PSNR against the input; with ``grid`` the JPEG block-grid measure."""
    border = border_for(scale)
    return Scores(psnr_y(sr, hr, border), ssim_y(sr, hr, border), lr_psnr(sr, lr), seconds,
                  block_grid=block_grid(sr, scale) if grid else None)


def score_samples(
    samples: Sequence[np.ndarray], hr: np.ndarray, lr: np.ndarray, scale: float, seconds: float, grid: bool = False
) -> Scores:
    """Mean scores over the samples of one input, plus sigma when there are several."""
    each = [score(s, hr, lr, scale, seconds, grid) for s in samples]
    return Scores(
        psnr_y=float(np.mean([e.psnr_y for e in each])),
        ssim_y=float(np.mean([e.ssim_y for e in each])),
        lr_psnr=float(np.mean([e.lr_psnr for e in each])),
        seconds=seconds,
        sigma=diversity_sigma(samples) if len(samples) > 1 else None,
        block_grid=_mean_or_none([e.block_grid for e in each]),
    )
