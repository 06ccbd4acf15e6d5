"""Exploring the many HR images that fit one LR image: the Python API of ``sample-diverse``,
``interpolate`` and ``fuse``.  One function per algorithm, each taking an ``SRPipeline`` first:

    pipe = SRPipeline.from_pretrained()
    res = sample_diverse(pipe, Image.open("in.png"), n=8, scale=4)     # res.samples, res.mean_sigma
    mix = latent_interpolation(pipe, lr, t=50, lambdas=[0, 0.4, 0.8, 1], seeds=(1, 2))   # Alg. 4
    fus = content_fusion(pipe, eyes_hr, face_hr, t=[30, 50, 70])       # Alg. 3, box = eye band

All three run the engine's start-from-t primitive ``diffusion.reverse_process`` (through
``diffusion.content_fusion`` / ``diffusion.latent_interpolation``) and take their randomness from
the pipeline's noise (``SRPipeline.noise``, position-keyed), so a seed means the same thing here as
in ``srcli upscale``.  How they sample is a ``SamplingOptions`` (``options=``, or its fields as
keyword arguments); a decode from t takes the share t / T of ``steps``, as everywhere in srcli.
A ``scale`` of None is ``default_scale(pipe)``.  Images go in as PIL images or (H, W, 3) uint8
arrays and come out as Pillow RGB images, or as (H, W, 3) uint8 arrays with ``output="numpy"``.
The sheets and strips the CLI writes are drawn by ``srcli.render``.
"""

from .common import DEFAULT_EYE_BOX, DEFAULT_LAMBDAS, check_lambdas, check_t, default_scale, steps_run
from .diverse import DIVERSE_STRENGTH, DiverseSamples, sample_diverse
from .fusion import NO_BACK_PROJECTION, Fusion, content_fusion, paste, resolve_box
from .interpolation import Interpolation, latent_interpolation

__all__ = [
    "DEFAULT_EYE_BOX", "DEFAULT_LAMBDAS", "DIVERSE_STRENGTH", "DiverseSamples", "Interpolation", "Fusion", "sample_diverse",
    "latent_interpolation", "content_fusion", "NO_BACK_PROJECTION", "steps_run", "check_t", "check_lambdas", "resolve_box", "paste", "default_scale",
]
