"""ModelConfig: the sizes and options that rebuild SRDiff's two networks, stored as JSON in every
checkpoint, and the bounds that keep an untrusted checkpoint's config from asking for an absurd network."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from typing import Optional


# Bounds of what a config may ask for (far above any trained SRDiff: the paper's c = 64, 8 RRDB
# blocks of 32 channels, T = 100 or 1000): a checkpoint's metadata is untrusted input.
MAX_WIDTH = 512
MAX_MULT = 16
MAX_LEVELS = 6
MAX_RRDB_BLOCKS = 64
MAX_TIMESTEPS = 10000
MAX_CONFIG_SCALE = 8.0
MAX_RES_RESCALE = 1000.0


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_int(name: str, value: object, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{name} must be an integer from {low} to {high}, got {value!r}")


@dataclass
class ModelConfig:
    """Everything needed to rebuild the networks; stored as JSON in every checkpoint's metadata."""

    unet_dim: int = 32  # c, the base width of the U-Net
    unet_mults: tuple[int, ...] = (1, 2, 3, 4)
    rrdb_nf: int = 32
    rrdb_gc: int = 16
    rrdb_blocks: int = 8
    projection: str = "resize"  # "resize" (scale-free) or "transposed" (the paper's, fixed scale)
    scale: Optional[int] = None  # the fixed integer scale of a "transposed" model
    scale_embedding: bool = True
    timesteps: int = 100
    res_rescale: float = 2.0  # x_r = (x_H - up(x_L)) * res_rescale, as in the authors' code
    train_scales: tuple[float, float] = (2.0, 4.0)  # the range of scales a scale-free model has seen

    def __post_init__(self) -> None:
        # A config comes from untrusted checkpoint metadata too: every field is checked for its type
        # and bounded, so that no file can ask for an absurd network (memory and time) or crash later.
        # (unet_dim >= 4: the timestep embedding needs two frequencies; rrdb_blocks >= 2: the
        # condition takes the features of every third block from the third on, and the trunk's end)
        for name, low, high in (("unet_dim", 4, MAX_WIDTH), ("rrdb_nf", 1, MAX_WIDTH), ("rrdb_gc", 1, MAX_WIDTH),
                                ("rrdb_blocks", 2, MAX_RRDB_BLOCKS), ("timesteps", 1, MAX_TIMESTEPS)):
            _check_int(name, getattr(self, name), low, high)
        if not isinstance(self.unet_mults, (list, tuple)) or not 1 <= len(self.unet_mults) <= MAX_LEVELS:
            raise ValueError(f"unet_mults must be a list of 1 to {MAX_LEVELS} multipliers, got {self.unet_mults!r}")
        for m in self.unet_mults:
            _check_int("unet_mults entries", m, 1, MAX_MULT)
        self.unet_mults = tuple(int(m) for m in self.unet_mults)
        if self.unet_dim % 2:
            raise ValueError(f"unet_dim must be even (the timestep embedding has sin and cos halves), got {self.unet_dim}")
        scales = self.train_scales
        if (
            not isinstance(scales, (list, tuple)) or len(scales) != 2 or not all(_is_number(v) for v in scales)
            or not 1.0 < scales[0] <= scales[1] <= MAX_CONFIG_SCALE
        ):
            raise ValueError(f"train_scales must be two numbers low, high with 1 < low <= high <= {MAX_CONFIG_SCALE:g}, got {scales!r}")
        self.train_scales = tuple(float(v) for v in scales)
        if not _is_number(self.res_rescale) or not 0 < self.res_rescale <= MAX_RES_RESCALE:
            raise ValueError(f"res_rescale must be a number in (0, {MAX_RES_RESCALE:g}], got {self.res_rescale!r}")
        if not isinstance(self.scale_embedding, bool):
            raise ValueError(f"scale_embedding must be true or false, got {self.scale_embedding!r}")
        if self.projection not in ("resize", "transposed"):
            raise ValueError(f"projection must be 'resize' or 'transposed', not {self.projection!r}")
        if self.scale is not None:
            _check_int("scale", self.scale, 2, int(MAX_CONFIG_SCALE))
        if self.projection == "transposed" and self.scale is None:
            raise ValueError("a 'transposed' projection needs a fixed integer scale >= 2")

    @property
    def fixed_scale(self) -> Optional[int]:
        return self.scale if self.projection == "transposed" else None

    @property
    def cond_channels(self) -> int:
        """Channels of the concatenated conditioning features ``feats[2::3]``."""
        return self.rrdb_nf * len(range(2, self.rrdb_blocks + 1, 3))

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "ModelConfig":
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError(f"the model config must be a JSON object, got {type(data).__name__}")
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown model config fields: {sorted(unknown)}")
        return cls(**data)


__all__ = ["ModelConfig"]
