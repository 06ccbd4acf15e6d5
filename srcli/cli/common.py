"""What every command shares: options, one-line errors, exit codes, JSON lines and progress bars."""

from __future__ import annotations

import json
import sys
from contextlib import contextmanager
from typing import Annotated, Any, Iterator, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from ..checkpoint import CheckpointError
from ..imageio import ImageReadError
from ..pipeline import UsageError

EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE = 0, 1, 2

err_console = Console(stderr=True, highlight=False)

WeightsOpt = Annotated[
    Optional[str],
    typer.Option("--weights", "-w", help="Checkpoint: a .safetensors path, a name in weights/, or hf://OWNER/REPO/FILE. Default: the shipped model."),
]
DeviceOpt = Annotated[str, typer.Option("--device", help="auto (CUDA if present), cpu or cuda.")]
PrecisionOpt = Annotated[str, typer.Option("--precision", help="auto (fp16 on CUDA, fp32 on CPU), fp32, bf16 or fp16.")]
SeedOpt = Annotated[int, typer.Option("--seed", help="Random seed; the same seed gives the same output.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object per output on stdout (for scripts).")]


def error(message: str) -> None:
    """One line on stderr, no traceback."""
    err_console.print(f"[bold red]error:[/] {message}", markup=True, soft_wrap=True)


def fail(message: str, code: int = EXIT_USAGE) -> "typer.Exit":
    error(message)
    raise typer.Exit(code)


@contextmanager
def usage_errors() -> Iterator[None]:
    """Turn the library's argument/checkpoint errors into a one-line message and exit code 2."""
    try:
        yield
    except (UsageError, CheckpointError) as exc:
        fail(str(exc), EXIT_USAGE)


def emit_json(record: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(record, sort_keys=True) + "\n")
    sys.stdout.flush()


def progress_bar(enabled: Optional[bool] = None) -> Progress:
    """A rich progress display on stderr; hidden when stderr is not a terminal unless forced."""
    if enabled is None:
        enabled = err_console.is_terminal
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err_console,
        disable=not enabled,
        transient=False,
    )


__all__ = [
    "EXIT_OK", "EXIT_SOME_FAILED", "EXIT_USAGE", "ImageReadError", "err_console", "error", "fail",
    "usage_errors", "emit_json", "progress_bar", "WeightsOpt", "DeviceOpt", "PrecisionOpt", "SeedOpt", "JsonOpt",
]
