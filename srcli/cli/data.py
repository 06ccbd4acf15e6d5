"""``srcli prepare-data``: the reproducible training/validation data recipe."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from ..data import PACKAGES, prepare_dataset
from .app import app
from .common import EXIT_USAGE, emit_json, err_console, fail, reflow


HELP = reflow("""Build the training photos and the fixed validation and tuning crops from Debian wallpaper packages.

Downloads mate-backgrounds and plasma-workspace-wallpapers with apt-get download (or uses
--debs), keeps only the photographs, holds out five of them and cuts four 256px crops from each
(the most textured ones, deterministically): two go to val/ (what the metrics are reported on),
two to tune/ (what sampling defaults are ranked on; no pixel is shared with val/).

Example:

  srcli prepare-data data/  &&  srcli train --data data/train --val data/val --out w.safetensors
""")


@app.command("prepare-data", help=HELP)
def prepare_data_command(
    out: Annotated[Path, typer.Argument(help="Folder to create train/, val/ and tune/ in.")],
    debs: Annotated[Optional[Path], typer.Option(help="Folder with the .deb files already downloaded.")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the SHA-256 of every file written.")] = False,
) -> None:
    if (out / "train").exists() and any((out / "train").iterdir()):
        fail(f"{out}/train already has files; choose an empty folder")
    try:
        summary = prepare_dataset(out, debs, log=lambda m: err_console.print(m, markup=False))
    except FileNotFoundError as exc:
        fail(f"{exc} (need {', '.join(PACKAGES)})", EXIT_USAGE)
    except OSError as exc:
        fail(f"could not build the data set: {exc}", EXIT_USAGE)
    except Exception as exc:  # apt-get/dpkg failures (CalledProcessError) and the like
        fail(f"could not build the data set: {str(exc).splitlines()[0]}", EXIT_USAGE)
    if json_out:
        emit_json(summary)
    else:
        err_console.print(json.dumps({k: len(v) for k, v in summary.items()}), markup=False)
