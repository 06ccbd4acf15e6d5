"""The options the commands share, as Typer parameter types, and two option sets, each added to a
command by one decorator that hands the command one checked object instead of the flags:
``sampling_options`` (--steps, --sampler, --eta, --temperature, --strength, --init, --consistency,
--deblock -> ``SamplingOptions``) and ``model_options`` (--model, --weights, --device, --precision, --threads
-> ``ModelSource``)."""

from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass
from typing import Annotated, Any, Callable, Optional

import torch
import typer

from ..device import resolve_device, resolve_precision
from ..errors import UsageError
from ..options import DEFAULT_SAMPLER, DEFAULT_STEPS, SEED_LIMIT, SamplingOptions
from ..pipeline import SRPipeline

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
    "deblock": (Optional[bool], typer.Option(
        "--deblock/--no-deblock",
        help="Deblock the input before enlarging it: take the JPEG coding steps out of its 8 px block edges (a codec-style filter). Default: the model's (on for real, off for clean).",
        show_default=False,
    ), None),
}


def _option_set(params: dict[str, tuple[Any, Any, Any]], build: Callable[..., Any], into: str, before: tuple[str, ...] = ()) -> Callable:
    """A decorator that gives a Typer command the flags ``params`` (name -> (type, option,
    default)), inserted before the first of its parameters named in ``before`` (else at the end),
    and calls it with ``into=build(**those flags)`` instead of them; a ``UsageError`` from
    ``build`` is one ``error:`` line and exit code 2, before the command body runs."""

    def decorate(command: Callable) -> Callable:
        signature = inspect.signature(command, eval_str=True)
        own = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in signature.parameters.values() if p.name != into]
        added = [
            inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=Annotated[kind, option])
            for name, (kind, option, default) in params.items()
        ]
        at = next((i for i, p in enumerate(own) if p.name in before), len(own))

        @functools.wraps(command)
        def run(**values: Any) -> Any:
            from .common import usage_errors  # (common imports this module)

            with usage_errors():
                made = build(**{name: values.pop(name) for name in params})
            return command(**{into: made}, **values)

        run.__signature__ = signature.replace(parameters=[*own[:at], *added, *own[at:]])
        return run

    return decorate


def sampling_options(*names: str, defaults: Optional[dict[str, Any]] = None, helps: Optional[dict[str, str]] = None) -> Callable:
    """Give a Typer command the sampling flags ``names`` (all of ``SAMPLING_PARAMS`` when none are
    named), with other ``defaults`` and ``helps`` where given, placed before its model flags; the
    command receives them as one ``options: SamplingOptions``."""
    params = {}
    for name in names or tuple(SAMPLING_PARAMS):
        kind, option, default = SAMPLING_PARAMS[name]
        if name in (helps or {}):
            option = typer.Option(*option.param_decls, help=helps[name], show_default=option.show_default)
        params[name] = (kind, option, (defaults or {}).get(name, default))
    return _option_set(params, SamplingOptions, "options", before=("model", "weights", "source"))


def apply_threads(threads: Optional[int]) -> None:
    """``--threads N``: the CPU threads PyTorch computes with (None: its default)."""
    if threads is None:
        return
    if threads < 1:
        raise UsageError(f"--threads must be a positive integer, got {threads}")
    torch.set_num_threads(threads)


@dataclass(frozen=True)
class ModelSource:
    """Which checkpoint a command loads and where it runs: --model / --weights, --device,
    --precision; checked when made (--threads is applied then too), loaded by ``load``."""

    model: Optional[str] = None
    weights: Optional[str] = None
    device: str = "auto"
    precision: str = "auto"
    threads: Optional[int] = None

    def __post_init__(self) -> None:
        if self.model is not None and self.weights is not None:
            raise UsageError("--model and --weights are alternatives: give one of them")
        resolve_precision(self.precision, resolve_device(self.device))
        apply_threads(self.threads)

    def load(self) -> SRPipeline:
        return SRPipeline.from_pretrained(self.weights, device=self.device, precision=self.precision, model=self.model)


MODEL_PARAMS: dict[str, tuple[Any, Any, Any]] = {
    name: (typing.__args__[0], typing.__metadata__[0], default)
    for name, typing, default in (
        ("model", ModelOpt, None), ("weights", WeightsOpt, None), ("device", DeviceOpt, "auto"), ("precision", PrecisionOpt, "auto"),
        ("threads", ThreadsOpt, None),
    )
}


def model_options(command: Callable) -> Callable:
    """Give a Typer command --model, --weights, --device, --precision and --threads (before its
    --json, else at the end); it receives them as one ``source: ModelSource``."""
    return _option_set(MODEL_PARAMS, ModelSource, "source", before=("json_out", "json_output"))(command)


def clamp_steps(options: SamplingOptions, T: int, warn: Callable[[str], None]) -> SamplingOptions:
    """``options`` with at most T steps (a warning when more were asked for)."""
    if options.steps is not None and options.steps > T:
        warn(f"--steps {options.steps} is more than the model's T = {T} steps; running {T}")
        return options.replace(steps=T)
    return options
