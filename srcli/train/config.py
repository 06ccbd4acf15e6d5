"""The training config: the one source of training defaults (the CLI reads its defaults from
``TrainConfig``), what a resumed run may change, and the learning-rate rule."""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Optional

from ..nets import ModelConfig


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
    block_edge_weight: float = 0.0  # stage 1: weight of the L1 on the steps across JPEG block edges
    deblock: bool = False  # LR patches JPEG deblocked (srcli.deblock), as the shipped model's inputs will be
    init_from: Optional[str] = None  # a checkpoint whose encoder and noise predictor a fine-tune starts from
    workers: int = 0  # DataLoader worker processes making patches (0: in the training process)
    model: ModelConfig = field(default_factory=ModelConfig)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        """The inverse of ``to_dict`` (JSON turns tuples into lists; unknown keys are ignored, and
        keys a config from an older srcli lacks take today's defaults)."""
        known = {f.name for f in fields(cls)}
        d = {k: v for k, v in d.items() if k in known}
        if "scales" in d:
            d["scales"] = tuple(d["scales"])
        if isinstance(d.get("model"), dict):
            d["model"] = ModelConfig.from_json(json.dumps(d["model"]))
        return cls(**d)


# What a resumed run may change: how long and how fast it goes on, where its data and logs are,
# the share of clean patches and the block-edge loss weight (curriculum knobs of a real-world
# fine-tune).  The rest defines the run (degradation, noise schedule, seed, scales, patch size,
# architecture): changing it mid-run is a new run, so a differing flag is an error.
RESUME_OVERRIDABLE = frozenset({
    "data", "val", "encoder_steps", "steps", "batch", "lr", "lr_halve_every", "encoder_lr_halve_every",
    "grad_clip", "ema_decay", "clean_fraction", "block_edge_weight", "save_every", "val_every", "val_scale",
    "val_steps", "log_every", "workers",
})


def merge_resumed(saved: TrainConfig, given: dict[str, Any]) -> tuple[TrainConfig, list[str]]:
    """The saved config with the values given on the command line of a resume.  Returns the config
    and one line per change (the caller logs them); raises ValueError for a change to what defines
    the run."""
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
    """Where the resume state of a run writing ``out`` lives when --state-dir is not given."""
    base = Path(os.environ.get("SRCLI_STATE_DIR", Path.home() / ".cache" / "srcli" / "train"))
    return base / Path(out).stem


def learning_rate(cfg: TrainConfig, stage: str, stage_step: int) -> float:
    """Adam's rate at step ``stage_step`` of ``stage``: ``lr`` halved every period of that stage."""
    period = cfg.encoder_lr_halve_every if stage == "encoder" and cfg.encoder_lr_halve_every else cfg.lr_halve_every
    return cfg.lr * 0.5 ** (stage_step // period)
