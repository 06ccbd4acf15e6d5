"""``srcli upscale`` as a new user meets it: reruns with other settings, output format and size,
threads, version, per-image seeds, progress without a terminal and Ctrl-C."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from srcli import __version__
from srcli.cli import app
from srcli.imageio import read_note
from srcli.provenance import note_fingerprint

runner = CliRunner()
REPO = Path(__file__).resolve().parents[1]


def make_image(path, h=12, w=16, seed=0):
    arr = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)
    return path


def upscale(*args, weights):
    return runner.invoke(app, ["upscale", *map(str, args), "--weights", str(weights), "--steps", "2"])


def records(result):
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


def pixels(path):
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB")).astype(int)


def test_rerun_skips_only_what_the_same_settings_made(tmp_path, tiny_checkpoint):
    src = make_image(tmp_path / "photo.png")
    first = upscale(src, "--scale", "2", "--json", weights=tiny_checkpoint)
    assert first.exit_code == 0 and records(first)[0]["status"] == "ok"
    out = tmp_path / "photo_x2.png"
    made = pixels(out)
    assert note_fingerprint(read_note(out))  # the fingerprint sits in the PNG's metadata

    same = upscale(src, "--scale", "2", "--json", weights=tiny_checkpoint)
    assert records(same)[0]["status"] == "skipped" and "0 written, 1 already complete" in same.stderr

    # other settings: the old file is replaced, and the summary says why
    other = upscale(src, "--scale", "2", "--strength", "1", "--seed", "5", "--json", weights=tiny_checkpoint)
    (record,) = records(other)
    assert record["status"] == "ok" and record["redone"] is True
    assert "1 written (1 redone" in other.stderr
    assert np.abs(pixels(out) - made).max() > 0

    # the same settings as that run skip again; a changed input (same name, new bytes) is redone
    assert records(upscale(src, "--scale", "2", "--strength", "1", "--seed", "5", "--json", weights=tiny_checkpoint))[0]["status"] == "skipped"
    make_image(src, seed=9)
    assert records(upscale(src, "--scale", "2", "--strength", "1", "--seed", "5", "--json", weights=tiny_checkpoint))[0]["status"] == "ok"


@pytest.mark.parametrize("fmt, suffix", [("jpg", ".jpg"), ("webp", ".webp"), ("tiff", ".tiff"), ("png", ".png")])
def test_format_option_and_the_fingerprint_in_every_format(tmp_path, tiny_checkpoint, fmt, suffix):
    src = make_image(tmp_path / "a.png")
    result = upscale(src, "--scale", "2", "--format", fmt, "--json", weights=tiny_checkpoint)
    assert result.exit_code == 0, result.output
    out = tmp_path / f"a_x2{suffix}"
    assert records(result)[0]["output"] == str(out)
    with Image.open(out) as im:
        assert im.format == {"jpg": "JPEG", "webp": "WEBP", "tiff": "TIFF", "png": "PNG"}[fmt] and im.size == (32, 24)
    assert note_fingerprint(read_note(out))
    assert records(upscale(src, "--scale", "2", "--format", fmt, "--json", weights=tiny_checkpoint))[0]["status"] == "skipped"


def test_bmp_keeps_its_fingerprint_in_a_sidecar(tmp_path, tiny_checkpoint):
    src = tmp_path / "a.bmp"
    Image.open(make_image(tmp_path / "a.png")).save(src)
    assert upscale(src, "--scale", "2", weights=tiny_checkpoint).exit_code == 0
    assert (tmp_path / "a_x2.bmp.srcli").exists() and note_fingerprint(read_note(tmp_path / "a_x2.bmp"))
    assert records(upscale(src, "--scale", "2", "--json", weights=tiny_checkpoint))[0]["status"] == "skipped"


def test_quality_changes_a_jpeg_and_counts_as_a_setting(tmp_path, tiny_checkpoint):
    src = make_image(tmp_path / "a.png", 24, 24)
    upscale(src, "--scale", "2", "-o", tmp_path / "hi.jpg", "--quality", "95", weights=tiny_checkpoint)
    upscale(src, "--scale", "2", "-o", tmp_path / "lo.jpg", "--quality", "10", weights=tiny_checkpoint)
    assert (tmp_path / "lo.jpg").stat().st_size < (tmp_path / "hi.jpg").stat().st_size
    again = upscale(src, "--scale", "2", "-o", tmp_path / "lo.jpg", "--quality", "20", "--json", weights=tiny_checkpoint)
    assert records(again)[0]["status"] == "ok" and records(again)[0]["redone"]


def test_width_or_height_sets_the_size_and_keeps_the_aspect_ratio(tmp_path, tiny_checkpoint):
    src = make_image(tmp_path / "a.png", 12, 16)
    result = upscale(src, "--width", "40", "--json", weights=tiny_checkpoint)
    (record,) = records(result)
    assert record["output"] == str(tmp_path / "a_w40.png") and record["size"] == [40, 30] and record["scale"] == 2.5
    assert Image.open(tmp_path / "a_w40.png").size == (40, 30)
    result = upscale(src, "--height", "36", "--json", weights=tiny_checkpoint)
    assert records(result)[0]["size"] == [48, 36] and Image.open(tmp_path / "a_h36.png").size == (48, 36)
    # a size the model cannot reach from this image: that image fails, with the reason
    result = upscale(src, "--width", "400", weights=tiny_checkpoint)
    assert result.exit_code == 1 and "--width 400 is 25x" in result.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["--scale", "2", "--width", "100"], "one of --scale, --width or --height"),
        (["--width", "100", "--height", "100"], "one of --scale, --width or --height"),
        (["--width", "0"], "--width must be"),
        (["--format", "gif"], "unknown --format"),
        (["--quality", "0"], "--quality must be"),
        (["--threads", "0"], "--threads must be"),
        (["--format", "png", "-o", "out.jpg"], "--format asks for PNG"),
    ],
)
def test_output_option_errors(tmp_path, args, message):
    src = make_image(tmp_path / "a.png")
    result = runner.invoke(app, ["upscale", str(src), *args, "--weights", str(tmp_path / "missing.safetensors")])
    assert result.exit_code == 2 and message in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_default_scale_is_4_and_threads_apply(tmp_path, tiny_checkpoint):
    src = make_image(tmp_path / "a.png", 6, 5)
    before = torch.get_num_threads()
    try:
        result = upscale(src, "--threads", "1", "--json", weights=tiny_checkpoint)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    assert result.exit_code == 0 and records(result)[0]["size"] == [20, 24] and (tmp_path / "a_x4.png").exists()


def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.stdout.strip() == f"srcli {__version__}"


def test_images_of_a_batch_get_their_own_noise_unless_same_noise(tmp_path, tiny_checkpoint):
    for name in ("a.png", "b.png"):  # two identical inputs
        make_image(tmp_path / "in" / name)
    result = upscale(tmp_path / "in", "--scale", "2", "--strength", "1", "-o", tmp_path / "own", "--json", weights=tiny_checkpoint)
    seeds = {Path(r["input"]).name: r["seed"] for r in records(result)}
    assert seeds["a.png"] != seeds["b.png"]
    assert np.abs(pixels(tmp_path / "own" / "a_x2.png") - pixels(tmp_path / "own" / "b_x2.png")).max() > 0
    upscale(tmp_path / "in", "--scale", "2", "--strength", "1", "--same-noise", "-o", tmp_path / "same", weights=tiny_checkpoint)
    assert np.array_equal(pixels(tmp_path / "same" / "a_x2.png"), pixels(tmp_path / "same" / "b_x2.png"))
    # the seed follows the name relative to the argument, not the folder or the working directory
    shutil.copytree(tmp_path / "in", tmp_path / "elsewhere" / "in2")
    alone = upscale(tmp_path / "elsewhere" / "in2" / "a.png", "--scale", "2", "--strength", "1", "--json", weights=tiny_checkpoint)
    assert records(alone)[0]["seed"] == seeds["a.png"]
    globbed = upscale(str(tmp_path / "elsewhere" / "*" / "b.png"), "--scale", "2", "--json", weights=tiny_checkpoint)
    assert records(globbed)[0]["seed"] != seeds["b.png"]  # "in2/b.png" relative to the pattern's root


def test_progress_lines_without_a_terminal(tmp_path, tiny_checkpoint):
    for name in ("a.png", "b.png"):
        make_image(tmp_path / name)
    result = upscale(tmp_path / "a.png", tmp_path / "b.png", "--scale", "2", weights=tiny_checkpoint)
    lines = [line for line in result.stderr.splitlines() if line.startswith("[")]
    assert len(lines) == 2 and lines[0].startswith("[1/2] a.png: wrote") and lines[1].startswith("[2/2] b.png: wrote")


def test_ctrl_c_says_what_was_finished_and_exits_130(tmp_path, tiny_checkpoint):
    make_image(tmp_path / "in" / "a.png", 8, 8)
    make_image(tmp_path / "in" / "b.png", 160, 160, seed=1)  # slow enough to be interrupted
    env = {**os.environ, "PYTHONPATH": str(REPO), "SRCLI_TEST_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "srcli", "upscale", str(tmp_path / "in"), "--scale", "4", "--strength", "1", "--steps", "20",
         "--tile", "0", "--weights", str(tiny_checkpoint)],
        stderr=subprocess.PIPE, text=True, env=env,
    )
    seen = []
    for line in proc.stderr:  # wait for the first image to finish, then press Ctrl-C
        seen.append(line)
        if line.startswith("[1/2] a.png: wrote"):
            time.sleep(0.5)
            proc.send_signal(signal.SIGINT)
            break
    rest = proc.stderr.read()
    assert proc.wait(timeout=60) == 130, seen + [rest]
    (message,) = [line for line in rest.splitlines() if line.strip()]
    assert message.startswith("interrupted: 1 of 2 images finished") and "rerun the same command to resume" in message
    assert (tmp_path / "in" / "a_x4.png").exists() and not (tmp_path / "in" / "b_x4.png").exists()
    assert not list((tmp_path / "in").glob(".*tmp"))
