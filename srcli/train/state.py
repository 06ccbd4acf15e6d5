"""The resume state of a run: what is in it, writing it atomically, reading it (always to the CPU
first) in today's format and the two older ones, and recovering a run's config from it or from
the shipped model's metadata.

Format 2 (today): ``format_version`` 2, ``done`` (JSON: steps per stage), ``model``, ``ema``,
``optimizers`` (per stage), ``torch_rng`` and ``config`` (JSON).  The data order and the training
noise are functions of (seed, rank, step) (``stream``), so no data RNG is stored.
Format 1 adds ``rng_states`` (the numpy patch sampler of each rank): a resumed format-1 run goes on
with the keyed stream from its step.  Format 0 has one ``step`` over both stages and a single
``optimizer`` with its ``optimizer_stage``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import torch

from ..checkpoint import atomic_write_bytes, read_metadata
from .config import TrainConfig

FORMAT_VERSION = 2


@dataclass
class ResumeState:
    """A loaded resume state; every tensor is on the CPU (the trainer moves what it needs)."""

    done: dict[str, int]
    model: dict[str, torch.Tensor]
    ema: dict[str, torch.Tensor]
    optimizers: dict[str, dict[str, Any]]
    torch_rng: Optional[torch.Tensor]
    config: TrainConfig
    notes: list[str] = field(default_factory=list)  # what differs from an exact resume, for the log


def write_state(
    path: Path,
    done: dict[str, int],
    model: dict[str, torch.Tensor],
    ema: dict[str, torch.Tensor],
    optimizers: dict[str, dict[str, Any]],
    config: TrainConfig,
) -> None:
    """Write the state to ``path`` atomically (a crash mid-write keeps the previous state)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {
        "format_version": FORMAT_VERSION,
        "step": done["encoder"] + done["diffusion"],
        "done": json.dumps(done),
        "model": model,
        "ema": ema,
        "optimizers": optimizers,
        "torch_rng": torch.get_rng_state(),
        "config": json.dumps(config.to_dict()),
    }
    atomic_write_bytes(path, lambda tmp: torch.save(state, tmp))


def load_raw(path: Path) -> dict[str, Any]:
    """The state file's dict with every tensor on the CPU, whatever device wrote it: loading to a
    GPU would put the RNG state there too, which ``torch.set_rng_state`` refuses."""
    return torch.load(path, map_location="cpu", weights_only=True)


def read_state(path: Path) -> ResumeState:
    """Load a resume state of any format (see the module docstring)."""
    raw = load_raw(path)
    config = TrainConfig.from_dict(json.loads(raw["config"]))
    notes = []
    if "done" in raw:
        done = {k: int(v) for k, v in json.loads(raw["done"]).items()}
    else:  # format 0: one step count over both stages
        step = int(raw["step"])
        done = {"encoder": min(step, config.encoder_steps), "diffusion": max(0, step - config.encoder_steps)}
    optimizers = raw.get("optimizers")
    if optimizers is None and raw.get("optimizer") is not None:
        optimizers = {raw["optimizer_stage"]: raw["optimizer"]}
    if "rng_states" in raw:
        notes.append("the state's data order is an older srcli's; the data stream goes on keyed by (seed, step)")
    rng = raw.get("torch_rng")
    return ResumeState(done, raw["model"], raw["ema"], optimizers or {},
                       rng.cpu() if isinstance(rng, torch.Tensor) else None, config, notes)


def saved_config(state_path: Path, out: Path) -> Optional[TrainConfig]:
    """The config a run was started with: from its resume state, else from its model file's
    metadata (``info.train`` plus the model config); None when neither has one."""
    if state_path.is_file():
        return TrainConfig.from_dict(json.loads(load_raw(state_path)["config"]))
    if out.is_file():
        meta = read_metadata(out)
        train = json.loads(meta.get("info", "{}")).get("train")
        if isinstance(train, dict):
            return TrainConfig.from_dict({**train, "model": json.loads(meta["config"])})
    return None
