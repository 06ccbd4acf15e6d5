"""What every command shares: options, one-line errors, exit codes, JSON lines and progress bars."""

from __future__ import annotations

import glob
import json
import math
import os
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, Iterable, Iterator, Optional, Sequence, TypeVar

import torch
import typer
from PIL import Image
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from ..checkpoint import CheckpointError
from ..imageio import ImageReadError
from ..pipeline import SEED_LIMIT, SRPipeline, Stage, UsageError, stage_seed

EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE = 0, 1, 2
EXIT_INTERRUPTED = 130  # the shell's code for death by Ctrl-C (128 + SIGINT)
PIXEL_LIMIT_ENV = "SRCLI_MAX_IMAGE_PIXELS"
T = TypeVar("T")

err_console = Console(stderr=True, highlight=False)

WeightsOpt = Annotated[
    Optional[str],
    typer.Option(
        "--weights", "-w",
        help="Checkpoint file: a .safetensors path, a file name looked up like --model's files, or hf://OWNER/REPO/FILE[@REVISION]. Default: --model clean.",
    ),
]
ModelOpt = Annotated[
    Optional[str],
    typer.Option(
        "--model",
        help="A shipped model by name: clean (bicubic degradation, the default) or real (JPEG, noise and blur). Looked up in the package, ./weights, then $SRCLI_WEIGHTS_DIR or ~/.cache/srcli/weights. Not with --weights.",
        show_default=False,
    ),
]
DeviceOpt = Annotated[str, typer.Option("--device", help="auto (CUDA if present), cpu or cuda.")]
PrecisionOpt = Annotated[str, typer.Option("--precision", help="auto (fp16 on CUDA; bf16 on CPUs with native bf16, else fp32), fp32, bf16 or fp16 (fp16 also runs on the CPU, slowly).")]
SEED_MAX = SEED_LIMIT - 1
SeedOpt = Annotated[int, typer.Option("--seed", min=0, max=SEED_MAX, help="Random seed (0 to 2^63-1); the same seed gives the same output.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object per output on stdout (for scripts; docs/json.md).")]
ThreadsOpt = Annotated[
    Optional[int], typer.Option("--threads", help="CPU threads for PyTorch. Default: PyTorch's choice (the number of cores).", show_default=False)
]
StrengthOpt = Annotated[
    Optional[float],
    typer.Option(
        "--strength",
        help="Start the reverse process at this fraction of T (0 < F <= 1) from the --init image with noise injected to that level (Diff-SR); 1 = from pure noise, SRDiff's sampler. Lower keeps closer to the init and invents less. Default: per scale.",
        show_default=False,
    ),
]
ConsistencyOpt = Annotated[
    Optional[int],
    typer.Option(
        "--consistency",
        help="Back-projection iterations after sampling, which make the output downscale to the input (0 = the sampler's own output). Default: the model's (5; 0 for a model trained on real-world degradations).",
        show_default=False,
    ),
]
InitOpt = Annotated[
    Optional[str],
    typer.Option(
        "--init",
        help="The image a --strength below 1 starts from: encoder (the model's own regression output, the default) or bicubic (as Diff-SR).",
        show_default=False,
    ),
]


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


def warn(message: str) -> None:
    """One warning line on stderr."""
    err_console.print(f"[yellow]warning:[/] {plain(message)}", markup=True, soft_wrap=True, highlight=False)


def note(message: Optional[str]) -> None:
    """One informational line on stderr (nothing for None)."""
    if message:
        err_console.print(f"[cyan]note:[/] {plain(message)}", markup=True, soft_wrap=True, highlight=False)


def apply_threads(threads: Optional[int]) -> None:
    """``--threads N``: the CPU threads PyTorch computes with (None: its default)."""
    if threads is None:
        return
    if threads < 1:
        raise UsageError(f"--threads must be a positive integer, got {threads}")
    torch.set_num_threads(threads)


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


def run_settings(pipe: SRPipeline, stages: Sequence[Stage], seed: int, sampler: str) -> dict[str, Any]:
    """The effective settings of a run, as every ``--json`` record states them: the model, the
    reverse steps actually run (all passes), the strength, init and back-projection actually used (first pass), the
    seed, and each pass of a cascade with its own seed."""
    passes = [
        {
            "scale": s.scale, "steps": s.steps_run(pipe.schedule), "strength": s.strength, "init": s.init,
            "consistency": s.consistency, "seed": stage_seed(seed, k),
        }
        for k, s in enumerate(stages)
    ]
    return {
        "model": pipe.source, "sampler": sampler, "seed": seed, "steps": sum(p["steps"] for p in passes),
        "strength": passes[0]["strength"], "init": passes[0]["init"], "consistency": passes[0]["consistency"], "passes": passes,
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


__all__ = [
    "EXIT_OK", "EXIT_SOME_FAILED", "EXIT_USAGE", "ImageReadError", "err_console", "error", "fail", "plain",
    "usage_errors", "protect_inputs", "warn", "note", "parse_shard", "take_shard", "expand_inputs", "apply_pixel_limit",
    "PIXEL_LIMIT_ENV", "emit_json", "json_ready", "progress_bar", "LogProgress", "apply_threads", "ThreadsOpt",
    "EXIT_INTERRUPTED", "run_settings", "Interrupted", "WeightsOpt", "ModelOpt", "ConsistencyOpt", "DeviceOpt", "PrecisionOpt", "SeedOpt",
    "JsonOpt", "SEED_MAX",
]
