"""The break-it corpus, round two: each test is one way a user or an untrusted file broke srcli
(data loss, silent wrong results, memory from untrusted files, tracebacks, unclear messages) and
the behaviour that must hold instead.  Round one is tests/test_robustness.py."""

from __future__ import annotations

import errno
import json
import math
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageCms, PngImagePlugin, features
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from conftest import random_image, tiny_model
from srcli.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from srcli.cli import app
from srcli import render
from srcli.cli import common, inputs
from srcli.diffusion import NoiseSchedule
from srcli.imageio import ImageData, ImageReadError, read_image, write_image

runner = CliRunner()


noisy = random_image


def save(path: Path, h: int, w: int, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(noisy(h, w, seed)).save(path)
    return path


def one_line_error(result, code: int) -> str:
    """The run failed with ``code``, no traceback, and said why on error lines; returns stderr."""
    assert result.exit_code == code, (result.exit_code, result.output, result.exception)
    assert "Traceback" not in result.output
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "error:" in result.stderr
    return result.stderr


def upscale(*args: str, weights: Path, steps: str = "1"):
    return runner.invoke(app, ["upscale", *args, "--weights", str(weights), "--steps", steps])


# -- 1. data loss: an input named like another input's output ------------------------------------------


@pytest.mark.parametrize("explicit", [False, True], ids=["folder", "named"])
def test_a_users_own_name_x2_file_is_neither_dropped_nor_overwritten(tmp_path, tiny_checkpoint, explicit):
    save(tmp_path / "holiday.png", 12, 12)
    mine = save(tmp_path / "holiday_x2.png", 30, 30, seed=5)
    before = mine.read_bytes()
    args = [str(tmp_path / "holiday.png"), str(mine)] if explicit else [str(tmp_path)]
    stderr = one_line_error(upscale(*args, "--scale", "2", weights=tiny_checkpoint), 2)
    assert "holiday_x2.png" in stderr and "overwrite" in stderr
    assert mine.read_bytes() == before
    # written elsewhere, both are upscaled
    result = upscale(*args, "--scale", "2", "-o", str(tmp_path / "out"), weights=tiny_checkpoint)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["holiday_x2.png", "holiday_x2_x2.png"]
    assert Image.open(tmp_path / "out" / "holiday_x2_x2.png").size == (60, 60)
    assert mine.read_bytes() == before


def test_a_rerun_at_another_scale_leaves_earlier_outputs_out(tmp_path, tiny_checkpoint):
    save(tmp_path / "photo.png", 10, 12)
    assert upscale(str(tmp_path), "--scale", "2", weights=tiny_checkpoint).exit_code == 0
    assert (tmp_path / "photo_x2.png").is_file()
    result = upscale(str(tmp_path), "--scale", "3", weights=tiny_checkpoint)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in tmp_path.glob("*.png")) == ["photo.png", "photo_x2.png", "photo_x3.png"]  # no photo_x2_x3.png
    assert "left out 1 earlier output" in result.stderr and "photo_x2.png" in result.stderr


# -- 3. --json reaches stdout while a progress display runs ----------------------------------------------


def test_json_goes_to_stdout_when_the_progress_display_is_live(tmp_path, tiny_checkpoint, monkeypatch):
    save(tmp_path / "a.png", 8, 8)
    monkeypatch.setattr(common.err_console, "_force_terminal", True)  # as with FORCE_COLOR or a terminal on stderr
    assert common.err_console.is_terminal
    result = upscale(str(tmp_path / "a.png"), "--scale", "2", "--json", weights=tiny_checkpoint)
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["status"] for r in records] == ["ok"]


# -- 5. values that silently turn a guard off --------------------------------------------------------------


def test_a_negative_pixel_limit_is_a_usage_error(tmp_path, tiny_checkpoint, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", Image.MAX_IMAGE_PIXELS)
    save(tmp_path / "a.png", 8, 8)
    result = runner.invoke(
        app, ["upscale", str(tmp_path / "a.png"), "--scale", "2", "--weights", str(tiny_checkpoint)], env={"SRCLI_MAX_IMAGE_PIXELS": "-5"}
    )
    assert "SRCLI_MAX_IMAGE_PIXELS" in one_line_error(result, 2)
    assert Image.MAX_IMAGE_PIXELS is not None
    assert not (tmp_path / "a_x2.png").exists()


# -- 12. file names that are markup or hold control characters ---------------------------------------------


def test_markup_and_control_characters_in_names_are_printed_literally(tmp_path, tiny_checkpoint, monkeypatch):
    monkeypatch.setattr(common.err_console, "_force_terminal", True)  # the progress display renders names too
    album = tmp_path / "album [final]"
    album.mkdir()
    (album / "bad.png").write_text("not an image")
    (tmp_path / "x[").mkdir()
    (tmp_path / "x[/].png").write_text("not an image")
    (tmp_path / "evil\n\x1b[31mred.png").write_text("not an image")
    save(tmp_path / "good.png", 8, 8)
    result = upscale(str(album / "bad.png"), str(tmp_path / "x[/].png"), str(tmp_path / "evil\n\x1b[31mred.png"),
                     str(tmp_path / "good.png"), "--scale", "2", weights=tiny_checkpoint)
    stderr = one_line_error(result, 1)
    assert f"error: {album / 'bad.png'}: not a recognised image" in stderr
    assert f"error: {tmp_path / 'x[/].png'}: not a recognised image" in stderr
    assert f"error: {tmp_path}/evil\\n\\x1b[31mred.png: not a recognised image" in stderr
    assert "\x1b[31m" not in stderr
    assert (tmp_path / "good_x2.png").is_file()  # the batch went on


# -- 4, 7, 8. untrusted checkpoints: bad values, absurd sizes, bad config values ----------------------------


def write_checkpoint(path: Path, tensors: dict, config: dict | str, **meta: str) -> Path:
    metadata = {"format": "srcli", "format_version": "1", "info": "{}", **meta,
                "config": config if isinstance(config, str) else json.dumps(config)}
    save_file(tensors, str(path), metadata=metadata)
    return path


def edited_checkpoint(tiny_checkpoint: Path, out: Path, tensors=None, config=None, **meta: str) -> Path:
    """The tiny checkpoint with some tensors, config fields or metadata replaced."""
    base = load_file(str(tiny_checkpoint))
    with safe_open_meta(tiny_checkpoint) as original:
        cfg = json.loads(original["config"])
    cfg.update(config or {})
    return write_checkpoint(out, {**base, **(tensors or {})}, cfg, **meta)


class safe_open_meta:
    def __init__(self, path: Path):
        from safetensors import safe_open

        self.handle = safe_open(str(path), framework="pt")

    def __enter__(self) -> dict:
        return self.handle.__enter__().metadata()

    def __exit__(self, *exc) -> None:
        self.handle.__exit__(*exc)


WEIGHT = "rrdb.conv_last.weight"


def _nan(shape):
    t = torch.zeros(shape)
    t.view(-1)[0] = float("nan")
    return t


BAD_CHECKPOINTS = {
    "nan weight": (dict(tensors={WEIGHT: _nan((3, 8, 3, 3))}), "not finite floating-point"),
    "inf weight": (dict(tensors={WEIGHT: torch.full((3, 8, 3, 3), float("inf"))}), "not finite floating-point"),
    "int8 weight": (dict(tensors={WEIGHT: torch.zeros((3, 8, 3, 3), dtype=torch.int8)}), "not finite floating-point"),
    "bool weight": (dict(tensors={WEIGHT: torch.zeros((3, 8, 3, 3), dtype=torch.bool)}), "not finite floating-point"),
    "res_rescale 0": (dict(config={"res_rescale": 0}), "res_rescale"),
    "res_rescale nan": (dict(config={"res_rescale": float("nan")}), "res_rescale"),
    "tiny betas": (dict(tensors={"schedule.betas": torch.full((20,), 1e-20, dtype=torch.float64)}), "unusable betas"),
    "int betas": (dict(tensors={"schedule.betas": torch.zeros(20, dtype=torch.int64)}), "unusable betas"),
    "format_version 2": (dict(format_version="2"), "format_version '2'"),
    "unet_dim abc": (dict(config={"unet_dim": "abc"}), "unet_dim must be an integer"),
    "unet_dim 32.5": (dict(config={"unet_dim": 32.5}), "unet_dim must be an integer"),
    "unet_dim -32": (dict(config={"unet_dim": -32}), "unet_dim must be an integer"),
    "three train_scales": (dict(config={"train_scales": [2, 3, 4]}), "train_scales"),
    "timesteps as a string": (dict(config={"timesteps": "20"}), "timesteps must be an integer"),
    "info a list": (dict(info="[1, 2]"), "bad info"),
}


@pytest.mark.parametrize("case", BAD_CHECKPOINTS, ids=list(BAD_CHECKPOINTS))
def test_the_loader_refuses_bad_checkpoints_with_one_line(case, tmp_path, tiny_checkpoint):
    edit, message = BAD_CHECKPOINTS[case]
    bad = edited_checkpoint(tiny_checkpoint, tmp_path / "bad.safetensors", **edit)
    with pytest.raises(CheckpointError, match=message) as err:
        load_checkpoint(bad)
    assert "\n" not in str(err.value) and str(bad) in str(err.value)
    save(tmp_path / "a.png", 8, 8)
    result = upscale(str(tmp_path / "a.png"), "--scale", "2", weights=bad)
    assert message.split("'")[0] in one_line_error(result, 2)
    assert not (tmp_path / "a_x2.png").exists()


def _no_real_model(monkeypatch, *modules) -> list[str]:
    """Make building an SRDiffModel anywhere but on the meta device (shapes only) fail the test."""
    from srcli.nets import SRDiffModel

    built: list[str] = []

    def guarded(cfg):
        device = torch.empty(0).device.type
        built.append(device)
        assert device == "meta", "a model was built before the file's tensors were checked"
        return SRDiffModel(cfg)

    for module in modules:
        monkeypatch.setattr(module, "SRDiffModel", guarded)
    return built


@pytest.mark.parametrize("blocks", [64, 3000, 200000])
def test_a_config_asking_for_a_huge_model_is_refused_before_building_it(blocks, tmp_path, tiny_checkpoint, monkeypatch):
    import srcli.checkpoint

    config = {**json.loads(tiny_model().config.to_json()), "rrdb_blocks": blocks}
    betas = load_file(str(tiny_checkpoint))["schedule.betas"]
    bad = write_checkpoint(tmp_path / "huge.safetensors", {"schedule.betas": betas}, config)  # a file of 1 KB
    assert bad.stat().st_size < 2000
    _no_real_model(monkeypatch, srcli.checkpoint)
    with pytest.raises(CheckpointError, match="rrdb_blocks must be an integer" if blocks > 64 else "missing") as err:
        load_checkpoint(bad)
    assert "\n" not in str(err.value)


def test_convert_refuses_a_stray_block_name_without_allocating(tmp_path, monkeypatch):
    import srcli.checkpoint
    import srcli.convert
    from test_convert import official_state_dict, save_authors_ckpt

    sd = official_state_dict("celeba_8x")
    sd["rrdb.RRDB_trunk.200000.RDB1.conv1.weight"] = torch.zeros(1)
    ckpt = save_authors_ckpt(tmp_path / "stray.ckpt", sd)
    _no_real_model(monkeypatch, srcli.checkpoint, srcli.convert)
    result = runner.invoke(app, ["convert", str(ckpt), str(tmp_path / "out.safetensors")])
    assert "RRDB blocks are not numbered" in one_line_error(result, 2)
    assert not (tmp_path / "out.safetensors").exists()


# -- 2. eval --save-dir: the HR folder, names that flatten alike, atomic writes, a full disk ---------------


def evaluate(hr: Path, *args: str, weights: Path):
    return runner.invoke(app, ["eval", str(hr), "--scale", "2", "--steps", "1", "--baselines", "bicubic",
                               "--weights", str(weights), *args])


def no_space(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_eval_refuses_a_save_dir_inside_the_hr_folder(tmp_path, tiny_checkpoint):
    hr = tmp_path / "hr"
    save(hr / "x.png", 24, 24)
    mine = save(hr / "x_srcli.png", 24, 24, seed=3)  # a user's own file with an output's name
    before = mine.read_bytes()
    for inside in (hr, hr / "out"):
        stderr = one_line_error(evaluate(hr, "--save-dir", str(inside), weights=tiny_checkpoint), 2)
        assert "inside the HR folder" in stderr
    assert mine.read_bytes() == before and not (hr / "out").exists()


def test_eval_names_flattened_alike_are_saved_distinctly(tmp_path, tiny_checkpoint):
    hr = tmp_path / "hr"
    save(hr / "sub" / "n.png", 24, 24, seed=1)
    save(hr / "sub__n.png", 24, 24, seed=2)
    out = tmp_path / "out"
    result = evaluate(hr, "--save-dir", str(out), weights=tiny_checkpoint)
    assert result.exit_code == 0, result.output
    saved = sorted(p.name for p in out.iterdir())
    assert saved == ["sub__n_2_compare.png", "sub__n_2_srcli.png", "sub__n_compare.png", "sub__n_srcli.png"]
    assert not np.array_equal(np.asarray(Image.open(out / "sub__n_srcli.png")), np.asarray(Image.open(out / "sub__n_2_srcli.png")))


def test_eval_on_a_full_disk_says_one_line_and_keeps_the_report(tmp_path, tiny_checkpoint, monkeypatch):
    import srcli.fsutil

    hr = tmp_path / "hr"
    save(hr / "a.png", 24, 24)
    save(hr / "b.png", 24, 24, seed=1)
    out = tmp_path / "out"
    monkeypatch.setattr(srcli.fsutil.os, "replace", no_space)  # the rename of the temp file fails
    result = evaluate(hr, "--save-dir", str(out), "--json", weights=tiny_checkpoint)
    stderr = one_line_error(result, 1)
    assert "No space left on device" in stderr and stderr.count("error:") == 1
    report = json.loads(result.stdout)
    assert [im["name"] for im in report["images"]] == ["a.png", "b.png"]  # the scores are all there
    assert "No space left" in report["save_error"]
    assert list(out.iterdir()) == []  # no half-written file, no temp file


def test_eval_report_to_a_full_stdout_is_one_line(tmp_path, tiny_checkpoint, monkeypatch):
    import srcli.cli.evaluate

    hr = tmp_path / "hr"
    save(hr / "a.png", 24, 24)
    monkeypatch.setattr(srcli.cli.evaluate, "emit_json", no_space)
    stderr = one_line_error(evaluate(hr, "--json", weights=tiny_checkpoint), 1)
    assert "cannot write the report" in stderr and "No space left on device" in stderr


# -- 5, 11. train: values that train uphill or fail mid-run, broken files --------------------------------------

TINY_TRAIN = ["--unet-dim", "8", "--unet-mults", "1,2", "--rrdb-blocks", "2", "--rrdb-nf", "8", "--rrdb-gc", "4",
              "--timesteps", "20", "--batch", "2", "--patch", "24", "--encoder-steps", "1", "--steps", "1"]


@pytest.fixture
def train_dirs(tmp_path):
    for i in range(2):
        save(tmp_path / "train" / f"p{i}.png", 48, 48, seed=i)
    save(tmp_path / "val" / "v.png", 48, 48, seed=9)
    return tmp_path


def train(root: Path, *args: str):
    return runner.invoke(app, ["train", "--data", str(root / "train"), "--out", str(root / "w.safetensors"),
                               "--state-dir", str(root / "state"), *TINY_TRAIN, *args])


@pytest.mark.parametrize("flag", [
    ["--grad-clip", "-1"], ["--grad-clip", "0"], ["--grad-clip", "nan"], ["--lr", "nan"], ["--lr", "0"], ["--lr", "-1e-4"],
    ["--save-every", "0"], ["--val-every", "0"], ["--threads", "-1"], ["--seed", "-1"], ["--seed", str(2**63)],
    ["--ema-decay", "nan"], ["--ema-decay", "1.5"],
], ids=lambda f: " ".join(f))
def test_train_refuses_values_that_break_the_run(train_dirs, flag):
    stderr = one_line_error(train(train_dirs, *flag), 2)
    assert flag[0] in stderr
    assert not (train_dirs / "w.safetensors").exists() and not (train_dirs / "state").exists()


@pytest.mark.parametrize("bad", ["corrupt", "small"])
def test_train_checks_the_validation_images_up_front(train_dirs, bad):
    if bad == "corrupt":
        (train_dirs / "val" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    else:
        save(train_dirs / "val" / "tiny.png", 12, 40)
    stderr = one_line_error(train(train_dirs, "--val", str(train_dirs / "val")), 2)
    assert ("broken.png" if bad == "corrupt" else "tiny.png") in stderr
    assert not (train_dirs / "w.safetensors").exists()


def test_train_resume_from_a_truncated_state_is_one_line(train_dirs):
    assert train(train_dirs).exit_code == 0
    state = train_dirs / "state" / "state.pt"
    state.write_bytes(state.read_bytes()[:1000])
    stderr = one_line_error(train(train_dirs, "--resume"), 2)
    assert "state.pt" in stderr or "resume" in stderr


def test_train_resume_from_a_model_whose_info_is_a_list_is_one_line(train_dirs, tiny_checkpoint):
    from srcli.checkpoint import read_metadata

    out = train_dirs / "w.safetensors"
    meta = {**read_metadata(tiny_checkpoint), "info": "[1, 2]"}
    save_file(load_file(str(tiny_checkpoint)), str(out), metadata=meta)
    assert "bad info in metadata" in one_line_error(train(train_dirs, "--resume"), 2)


def test_train_to_a_full_disk_is_one_line(train_dirs, monkeypatch):
    import srcli.fsutil

    monkeypatch.setattr(srcli.fsutil.os, "replace", no_space)
    stderr = one_line_error(train(train_dirs), 1)
    assert "No space left on device" in stderr
    assert not (train_dirs / "w.safetensors").exists()


# -- 5, 6. explore: noise scales and seeds that give garbage or wrap, lambdas that share a file --------------


@pytest.mark.parametrize("command", ["sample-diverse", "interpolate", "fuse"])
@pytest.mark.parametrize("temperature", ["nan", "-1", "inf"])
def test_explore_refuses_a_temperature_that_is_not_a_noise_scale(command, temperature, tmp_path, tiny_checkpoint, monkeypatch):
    work = tmp_path / "work"
    image = str(save(work / "a.png", 16, 16))
    monkeypatch.chdir(work)  # where the default outputs would go
    inputs = [image, image] if command == "fuse" else [image]
    result = runner.invoke(app, [command, *inputs, "--temperature", temperature, "--weights", str(tiny_checkpoint), "--steps", "1"])
    assert "temperature" in one_line_error(result, 2)
    assert [p.name for p in work.iterdir()] == ["a.png"]


@pytest.mark.parametrize("args", [
    ["upscale", "--seed", "-1"], ["upscale", "--seed", str(2**63)], ["sample-diverse", "--seed", str(2**63 - 2), "--n", "3"],
    ["interpolate", "--seeds", f"1,{2**64 + 1}"], ["interpolate", "--seed", str(2**63 - 1)], ["fuse", "--seed", "-5"],
    ["eval", "--seed", str(2**63 - 1), "--samples", "2"], ["eval", "--degradation-seed", "-1"],
], ids=lambda a: " ".join(a))
def test_seeds_outside_the_range_are_refused_not_wrapped(args, tmp_path, tiny_checkpoint):
    image = str(save(tmp_path / "hr" / "a.png", 24, 24))
    inputs = {"fuse": [image, image], "eval": [str(tmp_path / "hr")]}.get(args[0], [image])
    result = runner.invoke(app, [args[0], *inputs, *args[1:], "--weights", str(tiny_checkpoint), "--steps", "1"])
    stderr = one_line_error(result, 2)
    assert "seed" in stderr


def test_seeds_in_range_still_work_at_the_edge(tmp_path, tiny_checkpoint):
    image = save(tmp_path / "a.png", 8, 8)
    result = upscale(str(image), "--scale", "2", "--seed", str(2**63 - 1), "--same-noise", "--json", weights=tiny_checkpoint)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["seed"] == 2**63 - 1


def test_lambdas_that_share_a_file_name_are_refused(tmp_path, tiny_checkpoint):
    image = save(tmp_path / "a.png", 12, 12)
    result = runner.invoke(app, ["interpolate", str(image), "--t", "2", "--lambdas", "0.1,0.1000001",
                                 "--weights", str(tiny_checkpoint), "--steps", "1", "-o", str(tmp_path / "mix")])
    assert "only once" in one_line_error(result, 2)
    assert not (tmp_path / "mix").exists()


# -- 13. Click's own usage errors are one line too -----------------------------------------------------------


@pytest.mark.parametrize("args", [["upscale", "x.png", "--scale", "abc"], ["upscale", "x.png", "--sed", "3"], ["fuse", "a.png"], ["frobnicate"],
                                  ["sample-diverse", "x.png", "--n", "abc"], ["upscale", "x.png", "--steps", "1.5"], ["train", "--batch", "q"]],
                         ids=lambda a: " ".join(a))
def test_click_usage_errors_are_one_line(args):
    result = runner.invoke(app, args)
    stderr = one_line_error(result, 2)
    assert len(stderr.strip().splitlines()) == 1 and "╭" not in stderr and "--help" in stderr


# -- issue 19: one record schema for every command -------------------------------------------------------------

COMMON_FIELDS = {"command", "status", "input", "output", "size", "input_size", "scale", "model", "seed", "steps", "strength", "sampler", "seconds"}


def records_of(result) -> list[dict]:
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_every_image_command_prints_the_upscale_record_fields(tmp_path, tiny_checkpoint):
    image = save(tmp_path / "a.png", 12, 12)
    w = ["--weights", str(tiny_checkpoint), "--json"]
    up = records_of(upscale(str(image), "--scale", "2", "--steps", "4", "--json", weights=tiny_checkpoint))
    sd = records_of(runner.invoke(app, ["sample-diverse", str(image), "--n", "2", "--scale", "2", "--steps", "4", "--strength", "0.5",
                                        "--seed", "3", "-o", str(tmp_path / "s"), *w]))
    it = records_of(runner.invoke(app, ["interpolate", str(image), "--t", "10", "--lambdas", "0,1", "--scale", "2", "--steps", "4",
                                        "-o", str(tmp_path / "i"), *w]))
    big = save(tmp_path / "face.png", 24, 24, seed=1)
    fu = records_of(runner.invoke(app, ["fuse", str(big), str(big), "--t", "10", "--scale", "2", "--steps", "4",
                                        "-o", str(tmp_path / "f.png"), *w]))
    for command, records, count in (("upscale", up, 1), ("sample-diverse", sd, 2), ("interpolate", it, 2), ("fuse", fu, 1)):
        assert len(records) == count and all(r["command"] == command and COMMON_FIELDS <= set(r) for r in records), (command, records)
        for r in records:
            assert Image.open(r["output"]).size == tuple(r["size"])
            assert r["model"] == str(tiny_checkpoint) and r["status"] == "ok"
    # effective settings: what ran, not what was asked (the tiny model has T = 20)
    assert [r["seed"] for r in sd] == [3, 4] and all(r["strength"] == 0.5 and r["steps"] == 2 for r in sd)
    assert [(r["strength"], r["steps"], r["t"]) for r in it + fu] == [(0.5, 2, 10)] * 3
    assert it[0]["scale"] == 2 and it[0]["size"] == [24, 24] and fu[0]["input"] == str(big)


def test_eval_and_convert_records_carry_the_common_fields(tmp_path, tiny_checkpoint):
    from test_convert import official_state_dict, save_authors_ckpt

    save(tmp_path / "hr" / "a.png", 24, 24)
    ev = records_of(evaluate(tmp_path / "hr", "--strength", "0.5", "--steps", "4", "--json", weights=tiny_checkpoint))
    assert len(ev) == 1 and ev[0]["command"] == "eval" and ev[0]["input"] == str(tmp_path / "hr")
    assert ev[0]["model"] == str(tiny_checkpoint) and ev[0]["steps"] == 2 and ev[0]["strength"] == 0.5 and ev[0]["seed"] == 0
    assert ev[0]["seconds"] > 0 and ev[0]["images"][0]["name"] == "a.png"
    ckpt = save_authors_ckpt(tmp_path / "a.ckpt", official_state_dict("celeba_8x"))
    cv = records_of(runner.invoke(app, ["convert", str(ckpt), str(tmp_path / "c.safetensors"), "--json"]))
    assert cv[0]["command"] == "convert" and cv[0]["status"] == "ok" and cv[0]["input"] == str(ckpt)
    assert cv[0]["output"] == str(tmp_path / "c.safetensors") and cv[0]["seconds"] >= 0 and cv[0]["scale"] == 8


def test_explore_commands_log_a_line_per_image_without_a_terminal(tmp_path, tiny_checkpoint):
    image = save(tmp_path / "a.png", 12, 12)
    result = runner.invoke(app, ["sample-diverse", str(image), "--n", "2", "--scale", "2", "--steps", "2", "-o", str(tmp_path / "s"),
                                 "--weights", str(tiny_checkpoint)])
    assert result.exit_code == 0, result.output
    assert f"[1/1] {image}: wrote 2 samples to {tmp_path / 's'}/" in result.stderr
    save(tmp_path / "hr" / "a.png", 24, 24)
    save(tmp_path / "hr" / "b.png", 24, 24, seed=1)
    result = evaluate(tmp_path / "hr", weights=tiny_checkpoint)
    assert result.exit_code == 0, result.output
    assert "[1/2] a.png: done" in result.stderr and "[2/2] b.png: done" in result.stderr


def test_sample_diverse_out_of_memory_is_one_line(tmp_path, tiny_checkpoint, monkeypatch):
    from srcli.pipeline import SRPipeline

    def oom(*args, **kwargs):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: not enough memory: you tried to allocate 80 GB; out of memory")

    monkeypatch.setattr(SRPipeline, "sr_cascade", oom)
    image = save(tmp_path / "a.png", 12, 12)
    result = runner.invoke(app, ["sample-diverse", str(image), "--n", "200", "--scale", "2", "--steps", "1", "-o", str(tmp_path / "s"),
                                 "--weights", str(tiny_checkpoint)])
    stderr = one_line_error(result, 1)
    assert "out of memory" in stderr and "--n" in stderr
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize("size", [(4, 4), (1, 1), (2, 300), (8, 200)], ids=str)
@pytest.mark.parametrize("command", ["sample-diverse", "interpolate", "fuse"])
def test_tiny_and_thin_inputs_in_explore_are_a_result_or_one_line(command, size, tmp_path, tiny_checkpoint):
    image = str(save(tmp_path / "a.png", *size))
    inputs = [image, image] if command == "fuse" else [image]
    out = ["-o", str(tmp_path / ("f.png" if command == "fuse" else "out"))]
    extra = {"sample-diverse": ["--n", "2"], "interpolate": ["--t", "3"], "fuse": ["--t", "3", "--box", f"0,0,{size[1]},{size[0]}"]}[command]
    result = runner.invoke(app, [command, *inputs, *extra, *out, "--scale", "8", "--steps", "1", "--weights", str(tiny_checkpoint)])
    if result.exit_code != 0:
        one_line_error(result, 2)
    else:
        assert "Traceback" not in result.output


def test_the_explore_api_returns_pillow_images_and_arrays_on_request(tiny_pipeline):
    from srcli import explore
    from srcli.errors import UsageError

    lr = noisy(8, 8)
    pil = explore.sample_diverse(tiny_pipeline, lr, n=2, scale=2, steps=2)
    arr = explore.sample_diverse(tiny_pipeline, lr, n=2, scale=2, steps=2, output="numpy")
    assert all(isinstance(s, Image.Image) and s.size == (16, 16) for s in pil.samples)
    assert all(np.array_equal(np.asarray(p), a) for p, a in zip(pil.samples, arr.samples))
    mix = explore.latent_interpolation(tiny_pipeline, lr, t=3, lambdas=[0, 1], scale=2, steps=2)
    fus = explore.content_fusion(tiny_pipeline, noisy(16, 16), noisy(16, 16, 1), t=3, scale=2, steps=2)
    assert isinstance(mix.images[0], Image.Image) and isinstance(fus.images[0], Image.Image) and isinstance(fus.pasted, Image.Image)
    assert render.contact_sheet(pil).shape == render.contact_sheet(arr).shape
    with pytest.raises(UsageError):
        explore.sample_diverse(tiny_pipeline, lr, n=1, scale=2, output="tensor")


def test_convert_to_a_full_disk_is_one_line(tmp_path, monkeypatch):
    import srcli.fsutil
    from test_convert import official_state_dict, save_authors_ckpt

    ckpt = save_authors_ckpt(tmp_path / "a.ckpt", official_state_dict("celeba_8x"))
    monkeypatch.setattr(srcli.fsutil.os, "replace", no_space)
    stderr = one_line_error(runner.invoke(app, ["convert", str(ckpt), str(tmp_path / "c.safetensors")]), 1)
    assert "No space left on device" in stderr
    assert [p.name for p in tmp_path.iterdir()] == ["a.ckpt"]


# -- 13. a FIFO or a folder named as an input ----------------------------------------------------------------


def test_a_fifo_is_not_a_regular_file_and_a_folder_is_a_directory(tmp_path, tiny_checkpoint):
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    stderr = one_line_error(upscale(str(fifo), "--scale", "2", weights=tiny_checkpoint), 1)
    assert "not a regular file" in stderr
    image = save(tmp_path / "a.png", 8, 8)
    result = runner.invoke(app, ["interpolate", str(image), "--pair", str(tmp_path), str(image), "--weights", str(tiny_checkpoint)])
    assert "is a directory" in one_line_error(result, 2)
    result = runner.invoke(app, ["sample-diverse", str(fifo), "--weights", str(tiny_checkpoint)])
    assert "not a regular file" in one_line_error(result, 2)


# -- 13. formats: one list for reading and for folders; 16-bit colour; ICC in BMP; PNG gamma -----------------


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def raw_png(samples: np.ndarray, color_type: int, *chunks: bytes) -> bytes:
    """A 16-bit PNG written byte by byte (Pillow cannot write 16-bit colour)."""
    h, w = samples.shape[:2]
    rows = b"".join(b"\x00" + row.astype(">u2").tobytes() for row in samples)
    header = png_chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, color_type, 0, 0, 0))
    return b"\x89PNG\r\n\x1a\n" + header + b"".join(chunks) + png_chunk(b"IDAT", zlib.compress(rows)) + png_chunk(b"IEND", b"")


@pytest.mark.skipif(not features.check("avif"), reason="this Pillow has no AVIF codec")
def test_a_folder_of_avif_files_is_upscaled_like_one_named_directly(tmp_path, tiny_checkpoint):
    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray(noisy(10, 12)).save(folder / "a.avif")
    result = upscale(str(folder), "--scale", "2", weights=tiny_checkpoint)
    assert result.exit_code == 0, result.output
    assert Image.open(folder / "a_x2.png").size == (24, 20)  # AVIF is read, not written: PNG out
    from srcli.imageio import list_images

    assert [p.name for p in list_images(folder)] == ["a.avif", "a_x2.png"]  # eval and train folders too


def test_folder_discovery_and_the_reader_use_one_list_of_formats(tmp_path):
    from srcli.imageio import INPUT_SUFFIXES, READ_FORMATS

    registered = Image.registered_extensions()
    assert all(registered[s] in READ_FORMATS for s in INPUT_SUFFIXES)
    # every readable format Pillow can also write here is found in a folder and read back
    folder = tmp_path / "in"
    folder.mkdir()
    written = []
    for suffix in sorted(s for s in INPUT_SUFFIXES if registered[s] not in ("ICO",)):  # ICO: sizes of its own
        try:
            Image.fromarray(noisy(8, 8)).save(folder / f"x{suffix}")
        except (OSError, KeyError, ValueError):
            (folder / f"x{suffix}").unlink(missing_ok=True)
            continue
        written.append(f"x{suffix}")
    assert {"x.avif", "x.ppm", "x.tga", "x.qoi", "x.jp2", "x.png"} <= set(written) or not features.check("avif")
    found, missing, _ = inputs.expand_inputs([str(folder)], INPUT_SUFFIXES)
    assert sorted(p.name for p in found) == sorted(written) and not missing
    assert all(read_image(p).size == (8, 8) for p in found)
    # a format outside the list is refused even when named directly (EPS would run Ghostscript)
    (tmp_path / "x.eps").write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 8 8\nshowpage\n")
    with pytest.raises(ImageReadError, match="not a recognised image"):
        read_image(tmp_path / "x.eps")


@pytest.mark.parametrize("color_type, mode", [(6, "RGBA"), (2, "RGB")])
def test_sixteen_bit_colour_read_at_8_bits_says_so_once(color_type, mode, tmp_path, tiny_checkpoint):
    samples = np.random.default_rng(0).integers(0, 65536, (6, 7, 4 if color_type == 6 else 3)).astype(np.uint16)
    src = tmp_path / "deep.png"
    src.write_bytes(raw_png(samples, color_type))
    data = read_image(src)
    assert data.bits == 8 and np.array_equal(data.rgb, (samples[..., :3] >> 8).astype(np.uint8))
    assert [w for w in data.warnings if "16-bit" in w] == [f"16-bit {mode} samples are read at 8 bits (Pillow has no 16-bit {mode} mode)"]
    result = upscale(str(src), "--scale", "2", "--json", weights=tiny_checkpoint)
    assert result.exit_code == 0, result.output
    assert sum("16-bit" in line for line in result.stderr.splitlines()) == 1


SRGB_ICC = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


@pytest.mark.parametrize("mode", ["RGB", "L"])
def test_bmp_output_keeps_the_icc_profile(mode, tmp_path, tiny_checkpoint):
    src = tmp_path / "a.png"
    Image.fromarray(noisy(8, 9)).convert(mode).save(src, icc_profile=SRGB_ICC)
    out = tmp_path / "a_x2.bmp"
    result = upscale(str(src), "--scale", "2", "-o", str(out), weights=tiny_checkpoint)
    assert result.exit_code == 0, result.output
    raw = out.read_bytes()
    # a BITMAPV5HEADER whose colour space is an embedded profile, the profile where it says
    assert struct.unpack_from("<I", raw, 14)[0] == 124 and raw[14 + 56 : 14 + 60] == b"DEBM"
    at, size = struct.unpack_from("<2I", raw, 14 + 112)
    assert raw[14 + at : 14 + at + size] == SRGB_ICC and struct.unpack_from("<I", raw, 2)[0] == len(raw)
    data = read_image(out)
    assert data.icc_profile == SRGB_ICC and data.size == (16, 18) and data.grayscale == (mode == "L")
    # the same pixels as a BMP without a profile
    plain = tmp_path / "plain.bmp"
    write_image(plain, ImageData(data.rgb, None, data.grayscale))
    assert np.array_equal(np.asarray(Image.open(out)), np.asarray(Image.open(plain)))
    # a header pointing past the end of the file: the image, a warning, no profile
    cut = raw[: 14 + at + 10]
    (tmp_path / "cut.bmp").write_bytes(cut)
    broken = read_image(tmp_path / "cut.bmp")
    assert broken.icc_profile is None and any("ICC profile" in w for w in broken.warnings)


def test_png_gamma_is_carried_over(tmp_path, tiny_checkpoint):
    info = PngImagePlugin.PngInfo()
    info.add(b"gAMA", struct.pack(">I", 100000))  # a linear-light image: gamma 1.0
    src = tmp_path / "lin.png"
    Image.fromarray(noisy(8, 8)).save(src, pnginfo=info)
    assert read_image(src).gamma == 1.0
    result = upscale(str(src), "--scale", "2", weights=tiny_checkpoint)
    assert result.exit_code == 0, result.output
    assert Image.open(tmp_path / "lin_x2.png").info.get("gamma") == 1.0
    # a format without a place for it says it was dropped
    result = upscale(str(src), "--scale", "2", "--format", "jpg", weights=tiny_checkpoint)
    assert result.exit_code == 0, result.output
    assert "cannot store the PNG gamma 1" in result.stderr
    again = upscale(str(src), "--scale", "2", "--format", "jpg", "--json", weights=tiny_checkpoint)
    assert json.loads(again.stdout)["status"] == "skipped"  # the fingerprint still went into the JPEG
    # the 16-bit grayscale path keeps it too
    src16 = tmp_path / "g16.png"
    src16.write_bytes(raw_png(np.arange(48, dtype=np.uint16).reshape(6, 8) * 1000, 0, png_chunk(b"gAMA", struct.pack(">I", 45455))))
    data = read_image(src16)
    assert data.bits == 16 and data.gamma == 0.45455
    write_image(tmp_path / "g16_out.png", data)
    assert Image.open(tmp_path / "g16_out.png").info.get("gamma") == 0.45455


# -- 13. an empty --weights or --model is not the default -----------------------------------------------------


@pytest.mark.parametrize("option", ["--weights", "--model"])
@pytest.mark.parametrize("command", ["upscale", "sample-diverse", "eval"])
def test_an_empty_weights_or_model_name_is_a_usage_error(option, command, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # where sample-diverse's default output would go
    image = str(save(tmp_path / "hr" / "a.png", 24, 24))
    inputs = [str(tmp_path / "hr")] if command == "eval" else [image]
    result = runner.invoke(app, [command, *inputs, option, "", "--steps", "1"])
    assert f"{option} is empty" in one_line_error(result, 2)
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a.png", "hr"]


@pytest.mark.parametrize("args", [["upscale", ""], ["eval", "", "--steps", "1"], ["upscale", "a.png", "-o", ""], ["train", "--data", ""],
                                  ["upscale", "a.png", "--weights="], ["upscale", "--json", "", "a.png"]], ids=repr)
def test_an_empty_argument_never_means_the_current_folder(args, tmp_path, tiny_checkpoint, monkeypatch):
    monkeypatch.chdir(tmp_path)  # "" would be "." here: a folder with an image in it
    save(tmp_path / "a.png", 12, 12)
    result = runner.invoke(app, args)
    stderr = one_line_error(result, 2)
    assert "is empty" in stderr and len(stderr.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "tiny.safetensors"]


# -- 13. output names near the 255-byte limit ---------------------------------------------------------------------


def test_output_names_up_to_the_name_limit_are_written(tmp_path, tiny_checkpoint):
    folder = tmp_path / "in"
    names = ["a" * (n - len("_x2.png")) + ".png" for n in (242, 248, 252, 255)]
    names.append("é" * 120 + ".png")  # 244 bytes in, 251 bytes out: the limit counts bytes
    names.append("c" * (252 - len("_x2.bmp")) + ".bmp")  # no room for its NAME.srcli fingerprint file
    for name in names:
        save(folder / name, 8, 8)
    result = upscale(str(folder), "--scale", "2", weights=tiny_checkpoint)
    assert result.exit_code == 0, result.output
    outputs = sorted(p.name for p in folder.iterdir() if "_x2" in p.name)
    assert outputs == sorted(n[: -len(".png")] + "_x2" + n[-4:] for n in names)
    assert "a rerun redoes it" in result.stderr
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]  # no temporary left behind


def test_temporaries_of_a_255_byte_name_fit_and_are_found_when_stale(tmp_path):
    from srcli import fsutil

    target = tmp_path / ("b" * 251 + ".bin")
    fsutil.atomic_write_bytes(target, lambda tmp: Path(tmp).write_bytes(b"x"))
    assert target.read_bytes() == b"x"
    stale = tmp_path / (fsutil._tmp_prefix(target) + "abcdefgh" + fsutil._TMP_SUFFIX)
    assert len(os.fsencode(stale.name)) <= 255
    stale.write_bytes(b"half")  # what a killed writer leaves
    assert fsutil.remove_stale_temps(target) == 1 and not stale.exists() and target.exists()


# -- 13. scales at the top of the training range; explore outputs checked before the compute -----------------


def test_scales_just_beyond_the_range_top_run_in_one_pass_and_larger_ones_plan_without_a_gap():
    from srcli.cascade import SCALE_TOLERANCE, plan_cascade

    assert plan_cascade(4.000004, (2, 4)) == [4.000004]
    assert plan_cascade(4.000005, (2, 4)) == [4.000005]  # was: "cannot be made of passes of 2x-4x"
    assert plan_cascade(4.0001, (2, 4)) == [4.0001]  # was: 2x then 2x
    assert plan_cascade(4.001, (2, 4)) == pytest.approx([2.0005, 2.0])
    for rng in [(2, 4), (1.5, 4), (2, 2), (2, 3)]:
        top = rng[1] * (1 + SCALE_TOLERANCE)
        for scale in [*np.linspace(1.5, 8, 1301), top * (1 - 1e-9), top, top * (1 + 1e-9)]:
            scale = float(scale)
            possible = scale <= top or any(rng[0] ** k * (1 - SCALE_TOLERANCE) <= scale <= rng[1] ** k * (1 + SCALE_TOLERANCE) for k in range(2, 5))
            try:
                factors = plan_cascade(scale, rng)
            except ValueError:
                assert not possible, (rng, scale)  # refused only when no passes can make it
                continue
            assert math.isclose(math.prod(factors), scale, rel_tol=1e-12)
            assert (len(factors) == 1) == (scale <= top), (rng, scale, factors)
            assert all(rng[0] * (1 - SCALE_TOLERANCE) <= f <= top for f in factors[1:]) and factors[0] <= top


def test_a_scale_at_the_range_top_upscales_and_a_cascade_is_announced(tmp_path, tiny_checkpoint):
    image = save(tmp_path / "a.png", 10, 10)
    one = upscale(str(image), "--scale", "4.000005", "--json", weights=tiny_checkpoint)
    assert one.exit_code == 0, one.output
    assert json.loads(one.stdout)["size"] == [40, 40] and "cascade" not in one.stderr
    two = upscale(str(image), "--scale", "4.001", "--json", "-o", str(tmp_path / "b.png"), weights=tiny_checkpoint)
    assert two.exit_code == 0, two.output
    assert "4.001x runs as a cascade: 2.0005x (" in two.stderr and len(json.loads(two.stdout)["passes"]) == 2


@pytest.mark.parametrize("command", ["sample-diverse", "interpolate", "fuse"])
@pytest.mark.parametrize("blocker", ["file as folder", "folder as file"])
def test_explore_outputs_are_checked_before_any_compute(command, blocker, tmp_path, tiny_checkpoint, monkeypatch):
    from srcli.pipeline import SRPipeline

    loads: list[str] = []
    real = SRPipeline.from_pretrained.__func__
    monkeypatch.setattr(SRPipeline, "from_pretrained", classmethod(lambda cls, *a, **k: loads.append("model") or real(cls, *a, **k)))
    image = str(save(tmp_path / "a.png", 12, 12))
    inputs = [image, image] if command == "fuse" else [image]
    if blocker == "file as folder":  # -o names a folder below a plain file
        (tmp_path / "plain").write_text("mine")
        out = tmp_path / "plain" / ("f.png" if command == "fuse" else "out")
    elif command == "fuse":  # an existing folder where a file goes
        out = tmp_path / "taken.png"
        out.mkdir()
    else:
        out = tmp_path / "taken"
        (out / ("a_seed0.png" if command == "sample-diverse" else "a_strip.png")).mkdir(parents=True)
    result = runner.invoke(app, [command, *inputs, "-o", str(out), "--scale", "2", "--steps", "1", "--weights", str(tiny_checkpoint)])
    stderr = one_line_error(result, 2)
    assert "cannot write" in stderr and ("not a directory" in stderr or "is a directory" in stderr)
    assert loads == []  # refused before the model was even loaded
    if blocker == "file as folder":
        assert (tmp_path / "plain").read_text() == "mine"
