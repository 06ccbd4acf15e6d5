"""The Typer application object; each command module registers itself on it."""

import sys
from typing import Annotated, Any, Optional

import typer
from typer.core import TyperGroup

from .. import __version__

# Click's base error class, wherever this Typer version keeps Click (newer ones vendor it)
ClickException = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")


# Options whose help gives an empty value a meaning ("--baselines ''": none); every other empty value
# is refused (OneLineErrors.empty_argument).
ACCEPTS_EMPTY = {"--baselines"}


class OneLineErrors(TyperGroup):
    """Typer's group with Click's usage errors (a bad number, an unknown option, a missing argument)
    as one ``error:`` line and exit code 2, like srcli's own usage errors, instead of a usage line,
    a hint and a framed box."""

    def main(self, args: Any = None, prog_name: Any = None, complete_var: Any = None, standalone_mode: bool = True, **extra: Any) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        empty = self.empty_argument(list(sys.argv[1:] if args is None else args))
        if empty is not None:
            from .common import error

            error(empty)
            sys.exit(2)
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except ClickException as exc:
            if type(exc).__name__ != "NoArgsIsHelpError":  # that one has printed the help already
                from .common import error  # (common imports this module)

                ctx = getattr(exc, "ctx", None)
                hint = f" (see {ctx.command_path} --help)" if ctx is not None else ""
                error(" ".join(exc.format_message().split()) + hint)
            sys.exit(exc.exit_code)
        except typer.Abort:
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)

    def empty_argument(self, args: list[str]) -> Optional[str]:
        """What is empty among ``args``, or None.  Click turns an empty path into "." (the current
        folder: ``srcli upscale ""`` would upscale it, ``eval ""`` score it) and srcli an empty
        weights name into the default model, so an empty value is refused before parsing."""
        command = self.commands.get(args[0]) if args else None
        flags = {o for p in (command.params if command else []) if getattr(p, "is_flag", False) for o in p.opts}
        for i, arg in enumerate(args):
            option = arg[:-1] if arg.startswith("--") and arg.endswith("=") and len(arg) > 3 else None
            if arg == "":
                before = args[i - 1] if i else ""
                if before.startswith("-") and before != "--" and before not in flags:
                    option = before
                else:
                    return f"argument {i + 1} after srcli is empty (an unset shell variable?): name a file or folder"
            if option is not None and option not in ACCEPTS_EMPTY:
                return f"{option} is empty (an unset shell variable?): leave the option out for its default"
        return None


app = typer.Typer(
    cls=OneLineErrors,
    name="srcli",
    help=(
        "Diffusion super-resolution (SRDiff) on the command line.\n\n"
        "Examples:\n\n"
        "  srcli upscale photo.png --scale 4\n\n"
        "  srcli upscale photos/ --width 1920 --format webp -o big/\n\n"
        "  srcli sample photo.png --n 8 -o samples/\n\n"
        "  srcli fuse eyes.png face.png --t 30 --t 50 --t 70\n\n"
        "Exit codes: 0 success, 1 some inputs failed, 2 usage error, 130 interrupted (Ctrl-C)."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"srcli {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool, typer.Option("--version", help="Print the version and exit.", callback=_print_version, is_eager=True)
    ] = False,
) -> None:
    """Options that come before the command."""
