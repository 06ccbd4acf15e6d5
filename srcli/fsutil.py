"""Atomic file writes, shared by checkpoints, training state and images.

A file is written to a temporary ``.NAME.XXXXXXXX.tmp`` beside its destination and renamed over it,
so a reader (or a rerun after ``kill -9``) sees either the old file or the complete new one.  The
temporary names are defined here only, so that stale ones left by a killed process can be found.
NAME is cut short when needed so that the temporary name stays within the file system's 255-byte
limit on a name: any name that can be written can be written atomically.
"""

from __future__ import annotations

import glob
import os
import tempfile
from pathlib import Path
from typing import Callable, Optional

_TMP_SUFFIX = ".tmp"
NAME_MAX = 255  # bytes in one file name on Linux, macOS and Windows file systems
_RANDOM_CHARS = 8  # what tempfile.mkstemp puts between the prefix and the suffix


def _tmp_prefix(path: Path) -> str:
    """``.NAME.`` with NAME cut (at a character boundary) to what leaves room for mkstemp's random
    part and the suffix within NAME_MAX bytes."""
    budget = NAME_MAX - len(".") - len(".") - _RANDOM_CHARS - len(_TMP_SUFFIX)
    name = path.name
    while len(os.fsencode(name)) > budget:  # bytes, not characters: UTF-8 names count more
        name = name[:-1]
    return f".{name}."


def atomic_write_bytes(path: Path, write: Callable[[str], object]) -> None:
    """Write through a temporary file in the same directory, then rename: never a half-written file.
    ``write(tmp_path)`` produces the content; the parent directory is created when missing."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=_tmp_prefix(path), suffix=_TMP_SUFFIX, dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file the usual permissions
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def remove_stale_temps(path: Path) -> int:
    """Delete temporaries of ``path`` left by an interrupted ``atomic_write_bytes``; returns how many.
    Only safe when no other process is writing ``path`` at the same time."""
    path = Path(path)
    if not path.parent.is_dir():
        return 0
    removed = 0
    for tmp in path.parent.glob(f"{glob.escape(_tmp_prefix(path))}*{_TMP_SUFFIX}"):
        try:
            tmp.unlink()
            removed += 1
        except FileNotFoundError:  # another cleaner got there first
            pass
    return removed



def write_problem(path: Path) -> Optional[str]:
    """Why ``atomic_write_bytes(path, ...)`` would fail as things stand (a name over NAME_MAX bytes,
    a directory in the way, a file where a folder must be, an unwritable folder), or None.  For
    checking outputs before a long computation rather than after it; a full disk or a change in
    the meantime is still only found when writing."""
    path = Path(path)
    if any(len(os.fsencode(part)) > NAME_MAX for part in path.parts):
        return f"a name in it is longer than {NAME_MAX} bytes"
    try:
        if path.is_dir():
            return "is a directory"
        folder = path.parent
        while not folder.exists():  # the nearest existing folder is where the missing ones get made
            if folder.is_symlink():
                return f"{folder} is a broken symbolic link"
            if folder.parent == folder:  # "." of a deleted working directory
                return f"{folder} does not exist"
            folder = folder.parent
        if not folder.is_dir():
            return f"{folder} is not a directory"
        if not os.access(folder, os.W_OK | os.X_OK):
            return f"{folder} is not writable"
    except OSError as exc:  # e.g. a loop of symbolic links on the way
        return exc.strerror or str(exc)
    return None
