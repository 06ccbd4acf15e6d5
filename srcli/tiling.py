"""Tiled super-resolution: bounded network memory for any image size, without seams.

An LR image is cut into overlapping tiles whose HR footprints cover the output (``plan_tiles``:
balanced tiles, starts on the exact scale grid where possible).  Each tile's crop is encoded once;
the reverse process runs on one full-size canvas, and at every step the noise predictor runs tile
by tile and the overlapping predictions are averaged with Hann windows (``TiledCondition``), so the
network's activations are those of one batch of tiles while the whole image is sampled as one.
Tiles and whole images agree because their randomness is a property of the HR grid, not of the
tensor being sampled (``noise.field_noise``): switching tiling on or off (or changing the tile size
or batch) changes only what the network sees near tile borders, never the noise.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .diffusion import EpsFn
from .engine import Conditioned, from_residual, to_residual
from .errors import UsageError, is_int
from .nets import ModelConfig

MIN_TILE = 32


def check_tile(tile: Optional[int]) -> Optional[int]:
    """None (auto from a memory budget), 0 (no tiling) or an HR tile side of at least MIN_TILE px."""
    if tile is not None and (not is_int(tile) or (tile != 0 and tile < MIN_TILE)):
        raise UsageError(f"tile must be 0 (off) or at least {MIN_TILE} px, got {tile}")
    return tile


def check_tile_batch(batch: Optional[int]) -> Optional[int]:
    """None (the device's default) or a positive number of tiles per network batch."""
    if batch is not None and (not is_int(batch) or batch < 1):
        raise UsageError(f"tile batch must be a positive integer, got {batch}")
    return batch


# -- the tile grid -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Span:
    """One tile along one axis: LR pixels [lr0, lr1) map to HR pixels [hr0, hr1).  ``fade_in`` and
    ``fade_out`` are the HR overlaps with the previous and next tile (0 at the image border)."""

    lr0: int
    lr1: int
    hr0: int
    hr1: int
    fade_in: int = 0
    fade_out: int = 0

    def weights(self) -> torch.Tensor:
        """1 inside, Hann ramps over the overlaps: a tile's ramp and its neighbour's sum to 1."""
        w = torch.ones(self.hr1 - self.hr0, dtype=torch.float64)
        if self.fade_in:
            d = torch.arange(self.fade_in, dtype=torch.float64)
            w[: self.fade_in] = torch.sin(math.pi / 2 * (d + 0.5) / self.fade_in) ** 2
        if self.fade_out:
            d = torch.arange(self.fade_out, dtype=torch.float64)
            w[len(w) - self.fade_out :] = torch.cos(math.pi / 2 * (d + 0.5) / self.fade_out) ** 2
        return w.float()


def plan_axis(n_lr: int, n_hr: int, tile: int, overlap: int) -> list[Span]:
    """Evenly spaced tiles of HR length at most about ``tile`` overlapping by at least about ``overlap``.

    ``tile`` sets the number of tiles (the fewest of that size that cover the axis); the tiles then
    shrink to the smallest length with which that many still cover it with the overlap (balanced
    tiles: a 2048 px axis at 1024 px is 3 tiles of ~856, not 3 of 1024 that overlap by half).
    Tile starts are placed on LR pixels whose HR position is a whole pixel when the scale allows it
    (multiples of n_lr / gcd(n_lr, n_hr), e.g. even LR pixels at 2.5x), so a tile's bicubic
    up-sampling lands exactly on the global one; otherwise the HR start is rounded (<= 0.5 px off).
    All spans have the same length, so the tiles of an image can share a batch.
    """
    if tile <= 0 or tile >= n_hr:
        return [Span(0, n_lr, 0, n_hr)]
    scale = n_hr / n_lr
    unit = n_lr // math.gcd(n_lr, n_hr)
    lr_tile = max(1, round(tile / scale))
    if unit > max(1, lr_tile // 4):
        unit = 1  # no usable exact grid (e.g. odd sizes at a fractional scale)
    lr_tile = max(unit, lr_tile // unit * unit)
    if lr_tile >= n_lr:
        return [Span(0, n_lr, 0, n_hr)]
    # at most half a tile of overlap, so no pixel is covered by more than two tiles along an axis
    lr_overlap = min(math.ceil(overlap / scale / unit) * unit, lr_tile // 2 // unit * unit)
    stride = lr_tile - lr_overlap
    count = math.ceil((n_lr - lr_tile) / stride) + 1
    # count tiles of length L cover n_lr with the overlap when count * L - (count - 1) * overlap >= n_lr
    balanced = math.ceil((n_lr + (count - 1) * lr_overlap) / count / unit) * unit
    lr_tile = min(lr_tile, max(balanced, 2 * lr_overlap))
    room = (n_lr - lr_tile) // unit  # in units; n_lr and lr_tile are multiples of unit
    starts = [round(i * room / (count - 1)) * unit for i in range(count)]
    hr_tile = round(lr_tile * scale)
    hr_starts = [min(round(s * scale), n_hr - hr_tile) for s in starts]
    spans = []
    for i, (s, h) in enumerate(zip(starts, hr_starts)):
        fade_in = hr_starts[i - 1] + hr_tile - h if i > 0 else 0
        fade_out = h + hr_tile - hr_starts[i + 1] if i + 1 < count else 0
        spans.append(Span(s, s + lr_tile, h, h + hr_tile, max(0, fade_in), max(0, fade_out)))
    return spans


@dataclass(frozen=True)
class Tile:
    y: Span
    x: Span


# HR px of overlap between tiles at most (a quarter of a smaller tile): the canvas blends the tiles'
# predictions at every step, so a wide overlap buys no agreement, only network work
MAX_TILE_OVERLAP = 128


def tile_overlap(tile: int) -> int:
    """HR px by which neighbouring tiles overlap: a quarter of ``tile``, at most ``MAX_TILE_OVERLAP``."""
    return min(tile // 4, MAX_TILE_OVERLAP)


def plan_tiles(lr_size: tuple[int, int], hr_size: tuple[int, int], tile: int, overlap: Optional[int] = None) -> list[Tile]:
    """Balanced tiles (``plan_axis``) in row-major order covering ``hr_size``; ``overlap`` defaults
    to ``tile_overlap(tile)``."""
    overlap = tile_overlap(tile) if overlap is None else overlap
    rows = plan_axis(lr_size[0], hr_size[0], tile, overlap)
    cols = plan_axis(lr_size[1], hr_size[1], tile, overlap)
    return [Tile(r, c) for r in rows for c in cols]


# -- the U-Net's grid ----------------------------------------------------------------------------------


class GridAligned(Conditioned):
    """A tile batch's condition whose noise predictor sees every tile on the global image's
    stride-2 grid.  The U-Net downsamples ``levels - 1`` times, so its output depends on an input's
    position modulo ``multiple`` = 2**(levels - 1); a tile starting at HR x = 65 would otherwise be
    computed on a grid shifted from the whole image's.  Each tile is edge-padded at the top/left by
    its origin modulo ``multiple`` (and at the bottom/right to a common size), then cropped back."""

    def __init__(self, base: Conditioned, origins: Sequence[tuple[int, int]], multiple: int):
        self.__dict__.update(base.__dict__)  # share the encoded tensors: no second encoder pass
        self.pads = [(y % multiple, multiple - 1 - y % multiple, x % multiple, multiple - 1 - x % multiple) for y, x in origins]
        self.cond_hr = self._pad(base.cond_hr)

    def _pad(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([F.pad(x[i : i + 1], (lf, rt, tp, bt), mode="replicate") for i, (tp, bt, lf, rt) in enumerate(self.pads)])

    def eps_fn(self) -> EpsFn:
        unet, cond, scale, margin = self.model.denoise_fn, self.cond_hr, self.scale, self.unet_margin

        def eps(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            h, w = x_t.shape[-2:]
            out = unet(self._pad(x_t), t, cond, scale, margin)
            return torch.cat([out[i : i + 1, :, tp : tp + h, lf : lf + w] for i, (tp, _, lf, _) in enumerate(self.pads)])

        return eps


def align_to_grid(cond: Conditioned, origins: Sequence[tuple[int, int]], multiple: int) -> Conditioned:
    """``cond`` itself when every origin already lies on the grid (always for an untiled image)."""
    if multiple <= 1 or all(y % multiple == 0 and x % multiple == 0 for y, x in origins):
        return cond
    return GridAligned(cond, origins, multiple)


# -- memory ------------------------------------------------------------------------------------------


def bytes_per_hr_pixel(config: ModelConfig, scale: float, element_bytes: int = 4) -> float:
    """Peak inference memory per HR pixel of one tile, with a margin.  Measured for the default c=32
    model on the CPU: ~1.45 KB at 2x, ~1.2 KB at 4x, dominated by the LR encoder's dense blocks and
    the projected condition; the formula scales those with the widths and adds 50%."""
    lr_part = 2 * config.rrdb_nf * (config.rrdb_blocks + 1) / scale**2
    return element_bytes * (14 * config.unet_dim + lr_part)


def memory_budget(device: torch.device) -> int:
    """Bytes a batch of tiles may use: half the free CUDA memory, or a third of the available RAM
    capped at 2 GiB on the CPU (where bigger tiles buy no speed)."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free * 0.5)
    try:
        available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # not on every platform
        available = 3 << 30
    return int(min(2 << 30, available / 3))


def auto_tile(config: ModelConfig, scale: float, batch: int, budget: int, element_bytes: int = 4) -> int:
    """The largest HR tile side (a multiple of 32, 64..2048) whose batch fits ``budget`` bytes; it
    fixes the number of tiles, which ``plan_axis`` then shrinks to just cover the image."""
    pixels = budget / (max(1, batch) * bytes_per_hr_pixel(config, scale, element_bytes))
    side = int(math.sqrt(max(pixels, 1.0))) // 32 * 32
    return max(64, min(2048, side))


# -- sampling on the canvas --------------------------------------------------------------------------


class TiledCondition:
    """A whole image's condition made of tile conditions, for sampling on one full-size canvas.

    Every tile's LR crop is encoded once (batches of ``batch_size`` tiles, each on the U-Net's
    global grid: ``align_to_grid``).  The reverse process then runs on the full-size x_t: at every
    step ``eps_fn`` evaluates the noise predictor tile by tile on its window of the canvas and
    averages the predictions where tiles overlap, weighted by the tiles' Hann windows (which sum to
    one), so neighbouring tiles see the same x_t at every step and the x0-hat they imply agree
    (MultiDiffusion's fusion of the per-window predictions).  up(x_L) is the whole image's
    (``x_up``), so the residual space, the start image of a strength < 1 and back-projection are
    the untiled run's; only what the network sees near tile borders differs.

    Memory: besides one batch of tiles' activations, the canvas holds the projected condition of
    every tile (``unet_dim`` channels per HR pixel of tile area, in the networks' dtype: 128 bytes
    per output pixel for the shipped c=32 model in fp32, times the overlap, ~1.3-1.8) and a handful
    of full-size float32 RGB tensors (x_t, the blended prediction, x0-hat, the mean, the noise:
    ~12 bytes each): measured ~450 bytes per output pixel in fp32 (docs/design.md, "Tiles"); an
    output whose canvas would exceed the memory budget is cut into regions first (``regions``).
    """

    def __init__(
        self,
        x_lr: torch.Tensor,
        x_up: torch.Tensor,
        rescale: float,
        tiles: Sequence[Tile],
        batch_size: int,
        condition: Callable[[torch.Tensor, tuple[int, int], list[tuple[int, int]]], Conditioned],
    ):
        self.x_lr, self.x_up, self.rescale = x_lr.float(), x_up.float(), rescale
        self.batches: list[tuple[list[Tile], Conditioned, torch.Tensor]] = []
        self.wsum = torch.zeros(x_up.shape[-2:], device=x_up.device)
        for i in range(0, len(tiles), max(1, batch_size)):
            group = list(tiles[i : i + max(1, batch_size)])
            crops = torch.cat([self.x_lr[..., t.y.lr0 : t.y.lr1, t.x.lr0 : t.x.lr1] for t in group])
            size = (group[0].y.hr1 - group[0].y.hr0, group[0].x.hr1 - group[0].x.hr0)
            cond = condition(crops, size, [(t.y.hr0, t.x.hr0) for t in group])
            windows = torch.stack([(t.y.weights()[:, None] * t.x.weights()[None, :]) for t in group]).to(x_up.device)
            for t, w in zip(group, windows):
                self.wsum[t.y.hr0 : t.y.hr1, t.x.hr0 : t.x.hr1] += w
            self.batches.append((group, cond, windows[:, None]))
        self.wsum.clamp_(min=1e-12)

    @property
    def out_size(self) -> tuple[int, int]:
        return tuple(self.x_up.shape[-2:])

    def _blend(self, predict: Callable[[list[Tile], Conditioned], torch.Tensor]) -> torch.Tensor:
        """The window-weighted mean over tiles of ``predict(tiles, cond)`` ((n, 3, h, w) per batch)."""
        out = torch.zeros_like(self.x_up)
        for group, cond, windows in self.batches:
            weighted = predict(group, cond).float() * windows
            for t, part in zip(group, weighted):
                out[0, :, t.y.hr0 : t.y.hr1, t.x.hr0 : t.x.hr1] += part
        return out / self.wsum

    def eps_fn(self) -> EpsFn:
        fns = {id(cond): cond.eps_fn() for _, cond, _ in self.batches}

        def eps(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            def predict(group: list[Tile], cond: Conditioned) -> torch.Tensor:
                crops = torch.cat([x_t[..., g.y.hr0 : g.y.hr1, g.x.hr0 : g.x.hr1] for g in group])
                return fns[id(cond)](crops, t[:1].expand(len(group)))

            return self._blend(predict)

        return eps

    def start_residual(self, init: str) -> torch.Tensor:
        """As ``Conditioned.start_residual``: the tiles' encoder outputs blended, against the whole up(x_L)."""
        if init == "bicubic":
            return torch.zeros_like(self.x_up)
        image = self._blend(lambda group, cond: cond.model.rrdb.head(cond.trunk, cond.x_lr, cond.out_size))
        return self.to_residual(image)

    def to_residual(self, x_hr: torch.Tensor) -> torch.Tensor:
        return to_residual(x_hr, self.x_up, self.rescale)

    def to_image(self, x_r: torch.Tensor) -> torch.Tensor:
        return from_residual(x_r, self.x_up, self.rescale)


def padded_upscale(
    sr_array: Callable[[torch.Tensor, tuple[int, int]], np.ndarray],
    x_lr: torch.Tensor,
    out_size: tuple[int, int],
    min_size: int = 1,
) -> np.ndarray:
    """``sr_array(x_lr, out_size)`` (an (H, W, 3) array) for any size: ``min_size`` is the smallest
    HR side the network accepts; smaller images are edge-padded at the bottom/right (so HR pixel
    (y, x) keeps its place, and its noise) and cropped back."""
    h, w = x_lr.shape[-2:]
    big_h, big_w = out_size
    if big_h >= min_size and big_w >= min_size:
        return sr_array(x_lr, out_size)
    pad_h = max(h, math.ceil(min_size * h / big_h)) - h
    pad_w = max(w, math.ceil(min_size * w / big_w)) - w
    padded = F.pad(x_lr.float(), (0, pad_w, 0, pad_h), mode="replicate").to(x_lr.dtype)
    size = (max(big_h, round((h + pad_h) * big_h / h)), max(big_w, round((w + pad_w) * big_w / w)))
    return np.ascontiguousarray(padded_upscale(sr_array, padded, size, min_size)[:big_h, :big_w])
