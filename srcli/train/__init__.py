"""``srcli train``'s library: the two training stages of SRDiff on a folder of HR images.

Stage 1 pretrains the RRDB encoder as an SR network with an L1 loss; stage 2 freezes it and trains
the noise predictor with Algorithm 1 on the residual.  Adam with a step-halving learning rate,
gradient-norm clipping, an EMA of the noise predictor for sampling.  Two files: the full resume
state in ``state_dir`` (outside the repository) and the shipped safetensors model at ``out``.

Modules: ``config`` (TrainConfig, the one source of defaults; what a resume may change),
``state`` (the resume state and its older formats), ``stream`` (data and noise keyed by step),
``loop`` (one step of each stage), ``ema``, ``distributed`` (torchrun/DDP), ``validate``
(``srcli.evaluate`` on --val) and ``trainer`` (the run).
"""

from .config import RESUME_OVERRIDABLE, TrainConfig, default_state_dir, learning_rate, merge_resumed
from .distributed import is_distributed, rank, setup_distributed
from .ema import EMA
from .loop import ConditionedDenoiser, diffusion_step, encoder_step
from .state import read_state, saved_config
from .trainer import Trainer

__all__ = [
    "EMA", "RESUME_OVERRIDABLE", "ConditionedDenoiser", "TrainConfig", "Trainer", "default_state_dir",
    "diffusion_step", "encoder_step", "is_distributed", "learning_rate", "merge_resumed", "rank",
    "read_state", "saved_config", "setup_distributed",
]
