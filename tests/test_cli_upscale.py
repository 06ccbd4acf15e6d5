"""``srcli upscale`` end to end with a tiny checkpoint, through Typer's test runner."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from conftest import random_image
from srcli.cli import app
from srcli.imageio import read_note
from srcli.cascade import image_seed

runner = CliRunner()


def make_image(path, h=64, w=64, seed=0, mode="RGB"):
    arr = random_image(h, w, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).convert(mode).save(path)
    return path


def run(*args, weights=None):
    extra = ["--weights", str(weights)] if weights else []
    return runner.invoke(app, ["upscale", *map(str, args), *extra, "--steps", "3"])


def json_lines(result):
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


def test_scale_4_writes_256_from_64(tmp_path, tiny_checkpoint):
    src = make_image(tmp_path / "img.png")
    result = run(src, "--scale", "4", weights=tiny_checkpoint)
    assert result.exit_code == 0, result.output
    with Image.open(tmp_path / "img_x4.png") as out:
        assert out.size == (256, 256) and out.mode == "RGB"


def test_directory_in_one_call_then_rerun_skips(tmp_path, tiny_checkpoint):
    for i, name in enumerate(["a.png", "b.jpg", "c.webp", "d.tiff"]):
        make_image(tmp_path / "in" / name, 16 + i, 20, seed=i)
    make_image(tmp_path / "in" / "sub" / "deep.png")  # directories are not descended into
    result = run(tmp_path / "in", "--scale", "2", "--json", weights=tiny_checkpoint)
    assert result.exit_code == 0, result.output
    records = json_lines(result)
    assert [r["status"] for r in records] == ["ok"] * 4
    for r, name in zip(records, ["a_x2.png", "b_x2.jpg", "c_x2.webp", "d_x2.tiff"]):
        assert r["output"] == str(tmp_path / "in" / name)
        with Image.open(r["output"]) as out:
            assert out.size == tuple(r["size"]) == (40, 2 * (16 + "abcd".index(name[0])))
    assert not (tmp_path / "in" / "sub" / "deep_x2.png").exists()
    # the outputs now sit in the input directory: a rerun neither upscales them nor redoes the work
    again = run(tmp_path / "in", "--scale", "2", "--json", weights=tiny_checkpoint)
    assert again.exit_code == 0 and [r["status"] for r in json_lines(again)] == ["skipped"] * 4
    redo = run(tmp_path / "in", "--scale", "2", "--json", "--overwrite", weights=tiny_checkpoint)
    assert [r["status"] for r in json_lines(redo)] == ["ok"] * 4


def test_json_record_fields(tmp_path, tiny_checkpoint):
    src = make_image(tmp_path / "x.png", 10, 12)
    result = run(src, "--scale", "2.5", "--seed", "5", "--json", weights=tiny_checkpoint)
    (record,) = json_lines(result)
    assert record["status"] == "ok" and record["output"] == str(tmp_path / "x_x2.5.png")
    assert record["command"] == "upscale" and record["size"] == [30, 25] and record["input_size"] == [12, 10]
    assert record["scale"] == 2.5 and record["seconds"] >= 0 and record["warnings"] == []
    assert record["model"] == str(tiny_checkpoint) and record["sampler"] == "ddpm"
    # the effective settings: the seed of this image (--seed 5 mixed with its name), the strength
    # actually used (2.5x: halfway between 0.4 at 2x and 0.2 at 3x, printed as 0.3, not
    # 0.30000000000000004) and the reverse steps actually run: a start at t = 0.3 * 20 = 6 takes
    # 6/20 of --steps 3, i.e. 1 step
    assert record["seed"] == image_seed(5, "x.png") and record["strength"] == 0.3
    (one_pass,) = record["passes"]
    assert record["steps"] == one_pass["steps"] == 1 and one_pass["seed"] == record["seed"]
    assert '"strength": 0.3,' in result.stdout


def test_output_file_and_directory(tmp_path, tiny_checkpoint):
    a, b = make_image(tmp_path / "a.png", 8, 8), make_image(tmp_path / "b.png", 8, 8, seed=1)
    result = run(a, "--scale", "2", "-o", tmp_path / "out" / "big.jpg", weights=tiny_checkpoint)
    assert result.exit_code == 0 and Image.open(tmp_path / "out" / "big.jpg").size == (16, 16)
    result = run(a, b, "--scale", "2", "-o", tmp_path / "dir", weights=tiny_checkpoint)
    assert result.exit_code == 0
    assert sorted(p.name for p in (tmp_path / "dir").iterdir()) == ["a_x2.png", "b_x2.png"]
    result = run(a, b, "--scale", "2", "-o", tmp_path / "one.png", weights=tiny_checkpoint)
    assert result.exit_code == 2 and "output directory" in result.stderr


def test_globs_and_grayscale(tmp_path, tiny_checkpoint):
    make_image(tmp_path / "t" / "g.png", 8, 8, mode="L")
    make_image(tmp_path / "t" / "deeper" / "h.png", 8, 8)
    result = run(str(tmp_path / "t" / "**" / "*.png"), "--scale", "2", weights=tiny_checkpoint)
    assert result.exit_code == 0, result.output
    assert Image.open(tmp_path / "t" / "g_x2.png").mode == "L"
    assert (tmp_path / "t" / "deeper" / "h_x2.png").exists()


def test_shards_partition_the_batch(tmp_path, tiny_checkpoint):
    for i in range(5):
        make_image(tmp_path / f"{i}.png", 6, 6, seed=i)
    done = []
    for shard in ("1/2", "2/2"):
        result = run(tmp_path, "--scale", "2", "--shard", shard, "--json", weights=tiny_checkpoint)
        assert result.exit_code == 0
        done.append({r["input"] for r in json_lines(result)})
    assert not done[0] & done[1] and len(done[0] | done[1]) == 5 and len(done[0]) == 3


@pytest.mark.parametrize(
    "args, message",
    [
        (["--scale", "0"], "scale must be"),
        (["--scale", "nan"], "scale must be"),
        (["--scale", "2", "--steps", "-1"], "steps must be"),
        (["--scale", "2", "--steps", "0"], "steps must be"),
        (["--scale", "2", "--device", "tpu"], "unknown device"),
        (["--scale", "2", "--device", "cuda"], "CUDA"),
        (["--scale", "2", "--precision", "fp8"], "unknown precision"),
        (["--scale", "2", "--shard", "0/2"], "--shard"),
        (["--scale", "2", "--shard", "two"], "--shard"),
        (["--scale", "2", "--tile", "7"], "tile must be"),
        (["--scale", "2", "--sampler", "euler"], "sampler"),
        (["--scale", "2", "--strength", "1.5"], "strength"),
        (["--scale", "2", "-o", "out.xyz"], "suffix"),
    ],
)
def test_usage_errors_before_any_work(tmp_path, args, message):
    src = make_image(tmp_path / "a.png", 8, 8)
    # the weights do not exist: the argument error must come first
    result = runner.invoke(app, ["upscale", str(src), *args, "--weights", str(tmp_path / "missing.safetensors")])
    assert result.exit_code == 2, result.output
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png"]


def test_missing_weights_is_a_usage_error(tmp_path):
    src = make_image(tmp_path / "a.png", 8, 8)
    result = runner.invoke(app, ["upscale", str(src), "--scale", "2", "--weights", str(tmp_path / "nope.safetensors")])
    assert result.exit_code == 2 and "no such weights file" in result.stderr


def test_more_steps_than_the_model_has_run_all_of_them(tmp_path, tiny_checkpoint):
    src = make_image(tmp_path / "a.png", 8, 8)
    args = ["upscale", str(src), "--scale", "2", "--steps", "500", "--json", "--weights", str(tiny_checkpoint)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0 and "T = 20" in result.stderr
    assert json_lines(result)[0]["steps"] == 8  # all 20 steps at the default strength 0.4 start at t = 8


def test_never_overwrites_an_input(tmp_path, tiny_checkpoint):
    src = make_image(tmp_path / "a.png", 8, 8)
    before = src.read_bytes()
    result = run(src, "--scale", "2", "-o", src, weights=tiny_checkpoint)
    assert result.exit_code == 2 and "overwrite an input" in result.stderr
    assert src.read_bytes() == before


def test_colliding_outputs_refused(tmp_path, tiny_checkpoint):
    a = make_image(tmp_path / "one" / "x.png", 8, 8)
    b = make_image(tmp_path / "two" / "x.png", 8, 8)
    result = run(a, b, "--scale", "2", "-o", tmp_path / "out", weights=tiny_checkpoint)
    assert result.exit_code == 2 and "would both be written" in result.stderr


def test_help_has_examples():
    result = runner.invoke(app, ["upscale", "--help"], env={"COLUMNS": "120"})
    assert result.exit_code == 0
    assert "Examples:" in result.stdout and "srcli upscale photo.png --scale 4" in result.stdout
    assert "--shard" in result.stdout and "Exit codes" in result.stdout
