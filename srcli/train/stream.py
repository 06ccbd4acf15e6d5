"""The training data stream: batch k of a run, on rank r, is a pure function of (seed, r, k), and so
is the diffusion noise of step k.  Nothing about the stream has to be saved for an exact resume: a
resumed run starts the stream at its step count.  Batches are made by a ``DataLoader`` whose
workers (any number, including none) all compute the same thing for the same k."""

from __future__ import annotations

import itertools
from typing import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ..data import Batch, PatchSampler

# Domain tags so that the data and the noise of one step draw from unrelated streams.
_DATA, _NOISE = 1, 2


def _key(seed: int, tag: int, rank: int, k: int) -> np.random.SeedSequence:
    return np.random.SeedSequence([seed, tag, rank, k])


def step_generator(seed: int, rank: int, k: int, device: torch.device) -> torch.Generator:
    """A generator on ``device`` for the noise of step ``k`` (Algorithm 1's t and eps are drawn on
    the device, no host copy); the same seed on every device type."""
    value = int(_key(seed, _NOISE, rank, k).generate_state(1, dtype=np.uint64)[0]) & (2**63 - 1)
    return torch.Generator(device=device).manual_seed(value)


class KeyedBatches(Dataset):
    """Index k -> (hr, lr, scale) of batch k: the patch sampler reseeded by (seed, rank, k)."""

    def __init__(self, sampler: PatchSampler, batch: int, seed: int, rank: int):
        self.sampler, self.batch, self.seed, self.rank = sampler, batch, seed, rank

    def __len__(self) -> int:  # an endless stream; the index sampler decides where it starts
        return 2**62

    def __getitem__(self, k: int) -> tuple[torch.Tensor, torch.Tensor, float]:
        # one sampler per process (each worker has its own copy), so reseeding it is private
        self.sampler.set_rng(np.random.default_rng(_key(self.seed, _DATA, self.rank, k)))
        b: Batch = self.sampler.batch(self.batch)
        return b.hr, b.lr, b.scale


def _seed_worker(worker_id: int) -> None:
    """Workers get fixed torch/numpy seeds; the batches themselves do not depend on them."""
    info = torch.utils.data.get_worker_info()
    torch.manual_seed(info.seed % 2**32 if info else worker_id)
    np.random.seed((info.seed if info else worker_id) % 2**32)


def batches(
    sampler: PatchSampler, batch: int, seed: int, rank: int, start: int, workers: int = 0, pin: bool = False
) -> Iterator[tuple[torch.Tensor, torch.Tensor, float]]:
    """Batches start, start + 1, ... of the stream (endless; stop iterating to end it)."""
    loader = DataLoader(
        KeyedBatches(sampler, batch, seed, rank),
        batch_size=None,  # each item is already a batch
        sampler=itertools.count(start),
        num_workers=workers,
        worker_init_fn=_seed_worker if workers else None,
        generator=torch.Generator().manual_seed(seed),
        pin_memory=pin,
        persistent_workers=False,
    )
    return iter(loader)
