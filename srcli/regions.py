"""Macro-regions: one pass over an output of any size within a memory budget.

The tiled canvas (``tiling.TiledCondition``) bounds the networks' activations, but the canvas itself
grows with the output: every tile's projected condition and a few full-size float32 tensors, about
450 bytes per output pixel for the shipped model (docs/design.md, "Tiles").  When the canvas of the
whole output would exceed a budget (``canvas_budget``: a share of the available memory, or
``SRCLI_CANVAS_MB``), the output is cut into a few large overlapping regions (``plan_regions``, the
same balanced grid as the tiles, with ``region_overlap`` px of overlap), each sampled on its own
canvas with its tiles blended at every step as usual, and the regions are cross-faded with Hann
ramps at the end.  The noise is position-keyed with the region's origin (``noise.field_noise``) and
every tile stays on the U-Net's global grid, so a region computes what the whole canvas computes
except near its own border, which the cross-fade hides.  Back-projection runs per region, against
the region's LR crop (it is local: a few LR pixels of support).  Finished rows of regions are
quantised into the output array at once, so besides one region's canvas only the output image
itself (in its own dtype) and a band of float32 overlap are held.
"""

from __future__ import annotations

import functools
import math
import os
from typing import Any, Callable, Optional, Sequence

import numpy as np
import torch

from .engine import upsample_lr
from .errors import UsageError
from .modelconfig import ModelConfig
from .ops import tensor_to_array
from .tiling import Span, Tile, TiledCondition, align_to_grid, memory_budget, padded_upscale, plan_axis, plan_tiles

CANVAS_BUDGET_ENV = "SRCLI_CANVAS_MB"
CPU_CANVAS_CAP = 4 << 30  # a bigger canvas buys no speed on the CPU, only fewer region overlaps
MIN_REGION_OVERLAP = 128  # HR px: wide enough that the cross-fade between two regions' samples is gradual
# full-size float32 RGB tensors alive at a step's peak (x_t, the prediction and its blend, x0-hat,
# the mean, the noise and its integer scratch, up(x_L), back-projection, the output conversion):
# ~21 measured, 256 bytes per pixel with a margin
CANVAS_FLOAT_BYTES = 256


def canvas_bytes_per_pixel(config: ModelConfig, element_bytes: int = 4) -> float:
    """Peak bytes per output pixel of one canvas, beyond one batch of tiles: the tiles' projected
    condition (``unet_dim`` channels in the networks' dtype, counted twice for the tiles' overlap)
    and ``CANVAS_FLOAT_BYTES``.  512 for the shipped c=32 model in fp32 (measured ~450)."""
    return element_bytes * config.unet_dim * 2 + CANVAS_FLOAT_BYTES


def _available_ram() -> int:
    """MemAvailable (free plus reclaimable cache) where /proc/meminfo has it, else free pages."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 8 << 30


def env_canvas_budget() -> Optional[int]:
    """``SRCLI_CANVAS_MB`` in bytes, None when unset; a UsageError when it is not a positive number."""
    value = os.environ.get(CANVAS_BUDGET_ENV, "").strip()
    if not value:
        return None
    try:
        mb = float(value)
    except ValueError:
        mb = -1.0
    if not mb > 0 or math.isinf(mb):
        raise UsageError(f"{CANVAS_BUDGET_ENV} must be a positive number of megabytes, got {value!r}")
    return int(mb * (1 << 20))


def canvas_budget(device: torch.device) -> int:
    """Bytes one region's canvas may use: ``SRCLI_CANVAS_MB`` when set; else a quarter of the free
    CUDA memory (the tile batch has half), or on the CPU half of the available RAM left after the
    tile batch's budget, at most ``CPU_CANVAS_CAP``."""
    from_env = env_canvas_budget()
    if from_env is not None:
        return from_env
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free * 0.25)
    return int(min(CPU_CANVAS_CAP, max(0, _available_ram() - memory_budget(device)) / 2))


def region_overlap(tile: int) -> int:
    """HR px of overlap between regions: a quarter tile, at least ``MIN_REGION_OVERLAP``."""
    return max(MIN_REGION_OVERLAP, tile // 4)


def plan_regions(
    lr_size: tuple[int, int], hr_size: tuple[int, int], budget: int, bytes_per_pixel: float, overlap: int, min_side: int = 32
) -> list[list[Tile]]:
    """Rows of regions (``tiling.Tile``s, from ``plan_axis``) whose canvases each take at most
    ``budget`` bytes at ``bytes_per_pixel``; one region when the whole output fits.  Regions are
    about square, never smaller than ``min_side`` px (a budget too small for that is exceeded)."""
    h, w = hr_size
    side = max(min_side, math.isqrt(int(max(0, budget) / bytes_per_pixel)))
    while True:
        if h * w * bytes_per_pixel <= budget:
            rows, cols = plan_axis(lr_size[0], h, 0, 0), plan_axis(lr_size[1], w, 0, 0)
        else:
            # at most a third of a region of overlap, so at most two regions meet along an axis
            # (the row-by-row blend and the Hann windows' partition of unity rely on it)
            rows = plan_axis(lr_size[0], h, min(side, h), min(overlap, side // 3))
            cols = plan_axis(lr_size[1], w, min(side, w), min(overlap, side // 3))
        area = (rows[0].hr1 - rows[0].hr0) * (cols[0].hr1 - cols[0].hr0)
        pairwise = all(a.hr1 <= c.hr0 for spans in (rows, cols) for a, c in zip(spans, spans[2:]))
        if (area * bytes_per_pixel <= budget and pairwise) or side <= min_side:
            return [[Tile(r, c) for c in cols] for r in rows]
        side = max(min_side, int(side * 0.95))  # plan_axis rounds to the LR/exact grid: shrink and retry


def blend_regions(
    rows: Sequence[Sequence[Tile]],
    out_size: tuple[int, int],
    sample: Callable[[Tile], torch.Tensor],
    out_dtype: type = np.uint8,
) -> np.ndarray:
    """The (H, W, 3) ``out_dtype`` image of regions cross-faded with their Hann windows (which sum
    to one), ``sample(region)`` giving each region's (1, 3, h, w) image in [-1, 1].  Rows are
    finished in order: the part of a row's band above the next row is final and quantised at once,
    the overlap is carried into the next band (at most two rows overlap: ``plan_axis``)."""
    if len(rows) == 1 and len(rows[0]) == 1:  # the whole output: exactly the unsplit path
        return tensor_to_array(sample(rows[0][0]), out_dtype)
    height, width = out_size
    out = np.empty((height, width, 3), dtype=out_dtype)
    carry: Optional[torch.Tensor] = None
    for i, row in enumerate(rows):
        ys = row[0].y
        band: Optional[torch.Tensor] = None
        for region in row:
            image = sample(region)[0].float()
            if band is None:
                band = torch.zeros((3, ys.hr1 - ys.hr0, width), device=image.device)
            band[:, :, region.x.hr0 : region.x.hr1] += image * region.x.weights().to(image.device)
        band *= ys.weights().to(band.device)[:, None]
        if carry is not None:
            band[:, : carry.shape[1]] += carry
        done = (rows[i + 1][0].y.hr0 if i + 1 < len(rows) else height) - ys.hr0
        out[ys.hr0 : ys.hr0 + done] = tensor_to_array(band[:, :done], out_dtype)
        carry = band[:, done:].clone()
    return out


def sample_pass(
    pipe: Any,
    x_lr: torch.Tensor,
    out_size: tuple[int, int],
    options: Any,
    seed: int,
    tile: int,
    batch: int,
    out_dtype: type,
    callback: Optional[Callable[[int, int], None]],
) -> np.ndarray:
    """One pass of ``pipe`` (an ``SRPipeline``) over a whole image (1, 3, h, w) as an (H, W, 3) array:
    regions when the canvas exceeds ``pipe.canvas_budget()`` and tiles are on (``tile`` > 0), each in
    tiles blended on its canvas at every step; ``callback`` counts the steps of all regions."""
    multiple = pipe.model.denoise_fn.size_multiple
    tile_side = max(tile, 2 * multiple) if tile else 0

    def sr_array(x: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
        lr_size = tuple(x.shape[-2:])
        if tile_side:
            per_pixel = canvas_bytes_per_pixel(pipe.config, pipe.dtype.itemsize)
            rows = plan_regions(lr_size, size, pipe.canvas_budget(), per_pixel, region_overlap(tile_side), 2 * multiple)
        else:  # tiles off: the whole image in one network call, as asked
            rows = [[Tile(Span(0, lr_size[0], 0, size[0]), Span(0, lr_size[1], 0, size[1]))]]
        regions = [r for row in rows for r in row]

        def sample(region: Tile) -> torch.Tensor:
            k = regions.index(region)
            origin = (region.y.hr0, region.x.hr0)
            crop = x[..., region.y.lr0 : region.y.lr1, region.x.lr0 : region.x.lr1]
            hr_size = (region.y.hr1 - region.y.hr0, region.x.hr1 - region.x.hr0)
            progress = callback
            if callback is not None and len(regions) > 1:  # the steps of all regions as one count
                progress = functools.partial(_region_progress, callback, k, len(regions))
            return sample_region(pipe, crop, hr_size, origin, options, seed, tile_side, batch, progress)

        return blend_regions(rows, size, sample, out_dtype)

    return padded_upscale(sr_array, x_lr, out_size, min_size=2 * multiple)


def _region_progress(callback: Callable[[int, int], None], k: int, count: int, done: int, total: int) -> None:
    callback(k * total + done, count * total)


def sample_region(
    pipe: Any,
    x_lr: torch.Tensor,
    out_size: tuple[int, int],
    origin: tuple[int, int],
    options: Any,
    seed: int,
    tile: int,
    batch: int,
    callback: Optional[Callable[[int, int], None]],
) -> torch.Tensor:
    """One canvas: the LR crop ``x_lr`` to ``out_size`` at HR ``origin`` of the whole output, in tiles
    of ``tile`` px (0: one network call) blended at every step, with the whole output's noise and
    U-Net grid at that place."""
    multiple = pipe.model.denoise_fn.size_multiple
    oy, ox = origin

    def condition(crops: torch.Tensor, hr_size: tuple[int, int], origins: list[tuple[int, int]]):
        return align_to_grid(pipe.condition(crops, hr_size), [(y + oy, x + ox) for y, x in origins], multiple)

    tiles = plan_tiles(tuple(x_lr.shape[-2:]), out_size, tile)
    with pipe.inference():
        if len(tiles) > 1:
            up = upsample_lr(x_lr, out_size, pipe.lr_upsample)
            cond = TiledCondition(x_lr, up, pipe.config.res_rescale, tiles, batch, condition)
        else:
            cond = condition(x_lr, out_size, [(0, 0)])
    return pipe.sr_tensor(x_lr, out_size, [seed], options, callback, cond, origin=origin)
