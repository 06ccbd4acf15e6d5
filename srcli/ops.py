"""Tensor-side image operations shared by the engine, the trainer and the metrics.

Images are float tensors (B, 3, H, W) in [-1, 1].  ``resize`` is the one resampling operator of
srcli: bicubic with antialiasing, which in PyTorch is numerically Pillow's ``Image.resize(BICUBIC)``
(the MATLAB ``imresize`` kernel, a = -0.5), so up(x_L) and the degradation agree with the protocol.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bicubic resize of (B, C, H, W) to ``size`` = (H, W), Pillow-equivalent, in float32 or wider."""
    size = (int(size[0]), int(size[1]))
    if tuple(x.shape[-2:]) == size:
        return x
    dtype = x.dtype
    work = x if dtype in (torch.float32, torch.float64) else x.float()
    out = F.interpolate(work, size=size, mode="bicubic", align_corners=False, antialias=True)
    return out.to(dtype)


def scaled_size(size: tuple[int, int], scale: float) -> tuple[int, int]:
    """Output size for a scale: round(scale * input size), at least 1 pixel."""
    return (max(1, round(size[0] * scale)), max(1, round(size[1] * scale)))


def uint8_to_tensor(array: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 -> (1, 3, H, W) float32 in [-1, 1]."""
    t = torch.from_numpy(np.array(array, dtype=np.uint8, copy=True)).permute(2, 0, 1).float()
    return (t / 127.5 - 1.0).unsqueeze(0)


def tensor_to_uint8(x: torch.Tensor) -> np.ndarray:
    """(1, 3, H, W) or (3, H, W) in [-1, 1] -> (H, W, 3) uint8, rounded."""
    if x.dim() == 4:
        x = x[0]
    x = ((x.detach().float().clamp(-1, 1) + 1) * 127.5).round()
    return x.permute(1, 2, 0).to(torch.uint8).cpu().numpy()
