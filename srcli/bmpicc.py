"""ICC profiles in BMP files, which Pillow neither writes nor reads there.

A BMP carries a profile in a BITMAPV5HEADER (124 bytes instead of the usual 40): its colour-space
field says PROFILE_EMBEDDED and two fields give the profile's offset (from the start of that
header) and size; the profile bytes follow the pixels.  ``with_profile`` turns the plain BMP that
Pillow writes into such a file; ``embedded_profile`` reads the profile back from any V5 BMP.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Optional

FILE_HEADER, INFO_HEADER, V5_HEADER = 14, 40, 124  # bytes
PROFILE_EMBEDDED = 0x4D424544  # bV5CSType 'MBED'
INTENT_IMAGES = 4  # bV5Intent LCS_GM_IMAGES: perceptual rendering
_CS_TYPE_AT, _PROFILE_AT = 56, 112  # offsets inside the V5 header: after the 40-byte part and 4 masks; bV5ProfileData


def with_profile(bmp: bytes, profile: bytes) -> bytes:
    """A BMP with a BITMAPINFOHEADER (what Pillow writes) rewritten with a BITMAPV5HEADER that
    embeds ``profile`` after the pixels.  The V5 colour masks are only read for BI_BITFIELDS
    files, which Pillow does not write: zero here."""
    if bmp[:2] != b"BM" or struct.unpack_from("<I", bmp, FILE_HEADER)[0] != INFO_HEADER:
        raise ValueError("not a BMP with a 40-byte BITMAPINFOHEADER")
    pixels_at = struct.unpack_from("<I", bmp, 10)[0] + V5_HEADER - INFO_HEADER
    body = bmp[FILE_HEADER + INFO_HEADER :]  # the palette (if any) and the pixels
    v5 = struct.pack("<I", V5_HEADER) + bmp[FILE_HEADER + 4 : FILE_HEADER + INFO_HEADER]
    v5 += bytes(16) + struct.pack("<I", PROFILE_EMBEDDED) + bytes(36 + 12)  # masks, colour space, endpoints, gammas
    v5 += struct.pack("<4I", INTENT_IMAGES, V5_HEADER + len(body), len(profile), 0)
    total = FILE_HEADER + V5_HEADER + len(body) + len(profile)
    return b"BM" + struct.pack("<IHHI", total, 0, 0, pixels_at) + v5 + body + profile


def embedded_profile(path: str | Path) -> tuple[Optional[bytes], Optional[str]]:
    """(the ICC profile embedded in the BMP ``path``, None) when it has one; (None, a warning)
    when its header points outside the file (untrusted input); (None, None) otherwise."""
    with open(path, "rb") as f:
        head = f.read(FILE_HEADER + V5_HEADER)
        if len(head) < FILE_HEADER + V5_HEADER or struct.unpack_from("<I", head, FILE_HEADER)[0] != V5_HEADER:
            return None, None
        if struct.unpack_from("<I", head, FILE_HEADER + _CS_TYPE_AT)[0] != PROFILE_EMBEDDED:
            return None, None
        offset, size = struct.unpack_from("<2I", head, FILE_HEADER + _PROFILE_AT)
        if size == 0:
            return None, None
        f.seek(FILE_HEADER + offset)
        profile = f.read(size)
    if len(profile) != size:
        return None, "the embedded ICC profile lies outside the file: ignored"
    return profile, None
