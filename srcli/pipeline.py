"""The Python API for images: ``SRPipeline`` turns images into SR images with a loaded checkpoint.

    pipe = SRPipeline.from_pretrained()                 # the shipped model, CUDA+fp16 if present
    out = pipe.upscale(Image.open("in.png"), scale=4, steps=25, seed=0)
    data = pipe.upscale_image(read_image("in.png"), scale=4)   # 16-bit, alpha, ICC (srcli.imageio)

The CLI is a thin layer over this class.  It owns images in and out and how a pass is cut (tile
sizes, the canvas budget); loading, the model's defaults and tensor sampling are ``runner``'s
(``ModelRunner``, its base class).  How the reverse process runs is one ``SamplingOptions``
(``options=``, or its fields as keyword arguments).  Images go in and out as PIL images (or uint8
arrays), or as ``imageio.ImageData``; everything between is tensors in [-1, 1] handled by
``engine``, cut into tiles by ``tiling`` and into regions by ``regions`` when large.  All noise is
position-keyed (``noise.field_noise``): a seed gives the same noise at the same HR pixel whether the
image is tiled or not.  Scales beyond one pass run as a cascade (``cascade``).
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np
import torch
from PIL import Image

from .cascade import INTERMEDIATE_DTYPE, ChainedProgress, cascade_sizes, stage_seed
from .errors import UsageError
from .imageio import ImageData, from_pil, resize_alpha, to_pil
from .options import SamplingOptions, check_output_kind
from .regions import canvas_budget, sample_pass
from .runner import ModelRunner, ProgressFn
from .tiling import auto_tile, check_tile, check_tile_batch, memory_budget

__all__ = ["SRPipeline", "ModelRunner", "UsageError"]


class SRPipeline(ModelRunner):
    """A loaded SRDiff model ready to upscale images.  Thread-compatible, not thread-safe."""

    # the tile and canvas memory budgets, read once per pipeline: a per-image reading (free CUDA
    # memory varies) would give the images of one run different tile sizes and so different results
    _budget: Optional[int] = None
    _canvas_budget: Optional[int] = None

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
        reverse steps over all passes (the total grows as each pass starts).  The input is JPEG
        deblocked first as ``options.deblock`` says (``lr_input``)."""
        opts = SamplingOptions.of(options, **fields)
        passes = self.passes(scale, opts)
        check_tile(tile)
        check_tile_batch(tile_batch)
        sizes = cascade_sizes(image.size, scale, [p.scale for p in passes])
        progress = ChainedProgress(callback)
        x = self.lr_input(image.rgb, opts)
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
