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

from .formats import (
    FORMATS, IMAGE_SUFFIXES, INPUT_SUFFIXES, NOTE_KEY, QUALITY, READ_FORMATS, ImageData, ImageReadError, ImageWriteError,
)
from .read import from_pil, image_size, list_images, load_rgb8, read_image, to_uint8
from .write import is_complete_image, output_format, read_note, resize_alpha, sidecar_path, to_pil, write_image

__all__ = [
    "FORMATS", "IMAGE_SUFFIXES", "INPUT_SUFFIXES", "NOTE_KEY", "QUALITY", "READ_FORMATS", "ImageData", "ImageReadError", "ImageWriteError",
    "from_pil", "image_size", "list_images", "load_rgb8", "read_image", "to_uint8", "is_complete_image", "output_format", "read_note",
    "resize_alpha", "sidecar_path", "to_pil", "write_image",
]
