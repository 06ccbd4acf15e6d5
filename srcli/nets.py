"""SRDiffModel, the two networks of SRDiff together: the RRDB low-resolution encoder (``srcli.rrdb``) and
the conditional U-Net noise predictor (``srcli.unet``), built from a ``ModelConfig`` (``srcli.modelconfig``).
The names of those modules are re-exported here.

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

from torch import nn

from .modelconfig import ModelConfig
from .rrdb import RRDB, ResidualDenseBlock, RRDBEncoder
from .unet import DEFAULT_UNET_MARGIN, UNet, mirror_pad, timestep_embedding


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


__all__ = [
    "DEFAULT_UNET_MARGIN", "ModelConfig", "RRDB", "RRDBEncoder", "ResidualDenseBlock", "SRDiffModel", "UNet",
    "count_parameters", "mirror_pad", "timestep_embedding",
]
