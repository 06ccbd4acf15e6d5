"""The Typer application object; each command module registers itself on it."""

from typing import Annotated

import typer

from .. import __version__

app = typer.Typer(
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
