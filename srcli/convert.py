"""Convert the SRDiff authors' released ``.ckpt`` files into srcli checkpoints.

The authors' file is a torch pickle (their trainer writes the legacy, non-zip format) holding
``{"global_step", "optimizer_states", "state_dict": {"model": <GaussianDiffusion state dict>}}``.  The
state dict has the networks (``rrdb.*``, ``denoise_fn.*``, the same names srcli's modules use) and
the diffusion buffers (``betas``, ``alphas_cumprod``, ...).  Everything about the model is inferred from
the tensor shapes; the schedule is the file's own ``betas``.

A ``.ckpt`` is a pickle, and unpickling can run arbitrary code.  It is only ever read with
``torch.load(..., weights_only=True)``: tensors, numbers, strings and containers, nothing else.  A file
that needs more is refused, never executed.
"""

from __future__ import annotations

import pickle
import pickletools
import re
import struct
import warnings
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from .checkpoint import CheckpointError, check_layout, check_weight_values, expected_shapes, save_checkpoint, schedule_from_betas
from .diffusion import NoiseSchedule, cosine_betas
from .nets import ModelConfig, SRDiffModel, count_parameters
from .errors import UsageError

# Buffers of the authors' GaussianDiffusion module.  ``betas`` becomes the srcli schedule; the others
# are functions of it that srcli recomputes (in float64) from the betas.
SCHEDULE_KEY = "betas"
DERIVED_BUFFERS = (
    "alphas_cumprod",
    "alphas_cumprod_prev",
    "sqrt_alphas_cumprod",
    "sqrt_one_minus_alphas_cumprod",
    "log_one_minus_alphas_cumprod",
    "sqrt_recip_alphas_cumprod",
    "sqrt_recipm1_alphas_cumprod",
    "posterior_variance",
    "posterior_log_variance_clipped",
    "posterior_mean_coef1",
    "posterior_mean_coef2",
)
# Hyperparameters of both released configurations that the .ckpt does not store.
AUTHORS_TIMESTEPS = 100
AUTHORS_RES_RESCALE = 2.0
# The authors' betas are float32 copies of a float64 formula: closer than this means "the cosine schedule".
COSINE_TOLERANCE = 1e-6

_NET_PREFIXES = ("rrdb.", "denoise_fn.")
_ANCHORS = (
    "denoise_fn.cond_proj.weight",
    "denoise_fn.downs.0.0.block1.block.1.weight",
    "rrdb.conv_first.weight",
    "rrdb.RRDB_trunk.0.RDB1.conv1.weight",
)


def load_untrusted(path: str | Path) -> Any:
    """Read a torch pickle with the restricted (weights-only) unpickler; one-line errors."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such file")
    if not path.is_file():
        raise CheckpointError(f"{path}: not a file (expected the authors' .ckpt)")
    try:
        is_safetensors = _looks_like_safetensors(path)
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if is_safetensors:
        raise CheckpointError(
            f"{path}: already a safetensors file, not the authors' .ckpt; use it directly with --weights"
        )
    try:
        with warnings.catch_warnings():
            # torch warns about pickle protocols on stderr; the outcome is reported below instead
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"GLOBAL (\S+)", str(exc))
        imports = [found.group(1)] if found else _pickle_imports(path)
        if imports:
            raise CheckpointError(
                f"{path}: refused: loading it would need unrestricted unpickling (it imports {imports[0]}), "
                "which can run arbitrary code; srcli only reads tensors and plain data from .ckpt files"
            ) from None
        reason = re.search(r"WeightsUnpickler error:\s*(.+)", str(exc))
        detail = reason.group(1).strip() if reason else str(exc).splitlines()[0]
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint (weights-only loader: {detail})") from None
    except Exception as exc:  # torch raises many types for a file that is not a torch pickle
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({type(exc).__name__}: {exc})") from None


def _pickle_imports(path: Path) -> list[str]:
    """Names a plain pickle stream would import, found by parsing its opcodes (nothing is executed).

    Only for the error message: torch names the offending import itself for its own file formats,
    but not for a bare pickle of protocol 4+, which its restricted unpickler rejects at the first
    opcode."""
    names: list[str] = []
    strings: list[str] = []
    try:
        with open(path, "rb") as f:
            for op, arg, _ in pickletools.genops(f):
                if op.name in ("GLOBAL", "INST"):
                    names.append(str(arg).replace(" ", "."))
                elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
                    names.append(f"{strings[-2]}.{strings[-1]}")
                elif "UNICODE" in op.name:
                    strings.append(str(arg))
    except Exception:  # garbage or a truncated stream: what was parsed so far is the answer
        pass
    return names


def _looks_like_safetensors(path: Path) -> bool:
    with open(path, "rb") as f:
        head = f.read(9)
    if len(head) < 9:
        return False
    (header_len,) = struct.unpack("<Q", head[:8])
    return head[8:9] == b"{" and 0 < header_len < path.stat().st_size


def extract_state_dict(obj: Any, source: str = "checkpoint") -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The model state dict inside a loaded ``.ckpt``: the authors' ``{"state_dict": {"model": ...}}``
    nesting, ``{"state_dict": ...}``, or a plain state dict.  Also returns what was set aside
    (``global_step``, names of other top-level entries such as ``optimizer_states``)."""
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{source}: expected a dict of tensors, found {type(obj).__name__}")
    extras: dict[str, Any] = {"global_step": None, "ignored_entries": []}
    sd: Any = obj
    if "state_dict" in obj:
        extras["ignored_entries"] = sorted(str(k) for k in obj if k != "state_dict")
        step = obj.get("global_step")
        extras["global_step"] = step if isinstance(step, int) and not isinstance(step, bool) else None
        sd = obj["state_dict"]
        if isinstance(sd, Mapping) and isinstance(sd.get("model"), Mapping):
            extras["ignored_entries"] += sorted(f"state_dict.{k}" for k in sd if k != "model")
            sd = sd["model"]
    if not isinstance(sd, Mapping) or not sd:
        keys = ", ".join(sorted(map(str, obj))[:6])
        raise CheckpointError(f"{source}: no model state dict found (top-level entries: {keys})")
    not_tensors = sorted(str(k) for k, v in sd.items() if not isinstance(v, torch.Tensor))
    if not_tensors:
        raise CheckpointError(
            f"{source}: not a state dict: {len(not_tensors)} entries are not tensors (e.g. {', '.join(not_tensors[:3])})"
        )
    return {str(k): v for k, v in sd.items()}, extras


def infer_config(sd: Mapping[str, torch.Tensor], source: str = "checkpoint") -> ModelConfig:
    """Rebuild the authors' model configuration from the tensor shapes alone."""
    absent = [k for k in _ANCHORS if k not in sd]
    if absent:
        sample = ", ".join(sorted(sd)[:3])
        raise CheckpointError(f"{source}: not an SRDiff checkpoint (no tensor {absent[0]}; keys look like {sample}, ...)")
    proj = sd["denoise_fn.cond_proj.weight"]
    # ConvTranspose2d(cond, dim, 2s, stride s, padding s/2) stores its weight as (cond, dim, 2s, 2s)
    if proj.dim() != 4 or proj.shape[2] != proj.shape[3] or proj.shape[2] % 2 or proj.shape[2] < 4:
        raise CheckpointError(
            f"{source}: denoise_fn.cond_proj.weight has shape {tuple(proj.shape)}, not the paper's transposed "
            "projection (cond, dim, 2s, 2s)"
        )
    scale, dim = proj.shape[2] // 2, proj.shape[1]
    mults = []
    while (key := f"denoise_fn.downs.{len(mults)}.0.block1.block.1.weight") in sd:
        width = sd[key].shape[0]
        if width % dim:
            raise CheckpointError(f"{source}: {key} has {width} channels, not a multiple of the U-Net width {dim}")
        mults.append(width // dim)
    trunk = {int(m.group(1)) for k in sd if (m := re.match(r"rrdb\.RRDB_trunk\.(\d+)\.", k))}
    if trunk != set(range(len(trunk))):  # a stray rrdb.RRDB_trunk.200000.* must not ask for 200001 blocks
        gap = next(i for i in range(len(trunk) + 1) if i not in trunk)
        raise CheckpointError(f"{source}: RRDB blocks are not numbered 0..{len(trunk) - 1} (found block {max(trunk)}, missing {gap})")
    betas = sd.get(SCHEDULE_KEY)
    try:
        return ModelConfig(
            unet_dim=dim,
            unet_mults=tuple(mults),
            rrdb_nf=sd["rrdb.conv_first.weight"].shape[0],
            rrdb_gc=sd["rrdb.RRDB_trunk.0.RDB1.conv1.weight"].shape[0],
            rrdb_blocks=max(trunk) + 1,
            projection="transposed",
            scale=scale,
            scale_embedding=False,
            timesteps=len(betas) if betas is not None and betas.dim() == 1 else AUTHORS_TIMESTEPS,
            res_rescale=AUTHORS_RES_RESCALE,
            train_scales=(float(scale), float(scale)),
        )
    except ValueError as exc:
        raise CheckpointError(f"{source}: cannot build a model from its shapes ({exc})") from None


def _describe(cfg: ModelConfig) -> str:
    mults = "|".join(map(str, cfg.unet_mults))
    return f"{cfg.scale}x, {cfg.rrdb_blocks} RRDB blocks, U-Net {cfg.unet_dim} x {mults}"


def _match_layout(cfg: ModelConfig, sd: Mapping[str, torch.Tensor], source: str) -> None:
    """Every network tensor used, none missing, every shape right, all finite floats (the checks of
    srcli's own loader, ``checkpoint.check_layout``), before any model is built."""
    given = {k: tuple(v.shape) for k, v in sd.items() if k != SCHEDULE_KEY and k not in DERIVED_BUFFERS}
    check_layout(expected_shapes(cfg), given, f"{source}: tensors do not match the SRDiff layout inferred from it ({_describe(cfg)})")
    check_weight_values({k: sd[k] for k in given}, source)


def official_to_srcli(ckpt_path: str | Path) -> tuple[SRDiffModel, NoiseSchedule, dict[str, Any]]:
    """Load an authors' ``.ckpt`` (safely) into an fp32 srcli model, its schedule and a report."""
    source = str(ckpt_path)
    sd, extras = extract_state_dict(load_untrusted(ckpt_path), source)
    cfg = infer_config(sd, source)
    _match_layout(cfg, sd, source)
    with torch.device("meta"):  # shapes only: every tensor is replaced by the file's below
        model = SRDiffModel(cfg)
    weights = {k: v.float().contiguous() for k, v in sd.items() if k.startswith(_NET_PREFIXES)}
    model.load_state_dict(weights, strict=True, assign=True)

    betas = sd.get(SCHEDULE_KEY)
    nichol = cosine_betas(cfg.timesteps)
    if betas is None:
        # only the networks were given: the authors' hparams say cosine, T = 100
        betas_np, schedule_source = nichol, "cosine (recomputed: the file has no betas)"
    else:
        if not betas.is_floating_point():
            raise CheckpointError(f"{source}: unusable betas (not floating-point: {betas.dtype})")
        betas_np = betas.detach().double().numpy()
        schedule_source = "the checkpoint's betas"
    schedule = schedule_from_betas(betas_np, source)
    cosine_diff = float(np.abs(betas_np - nichol).max())

    info = {
        "origin": "SRDiff authors' checkpoint",
        "converted_from": Path(ckpt_path).name,
        "global_step": extras["global_step"],
        "scale": cfg.scale,
        "rrdb_blocks": cfg.rrdb_blocks,
        "rrdb_nf": cfg.rrdb_nf,
        "rrdb_gc": cfg.rrdb_gc,
        "unet_dim": cfg.unet_dim,
        "unet_mults": list(cfg.unet_mults),
        "timesteps": cfg.timesteps,
        "params": count_parameters(model),
        "params_rrdb": count_parameters(model.rrdb),
        "params_denoise_fn": count_parameters(model.denoise_fn),
        "schedule": schedule_source,
        "schedule_is_cosine": cosine_diff < COSINE_TOLERANCE,
        "betas_max_abs_diff_from_cosine": cosine_diff,
        "ignored_buffers": [k for k in DERIVED_BUFFERS if k in sd],
        "ignored_entries": extras["ignored_entries"],
        # the authors' data pipeline makes up(x_L) from the 8-bit LR / 256 with MATLAB-style imresize:
        # the model predicts residuals relative to that image, so srcli reproduces it (engine.LR_UPSAMPLERS)
        "lr_upsample": "matlab-div256",
        # their sampler runs the U-Net on the image alone, without srcli's mirrored margin
        "unet_margin": 0,
    }
    return model.eval(), schedule, info


def convert_official(
    ckpt_path: str | Path, out_path: str | Path, overwrite: bool = False, half: bool = False
) -> dict[str, Any]:
    """Convert an authors' ``.ckpt`` into a srcli safetensors checkpoint; returns the report.

    Weights stay fp32 unless ``half``: they are the authors' fp32 weights, and rounding them to fp16
    would move the noise predictions away from the original networks'.  fp32 costs ~50 MB for the
    12-15M parameters; ``half`` halves that for shipping, at that cost.  Written atomically.
    """
    ckpt_path, out_path = Path(ckpt_path), Path(out_path)
    if out_path.exists() and not overwrite:
        raise UsageError(f"{out_path}: already exists (pass --overwrite to replace it)")
    if out_path.exists() and out_path.resolve() == ckpt_path.resolve():
        raise UsageError(f"{out_path}: the output would replace the input checkpoint")
    model, schedule, info = official_to_srcli(ckpt_path)
    info["dtype"] = "float16" if half else "float32"
    save_checkpoint(out_path, model, schedule, info=info, half=half)
    return {**info, "input": str(ckpt_path), "output": str(out_path)}


__all__ = [
    "DERIVED_BUFFERS",
    "convert_official",
    "extract_state_dict",
    "infer_config",
    "load_untrusted",
    "official_to_srcli",
]
