"""What an output was made from: a fingerprint of (input, model, settings) kept inside the output.

A rerun of ``srcli upscale`` keeps an existing output only when the fingerprint stored in it equals
the one the run would make, so changing ``--strength``, ``--seed``, the model or the input itself
redoes the image instead of silently keeping the old one.  The fingerprint hashes the input file's
bytes, the checkpoint file's bytes and every setting that changes the pixels; it is stored as a short
JSON note (``imageio.write_image(note=...)``) that also lists those settings, so a user can see what
made a file (``srcli`` key of a PNG, EXIF ImageDescription of JPEG/WebP/TIFF, ``NAME.bmp.srcli``).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Optional

FINGERPRINT_KEY = "fingerprint"
_CHUNK = 1 << 20


def file_digest(path: str | Path) -> str:
    """SHA-256 of a file's bytes (hex)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def fingerprint(input_digest: str, model_digest: str, settings: dict[str, Any]) -> str:
    """A hash of what determines an output: input bytes, model bytes and the effective settings."""
    blob = json.dumps({"input": input_digest, "model": model_digest, "settings": settings}, sort_keys=True)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:32]


def make_note(fp: str, settings: dict[str, Any]) -> str:
    """The text stored in an output: the fingerprint and, for people, the settings it covers."""
    return json.dumps({FINGERPRINT_KEY: fp, **settings}, sort_keys=True)


def note_fingerprint(note: Optional[str]) -> Optional[str]:
    """The fingerprint in a stored note; None for no note or someone else's text."""
    try:
        value = json.loads(note)[FINGERPRINT_KEY] if note else None
    except (ValueError, TypeError, KeyError):
        return None
    return value if isinstance(value, str) else None
