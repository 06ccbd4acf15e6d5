"""srcli's checkpoint format: one safetensors file that rebuilds its model on its own.

Tensors: the model's state dict (``rrdb.*``, ``denoise_fn.*``) and the noise schedule
(``schedule.betas``, float64).  Metadata (all strings): ``format = "srcli"``, ``format_version``,
``config`` (the ``ModelConfig`` as JSON) and free-form ``info`` (JSON: training steps, data, ...).
Where checkpoint files are found (shipped names, folders, hf://) is ``srcli.weights``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping, Optional

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from safetensors import safe_open

from .diffusion import NoiseSchedule
from .fsutil import atomic_write_bytes  # noqa: F401 - also imported from here by train.py
from .nets import ModelConfig, SRDiffModel

FORMAT = "srcli"
FORMAT_VERSION = "1"
SCHEDULE_TENSOR = "schedule.betas"


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
    tensors[SCHEDULE_TENSOR] = schedule.betas.clone()
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


def expected_shapes(cfg: ModelConfig) -> dict[str, tuple[int, ...]]:
    """The tensor names and shapes of the model ``cfg`` describes, without allocating it (meta device;
    ``ModelConfig`` bounds every size, so this is quick for any config that constructs)."""
    with torch.device("meta"):
        model = SRDiffModel(cfg)
    return {name: tuple(value.shape) for name, value in model.state_dict().items()}


def _examples(names: list[str], limit: int = 3) -> str:
    more = f", +{len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def check_layout(expected: Mapping[str, tuple[int, ...]], given: Mapping[str, tuple[int, ...]], what: str) -> None:
    """Every expected tensor given, nothing else, every shape right; otherwise CheckpointError
    ``"{what}: ..."`` saying what is off.  Runs on shapes alone, before any model or tensor is built,
    so a file cannot make srcli allocate more than its own tensors."""
    missing = sorted(set(expected) - set(given))
    unexpected = sorted(set(given) - set(expected))
    wrong = sorted(
        f"{k} {tuple(given[k])} (expected {tuple(expected[k])})" for k in set(given) & set(expected) if tuple(given[k]) != tuple(expected[k])
    )
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing ({_examples(missing)})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected ({_examples(unexpected)})")
    if wrong:
        problems.append(f"{len(wrong)} with a wrong shape ({_examples(wrong, 2)})")
    if problems:
        raise CheckpointError(f"{what}: " + "; ".join(problems))


def check_weight_values(tensors: Mapping[str, torch.Tensor], source: str) -> None:
    """Weights must be finite floating-point numbers: NaN/Inf or integer/bool tensors would give black
    images reported as fine."""
    bad = sorted(k for k, v in tensors.items() if not v.is_floating_point() or not bool(torch.isfinite(v).all()))
    if bad:
        raise CheckpointError(f"{source}: {len(bad)} tensors are not finite floating-point values ({_examples(bad)})")


def schedule_from_betas(betas: Any, source: str) -> NoiseSchedule:
    """The noise schedule of a file's betas (``NoiseSchedule`` checks them); CheckpointError if unusable."""
    if isinstance(betas, torch.Tensor) and not betas.is_floating_point():
        raise CheckpointError(f"{source}: unusable betas (not floating-point: {betas.dtype})")
    try:
        return NoiseSchedule(betas.double() if isinstance(betas, torch.Tensor) else betas)
    except ValueError as exc:
        raise CheckpointError(f"{source}: unusable betas ({exc})") from None


def _header_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Tensor names and shapes from a safetensors header (no tensor data is read)."""
    try:
        with safe_open(str(path), framework="pt") as f:
            return {name: tuple(f.get_slice(name).get_shape()) for name in f.keys()}
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: not a readable safetensors file ({exc})") from None


def load_checkpoint(
    path: str | Path, device: str | torch.device = "cpu"
) -> tuple[SRDiffModel, NoiseSchedule, dict[str, Any]]:
    """Rebuild (model in eval mode, schedule, info) from a srcli safetensors file.  The file is
    untrusted: its config is bounded (``ModelConfig``) and checked against its tensor names and
    shapes before anything is built, and the weights and betas are checked before they are used."""
    path = Path(path)
    meta = read_metadata(path)
    if meta.get("format") != FORMAT or "config" not in meta:
        raise CheckpointError(f"{path}: not a srcli checkpoint (no srcli config in its metadata)")
    if meta.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: format_version {meta.get('format_version')!r} is not one this srcli reads ({FORMAT_VERSION!r}; a newer srcli wrote it?)"
        )
    try:
        cfg = ModelConfig.from_json(meta["config"])
    except (ValueError, TypeError) as exc:
        raise CheckpointError(f"{path}: bad model config in metadata ({' '.join(str(exc).split())})") from None
    info = parse_info(meta, path)
    expected = {**expected_shapes(cfg), SCHEDULE_TENSOR: (cfg.timesteps,)}
    check_layout(expected, _header_shapes(path), f"{path}: tensors do not match its config")
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: not a readable safetensors file ({exc})") from None
    schedule = schedule_from_betas(tensors.pop(SCHEDULE_TENSOR), str(path))
    check_weight_values(tensors, str(path))
    model = SRDiffModel(cfg)
    model.load_state_dict({k: v.float() for k, v in tensors.items()})
    return model.to(device).eval(), schedule, info



def parse_info(meta: dict[str, str], path: str | Path) -> dict[str, Any]:
    """The ``info`` of a checkpoint's metadata: a JSON object ({} when absent), else CheckpointError."""
    try:
        info = json.loads(meta.get("info", "{}"))
    except ValueError as exc:
        raise CheckpointError(f"{path}: bad info in metadata ({' '.join(str(exc).split())})") from None
    if not isinstance(info, dict):
        raise CheckpointError(f"{path}: bad info in metadata (a JSON object expected, found {type(info).__name__})")
    return info


def update_info(path: str | Path, **fields: Any) -> dict[str, Any]:
    """Merge ``fields`` into a checkpoint's ``info`` metadata and rewrite the file atomically (the
    tensors are copied as they are).  How a sweep records the settings it chose in the model file."""
    path = Path(path)
    meta = read_metadata(path)
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a srcli checkpoint")
    info = {**parse_info(meta, path), **fields}
    tensors = load_file(str(path))
    meta["info"] = json.dumps(info, sort_keys=True)
    atomic_write_bytes(path, lambda tmp: save_file(tensors, tmp, metadata=meta))
    return info
