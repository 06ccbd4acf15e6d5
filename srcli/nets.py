"""The two networks of SRDiff: the RRDB low-resolution encoder and the conditional U-Net noise predictor.

Module and parameter names follow the SRDiff authors' released checkpoints (``rrdb.*`` and
``denoise_fn.*`` there) so that ``srcli convert`` is a plain key rename.

Precision: both networks run in the dtype of their weights (fp32, fp16 or bf16) and cast what they
are given to it at their boundary; what they return to the caller (the regression image, the noise
prediction) is float32, so image-space arithmetic outside them never runs in half precision.  The
conditioning features stay in the network dtype: they only ever go back into the U-Net.

Two things are srcli's own:

* ``projection="resize"``: the LR features reach the HR grid by resizing them to the HR size and
  applying a 3x3 convolution, so one checkpoint serves any scale (the paper's transposed convolution,
  ``projection="transposed"``, ties a checkpoint to one integer scale).
* ``scale_embedding``: an MLP of log(scale) added to the timestep embedding, so that a scale-free
  model knows how much detail it has to add.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from .ops import resize


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


# ----------------------------------------------------------------------------------------------
# RRDB encoder (ESRGAN's residual-in-residual dense blocks, no batch norm)


class ResidualDenseBlock(nn.Module):
    def __init__(self, nf: int, gc: int):
        super().__init__()
        self.conv1 = nn.Conv2d(nf, gc, 3, 1, 1)
        self.conv2 = nn.Conv2d(nf + gc, gc, 3, 1, 1)
        self.conv3 = nn.Conv2d(nf + 2 * gc, gc, 3, 1, 1)
        self.conv4 = nn.Conv2d(nf + 3 * gc, gc, 3, 1, 1)
        self.conv5 = nn.Conv2d(nf + 4 * gc, nf, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = [x]
        for conv in (self.conv1, self.conv2, self.conv3, self.conv4):
            feats.append(F.leaky_relu(conv(torch.cat(feats, 1)), 0.2))
        return self.conv5(torch.cat(feats, 1)) * 0.2 + x


class RRDB(nn.Module):
    def __init__(self, nf: int, gc: int):
        super().__init__()
        self.RDB1 = ResidualDenseBlock(nf, gc)
        self.RDB2 = ResidualDenseBlock(nf, gc)
        self.RDB3 = ResidualDenseBlock(nf, gc)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.RDB3(self.RDB2(self.RDB1(x))) * 0.2 + x


class RRDBEncoder(nn.Module):
    """The LR encoder D.  ``features`` gives the conditioning; ``forward`` is the full RRDBNet SR
    network that stage 1 of training pretrains with an L1 loss.

    For a fixed-scale model the head is the paper's (nearest x2 + conv, repeated).  For a scale-free
    model the trunk features are resized to the HR grid and the head predicts a correction on top of
    the bicubic upsampling, which makes short CPU pretraining converge much faster.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        nf, gc = cfg.rrdb_nf, cfg.rrdb_gc
        self.fixed_scale = cfg.fixed_scale
        self.conv_first = nn.Conv2d(3, nf, 3, 1, 1)
        self.RRDB_trunk = nn.ModuleList(RRDB(nf, gc) for _ in range(cfg.rrdb_blocks))
        self.trunk_conv = nn.Conv2d(nf, nf, 3, 1, 1)
        n_up = int(math.log2(self.fixed_scale)) if self.fixed_scale else 2
        for i in range(1, n_up + 1):
            self.add_module(f"upconv{i}", nn.Conv2d(nf, nf, 3, 1, 1))
        self.n_up = n_up
        self.HRconv = nn.Conv2d(nf, nf, 3, 1, 1)
        self.conv_last = nn.Conv2d(nf, 3, 3, 1, 1)

    @property
    def dtype(self) -> torch.dtype:
        return self.conv_first.weight.dtype

    def features(self, x_lr: torch.Tensor) -> list[torch.Tensor]:
        """Trunk features after every block, then trunk-conv + skip (the authors' ``get_fea``), in
        the network's dtype."""
        fea_first = fea = self.conv_first(((x_lr.float() + 1) / 2).to(self.dtype))
        feats = []
        for block in self.RRDB_trunk:
            fea = block(fea)
            feats.append(fea)
        feats.append(fea_first + self.trunk_conv(fea))
        return feats

    def forward(self, x_lr: torch.Tensor, out_size: tuple[int, int]) -> torch.Tensor:
        """Regression SR output in [-1, 1] at ``out_size`` (H, W)."""
        return self.head(self.features(x_lr)[-1], x_lr, out_size)

    def head(self, fea: torch.Tensor, x_lr: torch.Tensor, out_size: tuple[int, int]) -> torch.Tensor:
        """The upsampling head on the last of ``features`` (so a caller that has the features for
        the conditioning gets the regression output without a second trunk pass).  float32 out."""
        fea = fea.to(self.dtype)
        if self.fixed_scale:
            for i in range(1, self.n_up + 1):
                fea = F.interpolate(fea, scale_factor=2, mode="nearest")
                fea = F.leaky_relu(getattr(self, f"upconv{i}")(fea), 0.2)
            out = self.conv_last(F.leaky_relu(self.HRconv(fea), 0.2)).float().clamp(0, 1) * 2 - 1
            return out if out.shape[-2:] == out_size else resize(out, out_size)
        # scale-free head: one conv at LR, resize, convs at HR, residual over bicubic
        fea = F.leaky_relu(self.upconv1(fea), 0.2)
        fea = F.interpolate(fea, size=out_size, mode="bilinear", align_corners=False)
        fea = F.leaky_relu(self.upconv2(fea), 0.2)
        out = self.conv_last(F.leaky_relu(self.HRconv(fea), 0.2))
        return (out.float() + resize(x_lr.float(), out_size)).clamp(-1, 1)


# ----------------------------------------------------------------------------------------------
# U-Net noise predictor (paper Fig. 3)


class Mish(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.mish(x)


class Block(nn.Module):
    """reflect-pad, 3x3 conv, Mish (index 1 is the conv, as in the authors' state dict)."""

    def __init__(self, dim_in: int, dim_out: int):
        super().__init__()
        self.block = nn.Sequential(nn.ReflectionPad2d(1), nn.Conv2d(dim_in, dim_out, 3), Mish())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x)


class ResnetBlock(nn.Module):
    def __init__(self, dim_in: int, dim_out: int, emb_dim: int):
        super().__init__()
        self.mlp = nn.Sequential(Mish(), nn.Linear(emb_dim, dim_out))
        self.block1 = Block(dim_in, dim_out)
        self.block2 = Block(dim_out, dim_out)
        self.res_conv = nn.Conv2d(dim_in, dim_out, 1) if dim_in != dim_out else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.block1(x) + self.mlp(emb)[:, :, None, None]
        return self.block2(h) + self.res_conv(x)


class Downsample(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.conv = nn.Sequential(nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class Upsample(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.conv = nn.Sequential(nn.ConvTranspose2d(dim, dim, 4, 2, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class ResizeProjection(nn.Module):
    """Scale-free LR-feature projection: resize to the HR grid, then a 3x3 conv."""

    def __init__(self, dim_in: int, dim_out: int):
        super().__init__()
        self.conv = nn.Conv2d(dim_in, dim_out, 3, 1, 1)

    def forward(self, cond: torch.Tensor, out_size: tuple[int, int]) -> torch.Tensor:
        return self.conv(F.interpolate(cond, size=out_size, mode="bilinear", align_corners=False))


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding of (0-based) timesteps, laid out [sin | cos] like the authors', in
    float32 (the caller casts it to its weights' dtype)."""
    half = dim // 2
    freqs = torch.exp(torch.arange(half, device=t.device, dtype=torch.float32) * -(math.log(10000) / (half - 1)))
    args = t.float()[:, None] * freqs[None, :]
    return torch.cat((args.sin(), args.cos()), dim=-1)


class UNet(nn.Module):
    """eps_theta(x_t, D(x_L), t).  ``project_cond`` runs once per image; ``forward`` once per step."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        dim = cfg.unet_dim
        self.dim = dim
        dims = [3, *(dim * m for m in cfg.unet_mults)]
        in_out = list(zip(dims[:-1], dims[1:]))
        self.levels = len(in_out)
        if cfg.projection == "transposed":
            s = cfg.scale
            self.cond_proj = nn.ConvTranspose2d(cfg.cond_channels, dim, s * 2, s, s // 2)
        else:
            self.cond_proj = ResizeProjection(cfg.cond_channels, dim)
        self.mlp = nn.Sequential(nn.Linear(dim, dim * 4), Mish(), nn.Linear(dim * 4, dim))
        self.scale_mlp = (
            nn.Sequential(nn.Linear(1, dim * 4), Mish(), nn.Linear(dim * 4, dim)) if cfg.scale_embedding else None
        )
        self.downs = nn.ModuleList()
        for i, (d_in, d_out) in enumerate(in_out):
            last = i == len(in_out) - 1
            self.downs.append(
                nn.ModuleList(
                    [ResnetBlock(d_in, d_out, dim), ResnetBlock(d_out, d_out, dim), nn.Identity() if last else Downsample(d_out)]
                )
            )
        mid = dims[-1]
        self.mid_block1 = ResnetBlock(mid, mid, dim)
        self.mid_block2 = ResnetBlock(mid, mid, dim)
        self.ups = nn.ModuleList()
        for d_in, d_out in reversed(in_out[1:]):
            self.ups.append(nn.ModuleList([ResnetBlock(d_out * 2, d_in, dim), ResnetBlock(d_in, d_in, dim), Upsample(d_in)]))
        self.final_conv = nn.Sequential(Block(dim, dim), nn.Conv2d(dim, 3, 1))

    @property
    def dtype(self) -> torch.dtype:
        return self.final_conv[1].weight.dtype

    @property
    def size_multiple(self) -> int:
        return 2 ** (self.levels - 1)

    def project_cond(self, feats: list[torch.Tensor], out_size: tuple[int, int]) -> torch.Tensor:
        """Map the encoder features ``feats[2::3]`` to the HR grid (independent of t: run once), in
        the network's dtype."""
        cond = torch.cat(feats[2::3], 1).to(self.dtype)
        if isinstance(self.cond_proj, ResizeProjection):
            return self.cond_proj(cond, out_size)
        out = self.cond_proj(cond)
        if out.shape[-2:] != tuple(out_size):
            raise ValueError(
                f"this fixed-scale model maps {tuple(cond.shape[-2:])} to {tuple(out.shape[-2:])}, not {tuple(out_size)}"
            )
        return out

    def embed(self, t: torch.Tensor, scale: Optional[torch.Tensor] = None) -> torch.Tensor:
        emb = self.mlp(timestep_embedding(t, self.dim).to(self.dtype))
        if self.scale_mlp is not None:
            if scale is None:
                raise ValueError("this model needs the scale of its input")
            emb = emb + self.scale_mlp(torch.log(scale.float()).reshape(-1, 1).to(self.dtype))
        return emb

    def forward(
        self,
        x: torch.Tensor,
        t: torch.Tensor,
        cond_hr: torch.Tensor,
        scale: Optional[torch.Tensor] = None,
        margin: int = 0,
    ) -> torch.Tensor:
        """Predict the noise in ``x`` (B,3,H,W) at 0-based timestep ``t`` (B,), as float32 whatever the
        weights' dtype.  ``margin`` px of mirrored input are added on every side and cropped off the
        output: the network then never works at the image's own edge, where its stride-2 layers see
        the last row and column less often than the others and the trained model leaves up to 50
        grey levels of noise behind (``DEFAULT_UNET_MARGIN``).  Sizes that are not a multiple of
        2**(levels-1) are mirrored further at the bottom/right and cropped back."""
        x, cond_hr = x.to(self.dtype), cond_hr.to(self.dtype)
        h_in, w_in = x.shape[-2:]
        m = self.size_multiple
        pad_h, pad_w = (-(h_in + 2 * margin)) % m, (-(w_in + 2 * margin)) % m
        if margin or pad_h or pad_w:
            pads = (margin, margin + pad_w, margin, margin + pad_h)
            x, cond_hr = mirror_pad(x, pads), mirror_pad(cond_hr, pads)
        emb = self.embed(t, scale)
        skips = []
        for i, (res1, res2, down) in enumerate(self.downs):
            x = res2(res1(x, emb), emb)
            if i == 0:
                x = x + cond_hr
            skips.append(x)
            x = down(x)
        x = self.mid_block2(self.mid_block1(x, emb), emb)
        for res1, res2, up in self.ups:
            x = torch.cat((x, skips.pop()), dim=1)
            x = up(res2(res1(x, emb), emb))
        return self.final_conv(x)[..., margin : margin + h_in, margin : margin + w_in].float()


def mirror_pad(x: torch.Tensor, pads: tuple[int, int, int, int]) -> torch.Tensor:
    """``F.pad`` (left, right, top, bottom) with reflection, or edge replication where the input is
    too small to mirror that far."""
    h, w = x.shape[-2:]
    fits = max(pads[0], pads[1]) < w and max(pads[2], pads[3]) < h
    return F.pad(x, pads, mode="reflect" if fits else "replicate")


# px of mirrored input around every U-Net call (see ``UNet.forward``); a checkpoint can set its own
# in its ``info`` metadata (``unet_margin``: converted authors' checkpoints say 0, as their code runs)
DEFAULT_UNET_MARGIN = 4


class SRDiffModel(nn.Module):
    """The LR encoder and the noise predictor together, with the config that built them."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.config = cfg
        self.rrdb = RRDBEncoder(cfg)
        self.denoise_fn = UNet(cfg)

    def condition(self, x_lr: torch.Tensor, out_size: tuple[int, int]) -> torch.Tensor:
        """Encode the LR image once and project its features to the HR grid."""
        return self.denoise_fn.project_cond(self.rrdb.features(x_lr), out_size)

    def check_scale(self, lr_size: tuple[int, int], hr_size: tuple[int, int]) -> None:
        s = self.config.fixed_scale
        if s is not None and (hr_size[0] != lr_size[0] * s or hr_size[1] != lr_size[1] * s):
            raise ValueError(f"this checkpoint is fixed to {s}x; it cannot map {lr_size} to {hr_size}")


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


__all__ = ["ModelConfig", "RRDBEncoder", "UNet", "SRDiffModel", "count_parameters", "timestep_embedding"]
