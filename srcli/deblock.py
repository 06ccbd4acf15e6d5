"""JPEG deblocking of an input: take the coding steps out of its 8 px block edges before it is enlarged.

A JPEG codes each 8x8 block on its own, so at low quality neighbouring blocks disagree by a small
offset and the picture shows a grid.  A model enlarges what it is given: the offsets become bands
along every block edge, scale times wider, which no filter on the output can tell from the picture
any more.  In the input the artefact is still a one-pixel step where the grid lies, so this filter
works there, as a video codec's in-loop deblocking filter does (HEVC's "normal" filter compares
the step across a block edge with the steps on either side): at each step between pixels 8k - 1
and 8k, the excess of that step over the mean of its two neighbouring steps is taken out, half
from each of the two pixels beside the edge.  An excess of ``EDGE_LEVELS`` or more (on the 8-bit
scale) is left alone: that is an edge of the picture lying on the grid, not a coding artefact.
Pixels not next to a block edge are not touched.

Where the grid lies (``grid_offsets``): a JPEG file decodes with its blocks at multiples of 8 px
from the top-left, but a crop of it has them elsewhere.  Along an axis of at least ``MIN_FIND_PX``
pixels the filter looks for the grid in the image itself: the one of the eight offsets whose mean
coding step (the excess above) stands out at least ``GRID_CONTRAST`` times over the median of the
eight.  Where none stands out (a weak grid, none at all, or an axis too short to tell: a 64 px
crop of a photo without any grid can score 1.8) the grid is taken at the top-left, as decoded.
Not deblocking those axes was measured and dropped: on uncropped real-world inputs the grid is
often too weak to find yet worth filtering (docs/degradation.md).  Columns are filtered first,
then rows, per colour channel, in the image's own bit depth.  On an input that never was a JPEG
the filter still smooths its 8 px lines a little (the real model's card gives the cost on clean
inputs), hence ``--no-deblock``.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from .metrics import JPEG_BLOCK, Y_RANGE, block_edge_steps, rgb_to_y

EDGE_LEVELS = 16.0  # an excess step this large (0-255 scale) is taken for an edge of the picture
MIN_FIND_PX = 128  # an axis this long has enough blocks (16) to find its grid; shorter: top-left
GRID_CONTRAST = 1.2  # the grid's offset must score this much over the median of the eight offsets


def _excess(view: np.ndarray, lines: np.ndarray) -> np.ndarray:
    """The step across each of ``lines`` (step i lies between pixels i and i + 1 of axis 0 of
    ``view``) minus the mean of its two neighbouring steps."""

    def step(i: np.ndarray) -> np.ndarray:
        return view[i + 1] - view[i]

    return step(lines) - 0.5 * (step(lines - 1) + step(lines + 1))


def grid_offsets(rgb: np.ndarray, block: int = JPEG_BLOCK) -> tuple[int, int]:
    """(rows, columns): where the ``block``-px grid of each axis starts, 0 (the top-left) unless
    another offset stands out on an axis of at least ``MIN_FIND_PX`` px (module docstring)."""
    peak = float(np.iinfo(rgb.dtype).max) if rgb.dtype.kind in "ui" else 255.0
    luma = rgb_to_y(rgb * (255.0 / peak) if peak != 255.0 else rgb)
    cap = EDGE_LEVELS * Y_RANGE / 255.0  # EDGE_LEVELS on luma's 16-235 scale
    found: list[int] = []
    for axis in (0, 1):
        n = luma.shape[axis]
        if n < MIN_FIND_PX:
            found.append(0)
            continue
        lines = np.arange(1, n - 2)
        excess = np.minimum(np.abs(_excess(np.moveaxis(luma, axis, 0), lines)), cap)
        profile = excess.mean(axis=1)
        # the grid at offset p has its edges between pixels p - 1 and p (mod block): steps i = p - 1
        scores = np.array([profile[(lines - (p - 1)) % block == 0].mean() for p in range(block)])
        best = int(np.argmax(scores))
        median = float(np.median(scores))
        found.append(best if median > 0 and scores[best] >= GRID_CONTRAST * median else 0)
    return found[0], found[1]


def deblock(rgb: np.ndarray, block: int = JPEG_BLOCK, offsets: Optional[tuple[int, int]] = None) -> np.ndarray:
    """``rgb`` (H, W, C) uint8 or uint16 with the steps across its ``block``-px grid softened
    (module docstring); same shape and dtype.  ``offsets`` (rows, columns) places the grid; by
    default ``grid_offsets`` finds it.  An axis shorter than two blocks is left as it is."""
    if rgb.dtype not in (np.uint8, np.uint16) or rgb.ndim != 3:
        raise ValueError("deblock() takes an (H, W, C) uint8 or uint16 array")
    offsets = grid_offsets(rgb, block) if offsets is None else offsets
    peak = float(np.iinfo(rgb.dtype).max)
    limit = EDGE_LEVELS * peak / 255.0
    x = rgb.astype(np.float32)
    for axis in (1, 0):  # vertical block edges (steps along x) first, then horizontal ones
        n, offset = x.shape[axis], offsets[axis]
        # the steps across the block edges (metrics.block_edge_steps at scale 1); step i lies between
        # pixels i and i + 1, and its neighbouring steps need pixels i - 1 and i + 2
        lines = np.array([i for i in block_edge_steps(n, 1.0, block, offset) if 1 <= i and i + 2 < n], dtype=np.intp)
        if lines.size == 0:
            continue
        view = np.moveaxis(x, axis, 0)  # a view: writes land in x
        excess = _excess(view, lines)
        excess[np.abs(excess) >= limit] = 0.0
        view[lines] += 0.5 * excess
        view[lines + 1] -= 0.5 * excess
    return np.clip(np.rint(x), 0, peak).astype(rgb.dtype)
