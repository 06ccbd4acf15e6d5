"""srcli: diffusion super-resolution (SRDiff) for the command line and for Python.

    >>> from srcli import SRPipeline
    >>> pipe = SRPipeline.from_pretrained()          # the shipped default weights
    >>> sr = pipe.upscale(Image.open("in.png"), scale=4, steps=25, seed=0)
"""

__version__ = "0.1.0"

from .pipeline import SRPipeline  # noqa: E402

__all__ = ["SRPipeline", "__version__"]
