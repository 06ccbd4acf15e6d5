"""The model at run time: a checkpoint loaded on a device and precision, with its defaults (scale
range, strengths, back-projection), sampling batches of tensors in [-1, 1] as one pass or a cascade
of untiled passes.  Images, tiles and regions are ``pipeline``'s (``SRPipeline`` builds on this
class); the sampler itself is ``engine``'s and ``diffusion``'s.
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Optional, Sequence, TypeVar

import numpy as np
import torch
from PIL import Image

from .cascade import INTERMEDIATE_DTYPE, CascadePass, ChainedProgress, plan_note, plan_passes, stage_seed, strength_table
from .checkpoint import load_checkpoint
from .deblock import deblock
from .device import CPU_CHANNELS_LAST, resolve_device, resolve_precision
from .diffusion import NoiseFn, NoiseSchedule
from .engine import DEFAULT_LR_UPSAMPLE, LR_UPSAMPLERS, Conditioned, super_resolve
from .errors import UsageError
from .nets import DEFAULT_UNET_MARGIN, SRDiffModel
from .noise import field_noise
from .ops import array_to_tensor, quantize
from .options import DEFAULT_CONSISTENCY, SamplingOptions
from .weights import resolve_weights

ProgressFn = Optional[Callable[[int, int], None]]
Self = TypeVar("Self", bound="ModelRunner")


class ModelRunner:
    """A loaded SRDiff model on its device, sampling tensors.  Thread-compatible, not thread-safe."""

    def __init__(
        self,
        model: SRDiffModel,
        schedule: NoiseSchedule,
        info: Optional[dict[str, Any]] = None,
        device: str | torch.device = "cpu",
        precision: str = "auto",
        source: Optional[str] = None,
    ):
        self.device = device if isinstance(device, torch.device) else resolve_device(device)
        self.dtype = resolve_precision(precision, self.device)
        self.schedule = schedule
        self.info = info or {}
        self.source = source
        self.lr_upsample = self.info.get("lr_upsample", DEFAULT_LR_UPSAMPLE)
        self.unet_margin = int(self.info.get("unet_margin", DEFAULT_UNET_MARGIN))
        if self.lr_upsample not in LR_UPSAMPLERS:
            raise UsageError(f"{source or 'checkpoint'}: unknown lr_upsample {self.lr_upsample!r} in its metadata")
        self.default_strengths = strength_table(self.info.get("default_strength"), source)
        # the weights in the chosen dtype (not autocast): the networks cast their inputs to it and
        # return float32 (see ``nets``), so one switch covers the weights and what is fed to them
        model = model.to(device=self.device, dtype=self.dtype).eval().requires_grad_(False)
        # channels_last suits cuDNN's convolutions; on the CPU see CPU_CHANNELS_LAST
        self.channels_last = self.device.type == "cuda" or CPU_CHANNELS_LAST
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model = model

    @classmethod
    def from_pretrained(
        cls: type[Self], weights: Optional[str] = None, device: str = "auto", precision: str = "auto", model: Optional[str] = None
    ) -> "Self":
        """Load a srcli checkpoint: ``weights`` (a path, a name looked up as ``srcli.weights``
        describes, or ``hf://OWNER/REPO/FILE[@REVISION]``) or the shipped ``model`` by name
        (``srcli.weights.MODELS``: clean, real); neither: the default model."""
        if weights is not None and model is not None:
            raise UsageError("--model and --weights are alternatives: give one of them")
        dev = resolve_device(device)
        resolve_precision(precision, dev)  # fail on bad arguments before reading the file
        path = resolve_weights(weights, model)
        model, schedule, info = load_checkpoint(path, "cpu")
        return cls(model, schedule, info, dev, precision, source=str(path))

    @property
    def config(self):
        return self.model.config

    @property
    def default_consistency(self) -> int:
        """Back-projection iterations when none are asked for: 0 for a model trained on real-world
        degradations (``info["degradation"] == "real"``: its input is not the bicubic downscale
        of the output, so forcing the output to downscale to it would put the input's blur, noise
        and JPEG blocks back), else ``DEFAULT_CONSISTENCY``."""
        return 0 if self.info.get("degradation") == "real" else DEFAULT_CONSISTENCY

    @property
    def default_deblock(self) -> bool:
        """Whether inputs are deblocked (``srcli.deblock``) when the options leave it open: the
        checkpoint's ``info["deblock"]`` if set, else on for a model trained on real-world
        degradations (its inputs are JPEGs) and off for the others."""
        return bool(self.info.get("deblock", self.info.get("degradation") == "real"))

    def deblocks(self, options: SamplingOptions) -> bool:
        """Whether inputs run with ``options`` are deblocked (their None: ``default_deblock``)."""
        return self.default_deblock if options.deblock is None else options.deblock

    def lr_input(self, image: np.ndarray, options: SamplingOptions) -> torch.Tensor:
        """An LR input (H, W, 3) uint8/uint16 as the model's input tensor (``to_input``), JPEG
        deblocked first when ``deblocks(options)``: only the image a user gives, never a
        cascade's intermediate image, which has no block grid."""
        return self.to_input(deblock(image) if self.deblocks(options) else image)

    @property
    def scale_range(self) -> tuple[float, float]:
        """The factors one pass runs: a fixed-scale checkpoint's own, else the training range."""
        fixed = self.config.fixed_scale
        return (float(fixed), float(fixed)) if fixed is not None else tuple(self.config.train_scales)

    def passes(self, scale: float, options: Optional[SamplingOptions] = None, **fields: Any) -> list[CascadePass]:
        """The passes of ``scale`` (``cascade.plan_passes``) with this model's default strengths and
        back-projection.  A fixed-scale checkpoint runs its scale and its powers only."""
        return plan_passes(
            scale, SamplingOptions.of(options, **fields), self.scale_range, self.schedule.T, self.default_strengths,
            self.default_consistency, self.config.fixed_scale, self.source,
        )

    def plan_note(self, scale: float, passes: Sequence[CascadePass]) -> Optional[str]:
        """One line for the user when ``scale`` does not run as one pass inside the training range."""
        return plan_note(scale, passes, self.scale_range, self.schedule.T)

    # -- tensors ---------------------------------------------------------------------------------
    def inference(self) -> contextlib.AbstractContextManager:
        """The context every network call of the pipeline runs in (no autograd)."""
        return torch.inference_mode()

    def to_input(self, image: Image.Image | np.ndarray) -> torch.Tensor:
        """PIL image or (H, W, 3) uint8/uint16 array -> (1, 3, H, W) float32 in [-1, 1] on the
        pipeline's device (float32 whatever the precision: the networks cast at their boundary)."""
        if isinstance(image, Image.Image):
            image = np.asarray(image.convert("RGB"))
        if image.dtype not in (np.uint8, np.uint16) or image.ndim != 3 or image.shape[2] != 3:
            raise UsageError("expected an RGB image (H, W, 3) of uint8 or uint16")
        return self._on_device(array_to_tensor(image))

    def _on_device(self, x: torch.Tensor) -> torch.Tensor:
        return x.to(device=self.device, dtype=torch.float32)

    def noise(self, seeds: Sequence[int], origin: tuple[int, int] = (0, 0)) -> NoiseFn:
        """The pipeline's noise: position-keyed, one field per seed, windows at HR ``origin``
        (``noise.field_noise``)."""
        return field_noise(seeds, [origin] * len(seeds))

    def condition(self, x_lr: torch.Tensor, out_size: tuple[int, int]) -> Conditioned:
        """Encode an LR batch once (the expensive part that never runs per step)."""
        with self.inference():
            return Conditioned(self.model, x_lr, out_size, self.lr_upsample, self.unet_margin)

    def sr_tensor(
        self,
        x_lr: torch.Tensor,
        out_size: tuple[int, int],
        seeds: Sequence[int],
        options: Optional[SamplingOptions] = None,
        callback: ProgressFn = None,
        cond: Optional[Conditioned] = None,
        origin: tuple[int, int] = (0, 0),
        **fields: Any,
    ) -> torch.Tensor:
        """SR of a batch of equally sized LR tensors, one seed per batch element (untiled), as one
        pass with ``options`` (strength None: 1, consistency None: ``default_consistency``).  ``cond``
        may be an encoded condition of ``x_lr`` (``condition``) or a tiled one (``TiledCondition``);
        ``origin`` places the output on a larger image's HR grid (its noise: a region's)."""
        opts = SamplingOptions.of(options, **fields)
        if opts.consistency is None:
            opts = opts.replace(consistency=self.default_consistency)
        self.model.check_scale(tuple(x_lr.shape[-2:]), tuple(out_size))
        with self.inference():
            return super_resolve(
                self.model, self.schedule, x_lr, out_size, self.noise(seeds, origin), opts, callback,
                cond=cond or self.condition(x_lr, out_size),
            )

    def sr_cascade(
        self,
        x_lr: torch.Tensor,
        passes: Sequence[CascadePass],
        sizes: Sequence[tuple[int, int]],
        seeds: Sequence[int],
        options: SamplingOptions,
        callback: ProgressFn = None,
    ) -> torch.Tensor:
        """``len(seeds)`` samples of one LR tensor (1, 3, h, w) through ``passes`` with output
        ``sizes`` (``cascade_sizes``), untiled, in one batch: the first pass encodes the input once
        for all samples.  Between passes the images are rounded to 16 bits as ``upscale_image``
        stores them, so sample i equals ``upscale_image(..., seed=seeds[i], tile=0)``."""
        n, x = len(seeds), x_lr
        progress = ChainedProgress(callback)
        for k, (step, size) in enumerate(zip(passes, sizes)):
            cond = self.condition(x, size)
            if x.shape[0] == 1 and n > 1:
                x, cond = x.expand(n, -1, -1, -1), cond.expand(n)
            x = self.sr_tensor(x, size, [stage_seed(s, k) for s in seeds], step.options(options), progress.next_pass(), cond)
            if k + 1 < len(passes):
                x = self._on_device(quantize(x, INTERMEDIATE_DTYPE))
        return x

    def describe(self) -> dict[str, Any]:
        return {
            "weights": self.source,
            "device": str(self.device),
            "dtype": str(self.dtype).replace("torch.", ""),
            "fixed_scale": self.config.fixed_scale,
            "train_scales": list(self.config.train_scales),
            "channels_last": self.channels_last,
            "timesteps": self.schedule.T,
            "lr_upsample": self.lr_upsample,
            "unet_margin": self.unet_margin,
            "default_consistency": self.default_consistency,
            "default_deblock": self.default_deblock,
        }
