"""``srcli train``: the two training stages of SRDiff on a folder of HR images.

Stage 1 pretrains the RRDB encoder as an SR network with an L1 loss.  Stage 2 freezes it and trains
the noise predictor with Algorithm 1 (``diffusion.training_loss``) on the residual.  Adam with a
step-halving learning rate, gradient-norm clipping, an EMA of the noise predictor for sampling.

Two files: the full resume state (model, optimizers, EMA, RNGs, data order, step) in ``state_dir``,
outside the repository, and the shipped safetensors model at ``out`` (EMA weights, fp16).  Both are
written atomically.  ``resume`` continues from the state exactly, or, when the state is gone, from
the shipped file alone with fresh optimizers.  Runs under ``torchrun`` with DistributedDataParallel.

The two stages keep their own step counters, so a run can go back to stage 1: raising
``encoder_steps`` of a resumed run trains the encoder further (e.g. with a faster
``encoder_lr_halve_every``), then stage 2 carries on where it was.  SIGTERM or Ctrl-C saves
the state at the end of the current step before stopping.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import math
import os
import signal
import threading
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from .checkpoint import atomic_write_bytes, load_checkpoint, read_metadata, save_checkpoint
from .data import PatchSampler
from .degrade import make_lr
from .diffusion import NoiseSchedule, training_loss
from .engine import Conditioned, seeded_noise, super_resolve, to_residual
from .imageio import list_images, load_rgb8
from .metrics import lr_psnr, psnr_y, ssim_y
from .nets import ModelConfig, SRDiffModel, count_parameters
from .ops import resize, tensor_to_uint8, uint8_to_tensor


@dataclass
class TrainConfig:
    data: str
    out: str
    val: Optional[str] = None
    state_dir: Optional[str] = None
    encoder_steps: int = 5000
    steps: int = 100000  # noise-predictor steps
    batch: int = 16
    patch: int = 64
    lr: float = 2e-4
    lr_halve_every: int = 40000
    encoder_lr_halve_every: Optional[int] = None  # stage 1's own halving period (None: lr_halve_every)
    grad_clip: float = 10.0
    ema_decay: float = 0.999
    scales: tuple[float, float] = (2.0, 4.0)
    schedule: str = "cosine"
    seed: int = 0
    save_every: int = 250
    val_every: int = 1000
    val_scale: float = 4.0
    val_steps: int = 20
    log_every: int = 50
    degradation: str = "bicubic"  # how LR patches are made: the protocol's bicubic or "real" (srcli.degrade)
    clean_fraction: float = 0.0  # with degradation "real": the share of patches left plain bicubic
    init_from: Optional[str] = None  # a checkpoint whose encoder and noise predictor a fine-tune starts from
    model: ModelConfig = field(default_factory=ModelConfig)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        """The inverse of ``to_dict`` (JSON turns tuples into lists; unknown keys are ignored)."""
        known = {f.name for f in fields(cls)}
        d = {k: v for k, v in d.items() if k in known}
        if "scales" in d:
            d["scales"] = tuple(d["scales"])
        if isinstance(d.get("model"), dict):
            d["model"] = ModelConfig.from_json(json.dumps(d["model"]))
        return cls(**d)


# What a resumed run may change: how long and how fast it goes on, and the share of clean patches
# (a curriculum knob of a real-world fine-tune).  The rest defines the run (its degradation, noise
# schedule, seed, architecture): changing it mid-run is a new run.
RESUME_OVERRIDABLE = frozenset({
    "data", "val", "encoder_steps", "steps", "batch", "lr", "lr_halve_every", "encoder_lr_halve_every",
    "grad_clip", "ema_decay", "clean_fraction", "save_every", "val_every", "val_scale", "val_steps", "log_every",
})


def saved_config(state_path: Path, out: Path) -> Optional[TrainConfig]:
    """The config a run was started with: from its resume state, else from its model file's
    metadata; None when neither has one (a file from before configs were recorded)."""
    if state_path.is_file():
        state = torch.load(state_path, map_location="cpu", weights_only=True)
        return TrainConfig.from_dict(json.loads(state["config"]))
    if out.is_file():
        meta = read_metadata(out)
        train = json.loads(meta.get("info", "{}")).get("train")
        if isinstance(train, dict):
            return TrainConfig.from_dict({**train, "model": json.loads(meta["config"])})
    return None


def merge_resumed(saved: TrainConfig, given: dict) -> tuple[TrainConfig, list[str]]:
    """The saved config with the values given on the command line of a resume.  Returns the config
    and one line per change; raises ValueError for a change to what defines the run."""
    changes, updates = [], {}
    for name, value in given.items():
        old = getattr(saved, name)
        if value == old:
            continue
        if name not in RESUME_OVERRIDABLE:
            raise ValueError(f"--{name.replace('_', '-')} {value} differs from the run's {old}; "
                             "resume without it, or start a new run with another --out")
        changes.append(f"{name}: {old} -> {value} (given on resume)")
        updates[name] = value
    return dataclasses.replace(saved, **updates), changes

def default_state_dir(out: str) -> Path:
    base = Path(os.environ.get("SRCLI_STATE_DIR", Path.home() / ".cache" / "srcli" / "train"))
    return base / Path(out).stem


class ConditionedDenoiser(nn.Module):
    """The noise predictor with its LR-feature projection inside ``forward``, so that the projection
    is trained in stage 2 (at inference it runs once per image) and DDP sees every parameter used."""

    def __init__(self, unet: nn.Module):
        super().__init__()
        self.unet = unet

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, feats: list[torch.Tensor], scale: torch.Tensor) -> torch.Tensor:
        return self.unet(x_t, t, self.unet.project_cond(feats, tuple(x_t.shape[-2:])), scale)


class EMA:
    """Exponential moving average of a module's parameters (the weights used for sampling)."""

    def __init__(self, module: nn.Module, decay: float):
        self.decay = decay
        self.shadow = copy.deepcopy(module).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, module: nn.Module, step: int) -> None:
        decay = min(self.decay, (1 + step) / (10 + step))  # warm-up: early weights are forgotten fast
        for s, p in zip(self.shadow.parameters(), module.parameters()):
            s.lerp_(p.detach(), 1 - decay)


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def setup_distributed() -> None:
    """Join the process group when launched by torchrun (gloo on CPU, nccl on CUDA)."""
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ and not is_distributed():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend=backend)


def learning_rate(cfg: TrainConfig, stage: str, stage_step: int) -> float:
    period = cfg.encoder_lr_halve_every if stage == "encoder" and cfg.encoder_lr_halve_every else cfg.lr_halve_every
    return cfg.lr * 0.5 ** (stage_step // period)


class Trainer:
    def __init__(self, cfg: TrainConfig, log: Callable[[str], None] = print, device: str = "cpu"):
        self.cfg = cfg
        self.log = log
        self.device = torch.device(device)
        self.state_dir = Path(cfg.state_dir) if cfg.state_dir else default_state_dir(cfg.out)
        self.state_path = self.state_dir / "state.pt"
        self.log_path = self.state_dir / "train.jsonl"
        self.world = dist.get_world_size() if is_distributed() else 1
        torch.manual_seed(cfg.seed)
        self.model = SRDiffModel(cfg.model).to(self.device)
        self.schedule = NoiseSchedule.named(cfg.schedule, cfg.model.timesteps)
        self.sampler = PatchSampler(cfg.data, cfg.patch, cfg.scales, seed=cfg.seed + 1000 * rank(), log=log,
                                    degradation=cfg.degradation, clean_fraction=cfg.clean_fraction)
        self.done = {"encoder": 0, "diffusion": 0}  # steps taken in each stage
        self.ema = EMA(self.model.denoise_fn, cfg.ema_decay)
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self.stop_requested: Optional[str] = None
        self.torch_gen = torch.Generator().manual_seed(cfg.seed + 7 + 1000 * rank())
        self.val_images = [load_rgb8(p) for p in list_images(cfg.val)] if cfg.val else []

    # -- bookkeeping -----------------------------------------------------------------------------
    @property
    def step(self) -> int:
        """Total steps over both stages."""
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

    def _info(self) -> dict:
        return {
            "encoder_steps_done": self.done["encoder"],
            "diffusion_steps_done": self.done["diffusion"],
            "train": {k: v for k, v in self.cfg.to_dict().items() if k not in ("model", "state_dir")},
            "world_size": self.world,
            "degradation": self.cfg.degradation,
        }

    def shipped_model(self) -> SRDiffModel:
        """The model as shipped: the trained encoder plus the EMA of the noise predictor."""
        shipped = copy.deepcopy(self.model).cpu()
        shipped.denoise_fn.load_state_dict(self.ema.shadow.state_dict())
        return shipped.eval()

    def _rng_states(self) -> list[dict]:
        """Data-order and noise RNG states of every rank (each rank draws its own data)."""
        local = {"sampler": self.sampler.state(), "torch_gen": self.torch_gen.get_state().tolist()}
        if not is_distributed():
            return [local]
        states: list = [None] * self.world
        dist.all_gather_object(states, local)
        return states

    def save(self) -> None:
        """Write the resume state and the shipped model (atomically).  Collective under DDP."""
        rng_states = self._rng_states()
        if rank() != 0:
            return
        self.state_dir.mkdir(parents=True, exist_ok=True)
        state = {
            "step": self.step,
            "done": json.dumps(self.done),
            "model": self.model.state_dict(),
            "ema": self.ema.shadow.state_dict(),
            "optimizers": {stage: opt.state_dict() for stage, opt in self.optimizers.items()},
            "rng_states": json.dumps(rng_states),
            "torch_rng": torch.get_rng_state(),
            "config": json.dumps(self.cfg.to_dict()),
        }
        atomic_write_bytes(self.state_path, lambda tmp: torch.save(state, tmp))
        save_checkpoint(self.cfg.out, self.shipped_model(), self.schedule, info=self._info())

    def resume(self) -> str:
        """Continue from the full state if present, else from the shipped weights alone."""
        if self.state_path.is_file():
            state = torch.load(self.state_path, map_location=self.device, weights_only=True)
            if "done" in state:
                self.done = json.loads(state["done"])
            else:  # a state from before the per-stage counters: one step count over both stages
                encoder_steps = json.loads(state["config"])["encoder_steps"]
                self.done = {"encoder": min(int(state["step"]), encoder_steps), "diffusion": max(0, int(state["step"]) - encoder_steps)}
            self.model.load_state_dict(state["model"])
            self.ema.shadow.load_state_dict(state["ema"])
            rng_states = json.loads(state["rng_states"])
            if len(rng_states) == self.world:  # same world size: every rank continues its own stream
                mine = rng_states[rank()]
                self.sampler.set_state(mine["sampler"])
                self.torch_gen.set_state(torch.tensor(mine["torch_gen"], dtype=torch.uint8))
            torch.set_rng_state(state["torch_rng"])
            saved = state.get("optimizers")
            if saved is None and state.get("optimizer") is not None:
                saved = {state["optimizer_stage"]: state["optimizer"]}
            for stage, opt_state in (saved or {}).items():
                self.optimizer(stage).load_state_dict(opt_state)
            return f"resumed exactly from {self.state_path} at step {self.step}"
        if Path(self.cfg.out).is_file():
            model, _, info = load_checkpoint(self.cfg.out, self.device)
            if model.config != self.cfg.model:
                raise ValueError(f"{self.cfg.out}: its model config differs from this run's")
            self.model.load_state_dict(model.state_dict())
            self.ema.shadow.load_state_dict(model.denoise_fn.state_dict())
            self.done = {"encoder": int(info.get("encoder_steps_done", 0)), "diffusion": int(info.get("diffusion_steps_done", 0))}
            return f"no resume state; continuing from the weights in {self.cfg.out} at step {self.step} with fresh optimizers"
        return "nothing to resume; starting fresh"

    def load_encoder(self, path: str) -> str:
        """Start a new run from the trained RRDB encoder of another checkpoint (e.g. to train a wider
        noise predictor on it): its weights and its stage-1 step count carry over, so stage 1 only
        runs on if ``encoder_steps`` is larger.  The encoder architecture must match."""
        source, _, info = load_checkpoint(path, self.device)
        keys = ("rrdb_nf", "rrdb_gc", "rrdb_blocks", "projection", "scale")
        mine = {k: getattr(self.cfg.model, k) for k in keys}
        theirs = {k: getattr(source.config, k) for k in keys}
        if mine != theirs:
            raise ValueError(f"{path}: its encoder {theirs} differs from this run's {mine}")
        self.model.rrdb.load_state_dict(source.rrdb.state_dict())
        self.done["encoder"] = int(info.get("encoder_steps_done", 0))
        return f"encoder from {path} ({self.done['encoder']} stage-1 steps done)"

    def load_weights(self, path: str) -> str:
        """Start a new run (a fine-tune) from all the weights of another checkpoint: encoder, noise
        predictor and its EMA.  Both stage counters start at 0, so ``encoder_steps`` fine-tunes the
        encoder first, then ``steps`` the noise predictor.  The architecture must match."""
        source, _, info = load_checkpoint(path, self.device)
        if source.config != self.cfg.model:
            raise ValueError(f"{path}: its model config differs from this run's")
        self.model.load_state_dict(source.state_dict())
        self.ema.shadow.load_state_dict(source.denoise_fn.state_dict())
        done = int(info.get("encoder_steps_done", 0)) + int(info.get("diffusion_steps_done", 0))
        return f"fine-tuning the weights of {path} ({done} steps trained before)"

    # -- training --------------------------------------------------------------------------------
    def _wrap(self, module: nn.Module) -> nn.Module:
        if is_distributed():
            return nn.parallel.DistributedDataParallel(module)
        return module

    def train_step(self, net: nn.Module, optimizer: torch.optim.Optimizer) -> float:
        batch = self.sampler.batch(self.cfg.batch)
        hr, lr = batch.hr.to(self.device), batch.lr.to(self.device)
        if self.stage == "encoder":
            loss = (net(lr, tuple(hr.shape[-2:])) - hr).abs().mean()
        else:
            with torch.no_grad():  # the encoder is frozen in stage 2
                feats = self.model.rrdb.features(lr)
                x_r = to_residual(hr, resize(lr, tuple(hr.shape[-2:])), self.cfg.model.res_rescale)
            scale = torch.full((hr.shape[0],), batch.scale, device=self.device)
            loss = training_loss(lambda x, t: net(x, t, feats, scale), self.schedule, x_r, self.torch_gen)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        params = [p for group in optimizer.param_groups for p in group["params"]]
        torch.nn.utils.clip_grad_norm_(params, self.cfg.grad_clip)
        optimizer.step()
        return float(loss.detach())

    def _should_stop(self) -> bool:
        """A stop asked for by a signal; under DDP every rank stops at the same step (saving is collective)."""
        flag = self.stop_requested is not None
        if is_distributed():
            t = torch.tensor([float(flag)], device=self.device)
            dist.all_reduce(t, op=dist.ReduceOp.MAX)
            flag = bool(t.item())
        return flag

    def run(self, progress: Optional[Callable[[int, int, dict], None]] = None, max_seconds: Optional[float] = None) -> None:
        """Train until both stages have their steps; returns early (after a save) on ``max_seconds``
        or on SIGTERM / SIGINT."""
        cfg = self.cfg
        self.log(
            f"model: encoder {count_parameters(self.model.rrdb) / 1e6:.2f}M, "
            f"noise predictor {count_parameters(self.model.denoise_fn) / 1e6:.2f}M parameters; "
            f"{len(self.sampler.images)} training images; world size {self.world}"
        )
        started = time.time()
        net, net_stage = None, None
        window, window_start = [], time.time()
        with _stop_on_signals(self):
            while not self.finished:
                stage = self.stage
                if net_stage != stage:
                    trained = self.model.rrdb if stage == "encoder" else ConditionedDenoiser(self.model.denoise_fn)
                    self.model.rrdb.requires_grad_(stage == "encoder")
                    net, net_stage = self._wrap(trained.train()), stage
                    self.log(f"stage {stage} from step {self.step} ({self.done[stage]} steps of it done)")
                optimizer = self.optimizer(stage)
                lr = learning_rate(cfg, stage, self.done[stage])
                for group in optimizer.param_groups:
                    group["lr"] = lr
                loss = self.train_step(net, optimizer)
                if stage == "diffusion":
                    self.ema.update(self.model.denoise_fn, self.done["diffusion"])
                self.done[stage] += 1
                stage_ended = stage == "encoder" and self.stage != stage
                window.append(loss)
                if self.step % cfg.log_every == 0 or self.finished:
                    elapsed = time.time() - window_start
                    record = {
                        "step": self.step, "stage": stage, "loss": float(np.mean(window)), "lr": lr,
                        "steps_per_s": len(window) / max(elapsed, 1e-9), "time": time.time(),
                    }
                    self._write_log(record)
                    if progress:
                        progress(self.step, self.total_steps, record)
                    window, window_start = [], time.time()
                if self.step % cfg.save_every == 0 or self.finished or stage_ended:
                    self.save()
                if self.val_images and (self.step % cfg.val_every == 0 or stage_ended):
                    self._write_log({"step": self.step, "validation": self.validate()})
                if self._should_stop():
                    self.save()
                    self.log(f"{self.stop_requested or 'a stop on another rank'}: saved at step {self.step} (resume with --resume)")
                    return
                if max_seconds is not None and time.time() - started > max_seconds:
                    self.save()
                    self.log(f"stopping after {max_seconds:.0f}s at step {self.step} (resume with --resume)")
                    return
        self.save()

    def parameter_checksum(self) -> float:
        """Sum of |w| over the model and the EMA (float64): equal across DDP replicas."""
        with torch.no_grad():
            tensors = list(self.model.parameters()) + list(self.ema.shadow.parameters())
            return float(sum(p.detach().double().abs().sum() for p in tensors))

    def _write_log(self, record: dict) -> None:
        if rank() != 0:
            return
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "a") as f:
            f.write(json.dumps(record) + "\n")

    def val_lr(self, hr: np.ndarray, lr_size: tuple[int, int], index: int) -> np.ndarray:
        """The LR of validation image ``index``: the same every time (the real-world degradation is
        seeded by the image's index), so validation numbers of one run compare."""
        return make_lr(hr, lr_size, self.cfg.degradation, np.random.default_rng(index))

    @torch.no_grad()
    def validate(self, n_images: Optional[int] = None) -> dict:
        """Y-PSNR/SSIM and LR-PSNR of the encoder, of diffusion samples and of bicubic at val_scale."""
        if rank() != 0:
            return {}
        model = self.shipped_model().to(self.device)
        scale = self.cfg.val_scale
        rows = {"bicubic": [], "encoder": [], "diffusion": []}
        for i, hr in enumerate(self.val_images[:n_images]):
            h, w = hr.shape[:2]
            lr_h, lr_w = round(h / scale), round(w / scale)
            hr = hr[: round(lr_h * scale), : round(lr_w * scale)]
            lr = self.val_lr(hr, (lr_w, lr_h), i)
            x_lr = uint8_to_tensor(lr).to(self.device)
            size = tuple(hr.shape[:2])
            outs = {
                "bicubic": tensor_to_uint8(Conditioned(model, x_lr, size).x_up),
                "encoder": tensor_to_uint8(model.rrdb(x_lr, size)),
            }
            if self.done["diffusion"] > 0:  # the noise predictor has been trained
                sr = super_resolve(model, self.schedule, x_lr, size, seeded_noise([i], self.device), steps=self.cfg.val_steps)
                outs["diffusion"] = tensor_to_uint8(sr)
            border = math.ceil(scale)
            for name, sr in outs.items():
                rows[name].append((psnr_y(sr, hr, border), ssim_y(sr, hr, border), lr_psnr(sr, lr)))
        result = {}
        for name, vals in rows.items():
            if vals:
                p, s, l = np.mean(vals, axis=0)
                result[name] = {"psnr_y": round(float(p), 3), "ssim_y": round(float(s), 4), "lr_psnr": round(float(l), 2)}
        self.log(f"validation at step {self.step}: {json.dumps(result)}")
        return result


@contextlib.contextmanager
def _stop_on_signals(trainer: Trainer):
    """SIGTERM / SIGINT ask the trainer to save and stop after the current step (main thread only:
    elsewhere, e.g. in a notebook's worker thread, signals stay as they are)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def ask(signum, frame):  # noqa: ARG001
        if trainer.stop_requested is not None:  # a second signal: stop now
            raise KeyboardInterrupt
        trainer.stop_requested = signal.Signals(signum).name

    previous = {sig: signal.signal(sig, ask) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
