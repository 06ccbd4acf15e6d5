"""``srcli train``: Algorithm 1 on a folder of HR photographs (encoder pretraining, then diffusion)."""

from __future__ import annotations

import dataclasses
import json
import math
import signal
from pathlib import Path
from typing import Annotated, Optional

import torch
import typer

from ..checkpoint import CheckpointError, parse_info, read_metadata
from ..evaluate import SSIM_WINDOW
from ..imageio import ImageReadError, list_images, read_image
from ..metrics import border_for
from ..data import DEGRADATIONS
from ..nets import ModelConfig
from ..train import TrainConfig, Trainer, default_state_dir, merge_resumed, rank, saved_config, setup_distributed
from ..train.distributed import teardown
from .app import app
from .common import EXIT_SOME_FAILED, EXIT_USAGE, SEED_MAX, ThreadsOpt, apply_threads, err_console, fail, progress_bar, reflow, usage_errors

DEFAULTS = TrainConfig(data="", out="")  # the one source of training defaults
MODEL_DEFAULTS = DEFAULTS.model

HELP = reflow("""Train a scale-free SRDiff model on a folder of HR images (LR made on the fly).

Stage 1 pretrains the RRDB encoder with an L1 loss; stage 2 trains the noise predictor with
Algorithm 1 on the residual, encoder frozen.  The full resume state lives outside the repository
(--state-dir, default ~/.cache/srcli/train/NAME); --out always holds a complete usable model.

Examples:

  srcli prepare-data data/                       # the Debian photo recipe (train/, val/, tune/)

  srcli train --data data/train --val data/val --out weights/mine.safetensors

  srcli train --data data/train --out weights/mine.safetensors --resume   # after an interruption

  srcli train ... --resume --encoder-steps 6000 --encoder-lr-halve-every 1000   # more stage 1, then on

  srcli train ... --out weights/wide.safetensors --unet-dim 48 --encoder-from weights/mine.safetensors   # new U-Net, same encoder

  srcli train --data data/train --val data/val --out weights/real.safetensors --degradation real --init-from weights/srcli-x2-4-c32.safetensors --encoder-steps 3000   # real-world fine-tune

  torchrun --nproc_per_node 2 -m srcli train --data data/train --out w.safetensors   # DDP on CPUs

  torchrun --standalone --nproc_per_node 4 -m srcli train --device cuda --workers 4 ...   # one GPU per process

--resume restores the run's own config: a flag that defines the run (--scale, --patch, --seed,
--degradation, the model sizes...) may not differ from it; the others (--steps, --lr, --ema-decay,
--clean-fraction...) change it and each change is logged.  Batch k and its noise depend only on
(--seed, rank, k), so a resumed run sees what it would have seen without the interruption.

Ctrl-C or SIGTERM saves the state at the end of the current step (under torchrun within 10 steps)
and exits with 130 or 143; a second one stops at once.
""")


def _parse_scales(text: str) -> tuple[float, float]:
    try:
        parts = [float(p) for p in text.replace(":", "-").split("-")] if "-" in text[1:] or ":" in text else [float(text)] * 2
    except ValueError:
        raise typer.BadParameter(f"{text!r}: expected a scale like 4 or a range like 2-4") from None
    if len(parts) != 2 or not 1 < parts[0] <= parts[1] <= 8:
        raise typer.BadParameter(f"{text!r}: scales must lie in (1, 8], low <= high")
    return parts[0], parts[1]


def _parse_mults(text: str) -> tuple[int, ...]:
    try:
        mults = tuple(int(m) for m in text.replace("|", ",").split(","))
    except ValueError:
        raise typer.BadParameter(f"{text!r}: expected channel multipliers like 1,2,3,4") from None
    if not mults or any(m < 1 for m in mults):
        raise typer.BadParameter(f"{text!r}: multipliers must be positive integers")
    return mults


def _check_numbers(lr: float, grad_clip: float, ema_decay: float, save_every: int, val_every: int) -> None:
    """Values that would train uphill, not at all, or fail mid-run: refused before any work."""
    for name, value in (("--lr", lr), ("--grad-clip", grad_clip)):
        if not (math.isfinite(value) and value > 0):
            fail(f"{name} must be a finite number > 0, got {value}")
    if not (math.isfinite(ema_decay) and 0 <= ema_decay < 1):
        fail(f"--ema-decay must be in [0, 1), got {ema_decay}")
    for name, value in (("--save-every", save_every), ("--val-every", val_every)):
        if value < 1:
            fail(f"{name} must be >= 1, got {value}")


def _check_val_images(folder: Path, scale: float) -> None:
    """Every --val image must read and be large enough for validation at ``scale`` (the metrics
    crop a ceil(scale) border and need an SSIM window inside), so a bad one fails now, not mid-run."""
    need = SSIM_WINDOW + 2 * border_for(scale)
    for path in list_images(folder):
        try:
            h, w = read_image(path).size
        except ImageReadError as exc:
            fail(f"--val: {exc}")
        side = min(round(round(h / scale) * scale), round(round(w / scale) * scale))
        if side < need:
            fail(f"--val: {path} is {w}x{h}; validation at {scale:g}x needs at least {need}x{need} px")


_ARCH_PARAMS = ("unet_dim", "unet_mults", "rrdb_blocks", "rrdb_nf", "rrdb_gc", "timesteps")
# command-line parameters -> the TrainConfig field they set (model-architecture flags are compared
# through the config's model; they cannot change on resume)
_PARAM_FIELDS = {
    "data": "data", "val": "val", "scale": "scales", "encoder_steps": "encoder_steps", "steps": "steps",
    "batch": "batch", "patch": "patch", "lr": "lr", "lr_halve_every": "lr_halve_every",
    "encoder_lr_halve_every": "encoder_lr_halve_every", "ema_decay": "ema_decay", "grad_clip": "grad_clip",
    "schedule": "schedule", "seed": "seed", "save_every": "save_every", "val_every": "val_every",
    "val_steps": "val_steps", "degradation": "degradation", "clean_fraction": "clean_fraction",
    "block_edge_weight": "block_edge_weight", "deblock": "deblock", "workers": "workers",
    **dict.fromkeys(_ARCH_PARAMS, "model"),
}
# flags of this session only (not part of the run's config): given on resume, they are logged
_SESSION_PARAMS = ("max_minutes", "threads", "device")


def _given(ctx: typer.Context, params) -> list[str]:
    """The parameters among ``params`` given on this command line (not left at their default)."""
    return [p for p in params if getattr(ctx.get_parameter_source(p), "name", None) == "COMMANDLINE"]


def _given_on_resume(ctx: typer.Context, cfg: TrainConfig, saved: TrainConfig) -> dict:
    """TrainConfig fields given on a resume's command line, with their values.  Architecture flags
    change only their own fields of the saved model (the others are not compared to defaults)."""
    fields = {_PARAM_FIELDS[p] for p in _given(ctx, _PARAM_FIELDS)}
    given = {name: getattr(cfg, name) for name in fields - {"model"}}
    if "model" in fields:
        arch = {p: getattr(cfg.model, p) for p in _given(ctx, _ARCH_PARAMS)}
        given["model"] = dataclasses.replace(saved.model, **arch)
    return given


@app.command("train", help=HELP)
def train_command(
    ctx: typer.Context,
    data: Annotated[Path, typer.Option("--data", help="Folder of HR training images (searched recursively).")],
    out: Annotated[Path, typer.Option("--out", help="The model file to write (safetensors, EMA weights, fp16).")],
    val: Annotated[Optional[Path], typer.Option("--val", help="Folder of HR validation images (fixed split).")] = None,
    scale: Annotated[str, typer.Option("--scale", help="Training scale or range, e.g. 4 or 2-4 (one per batch).")] = "{:g}-{:g}".format(*DEFAULTS.scales),
    encoder_steps: Annotated[int, typer.Option(help="Stage 1 steps (RRDB encoder, L1).")] = DEFAULTS.encoder_steps,
    steps: Annotated[int, typer.Option(help="Stage 2 steps (noise predictor, Algorithm 1).")] = DEFAULTS.steps,
    batch: Annotated[int, typer.Option(help="Patches per step (per process under torchrun).")] = DEFAULTS.batch,
    patch: Annotated[int, typer.Option(help="HR patch size in pixels.")] = DEFAULTS.patch,
    lr: Annotated[float, typer.Option(help="Adam learning rate.")] = DEFAULTS.lr,
    lr_halve_every: Annotated[int, typer.Option(help="Halve the learning rate every N steps of a stage.")] = DEFAULTS.lr_halve_every,
    encoder_lr_halve_every: Annotated[Optional[int], typer.Option(help="Stage 1's own halving period (default: --lr-halve-every).")] = DEFAULTS.encoder_lr_halve_every,
    ema_decay: Annotated[float, typer.Option(help="EMA decay of the noise predictor's weights.")] = DEFAULTS.ema_decay,
    grad_clip: Annotated[float, typer.Option(help="Gradient-norm clip.")] = DEFAULTS.grad_clip,
    unet_dim: Annotated[int, typer.Option(help="U-Net base width c (the paper: 64; measured best on CPUs: 32).")] = MODEL_DEFAULTS.unet_dim,
    unet_mults: Annotated[str, typer.Option(help="U-Net channel multipliers.")] = ",".join(map(str, MODEL_DEFAULTS.unet_mults)),
    rrdb_blocks: Annotated[int, typer.Option(help="RRDB blocks of the LR encoder.")] = MODEL_DEFAULTS.rrdb_blocks,
    rrdb_nf: Annotated[int, typer.Option(help="RRDB feature channels.")] = MODEL_DEFAULTS.rrdb_nf,
    rrdb_gc: Annotated[int, typer.Option(help="RRDB growth channels.")] = MODEL_DEFAULTS.rrdb_gc,
    timesteps: Annotated[int, typer.Option(help="Diffusion steps T.")] = MODEL_DEFAULTS.timesteps,
    schedule: Annotated[str, typer.Option(help="Noise schedule: cosine or linear.")] = DEFAULTS.schedule,
    seed: Annotated[int, typer.Option(min=0, max=SEED_MAX, help="Seed of initialisation, data order and noise.")] = DEFAULTS.seed,
    save_every: Annotated[int, typer.Option(help="Checkpoint every N steps (atomic).")] = DEFAULTS.save_every,
    val_every: Annotated[int, typer.Option(help="Validate every N steps.")] = DEFAULTS.val_every,
    val_steps: Annotated[int, typer.Option(help="Sampling steps used in validation.")] = DEFAULTS.val_steps,
    resume: Annotated[bool, typer.Option("--resume", help="Continue: exactly from the state, or from --out alone.")] = False,
    state_dir: Annotated[Optional[Path], typer.Option(help="Where the full resume state lives.")] = None,
    encoder_from: Annotated[
        Optional[Path], typer.Option(help="Start a new run from the trained RRDB encoder of this checkpoint (same encoder size); stage 1 goes on only up to --encoder-steps.")
    ] = None,
    degradation: Annotated[str, typer.Option(help="How LR patches are made: bicubic (the clean protocol) or real (blur, noise, JPEG: srcli.degrade).")] = DEFAULTS.degradation,
    clean_fraction: Annotated[float, typer.Option(help="With --degradation real: the share of patches left plain bicubic, so clean inputs stay sharp (0-1).")] = DEFAULTS.clean_fraction,
    block_edge_weight: Annotated[float, typer.Option(help="Stage 1: weight of an extra L1 on the steps across the LR's 8 px JPEG block edges, so a real-world encoder learns to remove the grid (0: plain L1).")] = DEFAULTS.block_edge_weight,
    deblock: Annotated[bool, typer.Option("--deblock", help="JPEG-deblock every LR patch (srcli.deblock) as the shipped model will deblock its inputs; the model then deblocks by default.")] = DEFAULTS.deblock,
    init_from: Annotated[
        Optional[Path], typer.Option(help="Fine-tune: start a new run from all the weights (encoder and noise predictor) of this checkpoint, same architecture.")
    ] = None,
    workers: Annotated[int, typer.Option(min=0, help="DataLoader worker processes making patches (0: in the training process). Batches do not depend on it.")] = DEFAULTS.workers,
    max_minutes: Annotated[Optional[float], typer.Option(help="Stop (with a checkpoint) after this wall time.")] = None,
    device: Annotated[str, typer.Option(help="cpu or cuda (DDP: one process per device).")] = "cpu",
    threads: ThreadsOpt = None,
) -> None:
    scales = _parse_scales(scale)
    if not data.is_dir():
        fail(f"--data {data}: not a directory")
    if val is not None and not val.is_dir():
        fail(f"--val {val}: not a directory")
    for name, value in (("--steps", steps), ("--encoder-steps", encoder_steps)):
        if value < 0:
            fail(f"{name} must be >= 0")
    for name, value in (("--lr-halve-every", lr_halve_every), ("--encoder-lr-halve-every", encoder_lr_halve_every)):
        if value is not None and value < 1:
            fail(f"{name} must be >= 1")
    if batch < 1 or patch < 16:
        fail("--batch must be >= 1 and --patch >= 16")
    _check_numbers(lr, grad_clip, ema_decay, save_every, val_every)
    if val is not None:
        _check_val_images(val, DEFAULTS.val_scale)
    if device.startswith("cuda") and not torch.cuda.is_available():
        fail("--device cuda: no CUDA device is available on this machine")
    if degradation not in DEGRADATIONS:
        fail(f"--degradation {degradation}: expected one of {', '.join(DEGRADATIONS)}")
    if not 0.0 <= clean_fraction <= 1.0:
        fail(f"--clean-fraction {clean_fraction}: expected a share between 0 and 1")
    if not 0.0 <= block_edge_weight <= 100.0:
        fail(f"--block-edge-weight {block_edge_weight}: expected a weight between 0 and 100")
    if init_from is not None and (resume or encoder_from is not None):
        fail("--init-from starts a new run from a whole checkpoint; not with --resume or --encoder-from")
    if init_from is not None and not init_from.is_file():
        fail(f"--init-from {init_from}: no such file")
    if encoder_from is not None and resume:
        fail("--encoder-from starts a new run; a resumed run already has its encoder")
    if encoder_from is not None and not encoder_from.is_file():
        fail(f"--encoder-from {encoder_from}: no such file")
    state = state_dir or default_state_dir(str(out))
    has_state = (state / "state.pt").is_file()
    if not resume and (has_state or out.exists()):
        fail(f"{out if out.exists() else state}: exists; pass --resume to continue it, or choose another --out")
    try:
        model_cfg = ModelConfig(
            unet_dim=unet_dim, unet_mults=_parse_mults(unet_mults), rrdb_blocks=rrdb_blocks, rrdb_nf=rrdb_nf,
            rrdb_gc=rrdb_gc, timesteps=timesteps, train_scales=scales,
        )
    except ValueError as exc:  # sizes out of ModelConfig's bounds
        fail(f"bad model size: {exc}")
    if init_from is not None:  # a fine-tune keeps the architecture of the weights it starts from
        try:
            model_cfg = ModelConfig.from_json(read_metadata(init_from)["config"])
        except (CheckpointError, KeyError, ValueError) as exc:
            fail(f"--init-from: cannot read the model config of {init_from} ({exc})")
        model_cfg = dataclasses.replace(model_cfg, train_scales=scales)
    cfg = TrainConfig(
        data=str(data), out=str(out), val=str(val) if val else None, state_dir=str(state),
        encoder_steps=encoder_steps, steps=steps, batch=batch, patch=patch, lr=lr, lr_halve_every=lr_halve_every,
        encoder_lr_halve_every=encoder_lr_halve_every,
        grad_clip=grad_clip, ema_decay=ema_decay, scales=scales, schedule=schedule, seed=seed,
        save_every=save_every, val_every=val_every, val_steps=val_steps, model=model_cfg,
        degradation=degradation, clean_fraction=clean_fraction, init_from=str(init_from) if init_from else None,
        block_edge_weight=block_edge_weight, deblock=deblock, workers=workers,
    )
    changes: list[str] = []
    if resume:  # the run's own config wins; flags given now may only change how it goes on
        try:
            if not has_state and out.is_file():
                parse_info(read_metadata(out), out)  # a bad info (a JSON list, say) is one line
            saved = saved_config(state / "state.pt", out)
        except (CheckpointError, KeyError, ValueError, OSError, RuntimeError) as exc:
            fail(f"--resume: cannot read the saved training config ({str(exc).splitlines()[0]})")
        if saved is not None:
            given = _given_on_resume(ctx, cfg, saved)
            try:
                cfg, changes = merge_resumed(dataclasses.replace(saved, out=cfg.out, state_dir=cfg.state_dir), given)
            except ValueError as exc:
                fail(str(exc))
    if cfg.clean_fraction > 0 and cfg.degradation != "real":
        fail("--clean-fraction mixes clean patches into --degradation real; the bicubic protocol is all clean")
    with usage_errors():
        apply_threads(threads)
    dev = setup_distributed(device)
    log = (lambda msg: err_console.print(msg, markup=False, highlight=False, soft_wrap=True)) if rank() == 0 else (lambda msg: None)
    try:
        trainer = Trainer(cfg, log=log, device=dev)
        if resume:
            log(trainer.resume())
            for line in changes:
                log(line)
            for param in _given(ctx, _SESSION_PARAMS):
                log(f"{param}: {ctx.params[param]} (this session only; not saved with the run)")
        elif init_from:
            log(trainer.load_weights(str(init_from)))
        else:
            log(trainer.load_encoder(str(encoder_from)) if encoder_from else "starting fresh")
    except (ValueError, CheckpointError) as exc:
        fail(str(exc), EXIT_USAGE)
    with progress_bar(enabled=rank() == 0 and err_console.is_terminal) as bar:
        task = bar.add_task("training", total=trainer.total_steps, completed=trainer.step)

        def on_progress(step: int, total: int, record: dict) -> None:
            bar.update(task, completed=step, description=f"{record['stage']} loss {record['loss']:.4f} {record['steps_per_s']:.2f} it/s")
            if not err_console.is_terminal and rank() == 0:
                log(json.dumps(record))

        try:
            trainer.run(progress=on_progress, max_seconds=max_minutes * 60 if max_minutes else None)
        except OSError as exc:  # a full disk for --out or the state (written atomically: the last good ones stay)
            fail(f"cannot save the model or the training state: {exc.strerror or exc}", EXIT_SOME_FAILED)
    # every rank reports: under DDP the replicas must agree (the DDP test checks this line)
    err_console.print(f"rank {rank()} parameter checksum {trainer.parameter_checksum():.10e}", highlight=False)
    if rank() == 0:
        log(f"wrote {out} at step {trainer.step}")
    teardown()
    if trainer.stop_requested:  # saved and stopped early: the shell's code for death by that signal
        raise typer.Exit(128 + signal.Signals[trainer.stop_requested].value)
