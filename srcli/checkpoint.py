"""srcli's checkpoint format: one safetensors file that rebuilds its model on its own.

Tensors: the model's state dict (``rrdb.*``, ``denoise_fn.*``) and the noise schedule
(``schedule.betas``, float64).  Metadata (all strings): ``format = "srcli"``, ``format_version``,
``config`` (the ``ModelConfig`` as JSON) and free-form ``info`` (JSON: training steps, data, ...).
Where checkpoint files are found (shipped names, folders, hf://) is ``srcli.weights``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from safetensors import safe_open

from .diffusion import NoiseSchedule
from .fsutil import atomic_write_bytes  # noqa: F401 - also imported from here by train.py
from .nets import ModelConfig, SRDiffModel

FORMAT = "srcli"
FORMAT_VERSION = "1"


class CheckpointError(Exception):
    """A checkpoint that cannot be found, read or matched to its config (message is one line)."""


def save_checkpoint(
    path: str | Path,
    model: SRDiffModel,
    schedule: NoiseSchedule,
    info: Optional[dict[str, Any]] = None,
    half: bool = True,
) -> None:
    """Save model + schedule + config.  ``half`` stores float weights as fp16 (what ships)."""
    tensors = {}
    for name, value in model.state_dict().items():
        value = value.detach().cpu()
        if half and value.is_floating_point():
            value = value.half()
        tensors[name] = value.contiguous()
    tensors["schedule.betas"] = schedule.betas.clone()
    metadata = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "config": model.config.to_json(),
        "info": json.dumps(info or {}, sort_keys=True),
    }
    atomic_write_bytes(Path(path), lambda tmp: save_file(tensors, tmp, metadata=metadata))


def read_metadata(path: str | Path) -> dict[str, str]:
    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: not a readable safetensors file ({exc})") from None


def load_checkpoint(
    path: str | Path, device: str | torch.device = "cpu"
) -> tuple[SRDiffModel, NoiseSchedule, dict[str, Any]]:
    """Rebuild (model in eval mode, schedule, info) from a srcli safetensors file."""
    path = Path(path)
    meta = read_metadata(path)
    if meta.get("format") != FORMAT or "config" not in meta:
        raise CheckpointError(f"{path}: not a srcli checkpoint (no srcli config in its metadata)")
    try:
        cfg = ModelConfig.from_json(meta["config"])
        info = json.loads(meta.get("info", "{}"))
    except (ValueError, TypeError) as exc:
        raise CheckpointError(f"{path}: bad model config in metadata ({exc})") from None
    tensors = load_file(str(path))
    betas = tensors.pop("schedule.betas", None)
    if betas is None:
        raise CheckpointError(f"{path}: missing tensor schedule.betas")
    model = SRDiffModel(cfg)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        raise CheckpointError(
            f"{path}: tensors do not match its config ({len(missing)} missing, e.g. {missing[:2]}; "
            f"{len(unexpected)} unexpected, e.g. {unexpected[:2]})"
        )
    for name, value in tensors.items():
        if tuple(value.shape) != tuple(expected[name].shape):
            raise CheckpointError(
                f"{path}: tensor {name} has shape {tuple(value.shape)}, its config needs {tuple(expected[name].shape)}"
            )
    model.load_state_dict({k: v.float() for k, v in tensors.items()})
    try:
        schedule = NoiseSchedule(betas.double())
    except ValueError as exc:
        raise CheckpointError(f"{path}: bad schedule ({exc})") from None
    if schedule.T != cfg.timesteps:
        raise CheckpointError(f"{path}: schedule has {schedule.T} steps, config says {cfg.timesteps}")
    return model.to(device).eval(), schedule, info

