"""Rendering of the explore results: contact sheets, interpolation and fusion strips, the sigma heatmap.

Each takes Pillow images or uint8 arrays and returns an (H, W, 3) uint8 array: what the CLI writes.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Optional, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

if TYPE_CHECKING:  # the result types only; explore imports the model stack
    from .explore import DiverseSamples, Fusion, Interpolation
    from .explore.common import Box, ImageLike

_CAPTION = 16  # caption band height in pixels
_GAP = 4
# anchors of a dark-to-bright perceptual ramp (black, purple, red, orange, pale yellow)
_RAMP = np.array(
    [[0, 0, 4], [60, 15, 110], [150, 40, 120], [225, 85, 70], [250, 165, 30], [252, 253, 190]], dtype=np.float64
)


def _font(size: int = 12) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has only the fixed bitmap font
        return ImageFont.load_default()


def colorize(values: np.ndarray, vmax: float) -> np.ndarray:
    """Map values in [0, vmax] to RGB uint8 along the heatmap ramp (values above vmax saturate)."""
    x = np.clip(values / vmax if vmax > 0 else np.zeros_like(values), 0, 1) * (len(_RAMP) - 1)
    anchors = np.arange(len(_RAMP))
    rgb = [np.interp(x, anchors, _RAMP[:, c]) for c in range(3)]
    return np.stack(rgb, axis=-1).round().astype(np.uint8)


def heatmap(sigma: np.ndarray, mean_sigma: Optional[float] = None) -> np.ndarray:
    """The per-pixel standard deviation map as a colour image with a colour bar and its scale.

    The scale runs from 0 to the 99th percentile of the map (brighter = the samples disagree more,
    i.e. the model invents detail there); values above it saturate.
    """
    vmax = float(np.percentile(sigma, 99)) if sigma.size else 0.0
    vmax = vmax if vmax > 0 else 1.0
    img = colorize(sigma, vmax)
    h, w = sigma.shape
    font = _font(12)
    width = max(w, 260)
    bar_h, legend_h = 12, 44
    canvas = Image.new("RGB", (width, h + legend_h), "white")
    canvas.paste(Image.fromarray(img), ((width - w) // 2, 0))
    bar_w = width - 20
    ramp = colorize(np.tile(np.linspace(0, vmax, bar_w), (bar_h, 1)), vmax)
    canvas.paste(Image.fromarray(ramp), (10, h + 4))
    draw = ImageDraw.Draw(canvas)
    draw.text((10, h + 4 + bar_h + 1), "0", fill="black", font=font)
    top = f">={vmax:.1f}"
    draw.text((10 + bar_w - draw.textlength(top, font=font), h + 4 + bar_h + 1), top, fill="black", font=font)
    title = "std dev per pixel (0-255)" + ("" if mean_sigma is None else f", mean {mean_sigma:.2f}")
    draw.text(((width - draw.textlength(title, font=font)) / 2, h + 4 + bar_h + 14), title, fill="black", font=font)
    return np.asarray(canvas)


def labelled_grid(tiles: Sequence[tuple[str, np.ndarray]], columns: int, max_tile: int = 384) -> np.ndarray:
    """Tiles of one size in a grid, each with a caption below; tiles larger than ``max_tile`` (long
    side) are shrunk for the sheet.  Smaller tiles (an LR input) are enlarged with nearest neighbour
    so their pixels stay visible."""
    if not tiles:
        raise ValueError("no tiles")
    tiles = [(label, np.asarray(tile)) for label, tile in tiles]
    th, tw = max(t.shape[0] for _, t in tiles), max(t.shape[1] for _, t in tiles)
    shrink = min(1.0, max_tile / max(th, tw))
    th, tw = max(1, round(th * shrink)), max(1, round(tw * shrink))
    columns = max(1, min(columns, len(tiles)))
    rows = math.ceil(len(tiles) / columns)
    font = _font(12)
    cell_w = max(tw, 64)
    sheet = Image.new("RGB", (columns * (cell_w + _GAP) + _GAP, rows * (th + _CAPTION + _GAP) + _GAP), "white")
    draw = ImageDraw.Draw(sheet)
    for i, (label, tile) in enumerate(tiles):
        im = Image.fromarray(tile)
        if im.size != (tw, th):
            enlarge = im.width < tw and im.height < th
            im = im.resize((tw, th), Image.NEAREST if enlarge else Image.BICUBIC)
        x = _GAP + (i % columns) * (cell_w + _GAP) + (cell_w - tw) // 2
        y = _GAP + (i // columns) * (th + _CAPTION + _GAP)
        sheet.paste(im, (x, y))
        while label and draw.textlength(label, font=font) > cell_w:
            label = label[:-1]
        draw.text((x + (tw - draw.textlength(label, font=font)) / 2, y + th + 2), label, fill="black", font=font)
    return np.asarray(sheet)


def contact_sheet(result: DiverseSamples, columns: int = 5) -> np.ndarray:
    """LR input, bicubic and every sample, labelled, with the mean sigma in the bicubic caption."""
    lr = np.asarray(result.lr)
    tiles = [(f"LR input {lr.shape[1]}x{lr.shape[0]}", lr), ("bicubic", result.bicubic)]
    tiles += [(f"seed {s}", img) for s, img in zip(result.seeds, result.samples)]
    return labelled_grid(tiles, columns)


def interpolation_strip(result: Interpolation) -> np.ndarray:
    """One row: prediction B (lambda 0 end), the decoded mixes in order, prediction A (lambda 1 end)."""
    a_name, b_name = ("A", "B") if result.seeds is None else (f"A: seed {result.seeds[0]}", f"B: seed {result.seeds[1]}")
    tiles = [(b_name, result.endpoints[1])]
    tiles += [(f"lam={lam:g} t={result.t}", img) for lam, img in zip(result.lambdas, result.images)]
    tiles.append((a_name, result.endpoints[0]))
    return labelled_grid(tiles, len(tiles))


def _array(image: "ImageLike") -> np.ndarray:
    return np.asarray(image.convert("RGB")) if isinstance(image, Image.Image) else np.asarray(image)


def _outline(image: np.ndarray, box: Box) -> np.ndarray:
    im = Image.fromarray(image)
    x0, y0, x1, y1 = box
    ImageDraw.Draw(im).rectangle((x0, y0, x1 - 1, y1 - 1), outline=(0, 255, 0), width=max(1, min(im.size) // 128))
    return np.asarray(im)


def fusion_strip(result: Fusion, eyes_hr: ImageLike, face_hr: ImageLike) -> np.ndarray:
    """One row as in the paper's Fig. 6(a): eye source and face source (box outlined), the plain
    paste x_f, then the fused image for every t."""
    tiles = [
        ("eye source", _outline(_array(eyes_hr), result.box)),
        ("face source", _outline(_array(face_hr), result.box)),
        ("paste (t=0)", result.pasted),
    ]
    tiles += [(f"t={t}", img) for t, img in zip(result.ts, result.images)]
    return labelled_grid(tiles, len(tiles))
