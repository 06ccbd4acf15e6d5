"""The Python API: a pipeline object that turns images into SR images with a loaded checkpoint.

    pipe = SRPipeline.from_pretrained()                 # the shipped model, CUDA+fp16 if present
    out = pipe.upscale(Image.open("in.png"), scale=4, steps=25, seed=0)
    data = pipe.upscale_image(read_image("in.png"), scale=4)   # 16-bit, alpha, ICC (srcli.imageio)

The CLI is a thin layer over this class.  How the reverse process runs is one ``SamplingOptions``
(``options=``, or its fields as keyword arguments).  Images go in and out as PIL images (or uint8
arrays), or as ``imageio.ImageData``; everything between is tensors in [-1, 1] handled by
``engine``, cut into tiles by ``tiling`` when large.  All noise is position-keyed
(``noise.field_noise``): a seed gives the same noise at the same HR pixel whether the image is
tiled or not.  Scales beyond one pass run as a cascade (``cascade``).
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Optional, Sequence

import numpy as np
import torch
from PIL import Image

from .cascade import INTERMEDIATE_DTYPE, CascadePass, ChainedProgress, cascade_sizes, plan_note, plan_passes, stage_seed, strength_table
from .checkpoint import load_checkpoint
from .device import CPU_CHANNELS_LAST, resolve_device, resolve_precision
from .diffusion import NoiseFn, NoiseSchedule
from .engine import DEFAULT_LR_UPSAMPLE, LR_UPSAMPLERS, Conditioned, super_resolve
from .errors import UsageError
from .imageio import ImageData, from_pil, resize_alpha, to_pil
from .nets import DEFAULT_UNET_MARGIN, SRDiffModel
from .noise import field_noise
from .ops import array_to_tensor, quantize
from .options import DEFAULT_CONSISTENCY, SamplingOptions, check_output_kind
from .regions import canvas_budget, sample_pass
from .tiling import auto_tile, check_tile, check_tile_batch, memory_budget
from .weights import resolve_weights

ProgressFn = Optional[Callable[[int, int], None]]


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
        # the tile memory budget, read once: a per-image reading (free CUDA memory varies) would
        # give the images of one run different tile sizes and so slightly different results
        self._budget: Optional[int] = None
        self._canvas_budget: Optional[int] = None

    @classmethod
    def from_pretrained(
        cls, weights: Optional[str] = None, device: str = "auto", precision: str = "auto", model: Optional[str] = None
    ) -> "SRPipeline":
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

    # -- images ----------------------------------------------------------------------------------
    def tile_settings(self, scale: float, tile: Optional[int] = None, tile_batch: Optional[int] = None) -> tuple[int, int]:
        """(HR tile side or 0, tiles per batch): batches of 4 on CUDA, 1 on the CPU (no speed-up
        there); ``tile=None`` picks the largest tile whose batch fits the device's memory budget
        (read once per pipeline)."""
        batch = check_tile_batch(tile_batch) or (4 if self.device.type == "cuda" else 1)
        tile = check_tile(tile)
        if tile is None:
            if self._budget is None:
                self._budget = memory_budget(self.device)
            tile = auto_tile(self.config, scale, batch, self._budget, self.dtype.itemsize)
        return tile, batch

    def upscale_image(
        self,
        image: ImageData,
        scale: float = 4.0,
        options: Optional[SamplingOptions] = None,
        *,
        seed: int = 0,
        tile: Optional[int] = None,
        tile_batch: Optional[int] = None,
        callback: ProgressFn = None,
        **fields: Any,
    ) -> ImageData:
        """Upscale an ``ImageData``: colour through the model (16-bit samples keep their precision
        into it and out of it), alpha with a classical filter, metadata carried over.  ``options``
        (or its fields as keywords) say how the reverse process runs: strength None is the
        per-scale default, consistency None the model's.  Scales beyond one pass run as a cascade
        (``passes``), each pass tiled on its own and handed on as a 16-bit image.  ``tile`` is the
        largest HR tile side in px (None: auto, 0: whole image); ``callback(done, total)`` counts
        reverse steps over all passes (the total grows as each pass starts)."""
        opts = SamplingOptions.of(options, **fields)
        passes = self.passes(scale, opts)
        check_tile(tile)
        check_tile_batch(tile_batch)
        sizes = cascade_sizes(image.size, scale, [p.scale for p in passes])
        progress = ChainedProgress(callback)
        x = self.to_input(image.rgb)
        for k, (step, size) in enumerate(zip(passes, sizes)):
            last = k + 1 == len(passes)
            rgb = self._tiled_pass(
                x, size, step.scale, step.options(opts), stage_seed(seed, k), tile, tile_batch,
                image.rgb.dtype if last else INTERMEDIATE_DTYPE, progress.next_pass(),
            )
            if not last:
                x = self.to_input(rgb)
        alpha = resize_alpha(image.alpha, sizes[-1]) if image.alpha is not None else None
        return image.replace(rgb, alpha)

    def _tiled_pass(
        self, x_lr: torch.Tensor, out_size: tuple[int, int], scale: float, options: SamplingOptions, seed: int,
        tile: Optional[int], tile_batch: Optional[int], out_dtype: type, callback: ProgressFn,
    ) -> np.ndarray:
        """One pass over a whole image (1, 3, h, w): tiles sized for this pass's scale blended on a
        canvas at every step, in regions when the canvas would exceed ``canvas_budget`` (``regions``)."""
        tile, batch = self.tile_settings(scale, tile, tile_batch)
        return sample_pass(self, x_lr, out_size, options, seed, tile, batch, out_dtype, callback)

    def canvas_budget(self) -> int:
        """Bytes one canvas may take (``regions.canvas_budget``), read once per pipeline."""
        if self._canvas_budget is None:
            self._canvas_budget = canvas_budget(self.device)
        return self._canvas_budget

    def upscale(
        self,
        image: Image.Image | np.ndarray,
        scale: float = 4.0,
        options: Optional[SamplingOptions] = None,
        *,
        seed: int = 0,
        tile: Optional[int] = None,
        tile_batch: Optional[int] = None,
        callback: ProgressFn = None,
        output: str = "pil",
        **fields: Any,
    ) -> Image.Image | np.ndarray:
        """Upscale one image by ``scale`` (output size round(scale * input size)).  A PIL image keeps
        its kind (RGB, RGBA, L, LA, I;16); an (H, W, 3) uint8/uint16 array gives an RGB image.
        ``output="numpy"`` returns the (H, W, 3) array of the colour samples instead (uint8, or
        uint16 for 16-bit input; alpha is dropped).  The rest as ``upscale_image``.

        >>> from PIL import Image
        >>> from srcli import SRPipeline
        >>> pipe = SRPipeline.from_pretrained()
        >>> big = pipe.upscale(Image.open("docs/examples/lr_input.png"), scale=4, seed=0)
        >>> big.size
        (256, 256)
        >>> pipe.upscale(Image.open("docs/examples/lr_input.png"), scale=2, output="numpy").shape
        (128, 128, 3)
        """
        check_output_kind(output)
        if isinstance(image, Image.Image):
            data = from_pil(image)
        else:
            try:
                data = ImageData(np.asarray(image))
            except ValueError as exc:
                raise UsageError(f"expected an RGB image (H, W, 3) of uint8 or uint16: {exc}") from None
        out = self.upscale_image(
            data, scale, SamplingOptions.of(options, **fields), seed=seed, tile=tile, tile_batch=tile_batch, callback=callback,
        )
        return out.rgb if output == "numpy" else to_pil(out)[0]

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
        }
