"""The Python API: a pipeline object that turns images into SR images with a loaded checkpoint.

    pipe = SRPipeline.from_pretrained()                 # weights/ default, CUDA+fp16 if present
    out = pipe.upscale(Image.open("in.png"), scale=4, steps=25, seed=0)
    data = pipe.upscale_image(read_image("in.png"), scale=4)   # 16-bit, alpha, ICC (srcli.imageio)

The CLI is a thin layer over this class.  Images go in and out as PIL images (or uint8 arrays), or as
``imageio.ImageData``; everything between is tensors in [-1, 1] handled by ``engine``, cut into
tiles by ``tiling`` when large.  All noise is position-keyed (``tiling.field_noise``): a seed gives
the same noise at the same HR pixel whether the image is tiled or not.
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
from .diffusion import NoiseFn, NoiseSchedule
from .engine import Conditioned, super_resolve
from .imageio import ImageData, from_pil, resize_alpha, to_pil
from .nets import SRDiffModel
from .ops import array_to_tensor, scaled_size
from .tiling import MIN_TILE, align_to_grid, auto_tile, field_noise, memory_budget, tiled_upscale

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


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def check_steps(steps: Optional[int]) -> Optional[int]:
    """None (every step of the model) or a positive number of reverse steps (more than the model's
    T means T: the samplers clamp)."""
    if steps is None:
        return None
    if not _is_int(steps) or steps < 1:
        raise UsageError(f"steps must be a positive integer, got {steps}")
    return int(steps)


def check_tile(tile: Optional[int]) -> Optional[int]:
    """None (auto from a memory budget), 0 (no tiling) or an HR tile side of at least MIN_TILE px."""
    if tile is not None and (not _is_int(tile) or (tile != 0 and tile < MIN_TILE)):
        raise UsageError(f"tile must be 0 (off) or at least {MIN_TILE} px, got {tile}")
    return tile


def check_tile_batch(batch: Optional[int]) -> Optional[int]:
    if batch is not None and (not _is_int(batch) or batch < 1):
        raise UsageError(f"tile batch must be a positive integer, got {batch}")
    return batch


def check_sampler(sampler: str) -> str:
    if sampler not in ("ddpm", "ddim"):
        raise UsageError(f"unknown sampler {sampler!r} (choose ddpm or ddim)")
    return sampler


def check_strength(strength: float) -> float:
    """Where the reverse process starts, as a fraction of T: (0, 1] (1 = from pure noise)."""
    if not (isinstance(strength, (int, float)) and not isinstance(strength, bool) and 0.0 < strength <= 1.0):
        raise UsageError(f"strength must be in (0, 1], got {strength}")
    return float(strength)


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
        """PIL image or (H, W, 3) uint8/uint16 array -> (1, 3, H, W) in [-1, 1] on the pipeline's device."""
        if isinstance(image, Image.Image):
            image = np.asarray(image.convert("RGB"))
        if image.dtype not in (np.uint8, np.uint16) or image.ndim != 3 or image.shape[2] != 3:
            raise UsageError("expected an RGB image (H, W, 3) of uint8 or uint16")
        x = array_to_tensor(image).to(self.device)
        return x.to(self.dtype) if self.device.type == "cuda" else x

    def noise(self, seeds: Sequence[int], origins: Optional[Sequence[tuple[int, int]]] = None) -> NoiseFn:
        """The pipeline's noise: position-keyed, one field per seed (see ``tiling.field_noise``)."""
        return field_noise(seeds, origins)

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
        origins: Optional[Sequence[tuple[int, int]]] = None,
    ) -> torch.Tensor:
        """SR of a batch of equally sized LR tensors, one seed per batch element (untiled).
        ``origins`` places each element on its image's HR grid (tiles); default (0, 0)."""
        self.model.check_scale(tuple(x_lr.shape[-2:]), tuple(out_size))
        with torch.inference_mode(), self._autocast():
            return super_resolve(
                self.model, self.schedule, x_lr, out_size, self.noise(seeds, origins), steps=steps,
                sampler=sampler, eta=eta, temperature=temperature, strength=strength, callback=callback, cond=cond,
            )

    # -- images ----------------------------------------------------------------------------------
    def tile_settings(
        self, scale: float, tile: Optional[int] = None, tile_batch: Optional[int] = None
    ) -> tuple[int, int]:
        """(HR tile side or 0, tiles per batch): batches of 4 on CUDA, 1 on the CPU (no speed-up
        there); ``tile=None`` picks the largest tile whose batch fits the device's memory budget."""
        batch = check_tile_batch(tile_batch) or (4 if self.device.type == "cuda" else 1)
        tile = check_tile(tile)
        if tile is None:
            tile = auto_tile(self.config, scale, batch, memory_budget(self.device), self.dtype.itemsize)
        return tile, batch

    def upscale_image(
        self,
        image: ImageData,
        scale: float = 4.0,
        steps: Optional[int] = DEFAULT_STEPS,
        seed: int = 0,
        sampler: str = DEFAULT_SAMPLER,
        temperature: float = 1.0,
        strength: float = 1.0,
        callback: Optional[Callable[[int, int], None]] = None,
        tile: Optional[int] = None,
        tile_batch: Optional[int] = None,
    ) -> ImageData:
        """Upscale an ``ImageData``: colour through the model (16-bit samples keep their precision
        into it and out of it), alpha with a classical filter, metadata carried over.  ``tile`` is
        the HR tile side in px (None: auto, 0: whole image); ``callback(done, total)`` counts reverse
        steps over all tiles."""
        scale = check_scale(scale)
        steps = check_steps(steps)
        check_sampler(sampler)
        strength = check_strength(strength)
        out_size = scaled_size(image.size, scale)
        try:
            self.model.check_scale(image.size, out_size)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        tile, batch = self.tile_settings(scale, tile, tile_batch)
        multiple = self.model.denoise_fn.size_multiple

        def sr_batch(x, size, origins, step_callback):
            cond = align_to_grid(self.condition(x, size), origins, multiple)
            return self.sr_tensor(
                x, size, [seed] * x.shape[0], steps, sampler, temperature=temperature, strength=strength,
                callback=step_callback, cond=cond, origins=origins,
            )

        rgb = tiled_upscale(
            sr_batch, self.to_input(image.rgb), out_size, tile, batch_size=batch,
            min_size=2 * multiple, out_dtype=image.rgb.dtype, callback=callback,
        )
        alpha = resize_alpha(image.alpha, out_size) if image.alpha is not None else None
        return image.replace(rgb, alpha)

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
        tile: Optional[int] = None,
        tile_batch: Optional[int] = None,
    ) -> Image.Image:
        """Upscale one image by ``scale`` (output size round(scale * input size)).  A PIL image keeps
        its kind (RGB, RGBA, L, LA, I;16); an (H, W, 3) uint8/uint16 array gives an RGB image."""
        if isinstance(image, Image.Image):
            data = from_pil(image)
        else:
            try:
                data = ImageData(np.asarray(image))
            except ValueError as exc:
                raise UsageError(f"expected an RGB image (H, W, 3) of uint8 or uint16: {exc}") from None
        out = self.upscale_image(data, scale, steps, seed, sampler, temperature, strength, callback, tile, tile_batch)
        return to_pil(out)[0]

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
