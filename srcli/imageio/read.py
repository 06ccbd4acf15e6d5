"""Reading images: any of the ``READ_FORMATS`` into an ``ImageData`` (or an ``ImageReadError``), sizes
from headers, folder listing."""

from __future__ import annotations

import io
import stat
import warnings as _warnings
from pathlib import Path
from typing import Iterable, Optional

import numpy as np
from PIL import Image, ImageCms, ImageOps, UnidentifiedImageError, features

from .. import bmpicc
from .formats import _GRAY16_MODES, _OPENABLE, INPUT_SUFFIXES, ImageData, ImageReadError, one_line

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
                    warnings.append(f"EXIF orientation ignored ({one_line(exc)})")
                data = from_pil(im, str(path))
        warnings += dict.fromkeys(one_line(w.message) for w in caught)
    except ImageReadError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageReadError(f"{path}: refused as a possible decompression bomb ({one_line(exc)})") from None
    except UnidentifiedImageError:
        raise ImageReadError(f"{path}: not a recognised image (unknown format or corrupt header)") from None
    except PermissionError:
        raise ImageReadError(f"{path}: permission denied") from None
    except MemoryError:
        raise ImageReadError(f"{path}: too large to decode in memory") from None
    except Exception as exc:  # untrusted data: any decoder failure is a bad file, never a crash
        raise ImageReadError(f"{path}: truncated or corrupt image data ({one_line(exc)})") from None
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
