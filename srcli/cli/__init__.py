"""srcli's command line: a thin layer of argument parsing, progress and error reporting over the
Python API.  Each module below registers its commands on ``app``."""

from __future__ import annotations

import signal
import sys

from ..engine import tune_cpu_allocator
from .app import app
from .common import EXIT_INTERRUPTED, Interrupted, err_console

# One module per command group, so each can be read on its own; importing registers the commands.
from . import upscale, explore, fuse, evaluate, train, convert, data  # noqa: E402,F401  (order = --help order)


def _on_sigint(signum, frame) -> None:
    raise Interrupted()


def main() -> None:
    tune_cpu_allocator()  # process-wide malloc setting: 30-40% faster steps on large images (engine.py)
    signal.signal(signal.SIGINT, _on_sigint)
    try:
        app()
    except Interrupted:
        err_console.print("interrupted: the unfinished outputs were not written; rerun the command to start them again", highlight=False)
        sys.exit(EXIT_INTERRUPTED)
