"""The trainer: exact resume, continuing from the shipped weights alone, bad data, CLI and DDP."""

from __future__ import annotations

import os
import re
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

from conftest import tiny_config
from srcli.checkpoint import load_checkpoint
from srcli.cli import app
from srcli.train import TrainConfig, Trainer, learning_rate

TINY_FLAGS = [
    "--unet-dim", "8", "--unet-mults", "1,2", "--rrdb-blocks", "2", "--rrdb-nf", "8", "--rrdb-gc", "4",
    "--timesteps", "20", "--batch", "2", "--patch", "24",
]


@pytest.fixture
def photo_dir(tmp_path):
    """Three small textured 'photos' and one validation crop."""
    rng = np.random.default_rng(0)
    train, val = tmp_path / "train", tmp_path / "val"
    train.mkdir()
    val.mkdir()
    for i in range(3):
        y, x = np.mgrid[0:72, 0:80]
        img = np.stack([np.sin(x / (3 + i)) * 90 + 120, np.cos(y / 4) * 80 + 120, (x + y) % 255], -1)
        img = np.clip(img + rng.normal(0, 12, img.shape), 0, 255).astype(np.uint8)
        Image.fromarray(img).save(train / f"p{i}.png")
    Image.fromarray(img[:48, :48]).save(val / "v.png")
    return tmp_path


def _config(photo_dir: Path, tmp_path: Path, **kw) -> TrainConfig:
    base = dict(
        data=str(photo_dir / "train"), out=str(tmp_path / "w.safetensors"), state_dir=str(tmp_path / "state"),
        encoder_steps=3, steps=4, batch=2, patch=24, save_every=2, val_every=1000, log_every=1,
        model=tiny_config(), seed=5,
    )
    return TrainConfig(**{**base, **kw})


def _weights(trainer: Trainer) -> dict:
    state = {f"model.{k}": v.clone() for k, v in trainer.model.state_dict().items()}
    state.update({f"ema.{k}": v.clone() for k, v in trainer.ema.shadow.state_dict().items()})
    return state


def test_resume_is_exact_across_both_stages(photo_dir, tmp_path):
    straight = Trainer(_config(photo_dir, tmp_path / "a"), log=lambda m: None)
    straight.run()
    # the same run, killed after every single step and resumed from the saved state
    runs = 0
    while True:
        t = Trainer(_config(photo_dir, tmp_path / "b"), log=lambda m: None)
        t.resume()
        if t.step >= t.total_steps:
            break
        t.run(max_seconds=0)  # stops (with a checkpoint) after one step
        runs += 1
    assert runs == 7 and t.step == 7
    a, b = _weights(straight), _weights(t)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_continue_from_shipped_weights_alone(photo_dir, tmp_path):
    cfg = _config(photo_dir, tmp_path, steps=2)
    Trainer(cfg, log=lambda m: None).run()
    shipped, _, info = load_checkpoint(cfg.out)
    assert info["encoder_steps_done"] == 3 and info["diffusion_steps_done"] == 2
    for p in Path(cfg.state_dir).iterdir():
        p.unlink()
    t = Trainer(_config(photo_dir, tmp_path, steps=4), log=lambda m: None)
    message = t.resume()
    assert "fresh optimizers" in message and t.step == 5
    for k, v in shipped.rrdb.state_dict().items():
        assert torch.allclose(t.model.rrdb.state_dict()[k], v)
    t.run()
    _, _, info = load_checkpoint(cfg.out)
    assert info["diffusion_steps_done"] == 4


def test_corrupt_training_image_is_skipped(photo_dir, tmp_path):
    (photo_dir / "train" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (photo_dir / "train" / "tiny.png").write_bytes(b"")
    messages = []
    with pytest.warns(UserWarning, match="broken.png"):
        t = Trainer(_config(photo_dir, tmp_path, steps=1, encoder_steps=1), log=messages.append)
    assert len(t.sampler.images) == 3
    assert any("broken.png" in m for m in messages)
    t.run()


def test_validation_reports_all_methods(photo_dir, tmp_path):
    t = Trainer(_config(photo_dir, tmp_path, val=str(photo_dir / "val"), val_steps=2), log=lambda m: None)
    t.run()
    result = t.validate()
    assert set(result) == {"bicubic", "encoder", "diffusion"}
    assert all(np.isfinite(v["psnr_y"]) for v in result.values())


def test_cli_train_and_refuse_to_clobber(photo_dir, tmp_path):
    runner = CliRunner()
    out = tmp_path / "m.safetensors"
    args = ["train", "--data", str(photo_dir / "train"), "--out", str(out), "--state-dir", str(tmp_path / "s"),
            "--encoder-steps", "2", "--steps", "2", "--scale", "2-3.5", *TINY_FLAGS]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    model, _, info = load_checkpoint(out)
    assert model.config.train_scales == (2.0, 3.5)
    again = runner.invoke(app, args)
    assert again.exit_code == 2 and "--resume" in again.output
    more = runner.invoke(app, [*args[:-len(TINY_FLAGS)], "--resume", "--steps", "3"])
    assert more.exit_code == 0, more.output
    assert load_checkpoint(out)[2]["diffusion_steps_done"] == 3
    bad = runner.invoke(app, ["train", "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "x.safetensors")])
    assert bad.exit_code == 2 and "not a directory" in bad.output


def test_ddp_two_cpu_processes(photo_dir, tmp_path):
    """torchrun with two gloo processes: both ranks train in step and end with identical weights."""
    out = tmp_path / "ddp.safetensors"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # --standalone: torchrun picks a free port itself, so parallel test runs cannot collide
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "srcli", "train", "--data", str(photo_dir / "train"), "--out", str(out),
           "--state-dir", str(tmp_path / "s"), "--encoder-steps", "2", "--steps", "2", *TINY_FLAGS]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    sums = dict(re.findall(r"rank (\d) parameter checksum (\S+)", proc.stderr))
    assert set(sums) == {"0", "1"}, proc.stderr[-2000:]
    assert sums["0"] == sums["1"]
    _, _, info = load_checkpoint(out)
    assert info["world_size"] == 2 and info["diffusion_steps_done"] == 2


def test_learning_rate_halves_per_stage():
    cfg = TrainConfig(data="d", out="o", lr=1e-3, lr_halve_every=100, encoder_lr_halve_every=10)
    assert learning_rate(cfg, "encoder", 9) == 1e-3 and learning_rate(cfg, "encoder", 25) == 2.5e-4
    assert learning_rate(cfg, "diffusion", 25) == 1e-3 and learning_rate(cfg, "diffusion", 100) == 5e-4
    assert learning_rate(TrainConfig(data="d", out="o", lr_halve_every=10), "encoder", 10) == 1e-4


def test_return_to_stage_one_then_continue(photo_dir, tmp_path):
    """Raising encoder_steps of a finished run trains the encoder further, leaves the noise predictor
    alone meanwhile, then continues stage 2 with its own counter, EMA and Adam moments."""
    Trainer(_config(photo_dir, tmp_path, encoder_steps=2, steps=2), log=lambda m: None).run()
    t = Trainer(_config(photo_dir, tmp_path, encoder_steps=4, steps=3, save_every=1000), log=lambda m: None)
    t.resume()
    assert t.done == {"encoder": 2, "diffusion": 2} and t.stage == "encoder" and t.total_steps == 7
    denoiser = {k: v.clone() for k, v in t.model.denoise_fn.state_dict().items()}
    adam_steps = [s["step"].item() for s in t.optimizer("diffusion").state_dict()["state"].values()]
    assert adam_steps and set(adam_steps) == {2.0}  # the stage-2 moments came back from the state
    encoder = {k: v.clone() for k, v in t.model.rrdb.state_dict().items()}
    t.run(max_seconds=0)  # one more encoder step
    assert t.done == {"encoder": 3, "diffusion": 2}
    assert all(torch.equal(v, t.model.denoise_fn.state_dict()[k]) for k, v in denoiser.items())
    assert any(not torch.equal(v, t.model.rrdb.state_dict()[k]) for k, v in encoder.items())
    t.run()
    assert t.done == {"encoder": 4, "diffusion": 3}
    _, _, info = load_checkpoint(t.cfg.out)
    assert info["encoder_steps_done"] == 4 and info["diffusion_steps_done"] == 3
    assert set(t.optimizer("diffusion").state_dict()["state"][0]["step"].view(-1).tolist()) == {3.0}


def test_sigterm_saves_and_exits_with_its_code(photo_dir, tmp_path):
    out, state = tmp_path / "w.safetensors", tmp_path / "s"
    cmd = [sys.executable, "-m", "srcli", "train", "--data", str(photo_dir / "train"), "--out", str(out),
           "--state-dir", str(state), "--encoder-steps", "100000", "--steps", "1", "--save-every", "100000", *TINY_FLAGS]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    for line in proc.stderr:  # wait until the loop runs
        if line.startswith("stage encoder"):
            break
    time.sleep(1.0)
    proc.send_signal(signal.SIGTERM)
    rest = proc.stderr.read()
    assert proc.wait(timeout=120) == 128 + signal.SIGTERM, rest
    assert "SIGTERM: saved at step" in rest
    _, _, info = load_checkpoint(out)
    assert (state / "state.pt").is_file() and info["encoder_steps_done"] >= 1


def test_a_new_run_starts_from_another_checkpoints_encoder(photo_dir, tmp_path):
    runner = CliRunner()
    first = tmp_path / "first.safetensors"
    args = ["train", "--data", str(photo_dir / "train"), "--encoder-steps", "3", "--steps", "1", *TINY_FLAGS]
    assert runner.invoke(app, [*args, "--out", str(first), "--state-dir", str(tmp_path / "s1")]).exit_code == 0
    wide = tmp_path / "wide.safetensors"
    result = runner.invoke(app, [*args, "--out", str(wide), "--state-dir", str(tmp_path / "s2"), "--unet-dim", "12",
                                 "--encoder-from", str(first)])
    assert result.exit_code == 0, result.output
    assert "3 stage-1 steps done" in result.output
    source, _, _ = load_checkpoint(first)
    model, _, info = load_checkpoint(wide)
    assert model.config.unet_dim == 12
    assert info["encoder_steps_done"] == 3 and info["diffusion_steps_done"] == 1  # stage 1 did not run again
    for k, v in source.rrdb.state_dict().items():
        assert torch.equal(model.rrdb.state_dict()[k], v), k
    # a different encoder size, a missing file, or a resumed run: one-line usage errors
    other = runner.invoke(app, [*args, "--out", str(tmp_path / "x.safetensors"), "--state-dir", str(tmp_path / "s3"),
                                "--rrdb-nf", "12", "--encoder-from", str(first)])
    assert other.exit_code == 2 and "differs" in other.output
    missing = runner.invoke(app, [*args, "--out", str(tmp_path / "y.safetensors"), "--encoder-from", str(tmp_path / "nope")])
    assert missing.exit_code == 2 and "no such file" in missing.output
    resumed = runner.invoke(app, [*args, "--out", str(wide), "--resume", "--encoder-from", str(first)])
    assert resumed.exit_code == 2 and "new run" in resumed.output


def test_resume_restores_the_runs_config(photo_dir, tmp_path):
    # a run at scale 3 with 2 encoder steps; resuming without --scale must keep training at 3x
    out = tmp_path / "w.safetensors"
    state = tmp_path / "state"
    base = ["train", "--data", str(photo_dir / "train"), "--out", str(out), "--state-dir", str(state), *TINY_FLAGS,
            "--save-every", "1", "--val-every", "1000"]
    runner = CliRunner()
    first = runner.invoke(app, [*base, "--scale", "3", "--encoder-steps", "2", "--steps", "0"])
    assert first.exit_code == 0, first.output
    more = runner.invoke(app, ["train", "--data", str(photo_dir / "train"), "--out", str(out), "--state-dir", str(state),
                               "--resume", "--steps", "1"])
    assert more.exit_code == 0, more.output
    assert "steps: 0 -> 1 (given on resume)" in more.output
    _, _, info = load_checkpoint(out)
    assert info["train"]["scales"] == [3.0, 3.0] and info["diffusion_steps_done"] == 1
    assert info["train"]["batch"] == 2 and info["train"]["patch"] == 24  # flags not repeated: the run's own
    for flag in (["--scale", "2-4"], ["--degradation", "real"], ["--unet-dim", "16"], ["--seed", "9"]):
        changed = runner.invoke(app, [*base, "--resume", *flag])
        assert changed.exit_code == 2, (flag, changed.output)
        assert "differs from the run's" in changed.output
    # without the state, the model file's metadata carries the config
    (state / "state.pt").unlink()
    alone = runner.invoke(app, ["train", "--data", str(photo_dir / "train"), "--out", str(out), "--state-dir", str(state),
                                "--resume", "--steps", "2"])
    assert alone.exit_code == 0, alone.output
    assert load_checkpoint(out)[2]["train"]["scales"] == [3.0, 3.0]


def test_cli_and_library_share_training_defaults():
    from srcli.cli.train import train_command
    import inspect

    defaults = TrainConfig(data="", out="")
    params = inspect.signature(train_command).parameters
    for name in ("encoder_steps", "steps", "batch", "patch", "lr", "lr_halve_every", "save_every", "val_every", "degradation"):
        assert params[name].default == getattr(defaults, name), name


def test_model_sizes_out_of_bounds_are_one_line(photo_dir, tmp_path):
    result = CliRunner().invoke(app, ["train", "--data", str(photo_dir / "train"), "--out", str(tmp_path / "w.safetensors"),
                                      "--unet-dim", "3"])
    assert result.exit_code == 2 and "bad model size" in result.output and "Traceback" not in result.output


# -- the train package's parts: stream, state formats, distributed setup ---------------------------

def test_resume_is_exact_half_and_half_with_loader_workers(photo_dir, tmp_path):
    """N steps straight (patches made in-process) == N/2, resume, N/2 with two DataLoader workers:
    batch k depends only on (seed, k), not on who makes it or when the run was cut."""
    straight = Trainer(_config(photo_dir, tmp_path / "a", encoder_steps=2, steps=4), log=lambda m: None)
    straight.run()
    first = Trainer(_config(photo_dir, tmp_path / "b", encoder_steps=2, steps=1), log=lambda m: None)
    first.run()
    assert first.step == 3
    second = Trainer(_config(photo_dir, tmp_path / "b", encoder_steps=2, steps=4, workers=2), log=lambda m: None)
    assert "resumed exactly" in second.resume() and second.step == 3
    second.run()
    a, b = _weights(straight), _weights(second)
    for k in a:
        assert torch.equal(a[k], b[k]), k
    # and a different seed gives a different run (the comparison above can fail)
    other = Trainer(_config(photo_dir, tmp_path / "c", encoder_steps=2, steps=4, seed=6), log=lambda m: None)
    other.run()
    assert any(not torch.equal(a[k], v) for k, v in _weights(other).items())


def test_batch_k_is_a_function_of_seed_and_k(photo_dir):
    from srcli.data import PatchSampler
    from srcli.train.stream import batches, step_generator

    sampler = PatchSampler(photo_dir / "train", 24, (2.0, 4.0), log=lambda m: None)
    from_zero = batches(sampler, 2, seed=3, rank=0, start=0)
    seq = [next(from_zero) for _ in range(4)]
    late = next(batches(sampler, 2, seed=3, rank=0, start=3))
    assert torch.equal(late[0], seq[3][0]) and torch.equal(late[1], seq[3][1]) and late[2] == seq[3][2]
    assert not torch.equal(seq[0][0], seq[1][0])
    other_rank = next(batches(sampler, 2, seed=3, rank=1, start=3))
    assert not torch.equal(other_rank[0], seq[3][0])
    cpu = torch.device("cpu")
    n1 = torch.randn(5, generator=step_generator(3, 0, 7, cpu))
    assert torch.equal(n1, torch.randn(5, generator=step_generator(3, 0, 7, cpu)))
    assert not torch.equal(n1, torch.randn(5, generator=step_generator(3, 0, 8, cpu)))


def _legacy_state(trainer: Trainer, fmt: int) -> dict:
    """A state as older srcli versions wrote it (format 1: numpy sampler RNGs; format 0: one step
    count and a single optimizer)."""
    import json

    state = {
        "step": trainer.step, "model": trainer.model.state_dict(), "ema": trainer.ema.shadow.state_dict(),
        "rng_states": json.dumps([{"sampler": trainer.sampler.state(), "torch_gen": [0] * 16}]),
        "torch_rng": torch.get_rng_state(), "config": json.dumps(trainer.cfg.to_dict()),
    }
    if fmt == 1:
        state["done"] = json.dumps(trainer.done)
        state["optimizers"] = {s: o.state_dict() for s, o in trainer.optimizers.items()}
    else:
        state["optimizer"], state["optimizer_stage"] = trainer.optimizer("diffusion").state_dict(), "diffusion"
    return state


@pytest.mark.parametrize("fmt", [0, 1])
def test_older_state_formats_resume(photo_dir, tmp_path, fmt):
    t = Trainer(_config(photo_dir, tmp_path, encoder_steps=2, steps=2), log=lambda m: None)
    t.run()
    state_path = Path(t.cfg.state_dir) / "state.pt"
    torch.save(_legacy_state(t, fmt), state_path)
    again = Trainer(_config(photo_dir, tmp_path, encoder_steps=2, steps=3), log=lambda m: None)
    notes = []
    again.log = notes.append
    assert "at step 4" in again.resume()
    assert again.done == {"encoder": 2, "diffusion": 2} and again.stage == "diffusion"
    assert any("older srcli" in n for n in notes)
    for k, v in t.model.state_dict().items():
        assert torch.equal(again.model.state_dict()[k], v), k
    for k, v in t.ema.shadow.state_dict().items():
        assert torch.equal(again.ema.shadow.state_dict()[k], v), k
    moments = again.optimizer("diffusion").state_dict()["state"]
    assert moments and torch.equal(moments[0]["exp_avg"], t.optimizer("diffusion").state_dict()["state"][0]["exp_avg"])
    again.run()
    assert again.done == {"encoder": 2, "diffusion": 3}


def test_state_is_loaded_to_the_cpu_first(photo_dir, tmp_path, monkeypatch):
    """Whatever device trains, the state is read with map_location="cpu": the torch RNG state must
    stay a CPU ByteTensor for torch.set_rng_state, and the weights are copied to the device after."""
    import srcli.train.state as state_mod

    t = Trainer(_config(photo_dir, tmp_path, encoder_steps=1, steps=1), log=lambda m: None)
    t.run()
    calls = []
    real_load = torch.load

    def spy(*args, **kwargs):
        calls.append(kwargs.get("map_location"))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(state_mod.torch, "load", spy)
    loaded = state_mod.read_state(Path(t.cfg.state_dir) / "state.pt")
    assert calls == ["cpu"]
    assert loaded.torch_rng.dtype == torch.uint8 and loaded.torch_rng.device.type == "cpu"
    assert all(v.device.type == "cpu" for v in loaded.model.values())
    torch.set_rng_state(loaded.torch_rng)  # accepted as it is


def test_each_rank_gets_its_device_and_backend(monkeypatch):
    from srcli.train import distributed as ddp

    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert ddp.rank_device("cuda") == torch.device("cuda", 1)  # not every rank on cuda:0
    assert ddp.rank_device("cpu") == torch.device("cpu")
    assert ddp.backend_for(torch.device("cuda", 1)) == "nccl"
    assert ddp.backend_for(torch.device("cpu")) == "gloo"  # even on a machine with CUDA
    monkeypatch.delenv("RANK")
    assert ddp.rank_device("cuda") == torch.device("cuda")  # one process: as given
    assert ddp.should_check_stop(3)  # alone, every step


def test_resume_flags_equal_to_the_runs_are_fine_and_session_flags_are_logged(photo_dir, tmp_path):
    out, state = tmp_path / "w.safetensors", tmp_path / "state"
    base = ["train", "--data", str(photo_dir / "train"), "--out", str(out), "--state-dir", str(state)]
    runner = CliRunner()
    assert runner.invoke(app, [*base, *TINY_FLAGS, "--encoder-steps", "1", "--steps", "1"]).exit_code == 0
    # one architecture flag, equal to the run's: not compared with the defaults of the others
    same = runner.invoke(app, [*base, "--resume", "--unet-dim", "8", "--steps", "2", "--threads", "1"])
    assert same.exit_code == 0, same.output
    assert "steps: 1 -> 2 (given on resume)" in same.output
    assert "threads: 1 (this session only" in same.output
    bad = runner.invoke(app, [*base, "--resume", "--patch", "32"])
    assert bad.exit_code == 2 and "--patch 32 differs from the run's 24" in bad.output
