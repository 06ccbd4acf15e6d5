"""Algorithm 3, content fusion: a region of one HR image blended into another through the model."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Sequence

import numpy as np

from .. import diffusion
from ..cascade import check_scale
from ..errors import UsageError, is_int
from ..metrics import degrade
from ..ops import tensor_to_uint8
from ..options import SamplingOptions, check_seed
from ..pipeline import SRPipeline
from .common import DEFAULT_EYE_BOX, Box, ImageLike, ImageOut, StageCallback, check_sizes, check_t, default_scale, deliver_as, rgb8, stage_callback


# Why fusion has no back-projection: back-projection forces the output to downscale to an LR image.
# Against the condition (the face source's LR) it puts the face's coarse content back into the box,
# undoing the fusion; against the paste's LR it puts the paste's coarse content and its seams back
# at every t, undoing the blending that larger t is for.  The fused image is an SR of neither.
NO_BACK_PROJECTION = (
    "content fusion has no back-projection (--consistency): it would force the box to downscale to the "
    "face source's LR and so put the face's coarse content back, undoing the fusion (or, against the "
    "paste's LR, put the paste's seams back at every t)"
)


@dataclass
class Fusion:
    """Alg. 3 results: one fused image per t; outside ``box`` every pixel is the face source's."""

    ts: list[int]
    box: Box
    images: list[ImageOut]  # x_fused per t
    pasted: ImageOut  # x_f: the box of the eye source pasted into the face source
    lr: ImageOut  # x_L: the face source downsampled (the condition)


def resolve_box(box: Optional[Sequence[float]], width: int, height: int) -> Box:
    """Pixel box (x0, y0, x1, y1), end-exclusive, inside a width x height image.  ``None`` is the
    default eye band ``DEFAULT_EYE_BOX`` (x 15-85 % of the width, y 30-50 % of the height)."""
    if box is None:
        fx0, fy0, fx1, fy1 = DEFAULT_EYE_BOX
        box = (round(fx0 * width), round(fy0 * height), round(fx1 * width), round(fy1 * height))
    if len(box) != 4 or any(float(v) != int(v) for v in box):
        raise UsageError(f"box must be four integers x0,y0,x1,y1, got {tuple(box)}")
    x0, y0, x1, y1 = (int(v) for v in box)
    if not (0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height):
        raise UsageError(
            f"box {x0},{y0},{x1},{y1} is not a non-empty region inside the {width}x{height} image "
            "(need 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height)"
        )
    return x0, y0, x1, y1


def paste(base: np.ndarray, source: np.ndarray, box: Box) -> np.ndarray:
    """A copy of ``base`` with the ``box`` region taken from ``source`` (same size)."""
    x0, y0, x1, y1 = box
    out = base.copy()
    out[y0:y1, x0:x1] = source[y0:y1, x0:x1]
    return out


def content_fusion(
    pipe: SRPipeline,
    eyes_hr: ImageLike,
    face_hr: ImageLike,
    t: int | Sequence[int] = 50,
    box: Optional[Sequence[int]] = None,
    scale: Optional[float] = None,
    options: Optional[SamplingOptions] = None,
    *,
    seed: int = 0,
    callback: StageCallback = None,
    output: str = "pil",
    **fields: Any,
) -> Fusion:
    """Algorithm 3: fuse the ``box`` region of ``eyes_hr`` into ``face_hr`` (HR images of one size).

    x_f = face with the box pasted from the eye source; x_L = the face source downsampled by
    ``scale`` (the paper: 8 for faces) with the protocol's degradation (Pillow bicubic); x_r = x_f - up(x_L) in residual
    space, diffused to t with one draw of noise (seed ``seed``, the same draw for every t), decoded
    from t conditioned on D(x_L), plus up(x_L); then only the box of that result goes back into the
    face source.  Small t keeps the eye source, large t moves toward the face source (the paper
    shows t = 30, 50, 70).  ``t`` may be a list: one fused image per t.  ``box`` is in pixels,
    default the eye band of an aligned face crop: x 0.15-0.85 of the width, y 0.30-0.50 of the height.
    The options' steps, sampler, eta and temperature apply; the decode is the algorithm's own
    output: no strength (t is the start) and no back-projection (``NO_BACK_PROJECTION``; a
    consistency above 0 is a ``UsageError``).
    """
    ts = [check_t(pipe, v) for v in ([t] if is_int(t) else t)]
    if not ts:
        raise UsageError("give at least one t")
    opts = SamplingOptions.of(options, **fields)
    if opts.consistency:
        raise UsageError(NO_BACK_PROJECTION)
    check_seed(seed)
    deliver = deliver_as(output)
    eyes, face = rgb8(eyes_hr, "eye source"), rgb8(face_hr, "face source")
    if eyes.shape != face.shape:
        raise UsageError(
            f"the two images must have one size: eye source {eyes.shape[1]}x{eyes.shape[0]}, "
            f"face source {face.shape[1]}x{face.shape[0]}"
        )
    height, width = face.shape[:2]
    box = resolve_box(box, width, height)
    scale = check_scale(default_scale(pipe) if scale is None else scale)
    lr_w, lr_h = round(width / scale), round(height / scale)
    if min(lr_w, lr_h) < 1:
        raise UsageError(f"a {width}x{height} image is too small to downsample by {scale:g}")
    check_sizes(pipe, (lr_h, lr_w), (height, width))

    pasted = paste(face, eyes, box)
    lr = degrade(face, (lr_w, lr_h))
    cond = pipe.condition(pipe.to_input(lr), (height, width))
    images = []
    with pipe.inference():
        x_up = cond.x_up.float()
        # Not clipped (unlike training targets): t = 0 then returns the paste exactly, and for t >= 1
        # the reverse process clips x0_hat at every step, so its output stays in the model's range.
        residual = (pipe.to_input(pasted).float() - x_up) * cond.rescale
        for tv in ts:
            x0 = diffusion.content_fusion(
                cond.eps_fn(), pipe.schedule, residual, tv, pipe.noise([seed]), opts, stage_callback(callback, f"t={tv}"),
            )
            fused_sr = (x0.float() / cond.rescale + x_up).clamp(-1, 1)
            images.append(paste(face, tensor_to_uint8(fused_sr), box))
    return Fusion(ts, box, [deliver(i) for i in images], deliver(pasted), deliver(lr))
