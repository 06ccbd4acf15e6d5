"""Every command in the README's ```sh blocks runs: with tiny inputs and, except for the quick
start's own example, a tiny checkpoint.  Commands that set up a machine are skipped, with the reason."""

from __future__ import annotations

import re
import shlex
import shutil
from pathlib import Path

import numpy as np
from PIL import Image
from typer.testing import CliRunner

from srcli.cli import app

REPO = Path(__file__).resolve().parents[1]
# what a test cannot do, and why (the rest of each line must still run)
SKIPPED = {
    "git clone": "needs the network; the test runs inside a clone",
    "cd srcli-src": "the test runs inside the clone",
    "python3 -m venv": "the test already runs in a Python environment",
    ". .venv/bin/activate": "the test already runs in a Python environment",
    "pip install": "the package and its test extra are installed (CI: .ci/run)",
    "python3 -m pytest": "the test suite itself",
}
SMALLER = {"1920": "30"}  # --width 1920 of the 12 px test photo would be 160x
COMPUTE = {"upscale", "sample", "sample-diverse", "interpolate", "fuse", "eval"}


def readme_commands() -> list[str]:
    text = (REPO / "README.md").read_text()
    lines = [line for block in re.findall(r"```sh\n(.*?)```", text, re.S) for line in block.splitlines()]
    parts = [part.strip() for line in lines for part in line.split("#")[0].split("&&")]
    return [p for p in parts if p]


def make_photos(root: Path) -> None:
    rng = np.random.default_rng(0)
    def image(path, w=12, h=10):
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)
    image(root / "photo.jpg")
    image(root / "holiday" / "a.jpg")
    image(root / "holiday" / "b.jpg")
    image(root / "scan.tif", 20, 16)
    image(root / "archive" / "x" / "c.png")
    shutil.copytree(REPO / "docs" / "examples", root / "docs" / "examples")


def test_every_readme_command_runs(tmp_path, tiny_checkpoint, monkeypatch):
    commands = readme_commands()
    ran, skipped = [], []
    make_photos(tmp_path)
    monkeypatch.chdir(tmp_path)
    for command in commands:
        reason = next((why for start, why in SKIPPED.items() if command.startswith(start)), None)
        if reason:
            skipped.append(command)
            continue
        argv = [SMALLER.get(arg, arg) for arg in shlex.split(command)]
        assert argv[0] == "srcli", f"README command without a runner in this test: {command}"
        args = argv[1:]
        if args[0] in COMPUTE and "docs/examples/lr_input.png" not in args and "--model" not in args:
            # the quick start's example and commands that name a shipped model keep the shipped weights
            args += ["--weights", str(tiny_checkpoint), "--steps", "2"]
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0, (command, result.output)
        ran.append(command)
    assert len(ran) >= 8 and skipped  # the quick start's upscale and every recipe ran
    assert Path("lr_input_x4.png").exists() and Image.open("lr_input_x4.png").size == (256, 256)
    assert Path("photo_w30.jpg").exists() and sorted(p.name for p in Path("holiday_big").iterdir()) == ["a_x4.jpg", "b_x4.jpg"]
