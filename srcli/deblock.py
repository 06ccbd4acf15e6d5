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

The grid is the image's own: multiples of 8 px from its top-left corner, as a JPEG file decodes.
Columns are filtered first, then rows, per colour channel, in the image's own bit depth.  On an
input that never was a JPEG the filter still smooths its 8 px lines a little (the real model's
card gives the cost on clean inputs), hence ``--no-deblock``.
"""

from __future__ import annotations

import numpy as np

from .metrics import JPEG_BLOCK, block_edge_steps

EDGE_LEVELS = 16.0  # an excess step this large (0-255 scale) is taken for an edge of the picture


def deblock(rgb: np.ndarray, block: int = JPEG_BLOCK) -> np.ndarray:
    """``rgb`` (H, W, C) uint8 or uint16 with the steps across its ``block``-px grid softened
    (module docstring); same shape and dtype.  An axis shorter than two blocks is left as it is."""
    if rgb.dtype not in (np.uint8, np.uint16) or rgb.ndim != 3:
        raise ValueError("deblock() takes an (H, W, C) uint8 or uint16 array")
    peak = float(np.iinfo(rgb.dtype).max)
    limit = EDGE_LEVELS * peak / 255.0
    x = rgb.astype(np.float32)
    for axis in (1, 0):  # vertical block edges (steps along x) first, then horizontal ones
        n = x.shape[axis]
        # the steps across the block edges (metrics.block_edge_steps at scale 1); step i lies between
        # pixels i and i + 1, and its neighbouring steps need pixels i - 1 and i + 2
        lines = np.array([i for i in block_edge_steps(n, 1.0, block) if i + 2 < n], dtype=np.intp)
        if lines.size == 0:
            continue
        view = np.moveaxis(x, axis, 0)  # a view: writes land in x

        def step(i: np.ndarray) -> np.ndarray:
            return view[i + 1] - view[i]

        excess = step(lines) - 0.5 * (step(lines - 1) + step(lines + 1))
        excess[np.abs(excess) >= limit] = 0.0
        view[lines] += 0.5 * excess
        view[lines + 1] -= 0.5 * excess
    return np.clip(np.rint(x), 0, peak).astype(rgb.dtype)
