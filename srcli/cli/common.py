"""What every command shares: one-line errors, exit codes, JSON lines, progress and the run settings."""

from __future__ import annotations

import json
import math
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional, Sequence

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from ..checkpoint import CheckpointError
from ..cascade import CascadePass, stage_seed
from ..errors import UsageError
from ..fsutil import write_problem
from ..options import SamplingOptions
from ..pipeline import SRPipeline
from .options import SEED_MAX, ThreadsOpt, apply_threads  # noqa: F401 - srcli/cli/train.py takes them from here

EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE = 0, 1, 2
EXIT_INTERRUPTED = 130  # the shell's code for death by Ctrl-C (128 + SIGINT)

err_console = Console(stderr=True, highlight=False)

class Interrupted(BaseException):
    """Ctrl-C (SIGINT), raised by the handler ``main`` installs.  Not a KeyboardInterrupt, which
    Click would turn into "Aborted!" and exit code 1: a command that has something to say (what was
    finished) catches it, else ``main`` prints one line and exits 130."""


def reflow(help_text: str) -> str:
    """A command's help with each prose paragraph on one line, so the terminal (not the source)
    decides where lines break; indented paragraphs (examples) stay as written."""
    paragraphs = help_text.strip().split("\n\n")
    return "\n\n".join(p if p.startswith(" ") else " ".join(p.split()) for p in paragraphs)


_CONTROL = dict.fromkeys([*range(32), *range(127, 160)])


def plain(text: object) -> str:
    """``text`` safe to print on one terminal line: control characters (newlines, escape codes in a
    file name) shown as escapes, and rich markup (``album [final]/x.png``) printed literally."""
    text = str(text)
    if any(ord(c) in _CONTROL for c in text):
        text = "".join(repr(c)[1:-1] if ord(c) in _CONTROL else c for c in text)
    return escape(text)


def error(message: str) -> None:
    """One line on stderr, no traceback."""
    err_console.print(f"[bold red]error:[/] {plain(message)}", markup=True, soft_wrap=True)


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


def protect_inputs(outputs: Iterable[Path], inputs: Iterable[Path]) -> None:
    """Usage error when an output path would overwrite one of the inputs (checked before any work)."""
    taken = {Path(p).resolve() for p in inputs}
    for out in outputs:
        if Path(out).resolve() in taken:
            fail(f"{out}: the output would overwrite an input; choose another output name")


def check_writable(outputs: Iterable[Path]) -> None:
    """Usage error when an output cannot be written as things stand (a directory or a file in the
    way, an unwritable folder, a name over 255 bytes): checked before the compute, not after it."""
    for out in outputs:
        problem = write_problem(Path(out))
        if problem is not None:
            fail(f"{out}: cannot write ({problem}); choose another output")


def warn(message: str) -> None:
    """One warning line on stderr."""
    err_console.print(f"[yellow]warning:[/] {plain(message)}", markup=True, soft_wrap=True, highlight=False)


def note(message: Optional[str]) -> None:
    """One informational line on stderr (nothing for None)."""
    if message:
        err_console.print(f"[cyan]note:[/] {plain(message)}", markup=True, soft_wrap=True, highlight=False)


SIGNIFICANT_DIGITS = 6  # enough for any measured number; hides float noise such as 0.30000000000000004


def json_ready(value: Any) -> Any:
    """Floats rounded to ``SIGNIFICANT_DIGITS`` significant digits (non-finite ones -> null), tuples
    and paths made plain, recursively: what every ``--json`` record goes through."""
    if isinstance(value, float):
        return float(f"{value:.{SIGNIFICANT_DIGITS}g}") if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def emit_json(record: dict[str, Any]) -> None:
    """One JSON record on stdout (docs/json.md describes the fields)."""
    sys.stdout.write(json.dumps(json_ready(record), sort_keys=True) + "\n")
    sys.stdout.flush()


def progress_bar(enabled: Optional[bool] = None) -> Progress:
    """A rich progress display on stderr; hidden when stderr is not a terminal unless forced.
    It leaves sys.stdout alone: ``--json`` records written while it runs must reach the real
    stdout (rich would otherwise route them through the display on stderr).  Task descriptions
    are markup: pass file names through ``plain``."""
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
        redirect_stdout=False,
        redirect_stderr=False,
    )


def run_settings(pipe: SRPipeline, passes: Sequence[CascadePass], seed: int, options: SamplingOptions) -> dict[str, Any]:
    """The effective settings of a run, as every ``--json`` record states them: the model, the
    reverse steps actually run (all passes), the strength, init and back-projection actually used (first pass), the
    seed, whether the input was deblocked, and each pass of a cascade with its own seed."""
    passes = [
        {
            "scale": s.scale, "steps": s.steps_run(pipe.schedule), "strength": s.strength, "init": s.init,
            "consistency": s.consistency, "seed": stage_seed(seed, k),
        }
        for k, s in enumerate(passes)
    ]
    return {
        "model": pipe.source, "sampler": options.sampler, "seed": seed, "steps": sum(p["steps"] for p in passes),
        "strength": passes[0]["strength"], "init": passes[0]["init"], "consistency": passes[0]["consistency"],
        "deblock": pipe.deblocks(options), "passes": passes,
    }


class LogProgress:
    """Progress for a stderr that is not a terminal (a log file, CI, ``2> log``), where a progress
    bar would print nothing useful: one line per finished image, and one a minute while a long
    image is being worked on."""

    def __init__(self, total: int, enabled: Optional[bool] = None, interval: float = 60.0):
        self.enabled = (not err_console.is_terminal) if enabled is None else enabled
        self.total, self.done, self.interval = total, 0, interval
        self.name, self.started, self.last = "", 0.0, 0.0

    def _line(self, text: str) -> None:
        if self.enabled:
            err_console.print(text, markup=False, highlight=False, soft_wrap=True)

    def start(self, name: str) -> None:
        self.name, self.started = name, time.monotonic()
        self.last = self.started

    def step(self, done: int, total: int) -> None:
        now = time.monotonic()
        if now - self.last >= self.interval:
            self.last = now
            self._line(f"[{self.done + 1}/{self.total}] {self.name}: step {done}/{total}, {now - self.started:.0f} s so far")

    def finish(self, status: str) -> None:
        self.done += 1
        self._line(f"[{self.done}/{self.total}] {self.name}: {status} ({time.monotonic() - self.started:.1f} s)")
