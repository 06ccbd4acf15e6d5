"""What srcli reads and writes (formats, suffixes), its two error types and ``ImageData``."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
from PIL import Image

# The Pillow formats srcli reads, the one list both the reader and folder discovery use: raster
# formats Pillow decodes itself.  Left out on purpose: EPS/PS (Pillow runs Ghostscript on the file,
# not something to do with untrusted input), the formats Pillow only identifies (BUFR, GRIB, HDF5,
# MPEG, WMF/EMF) and rare scientific or legacy ones.  (JPEG's opener also gives camera MPO files.)
READ_FORMATS = ("PNG", "JPEG", "WEBP", "AVIF", "TIFF", "BMP", "DIB", "GIF", "JPEG2000", "PPM", "TGA", "QOI", "PSD", "ICO", "PCX", "SGI")
Image.init()
_OPENABLE = tuple(f for f in READ_FORMATS if f in Image.OPEN)  # e.g. no AVIF in a Pillow built without it
# Readable inputs a folder or a glob pattern is searched for (.avif, .gif, .ppm, .jp2, ...); a GIF,
# AVIF, ... input gives a PNG output.
INPUT_SUFFIXES = frozenset(s.lower() for s, fmt in Image.registered_extensions().items() if fmt in _OPENABLE)
FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".tif": "TIFF", ".tiff": "TIFF", ".bmp": "BMP"}
IMAGE_SUFFIXES = set(FORMATS)  # the suffixes srcli writes
QUALITY = 95  # JPEG and WebP
NOTE_KEY = "srcli"  # the PNG text chunk's keyword
_EXIF_DESCRIPTION = 0x010E  # ImageDescription: an ASCII field every EXIF reader shows
_SIDECAR_SUFFIX = ".srcli"
_ALPHA_FORMATS = {"PNG", "WEBP", "TIFF"}
_GRAY16_FORMATS = {"PNG", "TIFF"}
_GRAY16_MODES = {"I;16", "I;16L", "I;16B", "I;16N"}
_SRGB_GAMMA = 1 / 2.2  # the gAMA value of an sRGB-like PNG: what a file without gamma is taken to be


class ImageReadError(Exception):
    """An input that cannot be read as an image (message names the file and the reason in one line)."""


class ImageWriteError(Exception):
    """An output that cannot be written (message names the file and the reason in one line)."""


@dataclass
class ImageData:
    """Pixels plus what must survive the round trip.  ``rgb`` is (H, W, 3) uint8 or uint16 (a
    grayscale image has three equal channels), ``alpha`` (H, W) uint8 or None, ``gamma`` the PNG
    gAMA value (e.g. 0.45455) or None."""

    rgb: np.ndarray
    alpha: Optional[np.ndarray] = None
    grayscale: bool = False
    icc_profile: Optional[bytes] = None
    warnings: list[str] = field(default_factory=list)
    gamma: Optional[float] = None

    def __post_init__(self) -> None:
        if self.rgb.ndim != 3 or self.rgb.shape[2] != 3 or self.rgb.dtype not in (np.uint8, np.uint16):
            raise ValueError(f"rgb must be (H, W, 3) uint8 or uint16, got {self.rgb.shape} {self.rgb.dtype}")
        if self.rgb.shape[0] == 0 or self.rgb.shape[1] == 0:
            raise ValueError(f"an image needs at least one pixel, got {self.rgb.shape[0]}x{self.rgb.shape[1]}")
        if self.alpha is not None and (self.alpha.shape != self.rgb.shape[:2] or self.alpha.dtype != np.uint8):
            raise ValueError(f"alpha must be (H, W) uint8 matching rgb, got {self.alpha.shape} {self.alpha.dtype}")

    @property
    def bits(self) -> int:
        return 16 if self.rgb.dtype == np.uint16 else 8

    @property
    def size(self) -> tuple[int, int]:
        """(height, width)."""
        return self.rgb.shape[0], self.rgb.shape[1]

    def replace(self, rgb: np.ndarray, alpha: Optional[np.ndarray]) -> "ImageData":
        """New pixels with the same colour metadata (and no read warnings)."""
        return dataclasses.replace(self, rgb=rgb, alpha=alpha, warnings=[])


def one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()).rstrip(".")
    return text or type(exc).__name__
