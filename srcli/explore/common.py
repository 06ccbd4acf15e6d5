"""What the three explore algorithms share: input checks, the model's default scale, progress
adaptors and how results are handed back (Pillow images or arrays)."""

from __future__ import annotations

import math
from typing import Callable, Optional, Sequence

import numpy as np
import torch
from PIL import Image

from .. import diffusion
from ..errors import UsageError, is_int
from ..ops import tensor_to_uint8
from ..options import SamplingOptions, check_output_kind
from ..pipeline import SRPipeline

ImageLike = Image.Image | np.ndarray
ImageOut = Image.Image | np.ndarray  # Pillow by default, an array with output="numpy"
Box = tuple[int, int, int, int]
# callback(stage, done, total): progress of the reverse steps of one stage ("samples", "t=50", ...)
StageCallback = Optional[Callable[[str, int, int], None]]

# The eye band of an aligned square face crop (CelebA/FFHQ-style alignment), as fractions of the
# width and height: x 0.15-0.85, y 0.30-0.50.
DEFAULT_EYE_BOX = (0.15, 0.30, 0.85, 0.50)
DEFAULT_LAMBDAS = (0.0, 0.4, 0.8, 1.0)  # the paper's Fig. 6(b)


def rgb8(image: ImageLike, what: str = "image") -> np.ndarray:
    if isinstance(image, Image.Image):
        image = np.asarray(image.convert("RGB"))
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise UsageError(f"{what}: expected an RGB image (H, W, 3) of uint8")
    return image


def check_t(pipe: SRPipeline, t: int) -> int:
    """A diffusion step t in [0, T] of the loaded schedule (t = 0 means no noise at all)."""
    if not is_int(t) or not 0 <= t <= pipe.schedule.T:
        raise UsageError(f"t must be an integer in [0, {pipe.schedule.T}] (the model's T), got {t}")
    return int(t)


def check_lambdas(lambdas: Sequence[float]) -> list[float]:
    values = [float(v) for v in lambdas]
    if not values:
        raise UsageError("give at least one lambda")
    bad = [v for v in values if not (math.isfinite(v) and 0.0 <= v <= 1.0)]
    if bad:
        raise UsageError(f"lambdas must lie in [0, 1], got {bad[0]:g}")
    return values


def default_scale(pipe: SRPipeline) -> float:
    """The scale used when none is given: a fixed-scale checkpoint's own (8 for the authors' faces
    model), else the top of the training range (4 for the shipped model)."""
    fixed = pipe.config.fixed_scale
    return float(fixed if fixed is not None else pipe.config.train_scales[1])


def check_sizes(pipe: SRPipeline, lr_hw: tuple[int, int], hr_hw: tuple[int, int]) -> None:
    """A checkpoint with a fixed-scale projection maps only one size ratio; say so as a usage error."""
    try:
        pipe.model.check_scale(lr_hw, hr_hw)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def stage_callback(callback: StageCallback, name: str) -> Optional[Callable[[int, int], None]]:
    return None if callback is None else (lambda done, total: callback(name, done, total))


def to_uint8_list(x: torch.Tensor) -> list[np.ndarray]:
    return [tensor_to_uint8(x[i]) for i in range(x.shape[0])]


def deliver_as(output: str) -> Callable[[np.ndarray], ImageOut]:
    """How a function hands its uint8 images back: Pillow images ("pil") or the arrays ("numpy")."""
    check_output_kind(output)
    return Image.fromarray if output == "pil" else (lambda a: a)


def steps_run(pipe: SRPipeline, t: int, options: SamplingOptions) -> int:
    """The reverse steps a decode from step t actually runs (what ``--json`` records report)."""
    return len(diffusion.timestep_grid(t, options.steps_from(pipe.schedule.T, t)))
