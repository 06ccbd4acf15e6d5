"""The conditional U-Net noise predictor of SRDiff, eps_theta(x_t, D(x_L), t) (paper Fig. 3), with its
timestep and scale embeddings, the projection of the encoder features onto the HR grid and the
mirrored margin around every call.

Module names follow the SRDiff authors' checkpoints (``denoise_fn.*`` there).  The network runs in the
dtype of its weights and casts what it is given to it; the noise prediction it returns is float32.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from .modelconfig import ModelConfig




def _flat(x: torch.Tensor) -> Optional[torch.Tensor]:
    """A 1-D view of ``x``'s elements in memory order (any dense layout, e.g. channels_last), else None."""
    order = sorted(range(x.dim()), key=lambda d: -x.stride(d))
    xp = x.permute(order)
    return xp.view(-1) if xp.is_contiguous() else None


_MISH_CHUNK = 1 << 18  # elements per chunk of mish(): three float32 buffers of 1 MB (measured best of 32K-1M)


def mish(x: torch.Tensor, inplace: bool = False) -> torch.Tensor:
    """Mish, x * tanh(softplus(x)).  Outside autograd on float32 and bfloat16 CPU tensors it is computed
    from one sigmoid: with p = sigmoid(x) and v = p (2 - p), tanh(softplus(x)) = v / (2 - v) (as
    1 + e^x = 1 / (1 - p) and tanh(log u) = (u^2 - 1) / (u^2 + 1)).  v = lerp(p, 1, p) and
    2 - v = lerp(2, p, p) = 1 + (1 - p)^2 are one ATen pass each and cancel nowhere (lerp evaluates
    end - (end - start)(1 - w) for w >= 1/2, and v is 2p for very negative x).  The tensor is walked
    in memory order (any dense layout, e.g. channels_last) in chunks of 256K elements through three
    preallocated float32 buffers, so the five passes stay in cache, and bf16 is computed in float32
    (ATen's bf16 elementwise kernels take about twice as long as its float32 ones) and rounded once.
    One thread, AVX-512: a 64 x 264^2 map takes 5 ms in bf16 and 4 in fp32 against 7 and 8 for six
    passes over whole tensors (and 18 for ATen's kernel); the Mish of one U-Net call at 256^2 output
    (23M elements) 32 ms in bf16 and 25 in fp32 against 40 and 36.  Relative error against float64 at
    most 3e-7 in fp32 and one bf16 rounding (0.4%) in bf16.  sigmoid saturates instead of
    overflowing, so no clamp is needed; +-inf and nan give what ATen gives.  fp16, CUDA and autograd
    keep ATen's kernel.  ``inplace`` overwrites ``x`` (a temporary conv output)."""
    fast = x.dtype in (torch.float32, torch.bfloat16) and x.device.type == "cpu"
    if not fast or (torch.is_grad_enabled() and x.requires_grad):
        return F.mish(x, inplace=inplace) if not x.requires_grad else F.mish(x)
    src = _flat(x)
    if src is None:  # overlapping or strided: compute on a dense copy
        out = mish(x.contiguous(), inplace=True)
        return x.copy_(out) if inplace else out
    out = x if inplace else torch.empty_like(x)  # empty_like keeps a dense layout's strides
    dst = src if inplace else _flat(out)
    n = src.numel()
    size = max(1, min(n, _MISH_CHUNK))
    upcast = x.dtype != torch.float32
    p, d = torch.empty(size), torch.empty(size)
    xb = torch.empty(size) if upcast else None  # the float32 copy of a bf16 chunk
    one, two = torch.ones(()), torch.full((), 2.0)
    for start in range(0, n, size):
        m = min(size, n - start)
        xs, ds = src[start:start + m], dst[start:start + m]
        if m < size:
            p, d = p[:m], d[:m]
            xb = xb[:m] if upcast else None
        xf = xb.copy_(xs) if upcast else xs
        torch.sigmoid(xf, out=p)
        torch.lerp(two, p, p, out=d)  # 2 - v
        p.lerp_(one, p).div_(d)  # v / (2 - v)
        if upcast:
            ds.copy_(xb.mul_(p))
        else:
            torch.mul(xf, p, out=ds)
    return out


class Mish(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return mish(x)


class Block(nn.Module):
    """reflect-pad, 3x3 conv, Mish (index 1 is the conv, as in the authors' state dict)."""

    def __init__(self, dim_in: int, dim_out: int):
        super().__init__()
        self.block = nn.Sequential(nn.ReflectionPad2d(1), nn.Conv2d(dim_in, dim_out, 3), Mish())

    def forward(self, x: torch.Tensor, shift: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``shift`` (C_in,): a per-channel constant that the caller would have added to ``x``; it is
        folded into the conv's bias instead (see ``ResnetBlock``)."""
        conv = self.block[1]
        bias = conv.bias
        if shift is not None:
            # reflection padding of a per-channel constant is that constant, so
            # conv(pad(x + s)) = conv(pad(x)) + sum_{c,i,j} W[:, c, i, j] s[c]
            # (summed in float32: in half precision 9 * C_in terms would lose the shift's digits)
            bias = (bias.float() + conv.weight.float().sum((2, 3)) @ shift.float()).to(bias.dtype)
        return mish(F.conv2d(F.pad(x, (1, 1, 1, 1), mode="reflect"), conv.weight, bias), inplace=True)


class ResnetBlock(nn.Module):
    def __init__(self, dim_in: int, dim_out: int, emb_dim: int):
        super().__init__()
        self.mlp = nn.Sequential(Mish(), nn.Linear(emb_dim, dim_out))
        self.block1 = Block(dim_in, dim_out)
        self.block2 = Block(dim_out, dim_out)
        self.res_conv = nn.Conv2d(dim_in, dim_out, 1) if dim_in != dim_out else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        shift = self.mlp(emb)
        h = self.block1(x)
        if torch.is_grad_enabled() or shift.shape[0] != 1:
            out = self.block2(h + shift[:, :, None, None])
        else:
            # inference on one image: the embedding goes into block2's conv bias instead of a
            # full-resolution add (the same numbers up to float32 rounding)
            out = self.block2(h, shift[0])
        res = self.res_conv(x)
        return out + res if torch.is_grad_enabled() else out.add_(res)


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


__all__ = ["DEFAULT_UNET_MARGIN", "UNet", "mirror_pad", "timestep_embedding"]
