"""Image reading and writing: the one place srcli touches image files.

``read_image`` turns a file in one of the ``READ_FORMATS`` into an ``ImageData``: RGB samples of 8 or
16 bits, an optional 8-bit alpha plane, a grayscale flag, the ICC profile, the PNG gamma, and
warnings for anything that was changed on the way in (CMYK/LAB converted, first frame of an
animation, 16-bit colour read at 8 bits, ...).  ``READ_FORMATS`` is the one list of what srcli
reads: the reader opens nothing else, and folder discovery (``INPUT_SUFFIXES``, ``list_images``)
takes exactly the file name suffixes Pillow gives those formats.  Every failure, from a
missing file to a decoder choking on garbage, is an ``ImageReadError`` whose message is one line
naming the file and the reason.  Decompression bombs are refused by Pillow's own limit
(``Image.MAX_IMAGE_PIXELS``); above that limit srcli refuses instead of merely warning.

``write_image`` picks the format from the suffix, stores the best the format can hold (16-bit
grayscale in PNG/TIFF, alpha where the format has it, the ICC profile (in a BMP too, through a
version-5 header: srcli.bmpicc), the PNG gamma, JPEG/WebP quality 95) and
writes atomically, so an interrupted run never leaves a half-written image.  It can also store a
short text ``note`` inside the file (``read_note`` gives it back): what ``srcli upscale`` uses to
recognise an output made from the same input and settings (a PNG text chunk, the EXIF
ImageDescription of JPEG/WebP/TIFF, a sidecar ``NAME.srcli`` file beside a BMP, which has no room).
"""

from __future__ import annotations

import dataclasses
import io
import os
import stat
import struct
import warnings as _warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Optional

import numpy as np
from PIL import Image, ImageCms, ImageOps, PngImagePlugin, UnidentifiedImageError, features

from . import bmpicc
from .fsutil import NAME_MAX, atomic_write_bytes

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


# -- reading ---------------------------------------------------------------------------------------


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()).rstrip(".")
    return text or type(exc).__name__


def _to_srgb(im: Image.Image, icc: Optional[bytes]) -> Image.Image:
    """CMYK or LAB -> RGB; a CMYK image's own ICC profile is honoured when LittleCMS is available."""
    if im.mode == "CMYK" and icc and features.check("littlecms2"):
        try:
            src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            return ImageCms.profileToProfile(im, src, ImageCms.createProfile("sRGB"), outputMode="RGB")
        except (ImageCms.PyCMSError, OSError, ValueError):
            pass  # a broken profile: fall back to Pillow's plain conversion
    return im.convert("RGB")


def _gray16(im: Image.Image, warnings: list[str]) -> np.ndarray:
    arr = np.asarray(im)
    if im.mode == "I":  # 32-bit integer samples; 16-bit data in practice
        if arr.min() < 0 or arr.max() > 65535:
            warnings.append("32-bit integer samples clipped to the 16-bit range")
        arr = arr.clip(0, 65535)
    return arr.astype(np.uint16)


def from_pil(im: Image.Image, name: str = "image") -> ImageData:
    """Normalise a PIL image of any common mode (orientation already applied) to ``ImageData``."""
    icc = im.info.get("icc_profile") or None
    gamma = im.info.get("gamma")  # only PNG's reader sets it (from gAMA)
    if not isinstance(gamma, float) or not 0 < gamma < 42949:  # what a gAMA chunk can hold
        gamma = None
    warnings: list[str] = []
    mode = im.mode
    if mode in ("CMYK", "LAB"):
        im = _to_srgb(im, icc)
        icc = None  # the profile described the old colour space
        warnings.append(f"{mode} image converted to RGB")
    elif mode in ("P", "PA"):
        transparent = mode == "PA" or "transparency" in im.info or (im.palette is not None and im.palette.mode == "RGBA")
        im = im.convert("RGBA" if transparent else "RGB")
    elif mode == "F":
        raise ImageReadError(f"{name}: unsupported image mode F (32-bit floating-point samples)")
    if im.mode in _GRAY16_MODES or im.mode == "I":
        gray = _gray16(im, warnings)
        return ImageData(np.repeat(gray[..., None], 3, axis=2), None, True, icc, warnings, gamma)
    if im.mode in ("1", "L", "LA"):
        la = np.asarray(im.convert("LA"))
        alpha = np.ascontiguousarray(la[..., 1]) if im.mode == "LA" else None
        return ImageData(np.repeat(la[..., :1], 3, axis=2), alpha, True, icc, warnings, gamma)
    has_alpha = im.mode in ("RGBA", "RGBa")
    try:
        arr = np.asarray(im.convert("RGBA" if has_alpha else "RGB"))
    except ValueError:
        raise ImageReadError(f"{name}: unsupported image mode {im.mode}") from None
    alpha = np.ascontiguousarray(arr[..., 3]) if has_alpha else None
    return ImageData(np.ascontiguousarray(arr[..., :3]), alpha, False, icc, warnings, gamma)


def read_image(path: str | Path) -> ImageData:
    """Read one image file (first frame, EXIF orientation applied).  Raises ``ImageReadError``."""
    path = Path(path)
    try:
        if path.is_dir():
            raise ImageReadError(f"{path}: is a directory, not an image file")
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):  # a FIFO or a device would block or never end
            raise ImageReadError(f"{path}: not a regular file")
        if info.st_size == 0:
            raise ImageReadError(f"{path}: empty file")
    except FileNotFoundError:
        raise ImageReadError(f"{path}: no such file") from None
    except PermissionError:
        raise ImageReadError(f"{path}: permission denied") from None
    warnings: list[str] = []
    try:
        with _warnings.catch_warnings(record=True) as caught:
            _warnings.simplefilter("always")  # decoder complaints become the image's warnings
            # Pillow only warns between MAX_IMAGE_PIXELS and twice that; srcli refuses both.
            _warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path, formats=_OPENABLE) as im:
                if getattr(im, "is_animated", False):  # animations and multi-page TIFFs
                    warnings.append("several frames: only the first is used")
                    im.seek(0)
                if im.mode in ("RGB", "RGBA", "LA") and any(";16" in str(tile.args) for tile in im.tile):
                    # Pillow decodes 16-bit colour (and gray with alpha) to 8 bits: say so, once.
                    warnings.append(f"16-bit {im.mode} samples are read at 8 bits (Pillow has no 16-bit {im.mode} mode)")
                if im.format == "BMP" and "icc_profile" not in im.info:  # Pillow skips a V5 header's profile
                    profile, problem = bmpicc.embedded_profile(path)
                    if profile:
                        im.info["icc_profile"] = profile
                    if problem:
                        warnings.append(problem)
                im.load()  # decode now, so truncated or corrupt data fails here
                try:
                    im = ImageOps.exif_transpose(im)
                except Exception as exc:  # a malformed EXIF block must not lose a readable image
                    warnings.append(f"EXIF orientation ignored ({_one_line(exc)})")
                data = from_pil(im, str(path))
        warnings += dict.fromkeys(_one_line(w.message) for w in caught)
    except ImageReadError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageReadError(f"{path}: refused as a possible decompression bomb ({_one_line(exc)})") from None
    except UnidentifiedImageError:
        raise ImageReadError(f"{path}: not a recognised image (unknown format or corrupt header)") from None
    except PermissionError:
        raise ImageReadError(f"{path}: permission denied") from None
    except MemoryError:
        raise ImageReadError(f"{path}: too large to decode in memory") from None
    except Exception as exc:  # untrusted data: any decoder failure is a bad file, never a crash
        raise ImageReadError(f"{path}: truncated or corrupt image data ({_one_line(exc)})") from None
    data.warnings[:0] = warnings
    return data


def image_size(path: str | Path) -> Optional[tuple[int, int]]:
    """(height, width) of an image file as ``read_image`` would give it (EXIF orientation applied),
    from its header alone; None when it cannot be read."""
    try:
        with _warnings.catch_warnings():
            _warnings.simplefilter("ignore")
            with Image.open(path, formats=_OPENABLE) as im:
                width, height = im.size
                if im.getexif().get(0x0112) in (5, 6, 7, 8):  # EXIF orientations that swap the axes
                    width, height = height, width
                return height, width
    except Exception:  # unreadable in any way: no size
        return None


def to_uint8(samples: np.ndarray) -> np.ndarray:
    """uint8 or uint16 samples -> uint8 (16-bit rounded to the nearest 8-bit level)."""
    if samples.dtype == np.uint8:
        return samples
    return np.rint(samples / 257.0).astype(np.uint8)


def load_rgb8(path: str | Path) -> np.ndarray:
    """Read any supported image as (H, W, 3) uint8 RGB with its EXIF orientation applied (alpha dropped)."""
    return to_uint8(read_image(path).rgb)


def list_images(folder: str | Path, recursive: bool = True, suffixes: Iterable[str] = INPUT_SUFFIXES) -> list[Path]:
    """Image files (every readable suffix by default) in ``folder`` (and below it when ``recursive``),
    sorted for a stable order."""
    files = Path(folder).rglob("*") if recursive else Path(folder).iterdir()
    return sorted(p for p in files if p.suffix.lower() in suffixes and p.is_file())


# -- writing ---------------------------------------------------------------------------------------


def output_format(path: str | Path) -> str:
    """The Pillow format written for a file name; ``ValueError`` for a suffix srcli does not write."""
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        known = ", ".join(sorted(FORMATS))
        raise ValueError(f"{path}: cannot tell the image format from the suffix {suffix or '(none)'!r} (use {known})")
    return FORMATS[suffix]


def to_pil(data: ImageData, fmt: Optional[str] = None) -> tuple[Image.Image, list[str]]:
    """A PIL image of ``data`` in a mode ``fmt`` can store (any format when None), plus warnings
    for what had to be dropped.  Grayscale stays grayscale (I;16 when 16-bit and storable)."""
    warnings: list[str] = []
    alpha = data.alpha
    if alpha is not None and fmt is not None and fmt not in _ALPHA_FORMATS:
        warnings.append(f"{fmt} cannot store transparency: alpha dropped")
        alpha = None
    keep16 = data.bits == 16 and data.grayscale and alpha is None and (fmt is None or fmt in _GRAY16_FORMATS)
    if data.bits == 16 and not keep16:
        why = "16-bit is kept for grayscale PNG/TIFF without alpha only"
        warnings.append(f"saved at 8 bits per channel ({why})")
    if data.grayscale:
        gray = np.rint(data.rgb.mean(axis=2, dtype=np.float64)).astype(data.rgb.dtype)
        if keep16:
            return Image.fromarray(gray), warnings
        im = Image.fromarray(to_uint8(gray), "L")
        return (Image.merge("LA", (im, Image.fromarray(alpha, "L"))) if alpha is not None else im), warnings
    rgb = to_uint8(data.rgb)
    if alpha is not None:
        return Image.fromarray(np.dstack([rgb, alpha]), "RGBA"), warnings
    return Image.fromarray(rgb, "RGB"), warnings


def sidecar_path(path: str | Path) -> Path:
    """Where the note of a file whose format cannot hold one (BMP) is kept."""
    path = Path(path)
    return path.with_name(path.name + _SIDECAR_SUFFIX)


def write_image(path: str | Path, data: ImageData, quality: int = QUALITY, note: Optional[str] = None) -> list[str]:
    """Write atomically in the format of the suffix; returns warnings.  ``note`` (ASCII text) goes
    into the file's metadata (see the module docstring).  Raises ``ImageWriteError`` (one line:
    unwritable directory, full disk, ...) or ``ValueError`` for an unknown suffix."""
    path = Path(path)
    fmt = output_format(path)
    im, warnings = to_pil(data, fmt)
    params: dict = {}
    if fmt == "PNG" and (note is not None or data.gamma is not None):
        info = PngImagePlugin.PngInfo()
        if note is not None:
            info.add_text(NOTE_KEY, note)
        if data.gamma is not None:  # Pillow reads gAMA but never writes it: add the chunk itself
            info.add(b"gAMA", struct.pack(">I", round(data.gamma * 100000)))
        params["pnginfo"] = info
    elif note is not None and fmt in ("JPEG", "WEBP", "TIFF"):
        exif = Image.Exif()
        exif[_EXIF_DESCRIPTION] = note
        params["exif"] = exif
    if fmt != "PNG" and data.gamma is not None and abs(data.gamma - _SRGB_GAMMA) > 5e-4:  # sRGB's value is what any reader assumes
        warnings.append(f"{fmt} cannot store the PNG gamma {data.gamma:g}: dropped")
    if data.icc_profile and fmt != "BMP":  # BMP: added after Pillow has written the file
        params["icc_profile"] = data.icc_profile
    if fmt == "JPEG":
        params.update(quality=quality, subsampling=0)  # 4:4:4: chroma subsampling would blur added detail
    elif fmt == "WEBP":
        params["quality"] = quality
    elif fmt == "TIFF" and features.check("libtiff"):
        params["compression"] = "tiff_deflate"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise ImageWriteError(f"{path}: cannot write ({path.parent} is not a directory)") from None
    except OSError as exc:
        raise ImageWriteError(f"{path}: cannot create its directory ({exc.strerror or _one_line(exc)})") from None

    def save(tmp: str) -> None:
        im.save(tmp, format=fmt, **params)
        if fmt == "BMP" and data.icc_profile:
            Path(tmp).write_bytes(bmpicc.with_profile(Path(tmp).read_bytes(), data.icc_profile))

    try:
        atomic_write_bytes(path, save)
    except OSError as exc:
        raise ImageWriteError(f"{path}: cannot write ({exc.strerror or _one_line(exc)})") from None
    except ValueError as exc:
        raise ImageWriteError(f"{path}: cannot write ({_one_line(exc)})") from None
    sidecar = sidecar_path(path)
    fits = len(os.fsencode(sidecar.name)) <= NAME_MAX  # a name near the limit has no room for ".srcli"
    try:
        if note is not None and fmt == "BMP" and fits:
            atomic_write_bytes(sidecar, lambda tmp: Path(tmp).write_text(note + "\n"))
        elif note is not None and fmt == "BMP":
            warnings.append(f"no fingerprint beside it (the name is too long for a {_SIDECAR_SUFFIX} file): a rerun redoes it")
        elif fits and sidecar.exists():
            sidecar.unlink()  # it described an earlier file of this name
    except OSError as exc:
        raise ImageWriteError(f"{sidecar}: cannot write ({exc.strerror or _one_line(exc)})") from None
    return warnings


def read_note(path: str | Path) -> Optional[str]:
    """The ``note`` that ``write_image`` stored in (or beside) ``path``; None when there is none or
    the file cannot be read."""
    path = Path(path)
    try:
        if path.suffix.lower() == ".bmp":
            return sidecar_path(path).read_text().strip() if path.exists() else None
        with _warnings.catch_warnings():
            _warnings.simplefilter("ignore")
            with Image.open(path) as im:
                if im.format == "PNG":
                    return im.text.get(NOTE_KEY)
                value = im.getexif().get(_EXIF_DESCRIPTION)
                return value if isinstance(value, str) else None
    except Exception:  # unreadable in any way: no note
        return None


def is_complete_image(path: str | Path, size: tuple[int, int]) -> bool:
    """True when ``path`` decodes completely to an image of ``size`` = (height, width): an output a
    rerun may keep."""
    limit = Image.MAX_IMAGE_PIXELS
    try:
        # srcli's own outputs may exceed the bomb limit meant for inputs; allow exactly their size.
        if limit is not None and size[0] * size[1] > limit:
            Image.MAX_IMAGE_PIXELS = size[0] * size[1]
        with _warnings.catch_warnings():
            _warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                if (im.height, im.width) != tuple(size):
                    return False
                im.load()
                return True
    except Exception:  # unreadable in any way: not complete
        return False
    finally:
        Image.MAX_IMAGE_PIXELS = limit


def resize_alpha(alpha: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Upscale an alpha plane to ``size`` = (height, width) with Lanczos (a classical filter: the
    model is trained on colour, not on masks)."""
    return np.asarray(Image.fromarray(alpha, "L").resize((size[1], size[0]), Image.Resampling.LANCZOS))
