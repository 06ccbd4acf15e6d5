"""The RRDB low-resolution encoder of SRDiff (ESRGAN's residual-in-residual dense blocks, no batch norm):
the conditioning features for the U-Net and the regression head that stage 1 of training pretrains.

Module names follow the SRDiff authors' checkpoints (``rrdb.*`` there).  The encoder runs in the dtype
of its weights and casts its input to it; the regression image it returns is float32.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .modelconfig import ModelConfig
from .ops import resize




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


__all__ = ["ResidualDenseBlock", "RRDB", "RRDBEncoder"]
