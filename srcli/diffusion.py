"""Noise schedules and the SRDiff algorithms, each one function.

Conventions: the paper's t runs 1..T (t = 0 is the clean residual); the networks receive t - 1, as
in the authors' code.  ``abar(0) = 1``.  Every sampler works on the *residual* x_r = (x_H - up(x_L))
* res_rescale and takes ``eps_fn(x_t, t_index)``, a closure over the (already encoded) LR condition,
so the LR encoder runs once per image and never per step.

Randomness enters only through ``noise(k, like)``: the caller decides where noise comes from (one
generator, or a position-keyed field so that tiles and batches see the same noise as a whole image).

* ``training_loss``      - Algorithm 1 (one training step's loss)
* ``ddpm_step`` / ``ddim_step`` - one reverse step over a respaced schedule (pure functions)
* ``reverse_process``    - Algorithm 2 from any intermediate t, full or respaced, DDPM or DDIM
* ``sample``             - Algorithm 2 from pure noise at T
* ``content_fusion``     - Algorithm 3
* ``latent_interpolation`` - Algorithm 4
"""

from __future__ import annotations

import math
from typing import Callable, Optional, Sequence

import numpy as np
import torch

from .options import EXACT, SamplingOptions

EpsFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
NoiseFn = Callable[[int, torch.Tensor], torch.Tensor]
StepCallback = Optional[Callable[[int, int], None]]


def cosine_betas(timesteps: int, s: float = 0.008, max_beta: float = 0.999) -> np.ndarray:
    """Nichol & Dhariwal: abar(t) = f(t)/f(0), f(t) = cos^2(((t/T) + s)/(1 + s) * pi/2)."""
    t = np.arange(timesteps + 1, dtype=np.float64) / timesteps
    f = np.cos((t + s) / (1 + s) * math.pi / 2) ** 2
    abar = f / f[0]
    return np.clip(1 - abar[1:] / abar[:-1], 0, max_beta)


def linear_betas(timesteps: int, start: float = 1e-4, end: float = 0.02) -> np.ndarray:
    """Ho et al.'s linear schedule, rescaled so that T steps cover the same range as 1000."""
    k = 1000 / timesteps
    return np.linspace(start * k, min(end * k, 0.999), timesteps, dtype=np.float64)


def make_betas(name: str, timesteps: int) -> np.ndarray:
    if name == "cosine":
        return cosine_betas(timesteps)
    if name == "linear":
        return linear_betas(timesteps)
    raise ValueError(f"unknown schedule {name!r} (choose cosine or linear)")


class NoiseSchedule:
    """The forward process q(x_t | x_0) and the posterior q(x_{t-1} | x_t, x_0) of a beta schedule."""

    def __init__(self, betas: np.ndarray | torch.Tensor):
        betas = torch.as_tensor(np.asarray(betas, dtype=np.float64))
        if betas.dim() != 1 or len(betas) < 1 or not bool(((betas > 0) & (betas < 1)).all()):
            raise ValueError("betas must be a 1-D sequence in (0, 1)")
        self.betas = betas
        self.T = len(betas)
        alphas = 1.0 - betas
        self.alphas_cumprod = torch.cumprod(alphas, 0)
        # abar indexed by the paper's t = 0..T, abar(0) = 1
        self.abar = torch.cat([torch.ones(1, dtype=torch.float64), self.alphas_cumprod])
        self.alphas_cumprod_prev = self.abar[:-1]
        self.posterior_variance = betas * (1 - self.alphas_cumprod_prev) / (1 - self.alphas_cumprod)
        self.posterior_mean_coef1 = betas * self.alphas_cumprod_prev.sqrt() / (1 - self.alphas_cumprod)
        self.posterior_mean_coef2 = (1 - self.alphas_cumprod_prev) * alphas.sqrt() / (1 - self.alphas_cumprod)
        # betas in (0, 1) can still be unusable: so small that 1 - abar(1) rounds to 0, or so large
        # that abar(T) underflows to 0; either makes the samplers divide by zero (black images)
        if not bool((self.alphas_cumprod > 0).all() and (self.alphas_cumprod < 1).all()):
            raise ValueError("betas must keep abar(t) strictly between 0 and 1 in float64 (too small or too large betas)")

    @classmethod
    def named(cls, name: str, timesteps: int) -> "NoiseSchedule":
        return cls(make_betas(name, timesteps))

    def _at(self, values: torch.Tensor, t: torch.Tensor | int, like: torch.Tensor) -> torch.Tensor:
        t = torch.as_tensor(t).reshape(-1)
        v = values[t.cpu()].to(device=like.device, dtype=torch.float32)
        return v.reshape(-1, *([1] * (like.dim() - 1)))

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor | int, noise: torch.Tensor) -> torch.Tensor:
        """x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps  (paper Eq. 4), t in 0..T."""
        return self._at(self.abar.sqrt(), t, x0) * x0 + self._at((1 - self.abar).sqrt(), t, x0) * noise

    def predict_x0(self, x_t: torch.Tensor, t: torch.Tensor | int, eps: torch.Tensor) -> torch.Tensor:
        """Invert Eq. 4 for x_0 given the predicted noise, t in 1..T."""
        return (x_t - self._at((1 - self.abar).sqrt(), t, x_t) * eps) / self._at(self.abar.sqrt(), t, x_t)

    def q_posterior(self, x0: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor | int):
        """Mean and variance of q(x_{t-1} | x_t, x_0) (paper Eq. 6-7), t in 1..T."""
        i = torch.as_tensor(t) - 1
        mean = self._at(self.posterior_mean_coef1, i, x_t) * x0 + self._at(self.posterior_mean_coef2, i, x_t) * x_t
        return mean, self._at(self.posterior_variance, i, x_t)


def timestep_grid(t_start: int, steps: int) -> list[int]:
    """``steps`` descending timesteps from ``t_start`` to 1, evenly spaced (the respaced schedule)."""
    if t_start < 1:
        return []
    steps = max(1, min(int(steps), t_start))
    grid = np.round(np.linspace(t_start, 1, steps)).astype(int)
    return sorted(set(grid.tolist()), reverse=True)


def training_loss(
    eps_fn: EpsFn, schedule: NoiseSchedule, x_r: torch.Tensor, generator: Optional[torch.Generator] = None
) -> torch.Tensor:
    """Algorithm 1, one step: t ~ U{1..T}, eps ~ N(0, I), x_t by Eq. 4, loss |eps - eps_theta(x_t, t)|_1.
    t and eps are drawn on ``x_r``'s device (``generator``, when given, must live there too)."""
    b = x_r.shape[0]
    t = torch.randint(1, schedule.T + 1, (b,), generator=generator, device=x_r.device)
    noise = torch.randn(x_r.shape, generator=generator, device=x_r.device, dtype=x_r.dtype)
    x_t = schedule.q_sample(x_r, t, noise)
    return (noise - eps_fn(x_t, t - 1)).abs().mean()


def start_step(schedule: NoiseSchedule, strength: float) -> int:
    """The Diff-SR start: step round(strength * T) (strength 1.0 is the standard start at T)."""
    if not 0.0 < strength <= 1.0:
        raise ValueError(f"strength must be in (0, 1], got {strength}")
    return max(1, round(strength * schedule.T))


def predict_x0(x_t: torch.Tensor, eps: torch.Tensor, a_t: float) -> torch.Tensor:
    """x0_hat from Eq. 4 given the predicted noise, clipped to [-1, 1] (the residual's range)."""
    return ((x_t - math.sqrt(1 - a_t) * eps) / math.sqrt(a_t)).clamp(-1, 1)


def ddpm_step(x_t: torch.Tensor, x0: torch.Tensor, a_t: float, a_prev: float) -> tuple[torch.Tensor, float]:
    """Mean and standard deviation of p(x_t' | x_t) for the step t -> t' of a respaced grid, with
    abar(t) = ``a_t``, abar(t') = ``a_prev``: the posterior q(x_t' | x_t, x0_hat) of Eq. 6-7 with the
    respaced beta = 1 - a_t / a_prev (Nichol & Dhariwal); on the full grid it is the paper's step."""
    beta = 1 - a_t / a_prev
    mean = (math.sqrt(a_prev) * beta / (1 - a_t)) * x0 + (math.sqrt(1 - beta) * (1 - a_prev) / (1 - a_t)) * x_t
    return mean, math.sqrt((1 - a_prev) / (1 - a_t) * beta)


def ddim_step(x_t: torch.Tensor, x0: torch.Tensor, a_t: float, a_prev: float, eta: float = 0.0) -> tuple[torch.Tensor, float]:
    """Mean and standard deviation of DDIM's step t -> t': sigma = eta * sqrt(beta_tilde) of the
    respaced step, mean = sqrt(a_prev) x0_hat + sqrt(1 - a_prev - sigma^2) eps_hat with eps_hat the
    noise implied by x0_hat.  eta = 1 is the DDPM step; eta = 0 is deterministic."""
    eps_hat = (x_t - math.sqrt(a_t) * x0) / math.sqrt(1 - a_t)
    sigma = eta * math.sqrt((1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev))
    return math.sqrt(a_prev) * x0 + math.sqrt(max(1 - a_prev - sigma**2, 0.0)) * eps_hat, sigma


def reverse_process(
    eps_fn: EpsFn,
    schedule: NoiseSchedule,
    x_t: torch.Tensor,
    t_start: int,
    noise: NoiseFn,
    options: SamplingOptions = EXACT,
    callback: StepCallback = None,
) -> torch.Tensor:
    """Algorithm 2 (lines 2-6) started from a given x_t at step ``t_start`` (0 <= t_start <= T).

    ``options.steps`` None runs every step: the paper's loop (x0_hat by Eq. 4, clipped; the
    posterior mean of Eq. 7; sigma_t^2 = beta_tilde_t of Eq. 6; no noise at the last step).
    Otherwise the run takes the share t_start / T of a full run's steps over ``timestep_grid`` with
    ``ddpm_step`` or ``ddim_step`` (``options.sampler``, ``options.eta``); ``options.temperature``
    scales the injected noise, ``noise(k, like)`` supplies the noise of step k."""
    if not 0 <= t_start <= schedule.T:
        raise ValueError(f"t must be in [0, {schedule.T}], got {t_start}")
    grid = timestep_grid(t_start, options.steps_from(schedule.T, t_start))
    step = ddpm_step if options.sampler == "ddpm" else (lambda x, x0, a, b: ddim_step(x, x0, a, b, options.eta))
    x = x_t
    for k, (t, t_prev) in enumerate(zip(grid, [*grid[1:], 0])):
        a_t, a_prev = float(schedule.abar[t]), float(schedule.abar[t_prev])
        eps = eps_fn(x, torch.full((x.shape[0],), t - 1, device=x.device, dtype=torch.long)).float()
        mean, sigma = step(x, predict_x0(x, eps, a_t), a_t, a_prev)
        noisy = t_prev > 0 and sigma > 0 and options.temperature > 0
        x = mean + (sigma * options.temperature) * noise(k + 1, x) if noisy else mean
        if callback is not None:
            callback(k + 1, len(grid))
    return x


def sample(
    eps_fn: EpsFn,
    schedule: NoiseSchedule,
    shape: Sequence[int],
    noise: NoiseFn,
    device: torch.device | str = "cpu",
    options: SamplingOptions = EXACT,
    callback: StepCallback = None,
) -> torch.Tensor:
    """Algorithm 2: x_T ~ N(0, I) (scaled by the temperature), then the reverse process from T."""
    x_T = noise(0, torch.empty(tuple(shape), device=device)) * options.temperature
    return reverse_process(eps_fn, schedule, x_T, schedule.T, noise, options, callback)


def diffuse(schedule: NoiseSchedule, x0: torch.Tensor, t: int, noise: NoiseFn) -> torch.Tensor:
    """Forward-diffuse a clean residual to step t with one draw of noise (t = 0 returns x0)."""
    if not 0 <= t <= schedule.T:
        raise ValueError(f"t must be in [0, {schedule.T}], got {t}")
    return schedule.q_sample(x0, t, noise(0, x0)) if t > 0 else x0


def content_fusion(
    eps_fn: EpsFn,
    schedule: NoiseSchedule,
    fused_residual: torch.Tensor,
    t: int,
    noise: NoiseFn,
    options: SamplingOptions = EXACT,
    callback: StepCallback = None,
) -> torch.Tensor:
    """Algorithm 3 (lines 3-7): diffuse the residual of the pasted image x_f - up(x_L) to t with one
    draw of noise, then run the reverse process from t conditioned on D(x_L).  The caller pastes the
    region back into the face source, which keeps every pixel outside it untouched."""
    x_t = diffuse(schedule, fused_residual, t, noise)
    return reverse_process(eps_fn, schedule, x_t, t, noise, options, callback)


def latent_interpolation(
    eps_fn: EpsFn,
    schedule: NoiseSchedule,
    residual_a: torch.Tensor,
    residual_b: torch.Tensor,
    t: int,
    lambdas: Sequence[float],
    noise: NoiseFn,
    options: SamplingOptions = EXACT,
    callback: StepCallback = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Algorithm 4: diffuse two SR predictions (residuals, each (1, C, H, W)) of one LR input to t,
    mix lam * x_t + (1 - lam) * x'_t for each lambda and decode each mix from t; ``eps_fn`` must take
    a batch of len(lambdas).  The endpoints are diffused with independent noise draws (the authors'
    code); every mix gets the same reverse-step noise, so the outputs differ only by their latent.
    ``noise`` is always asked for a batch of one.  Returns the decoded mixes (len(lambdas), ...) in
    the order given and the two endpoint latents (2, ...): lambda 1 starts from the first, 0 from
    the second.

    The step convention is the paper's and differs from the authors' code by one step: here the
    endpoints are noised to abar(t) (paper step t) and the reverse process runs paper steps t .. 1
    (network indices t - 1 .. 0).  The authors' ``interpolate(t)`` noises with their
    ``alphas_cumprod[t]``, which is abar(t + 1), then runs network indices t - 1 .. 0 as well, so its
    latent has one step more noise than its first reverse step assumes; their lambda weights the
    second image.  Their output at t is thus no srcli output at any t (docs/design.md, "Algorithm 4:
    the step convention")."""
    if residual_a.shape != residual_b.shape or residual_a.shape[0] != 1:
        raise ValueError("latent_interpolation needs two residuals of one shape with batch size 1")
    x_a = diffuse(schedule, residual_a, t, lambda k, like: noise(0, like))
    x_b = diffuse(schedule, residual_b, t, lambda k, like: noise(1, like))
    lam = torch.tensor(list(lambdas), device=x_a.device, dtype=x_a.dtype).reshape(-1, 1, 1, 1)
    mixed = lam * x_a + (1 - lam) * x_b

    def step_noise(k: int, like: torch.Tensor) -> torch.Tensor:
        # k + 1 keeps the step draws apart from the two endpoint draws (keyed noise)
        return noise(k + 1, like[:1]).expand_as(like)

    decoded = reverse_process(eps_fn, schedule, mixed, t, step_noise, options, callback)
    return decoded, torch.cat([x_a, x_b])
