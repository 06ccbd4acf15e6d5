"""srcli's command line: a thin layer of argument parsing, progress and error reporting over the
Python API.  Each module below registers its commands on ``app``."""

from __future__ import annotations

import importlib

from ..engine import tune_cpu_allocator
from .app import app

# One module per command group, so each can be read (and edited) on its own.
_COMMAND_MODULES = ("upscale", "explore", "evaluate", "train", "convert", "data")
for _name in _COMMAND_MODULES:
    try:
        importlib.import_module(f"{__name__}.{_name}")
    except ModuleNotFoundError as exc:  # a command module not written yet must not break the others
        if exc.name != f"{__name__}.{_name}":
            raise


def main() -> None:
    tune_cpu_allocator()  # process-wide malloc setting: 30-40% faster steps on large images (engine.py)
    app()
