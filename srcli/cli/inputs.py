"""Which files a command works on: file, folder and glob arguments, shards, Pillow's pixel limit."""

from __future__ import annotations

import glob
import os
from pathlib import Path
from typing import Iterable, Optional, Sequence, TypeVar

from PIL import Image

from ..errors import UsageError

PIXEL_LIMIT_ENV = "SRCLI_MAX_IMAGE_PIXELS"
T = TypeVar("T")


def parse_shard(text: Optional[str]) -> tuple[int, int]:
    """``--shard I/N`` (1 <= I <= N): this process takes every N-th item starting at the I-th."""
    if text is None:
        return 1, 1
    parts = text.split("/")
    try:
        index, count = (int(p) for p in parts) if len(parts) == 2 else (0, 0)
    except ValueError:
        index, count = 0, 0
    if not 1 <= index <= count:
        raise UsageError(f"--shard {text!r}: expected I/N with 1 <= I <= N, e.g. 1/4")
    return index, count


def take_shard(items: Sequence[T], shard: tuple[int, int]) -> list[T]:
    """The shard's share of an (already sorted) list, round-robin so shards get similar loads."""
    index, count = shard
    return list(items[index - 1 :: count])


def _pattern_root(pattern: Path) -> Path:
    """The folder a glob pattern searches from: its leading parts without wildcards."""
    parts = pattern.parts
    fixed = next((i for i, part in enumerate(parts) if glob.has_magic(part)), len(parts))
    return Path(*parts[:fixed]) if fixed else Path(".")


def expand_inputs(
    specs: Iterable[str], suffixes: Iterable[str]
) -> tuple[list[Path], list[tuple[str, str]], dict[Path, str]]:
    """Files, directories (the files with one of ``suffixes`` directly inside, hidden ones skipped)
    and glob patterns (``**`` descends) -> (sorted unique files, [(spec, reason)] for specs that
    gave nothing, {file: its name relative to the argument it came from}).  A file named
    explicitly is kept whatever its suffix; its relative name is its file name.  The relative names
    do not depend on the working directory or on the other arguments, so they key per-image seeds."""
    suffixes = {s.lower() for s in suffixes}
    found: dict[Path, str] = {}
    missing: list[tuple[str, str]] = []

    def add_dir(folder: Path, root: Path) -> int:
        files = [p for p in folder.iterdir() if p.suffix.lower() in suffixes and not p.name.startswith(".") and p.is_file()]
        for file in files:
            found.setdefault(file, file.relative_to(root).as_posix())
        return len(files)

    for spec in specs:
        path = Path(spec).expanduser()
        if path.is_dir():
            if not add_dir(path, path):
                missing.append((spec, "no image files in this directory"))
        elif path.exists() or not glob.has_magic(spec):
            found.setdefault(path, path.name)  # a missing file is reported when it is read, like any bad input
        else:
            root = _pattern_root(path)
            matches = sorted(glob.glob(str(path), recursive=True))
            files = [Path(m) for m in matches if Path(m).is_file() and Path(m).suffix.lower() in suffixes]
            for file in files:
                found.setdefault(file, file.relative_to(root).as_posix())
            count = len(files) + sum(add_dir(Path(m), root) for m in matches if Path(m).is_dir())
            if not count:
                missing.append((spec, "no image files match this pattern"))
    unique: dict[Path, Path] = {}
    for path in found:
        unique.setdefault(path.resolve(), path)
    return sorted(unique.values(), key=str), missing, {p: found[p] for p in unique.values()}


def apply_pixel_limit() -> None:
    """Honour ``SRCLI_MAX_IMAGE_PIXELS`` (an integer; 0 = no limit): Pillow's decompression-bomb
    limit for the images this process reads.  A negative number is a usage error, not "no limit"."""
    value = os.environ.get(PIXEL_LIMIT_ENV)
    if value is None:
        return
    try:
        limit = int(value)
    except ValueError:
        limit = -1
    if limit < 0:
        raise UsageError(f"{PIXEL_LIMIT_ENV}={value!r}: expected a non-negative integer number of pixels (0 = no limit)")
    Image.MAX_IMAGE_PIXELS = limit if limit > 0 else None
