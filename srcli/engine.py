"""The inference engine: LR tensor in, SR tensor out, for one batch of equally sized images.

This is the layer between the algorithms of ``diffusion`` (which know nothing about images) and the
pipeline (which knows files, tiles and progress bars).  It converts between image space and the
residual space of SRDiff:  x_r = (x_H - up(x_L)) * rescale,  SR = clip(x_0) / rescale + up(x_L).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
from typing import Optional

import torch

from .diffusion import EpsFn, NoiseFn, NoiseSchedule, StepCallback, reverse_process, start_step
from .nets import DEFAULT_UNET_MARGIN, SRDiffModel
from .noise import seeded_noise  # noqa: F401 - training's validation imports it from here
from .ops import matlab_resize, resize
from .options import DEFAULT_CONSISTENCY, INITS, SamplingOptions


def tune_cpu_allocator() -> bool:
    """Keep freed memory in the process heap instead of handing every large block back to the kernel.

    CPU tensors come from glibc malloc, which serves blocks above 32 MB (a full-resolution feature map of
    any sizeable image) with mmap and unmaps them on free, so every reverse step page-faults all of its
    activations in again: measured 30% of a U-Net step at 512x512 output and 40% at 1024x1024, in kernel
    time.  With mmap off and trimming off the heap is reused from step to step (the peak RSS stays
    held until exit).  Process-wide, so the CLI calls it, not the library.  Returns whether it applied
    (glibc on Linux only)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.gnu_get_libc_version  # noqa: B018 - glibc only: other libcs' mallopt differ
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_max = -1, -4  # <malloc.h>; a trim threshold of -1 disables trimming
    return bool(libc.mallopt(m_mmap_max, 0)) and bool(libc.mallopt(m_trim_threshold, -1))


# How up(x_L), the base the residual is added to, is made; a checkpoint names its own in the
# ``lr_upsample`` key of its ``info`` metadata (absent: "bicubic").  A model must be run with the
# upsampling it was trained with: the residual it predicts is relative to that image.
#   bicubic        srcli's ``ops.resize`` (Pillow's antialiased bicubic), what srcli trains with
#   matlab-div256  the SRDiff authors' data pipeline: MATLAB-style imresize bicubic of the 8-bit
#                  LR divided by 256 (not 255), then mapped to [-1, 1]: up = 255/256 (R(x_L) + 1) - 1
LR_UPSAMPLERS = ("bicubic", "matlab-div256")
DEFAULT_LR_UPSAMPLE = "bicubic"


def upsample_lr(x_lr: torch.Tensor, out_size: tuple[int, int], method: str = DEFAULT_LR_UPSAMPLE) -> torch.Tensor:
    """up(x_L) of a float32 batch on the HR grid by ``method`` (``LR_UPSAMPLERS``), float32."""
    if method == "bicubic":
        return resize(x_lr, out_size)
    if method == "matlab-div256":
        return ((matlab_resize(x_lr.double(), out_size) + 1) * (255 / 256) - 1).float()
    raise ValueError(f"unknown LR upsampling {method!r} (known: {', '.join(LR_UPSAMPLERS)})")


class Conditioned:
    """An LR batch encoded once: the projected condition and ``up(x_L)`` on the HR grid (and, on
    first use, the encoder's regression output, from the same trunk features).  ``x_lr`` and
    ``x_up`` are float32 whatever the networks' dtype (image-space arithmetic stays exact); the
    condition and trunk features are in the networks' dtype."""

    def __init__(
        self,
        model: SRDiffModel,
        x_lr: torch.Tensor,
        out_size: tuple[int, int],
        lr_upsample: str = DEFAULT_LR_UPSAMPLE,
        unet_margin: int = DEFAULT_UNET_MARGIN,
    ):
        model.check_scale(tuple(x_lr.shape[-2:]), tuple(out_size))
        self.model = model
        self.unet_margin = unet_margin  # mirrored px around every U-Net call (``UNet.forward``)
        self.rescale = model.config.res_rescale
        self.x_lr = x_lr = x_lr.float()
        self.x_up = upsample_lr(x_lr, out_size, lr_upsample)
        feats = model.rrdb.features(x_lr)
        self.trunk = feats[-1]
        self.cond_hr = model.denoise_fn.project_cond(feats, out_size)
        scale = out_size[1] / x_lr.shape[-1]
        self.scale = torch.full((x_lr.shape[0],), scale, device=x_lr.device)

    @property
    def out_size(self) -> tuple[int, int]:
        return tuple(self.x_up.shape[-2:])

    def start_residual(self, init: str) -> torch.Tensor:
        """The residual of the image a Diff-SR start noises: 0 for ``bicubic`` (x = up(x_L)), the
        encoder's regression output for ``encoder``."""
        if init == "bicubic":
            return torch.zeros(self.x_up.shape, device=self.x_up.device)
        if init != "encoder":
            raise ValueError(f"unknown init {init!r} (choose {' or '.join(INITS)})")
        return self.to_residual(self.model.rrdb.head(self.trunk, self.x_lr, self.out_size))

    def expand(self, n: int) -> "Conditioned":
        """The same condition repeated n times along the batch (for diverse samples of one input)."""
        if self.cond_hr.shape[0] != 1:
            raise ValueError("expand() needs a condition of batch size 1")
        other = object.__new__(Conditioned)
        other.model, other.rescale, other.unet_margin = self.model, self.rescale, self.unet_margin
        other.x_lr = self.x_lr.expand(n, -1, -1, -1)
        other.trunk = self.trunk.expand(n, -1, -1, -1)
        other.x_up = self.x_up.expand(n, -1, -1, -1)
        other.cond_hr = self.cond_hr.expand(n, -1, -1, -1)
        other.scale = self.scale.expand(n)
        return other

    def eps_fn(self) -> EpsFn:
        unet, cond, scale, margin = self.model.denoise_fn, self.cond_hr, self.scale, self.unet_margin

        def eps(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            return unet(x_t, t, cond, scale, margin)  # the U-Net casts x_t to its dtype, returns float32

        return eps

    def to_residual(self, x_hr: torch.Tensor) -> torch.Tensor:
        return to_residual(x_hr, self.x_up, self.rescale)

    def to_image(self, x_r: torch.Tensor) -> torch.Tensor:
        return from_residual(x_r, self.x_up, self.rescale)


def to_residual(x_hr: torch.Tensor, x_up: torch.Tensor, rescale: float) -> torch.Tensor:
    """x_r = (x_H - up(x_L)) * rescale, clipped to [-1, 1] (the authors rescale by 2)."""
    return ((x_hr.float() - x_up.float()) * rescale).clamp(-1, 1)


def from_residual(x_r: torch.Tensor, x_up: torch.Tensor, rescale: float) -> torch.Tensor:
    """SR = clip(x_0, -1, 1) / rescale + up(x_L), kept in the image range."""
    return (x_r.float().clamp(-1, 1) / rescale + x_up.float()).clamp(-1, 1)


def back_project(x_sr: torch.Tensor, x_lr: torch.Tensor, iterations: int = DEFAULT_CONSISTENCY) -> torch.Tensor:
    """Iterative back-projection (Irani & Peleg): add the upsampled error between the input and the
    downscaled SR image until the SR image downscales (with the protocol's bicubic) to the input.
    It changes only what the input determines — the low frequencies — and leaves the invented
    detail, and so the diversity across seeds, in place."""
    lr_size, sr_size = tuple(x_lr.shape[-2:]), tuple(x_sr.shape[-2:])
    x_lr = x_lr.float()
    for _ in range(iterations):
        x_sr = (x_sr + resize(x_lr - resize(x_sr, lr_size), sr_size)).clamp(-1, 1)
    return x_sr


def super_resolve(
    model: SRDiffModel,
    schedule: NoiseSchedule,
    x_lr: torch.Tensor,
    out_size: tuple[int, int],
    noise: NoiseFn,
    options: Optional[SamplingOptions] = None,
    callback: StepCallback = None,
    cond: Optional[Conditioned] = None,
    **fields,
) -> torch.Tensor:
    """SR of a batch (B, 3, h, w) in [-1, 1] to ``out_size`` with ``options`` (keyword ``fields``
    change them; see ``SamplingOptions``).  Here a strength or consistency of None means 1.0 and
    ``DEFAULT_CONSISTENCY``: the pipeline resolves the per-scale and per-model defaults above.

    Strength 1.0 is SRDiff's start (Alg. 2): x_T ~ N(0, I).  A smaller strength is the Diff-SR
    start: t0 = round(strength * T) and x_t0 = q_sample(x_init, t0) (paper Eq. 4) applied to an
    upsampled image in residual space — the encoder's regression output (``init="encoder"``) or
    up(x_L) itself, residual 0 (``init="bicubic"``, the paper's choice).  Less noise keeps more of
    that image and invents less.  The consistency's back-projection iterations make the result
    downscale to the input.  ``cond`` may be any condition with ``Conditioned``'s interface (a
    tiled one: ``tiling.TiledCondition``)."""
    opts = SamplingOptions.of(options, **fields)
    cond = cond or Conditioned(model, x_lr, out_size)
    t0 = start_step(schedule, 1.0 if opts.strength is None else opts.strength)
    consistency = DEFAULT_CONSISTENCY if opts.consistency is None else opts.consistency
    eps = noise(0, torch.empty((x_lr.shape[0], 3, *out_size), device=x_lr.device))
    if t0 == schedule.T:
        # Alg. 2's x_T ~ N(0, I) exactly (as diffusion.sample), not sqrt(1 - abar_T) of it
        x_t = eps * opts.temperature
    else:
        # the injected noise is scaled like every other draw, so temperature 0 is deterministic
        x_t = schedule.q_sample(cond.start_residual(opts.init).to(eps.dtype), t0, eps * opts.temperature)
    x0 = reverse_process(cond.eps_fn(), schedule, x_t, t0, noise, opts, callback)
    if consistency <= 0:
        return cond.to_image(x0)
    # back-project, then keep the result inside the residual range the model can represent, so
    # that an output fed back as a prediction (interpolation, fusion) decodes to itself at t = 0
    return cond.to_image(cond.to_residual(back_project(cond.to_image(x0), cond.x_lr, consistency)))
