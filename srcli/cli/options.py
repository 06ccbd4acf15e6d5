"""The options every command shares, as Typer parameter types, and the sampling option set: one
decorator adds --steps, --sampler, --eta, --temperature, --strength, --init and --consistency to a
command and hands it one checked ``SamplingOptions`` instead."""

from __future__ import annotations

import functools
import inspect
from typing import Annotated, Any, Callable, Optional

import typer

from ..options import DEFAULT_SAMPLER, DEFAULT_STEPS, SEED_LIMIT, SamplingOptions

WeightsOpt = Annotated[
    Optional[str],
    typer.Option(
        "--weights", "-w",
        help="Checkpoint file: a .safetensors path, a file name looked up like --model's files, or hf://OWNER/REPO/FILE[@REVISION]. Default: --model clean.",
    ),
]
ModelOpt = Annotated[
    Optional[str],
    typer.Option(
        "--model",
        help="A shipped model by name: clean (bicubic degradation, the default) or real (JPEG, noise and blur). Looked up in the package, ./weights, then $SRCLI_WEIGHTS_DIR or ~/.cache/srcli/weights. Not with --weights.",
        show_default=False,
    ),
]
DeviceOpt = Annotated[str, typer.Option("--device", help="auto (CUDA if present), cpu or cuda.")]
PrecisionOpt = Annotated[str, typer.Option("--precision", help="auto (fp16 on CUDA; bf16 on CPUs with native bf16, else fp32), fp32, bf16 or fp16 (fp16 also runs on the CPU, slowly).")]
SEED_MAX = SEED_LIMIT - 1
SeedOpt = Annotated[int, typer.Option("--seed", min=0, max=SEED_MAX, help="Random seed (0 to 2^63-1); the same seed gives the same output.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object per output on stdout (for scripts; docs/json.md).")]
ThreadsOpt = Annotated[
    Optional[int], typer.Option("--threads", help="CPU threads for PyTorch. Default: PyTorch's choice (the number of cores).", show_default=False)
]

STRENGTH_HELP = (
    "Start the reverse process at this fraction of T (0 < F <= 1) from the --init image with noise injected to that level "
    "(Diff-SR); 1 = from pure noise, SRDiff's sampler. Lower keeps closer to the init and invents less."
)
# name -> (type, the option, default); the order is the order in --help
SAMPLING_PARAMS: dict[str, tuple[Any, Any, Any]] = {
    "steps": (int, typer.Option(
        "--steps", help="Reverse diffusion steps of a full T-step run, respaced (fewer is faster; a start below T takes its share); at most the model's T.",
    ), DEFAULT_STEPS),
    "sampler": (str, typer.Option("--sampler", help="ddpm (ancestral, respaced) or ddim."), DEFAULT_SAMPLER),
    "eta": (float, typer.Option("--eta", help="ddim's noise scale from 0 (deterministic) to 1 (the ddpm variance)."), 0.0),
    "temperature": (float, typer.Option("--temperature", help="Scale of the injected noise (1 = the model's distribution, 0 = none)."), 1.0),
    "strength": (Optional[float], typer.Option("--strength", help=STRENGTH_HELP + " Default: per scale.", show_default=False), None),
    "init": (Optional[str], typer.Option(
        "--init", help="The image a --strength below 1 starts from: encoder (the model's own regression output, the default) or bicubic (as Diff-SR).",
        show_default=False,
    ), None),
    "consistency": (Optional[int], typer.Option(
        "--consistency",
        help="Back-projection iterations after sampling, which make the output downscale to the input (0 = the sampler's own output). Default: the model's (5; 0 for a model trained on real-world degradations).",
        show_default=False,
    ), None),
}


def sampling_options(*names: str, defaults: Optional[dict[str, Any]] = None, helps: Optional[dict[str, str]] = None) -> Callable:
    """Give a Typer command the sampling flags ``names`` (all of ``SAMPLING_PARAMS`` when none are
    named) with optional other ``defaults`` and ``helps``; the command receives them as one
    ``options: SamplingOptions``, checked before the command body runs (one ``error:`` line and
    exit code 2 when a value is bad)."""
    names = names or tuple(SAMPLING_PARAMS)
    defaults, helps = defaults or {}, helps or {}

    def decorate(command: Callable) -> Callable:
        signature = inspect.signature(command, eval_str=True)
        own = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in signature.parameters.values() if p.name != "options"]
        added = []
        for name in names:
            kind, option, default = SAMPLING_PARAMS[name]
            if name in helps:
                option = typer.Option(*option.param_decls, help=helps[name], show_default=option.show_default)
            added.append(inspect.Parameter(
                name, inspect.Parameter.KEYWORD_ONLY, default=defaults.get(name, default), annotation=Annotated[kind, option],
            ))
        # the sampling flags go after the inputs and the size options, before model and device
        at = next((i for i, p in enumerate(own) if p.name in ("model", "weights")), len(own))

        @functools.wraps(command)
        def run(**values: Any) -> Any:
            from .common import usage_errors  # (common imports this module)

            with usage_errors():
                options = SamplingOptions(**{name: values.pop(name) for name in names})
            return command(options=options, **values)

        run.__signature__ = signature.replace(parameters=[*own[:at], *added, *own[at:]])
        return run

    return decorate


def clamp_steps(options: SamplingOptions, T: int, warn: Callable[[str], None]) -> SamplingOptions:
    """``options`` with at most T steps (a warning when more were asked for)."""
    if options.steps is not None and options.steps > T:
        warn(f"--steps {options.steps} is more than the model's T = {T} steps; running {T}")
        return options.replace(steps=T)
    return options
