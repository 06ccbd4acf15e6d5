"""The Typer application object; each command module registers itself on it."""

import typer

app = typer.Typer(
    name="srcli",
    help=(
        "Diffusion super-resolution (SRDiff) on the command line.\n\n"
        "Examples:\n\n"
        "  srcli upscale photo.png --scale 4\n\n"
        "  srcli sample photo.png --n 8 -o samples/\n\n"
        "  srcli fuse eyes.png face.png --t 30 --t 50 --t 70\n\n"
        "Exit codes: 0 success, 1 some inputs failed, 2 usage error."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
