"""Validation during training: the shipped model scored on the --val images with the project's
evaluation protocol (``srcli.evaluate``: the same crops, degradation and metrics as ``srcli eval``)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..diffusion import NoiseSchedule
from ..evaluate import SRCLI, evaluate_images
from ..nets import SRDiffModel
from ..pipeline import SRPipeline
from .config import TrainConfig


def validate(
    model: SRDiffModel,
    schedule: NoiseSchedule,
    info: dict[str, Any],
    images: list[tuple[str, np.ndarray]],
    cfg: TrainConfig,
    device: torch.device,
    sample: bool,
) -> dict[str, dict[str, float]]:
    """Mean Y-PSNR/SSIM and LR-PSNR of bicubic, of the encoder and (with ``sample``, once the noise
    predictor has trained) of srcli's samples at ``cfg.val_scale`` with ``cfg.val_steps`` steps.
    ``model`` is consumed (moved to ``device``)."""
    pipe = SRPipeline(model, schedule, info, device=device, precision="fp32")
    # before stage 2 the sampler's output means nothing: one step, not reported
    report = evaluate_images(
        images, pipe, scale=cfg.val_scale, steps=cfg.val_steps if sample else 1,
        baselines=("bicubic", "encoder"), degradation=cfg.degradation,
    )
    names = {"bicubic": "bicubic", "encoder": "encoder", SRCLI: "diffusion"}
    result = {}
    for method, s in report.mean().items():
        if method == SRCLI and not sample:
            continue
        result[names.get(method, method)] = {
            "psnr_y": round(s.psnr_y, 3), "ssim_y": round(s.ssim_y, 4), "lr_psnr": round(s.lr_psnr, 2),
        }
    return result
