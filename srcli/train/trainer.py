"""The ``Trainer``: a run's bookkeeping (steps per stage, optimizers, the EMA), starting it (fresh,
resumed, from another checkpoint's weights), the step loop with its logging, saving, validation
and stopping, and the shipped model it writes.

The two stages keep their own step counters, so a run can go back to stage 1: raising
``encoder_steps`` of a resumed run trains the encoder further, then stage 2 carries on where it
was.  SIGTERM or Ctrl-C saves the state at the end of the current step (under DDP at the next
agreed check) before stopping.
"""

from __future__ import annotations

import contextlib
import copy
import json
import signal
import threading
import time
from pathlib import Path
from typing import Callable, Iterator, Optional

import numpy as np
import torch

from ..checkpoint import load_checkpoint, save_checkpoint
from ..data import PatchSampler
from ..diffusion import NoiseSchedule
from ..imageio import list_images, load_rgb8
from ..nets import SRDiffModel, count_parameters
from . import distributed as ddp
from .config import TrainConfig, default_state_dir, learning_rate
from .ema import EMA
from .loop import ConditionedDenoiser, diffusion_step, encoder_step
from .state import read_state, write_state
from .stream import batches, step_generator
from .validate import validate

Progress = Callable[[int, int, dict], None]


class Trainer:
    def __init__(self, cfg: TrainConfig, log: Callable[[str], None] = print, device: str | torch.device = "cpu"):
        self.cfg = cfg
        self.log = log
        self.device = device if isinstance(device, torch.device) else ddp.rank_device(device)
        self.state_dir = Path(cfg.state_dir) if cfg.state_dir else default_state_dir(cfg.out)
        self.state_path = self.state_dir / "state.pt"
        self.log_path = self.state_dir / "train.jsonl"
        self.world = ddp.world_size()
        torch.manual_seed(cfg.seed)  # the initial weights, the same on every rank
        self.model = SRDiffModel(cfg.model).to(self.device)
        self.schedule = NoiseSchedule.named(cfg.schedule, cfg.model.timesteps)
        self.sampler = PatchSampler(cfg.data, cfg.patch, cfg.scales, seed=cfg.seed, log=log,
                                    degradation=cfg.degradation, clean_fraction=cfg.clean_fraction,
                                    deblock_lr=cfg.deblock)
        self.done = {"encoder": 0, "diffusion": 0}  # steps taken in each stage
        self.ema = EMA(self.model.denoise_fn, cfg.ema_decay)
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self.stop_requested: Optional[str] = None
        self.val_images = [(p.name, load_rgb8(p)) for p in list_images(cfg.val)] if cfg.val else []

    # -- bookkeeping -----------------------------------------------------------------------------
    @property
    def step(self) -> int:
        """Total steps over both stages (also the index of the next batch in the data stream)."""
        return self.done["encoder"] + self.done["diffusion"]

    @property
    def stage(self) -> str:
        return "encoder" if self.done["encoder"] < self.cfg.encoder_steps else "diffusion"

    @property
    def total_steps(self) -> int:
        return max(self.cfg.encoder_steps, self.done["encoder"]) + max(self.cfg.steps, self.done["diffusion"])

    @property
    def finished(self) -> bool:
        return self.stage == "diffusion" and self.done["diffusion"] >= self.cfg.steps

    def optimizer(self, stage: str) -> torch.optim.Optimizer:
        """Each stage's Adam, made on first use (and kept, so a return to a stage keeps its moments)."""
        if stage not in self.optimizers:
            params = self.model.rrdb.parameters() if stage == "encoder" else self.model.denoise_fn.parameters()
            self.optimizers[stage] = torch.optim.Adam(params, lr=self.cfg.lr)
        return self.optimizers[stage]

    def info(self) -> dict:
        """The shipped file's ``info``: progress and the run's config (what ``--resume`` restores
        when the state is gone)."""
        return {
            "encoder_steps_done": self.done["encoder"],
            "diffusion_steps_done": self.done["diffusion"],
            "train": {k: v for k, v in self.cfg.to_dict().items() if k not in ("model", "state_dir")},
            "world_size": self.world,
            "degradation": self.cfg.degradation,
            # trained on deblocked inputs: the model deblocks its inputs (else its default stands)
            **({"deblock": True} if self.cfg.deblock else {}),
        }

    def shipped_model(self) -> SRDiffModel:
        """The model as shipped: the trained encoder plus the EMA of the noise predictor (on the CPU)."""
        shipped = copy.deepcopy(self.model).cpu()
        shipped.denoise_fn.load_state_dict(self.ema.shadow.state_dict())
        return shipped.eval()

    # -- saving and starting ---------------------------------------------------------------------
    def save(self) -> None:
        """Write the resume state and the shipped model, both atomically (rank 0 only)."""
        if ddp.rank() != 0:
            return
        write_state(self.state_path, dict(self.done), self.model.state_dict(), self.ema.shadow.state_dict(),
                    {stage: opt.state_dict() for stage, opt in self.optimizers.items()}, self.cfg)
        save_checkpoint(self.cfg.out, self.shipped_model(), self.schedule, info=self.info())

    def resume(self) -> str:
        """Continue from the full state if present (loaded to the CPU, then moved), else from the
        shipped weights alone with fresh optimizers."""
        if self.state_path.is_file():
            state = read_state(self.state_path)
            self.done = {"encoder": state.done.get("encoder", 0), "diffusion": state.done.get("diffusion", 0)}
            self.model.load_state_dict(state.model)  # copies into this rank's device
            self.ema.shadow.load_state_dict(state.ema)
            for stage, opt_state in state.optimizers.items():
                self.optimizer(stage).load_state_dict(opt_state)  # moves the moments to the parameters' device
            if state.torch_rng is not None:
                torch.set_rng_state(state.torch_rng)
            for note in state.notes:
                self.log(f"note: {note}")
            how = "resumed" if state.notes else "resumed exactly"
            return f"{how} from {self.state_path} at step {self.step}"
        if Path(self.cfg.out).is_file():
            model, _, info = load_checkpoint(self.cfg.out, "cpu")
            if model.config != self.cfg.model:
                raise ValueError(f"{self.cfg.out}: its model config differs from this run's")
            self.model.load_state_dict(model.state_dict())
            self.ema.shadow.load_state_dict(model.denoise_fn.state_dict())
            self.done = {"encoder": int(info.get("encoder_steps_done", 0)), "diffusion": int(info.get("diffusion_steps_done", 0))}
            return f"no resume state; continuing from the weights in {self.cfg.out} at step {self.step} with fresh optimizers"
        return "nothing to resume; starting fresh"

    def load_encoder(self, path: str) -> str:
        """Start a new run from the trained RRDB encoder of another checkpoint: its weights and its
        stage-1 step count carry over, so stage 1 only runs on if ``encoder_steps`` is larger."""
        source, _, info = load_checkpoint(path, "cpu")
        keys = ("rrdb_nf", "rrdb_gc", "rrdb_blocks", "projection", "scale")
        mine = {k: getattr(self.cfg.model, k) for k in keys}
        theirs = {k: getattr(source.config, k) for k in keys}
        if mine != theirs:
            raise ValueError(f"{path}: its encoder {theirs} differs from this run's {mine}")
        self.model.rrdb.load_state_dict(source.rrdb.state_dict())
        self.done["encoder"] = int(info.get("encoder_steps_done", 0))
        return f"encoder from {path} ({self.done['encoder']} stage-1 steps done)"

    def load_weights(self, path: str) -> str:
        """Start a new run (a fine-tune) from all the weights of another checkpoint; both stage
        counters start at 0.  The architecture must match."""
        source, _, info = load_checkpoint(path, "cpu")
        if source.config != self.cfg.model:
            raise ValueError(f"{path}: its model config differs from this run's")
        self.model.load_state_dict(source.state_dict())
        self.ema.shadow.load_state_dict(source.denoise_fn.state_dict())
        done = int(info.get("encoder_steps_done", 0)) + int(info.get("diffusion_steps_done", 0))
        return f"fine-tuning the weights of {path} ({done} steps trained before)"

    # -- the loop --------------------------------------------------------------------------------
    def _train_one(self, stage: str, net: torch.nn.Module, stream: Iterator) -> float:
        hr, lr, scale = next(stream)
        hr, lr = hr.to(self.device, non_blocking=True), lr.to(self.device, non_blocking=True)
        optimizer = self.optimizer(stage)
        if stage == "encoder":
            return encoder_step(net, hr, lr, optimizer, self.cfg.grad_clip, self.cfg.block_edge_weight)
        gen = step_generator(self.cfg.seed, ddp.rank(), self.step, self.device)
        return diffusion_step(net, self.model, self.schedule, hr, lr, float(scale), optimizer, self.cfg.grad_clip, gen)

    def run(self, progress: Optional[Progress] = None, max_seconds: Optional[float] = None) -> None:
        """Train until both stages have their steps; returns early (after a save) on ``max_seconds``
        or on SIGTERM / SIGINT (under DDP when the ranks next agree, ``distributed.STOP_CHECK_EVERY``)."""
        cfg = self.cfg
        self.log(
            f"model: encoder {count_parameters(self.model.rrdb) / 1e6:.2f}M, "
            f"noise predictor {count_parameters(self.model.denoise_fn) / 1e6:.2f}M parameters; "
            f"{len(self.sampler.images)} training images; world size {self.world}"
        )
        started = time.time()
        stream = batches(self.sampler, cfg.batch, cfg.seed, ddp.rank(), self.step, cfg.workers,
                         pin=self.device.type == "cuda")
        net, net_stage = None, None
        window, window_start = [], time.time()
        with _stop_on_signals(self):
            while not self.finished:
                stage = self.stage
                if net_stage != stage:
                    trained = self.model.rrdb if stage == "encoder" else ConditionedDenoiser(self.model.denoise_fn)
                    self.model.rrdb.requires_grad_(stage == "encoder")
                    net, net_stage = ddp.wrap(trained.train(), self.device), stage
                    self.log(f"stage {stage} from step {self.step} ({self.done[stage]} steps of it done)")
                lr = learning_rate(cfg, stage, self.done[stage])
                for group in self.optimizer(stage).param_groups:
                    group["lr"] = lr
                window.append(self._train_one(stage, net, stream))
                if stage == "diffusion":
                    self.ema.update(self.model.denoise_fn, self.done["diffusion"])
                self.done[stage] += 1
                stage_ended = stage == "encoder" and self.stage != stage
                if self.step % cfg.log_every == 0 or self.finished:
                    elapsed = time.time() - window_start
                    record = {"step": self.step, "stage": stage, "loss": float(np.mean(window)), "lr": lr,
                              "steps_per_s": len(window) / max(elapsed, 1e-9), "time": time.time()}
                    self._write_log(record)
                    if progress:
                        progress(self.step, self.total_steps, record)
                    window, window_start = [], time.time()
                if self.step % cfg.save_every == 0 or self.finished or stage_ended:
                    self.save()
                if self.val_images and (self.step % cfg.val_every == 0 or stage_ended):
                    self._write_log({"step": self.step, "validation": self.validate()})
                timed_out = max_seconds is not None and time.time() - started > max_seconds
                local = self.stop_requested is not None or timed_out
                if ddp.should_check_stop(self.step) and ddp.any_rank(local, self.device):
                    self.save()
                    why = self.stop_requested or (f"stopping after {max_seconds:.0f}s" if timed_out else "a stop on another rank")
                    self.log(f"{why}: saved at step {self.step} (resume with --resume)")
                    return
        self.save()

    def parameter_checksum(self) -> float:
        """Sum of |w| over the model and the EMA (float64): equal across DDP replicas."""
        with torch.no_grad():
            tensors = list(self.model.parameters()) + list(self.ema.shadow.parameters())
            return float(sum(p.detach().double().abs().sum() for p in tensors))

    def _write_log(self, record: dict) -> None:
        if ddp.rank() != 0:
            return
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "a") as f:
            f.write(json.dumps(record) + "\n")

    @torch.no_grad()
    def validate(self) -> dict:
        """The shipped model on the --val images with ``srcli.evaluate``'s protocol (rank 0 only)."""
        if ddp.rank() != 0:
            return {}
        result = validate(self.shipped_model(), self.schedule, self.info(), self.val_images, self.cfg,
                          self.device, sample=self.done["diffusion"] > 0)
        self.log(f"validation at step {self.step}: {json.dumps(result)}")
        return result


@contextlib.contextmanager
def _stop_on_signals(trainer: Trainer):
    """SIGTERM / SIGINT ask the trainer to save and stop (main thread only: elsewhere, e.g. in a
    notebook's worker thread, signals stay as they are); a second signal stops at once."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def ask(signum, frame):  # noqa: ARG001
        if trainer.stop_requested is not None:
            raise KeyboardInterrupt
        trainer.stop_requested = signal.Signals(signum).name

    previous = {sig: signal.signal(sig, ask) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
