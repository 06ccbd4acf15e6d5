"""One optimisation step of each training stage: stage 1 fits the RRDB encoder as an SR network
with an L1 loss; stage 2 is the paper's Algorithm 1 on the residual, encoder frozen."""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from ..diffusion import NoiseSchedule, training_loss
from ..metrics import JPEG_BLOCK, block_edge_steps
from ..engine import to_residual
from ..nets import SRDiffModel
from ..ops import resize


class ConditionedDenoiser(nn.Module):
    """The noise predictor with its LR-feature projection inside ``forward``, so that the projection
    is trained in stage 2 (at inference it runs once per image) and DDP sees every parameter used."""

    def __init__(self, unet: nn.Module):
        super().__init__()
        self.unet = unet

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, feats: list[torch.Tensor], scale: torch.Tensor) -> torch.Tensor:
        return self.unet(x_t, t, self.unet.project_cond(feats, tuple(x_t.shape[-2:])), scale)


def apply_update(loss: torch.Tensor, optimizer: torch.optim.Optimizer, grad_clip: float) -> float:
    """Backpropagate ``loss``, clip the gradient norm of the optimised parameters, take the step."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    params = [p for group in optimizer.param_groups for p in group["params"]]
    torch.nn.utils.clip_grad_norm_(params, grad_clip)
    optimizer.step()
    return float(loss.detach())


def block_edge_l1(sr: torch.Tensor, hr: torch.Tensor, lr_size: int, block: int = JPEG_BLOCK) -> torch.Tensor:
    """Mean |d(sr) - d(hr)| over the one-pixel steps that straddle the LR's JPEG block edges (the
    LR's multiples of ``block`` px, scaled to the HR size), across both axes.  The plain L1 weighs
    these steps like any other pixel, 1 in 4 * scale at 8 px blocks, which leaves the enlarged grid
    visible; this term makes a fine-tune match the HR's steps there (``metrics.block_edge_steps``,
    the steps ``metrics.block_grid`` measures).  The real-world LR patch is JPEG-compressed at its
    own origin half the time (``degrade``), so the lines sit at the patch's multiples; on the other
    patches it is a plain gradient-matching term at a few positions."""
    terms = []
    for axis in (-1, -2):  # vertical block edges (steps along x), then horizontal ones
        n = hr.shape[axis]
        before = torch.tensor(block_edge_steps(n, n / lr_size, block), dtype=torch.long, device=hr.device)
        if not len(before):
            continue
        step = lambda x: x.index_select(axis, before + 1) - x.index_select(axis, before)
        terms.append((step(sr) - step(hr)).abs().mean())
    return torch.stack(terms).mean() if terms else sr.new_zeros(())


def encoder_step(
    encoder: nn.Module, hr: torch.Tensor, lr: torch.Tensor, optimizer: torch.optim.Optimizer, grad_clip: float,
    block_edge_weight: float = 0.0,
) -> float:
    """Stage 1: L1 between the encoder's own SR output at the HR size and the HR patch, plus
    ``block_edge_weight`` times ``block_edge_l1`` (0: the plain L1 of the clean model's recipe)."""
    sr = encoder(lr, tuple(hr.shape[-2:]))
    loss = (sr - hr).abs().mean()
    if block_edge_weight > 0:
        loss = loss + block_edge_weight * block_edge_l1(sr, hr, lr.shape[-1])
    return apply_update(loss, optimizer, grad_clip)


def diffusion_step(
    denoiser: nn.Module,
    model: SRDiffModel,
    schedule: NoiseSchedule,
    hr: torch.Tensor,
    lr: torch.Tensor,
    scale: float,
    optimizer: torch.optim.Optimizer,
    grad_clip: float,
    generator: torch.Generator,
) -> float:
    """Algorithm 1 (training), one step on a batch of (HR, LR) patches:

    1. the condition x_e = D(x_L), the frozen RRDB encoder's features, and the residual
       x_0 = x_r = (x_H - up(x_L)) * res_rescale (the model diffuses the residual, not the image);
    2. t ~ U{1..T} and eps ~ N(0, I), drawn on the device from ``generator``;
    3. x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps (Eq. 4);
    4. a gradient step on |eps - eps_theta(x_t, x_e, t)|_1 (Algorithm 1's loss, in the L1 form
       the authors train with), gradient norm clipped to ``grad_clip``.

    ``denoiser`` is a ``ConditionedDenoiser`` (possibly DDP-wrapped) around ``model.denoise_fn``."""
    with torch.no_grad():  # the encoder is frozen in stage 2
        feats = model.rrdb.features(lr)
        x_r = to_residual(hr, resize(lr, tuple(hr.shape[-2:])), model.config.res_rescale)
    scales = torch.full((hr.shape[0],), scale, device=hr.device)
    eps_theta: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = lambda x, t: denoiser(x, t, feats, scales)
    loss = training_loss(eps_theta, schedule, x_r, generator)
    return apply_update(loss, optimizer, grad_clip)
