"""The Python API: a pipeline object that turns images into SR images with a loaded checkpoint.

    pipe = SRPipeline.from_pretrained()                 # weights/ default, CUDA+fp16 if present
    out = pipe.upscale(Image.open("in.png"), scale=4, steps=25, seed=0)

The CLI is a thin layer over this class.  Images go in and out as PIL images (or uint8 arrays);
everything between is tensors in [-1, 1] handled by ``engine``.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np
import torch
from PIL import Image

from .checkpoint import load_checkpoint, resolve_weights
from .diffusion import NoiseSchedule
from .engine import Conditioned, seeded_noise, super_resolve
from .nets import SRDiffModel
from .ops import scaled_size, tensor_to_uint8, uint8_to_tensor

DEFAULT_STEPS = 25
DEFAULT_SAMPLER = "ddpm"
MIN_SCALE, MAX_SCALE = 1.0, 8.0


class UsageError(ValueError):
    """A bad argument (scale, device, steps, ...): reported before any work starts."""


def resolve_device(device: str = "auto") -> torch.device:
    """auto -> cuda when available, else cpu.  Asking for cuda without CUDA is a usage error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UsageError("--device cuda: no CUDA device is available on this machine (use cpu or auto)")
        return torch.device(device)
    if device == "cpu":
        return torch.device("cpu")
    raise UsageError(f"unknown device {device!r} (choose auto, cpu or cuda)")


def resolve_precision(precision: str, device: torch.device) -> torch.dtype:
    """auto -> fp16 on CUDA, fp32 on CPU.  fp16 needs CUDA; bf16 works on both (autocast)."""
    table = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
    if precision == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    if precision not in table:
        raise UsageError(f"unknown precision {precision!r} (choose auto, fp32, bf16 or fp16)")
    if precision == "fp16" and device.type != "cuda":
        raise UsageError("--precision fp16 needs a CUDA device; on the CPU use fp32 or bf16")
    return table[precision]


def check_scale(scale: float) -> float:
    if not (isinstance(scale, (int, float)) and np.isfinite(scale)) or not MIN_SCALE < scale <= MAX_SCALE:
        raise UsageError(f"scale must be a number in ({MIN_SCALE:g}, {MAX_SCALE:g}], got {scale}")
    return float(scale)


@dataclass
class StepProgress:
    """What a progress callback receives: ``done`` of ``total`` reverse steps of the current image."""

    done: int
    total: int


class SRPipeline:
    """A loaded SRDiff model ready to upscale images.  Thread-compatible, not thread-safe."""

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
        model = model.to(self.device).eval().requires_grad_(False)
        if self.device.type == "cuda":
            # Half weights (not autocast) keep activations in fp16; channels_last suits cuDNN convs.
            model = model.to(dtype=self.dtype, memory_format=torch.channels_last)
        self.model = model

    @classmethod
    def from_pretrained(
        cls, weights: Optional[str] = None, device: str = "auto", precision: str = "auto"
    ) -> "SRPipeline":
        """Load a srcli checkpoint: a path, a name in ``weights/``, or ``hf://OWNER/REPO/FILE``."""
        dev = resolve_device(device)
        resolve_precision(precision, dev)  # fail on bad arguments before reading the file
        path = resolve_weights(weights)
        model, schedule, info = load_checkpoint(path, "cpu")
        return cls(model, schedule, info, dev, precision, source=str(path))

    @property
    def config(self):
        return self.model.config

    # -- tensors ---------------------------------------------------------------------------------
    def _autocast(self):
        if self.device.type == "cpu" and self.dtype == torch.bfloat16:
            return torch.autocast("cpu", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def to_input(self, image: Image.Image | np.ndarray) -> torch.Tensor:
        """PIL image or (H, W, 3) uint8 array -> (1, 3, H, W) on the pipeline's device."""
        if isinstance(image, Image.Image):
            image = np.asarray(image.convert("RGB"))
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise UsageError("expected an RGB image (H, W, 3) of uint8")
        x = uint8_to_tensor(image).to(self.device)
        return x.to(self.dtype) if self.device.type == "cuda" else x

    def condition(self, x_lr: torch.Tensor, out_size: tuple[int, int]) -> Conditioned:
        """Encode an LR batch once (the expensive part that never runs per step)."""
        with torch.inference_mode(), self._autocast():
            return Conditioned(self.model, x_lr, out_size)

    def sr_tensor(
        self,
        x_lr: torch.Tensor,
        out_size: tuple[int, int],
        seeds: Sequence[int],
        steps: Optional[int] = DEFAULT_STEPS,
        sampler: str = DEFAULT_SAMPLER,
        eta: float = 0.0,
        temperature: float = 1.0,
        strength: float = 1.0,
        callback: Optional[Callable[[int, int], None]] = None,
        cond: Optional[Conditioned] = None,
    ) -> torch.Tensor:
        """SR of a batch of equally sized LR tensors, one seed per batch element (untiled)."""
        self.model.check_scale(tuple(x_lr.shape[-2:]), tuple(out_size))
        with torch.inference_mode(), self._autocast():
            return super_resolve(
                self.model, self.schedule, x_lr, out_size, seeded_noise(seeds, self.device), steps=steps,
                sampler=sampler, eta=eta, temperature=temperature, strength=strength, callback=callback, cond=cond,
            )

    # -- images ----------------------------------------------------------------------------------
    def upscale(
        self,
        image: Image.Image | np.ndarray,
        scale: float = 4.0,
        steps: Optional[int] = DEFAULT_STEPS,
        seed: int = 0,
        sampler: str = DEFAULT_SAMPLER,
        temperature: float = 1.0,
        strength: float = 1.0,
        callback: Optional[Callable[[int, int], None]] = None,
    ) -> Image.Image:
        """Upscale one RGB image by ``scale`` (output size round(scale * input size))."""
        scale = check_scale(scale)
        x_lr = self.to_input(image)
        out_size = scaled_size(tuple(x_lr.shape[-2:]), scale)
        sr = self.sr_tensor(x_lr, out_size, [seed], steps, sampler, temperature=temperature, strength=strength, callback=callback)
        return Image.fromarray(tensor_to_uint8(sr))

    def describe(self) -> dict[str, Any]:
        return {
            "weights": self.source,
            "device": str(self.device),
            "dtype": str(self.dtype).replace("torch.", ""),
            "fixed_scale": self.config.fixed_scale,
            "train_scales": list(self.config.train_scales),
            "timesteps": self.schedule.T,
        }


def load_image_rgb(path: str | Path) -> Image.Image:
    """Convenience for notebooks: open a file as an RGB PIL image (EXIF orientation applied)."""
    from .imageio import load_rgb8

    return Image.fromarray(load_rgb8(path))
