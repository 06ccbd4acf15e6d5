"""Diverse sampling: N SR samples of one LR image in one batch and how much they disagree."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from ..cascade import cascade_sizes
from ..errors import UsageError, is_int
from ..metrics import diversity_sigma, sigma_map
from ..ops import resize, tensor_to_uint8
from ..options import SamplingOptions, check_seed
from ..pipeline import SRPipeline
from .common import ImageLike, ImageOut, StageCallback, default_scale, deliver_as, rgb8, stage_callback, to_uint8_list

# sample_diverse's strength: the whole reverse process, SRDiff's diverse sampling (upscale's
# per-scale default starts nearer the regression output and the samples barely differ at 2x)
DIVERSE_STRENGTH = 1.0


@dataclass
class DiverseSamples:
    """N SR samples of one LR input and how much they disagree (docs/protocol.md, "Metrics": sigma)."""

    lr: ImageOut  # the input (h, w)
    bicubic: ImageOut  # up(x_L), the starting point of the residual (H, W)
    samples: list[ImageOut]  # one per seed (H, W)
    seeds: list[int]
    sigma_map: np.ndarray  # per-pixel std across samples, mean over RGB, 0-255 (H, W)
    mean_sigma: float  # the paper's diversity number


def sample_diverse(
    pipe: SRPipeline,
    image: ImageLike,
    n: int = 8,
    scale: Optional[float] = None,
    options: Optional[SamplingOptions] = None,
    *,
    seed: int = 0,
    callback: StageCallback = None,
    output: str = "pil",
    **fields: Any,
) -> DiverseSamples:
    """``n`` samples of one LR image, seeds seed..seed+n-1, in one batch through the network.

    The LR encoder runs once; its condition is repeated along the batch.  Each sample takes its
    noise from its own seed's noise field, so sample i equals the untiled
    ``pipe.upscale(image, seed=seed + i, tile=0)`` with the same options whatever n is; scales
    beyond the model's range run the same cascade (``SRPipeline.sr_cascade``).  Without
    ``options`` the strength defaults to 1 (``DIVERSE_STRENGTH``), SRDiff's diverse sampling from
    pure noise, because the point is the range of plausible detail; None takes upscale's per-scale
    default, which invents less and so varies less.  Untiled: the n HR images must fit in memory.
    """
    if not is_int(n) or n < 1:
        raise UsageError(f"n must be a positive integer, got {n}")
    opts = SamplingOptions.of(options, **({"strength": DIVERSE_STRENGTH, **fields} if options is None else fields))
    check_seed(seed)
    check_seed(seed + n - 1, "the last sample's seed")
    deliver = deliver_as(output)
    scale = default_scale(pipe) if scale is None else scale
    passes = pipe.passes(scale, opts)
    lr = rgb8(image)
    sizes = cascade_sizes(lr.shape[:2], scale, [p.scale for p in passes])
    x_lr = pipe.lr_input(lr, opts)
    seeds = [seed + i for i in range(n)]
    sr = pipe.sr_cascade(x_lr, passes, sizes, seeds, opts, callback=stage_callback(callback, "samples"))
    samples = to_uint8_list(sr)
    return DiverseSamples(
        lr=deliver(lr),
        bicubic=deliver(tensor_to_uint8(resize(x_lr.float(), sizes[-1]))),
        samples=[deliver(s) for s in samples],
        seeds=seeds,
        sigma_map=sigma_map(samples),
        mean_sigma=diversity_sigma(samples),
    )
