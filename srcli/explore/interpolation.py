"""Algorithm 4, latent interpolation: two SR predictions of one LR image diffused to t, mixed and decoded."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

import torch

from .. import diffusion
from ..cascade import check_scale
from ..errors import UsageError
from ..ops import scaled_size
from ..options import SamplingOptions, check_seed
from ..pipeline import SRPipeline
from .common import (
    DEFAULT_LAMBDAS, ImageLike, ImageOut, StageCallback, check_lambdas, check_sizes, check_t, default_scale, deliver_as, rgb8,
    stage_callback, to_uint8_list,
)


@dataclass
class Interpolation:
    """Alg. 4 results: one SR image per lambda (lambda 1 = endpoint A, lambda 0 = endpoint B)."""

    t: int
    lambdas: list[float]
    images: list[ImageOut]  # decoded mixes, in the order of ``lambdas``
    endpoints: tuple[ImageOut, ImageOut]  # the two SR predictions A and B
    seeds: Optional[tuple[int, int]]  # the seeds of A and B (None when given as images)
    latents: torch.Tensor = field(repr=False)  # (2, 3, H, W): A and B diffused to t (residual space)


def latent_interpolation(
    pipe: SRPipeline,
    image: ImageLike,
    t: int = 50,
    lambdas: Sequence[float] = DEFAULT_LAMBDAS,
    seeds: Optional[tuple[int, int]] = None,
    pair: Optional[tuple[ImageLike, ImageLike]] = None,
    scale: Optional[float] = None,
    options: Optional[SamplingOptions] = None,
    *,
    seed: int = 0,
    callback: StageCallback = None,
    output: str = "pil",
    **fields: Any,
) -> Interpolation:
    """Algorithm 4 (see ``diffusion.latent_interpolation`` for how its t differs from the authors'
    code by one step): two SR predictions of the LR ``image`` (A, B),
    both diffused to ``t`` with independent noise, mixed lam * x_A + (1 - lam) * x_B for every lambda
    and decoded from t conditioned on the LR image.  All mixes share the reverse-step noise, so
    they differ only by their latent.

    The predictions come from ``seeds`` (A, B), sampled in one batch (default seed+1, seed+2), or
    are given as ``pair`` (two SR images of one size; then ``scale`` follows from the sizes).
    ``seed`` drives the algorithm's own noise: the two forward draws and the reverse steps.
    The options' consistency applies to the sampled predictions as in ``upscale`` (None: the
    model's default); the decoded mixes are the algorithm's own output, not back-projected.  The
    predictions run the whole reverse process (strength 1); strength and init do not apply.
    """
    t = check_t(pipe, t)
    lambdas = check_lambdas(lambdas)
    opts = SamplingOptions.of(options, **fields)
    check_seed(seed)
    deliver = deliver_as(output)
    if seeds is not None and pair is not None:
        raise UsageError("give either seeds or a pair of SR images, not both")
    lr = rgb8(image)
    x_lr = pipe.lr_input(lr, opts)
    if pair is not None:
        a, b = rgb8(pair[0], "first SR image"), rgb8(pair[1], "second SR image")
        if a.shape != b.shape:
            raise UsageError(f"the two SR images differ in size: {a.shape[1]}x{a.shape[0]} vs {b.shape[1]}x{b.shape[0]}")
        out_size = a.shape[:2]
        check_scale(out_size[1] / lr.shape[1])
        if abs(out_size[0] - lr.shape[0] * out_size[1] / lr.shape[1]) > 1:
            raise UsageError(
                f"the SR images ({a.shape[1]}x{a.shape[0]}) are not an upscale of the "
                f"{lr.shape[1]}x{lr.shape[0]} input (different aspect ratio)"
            )
    else:
        if seeds is None:
            seeds = (seed + 1, seed + 2)
        elif len(seeds) != 2:
            raise UsageError(f"seeds must be two integers (A, B), got {tuple(seeds)}")
        seeds = (check_seed(seeds[0], "seed A"), check_seed(seeds[1], "seed B"))
        out_size = scaled_size(lr.shape[:2], check_scale(default_scale(pipe) if scale is None else scale))
    check_sizes(pipe, lr.shape[:2], out_size)
    cond = pipe.condition(x_lr, out_size)

    if pair is not None:
        endpoints = (a, b)
        with pipe.inference():
            residuals = torch.cat([cond.to_residual(pipe.to_input(a)), cond.to_residual(pipe.to_input(b))])
    else:
        both = cond.expand(2)
        sr = pipe.sr_tensor(
            x_lr.expand(2, -1, -1, -1), out_size, list(seeds), opts.replace(strength=1.0), stage_callback(callback, "predictions"), both,
        )
        endpoints = tuple(to_uint8_list(sr))
        with pipe.inference():
            residuals = both.to_residual(sr)

    mixes = cond.expand(len(lambdas))
    with pipe.inference():
        decoded, latents = diffusion.latent_interpolation(
            mixes.eps_fn(), pipe.schedule, residuals[:1], residuals[1:], t, lambdas,
            pipe.noise([seed]), opts, stage_callback(callback, f"t={t}"),
        )
        images = to_uint8_list(mixes.to_image(decoded))
    return Interpolation(
        t, lambdas, [deliver(i) for i in images], (deliver(endpoints[0]), deliver(endpoints[1])), seeds if pair is None else None,
        latents.float().cpu(),
    )
