"""Writing images: atomically, in the format of the suffix, with what the format can hold, and the
short ``note`` (the output's fingerprint) inside the file or beside it."""

from __future__ import annotations

import os
import struct
import warnings as _warnings
from pathlib import Path
from typing import Optional

import numpy as np
from PIL import Image, PngImagePlugin, features

from .. import bmpicc
from ..fsutil import NAME_MAX, atomic_write_bytes
from .formats import (
    _ALPHA_FORMATS, _EXIF_DESCRIPTION, _GRAY16_FORMATS, _SIDECAR_SUFFIX, _SRGB_GAMMA, FORMATS, NOTE_KEY, QUALITY, ImageData, ImageWriteError,
    one_line,
)
from .read import to_uint8

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
        raise ImageWriteError(f"{path}: cannot create its directory ({exc.strerror or one_line(exc)})") from None

    def save(tmp: str) -> None:
        im.save(tmp, format=fmt, **params)
        if fmt == "BMP" and data.icc_profile:
            Path(tmp).write_bytes(bmpicc.with_profile(Path(tmp).read_bytes(), data.icc_profile))

    try:
        atomic_write_bytes(path, save)
    except OSError as exc:
        raise ImageWriteError(f"{path}: cannot write ({exc.strerror or one_line(exc)})") from None
    except ValueError as exc:
        raise ImageWriteError(f"{path}: cannot write ({one_line(exc)})") from None
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
        raise ImageWriteError(f"{sidecar}: cannot write ({exc.strerror or one_line(exc)})") from None
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
