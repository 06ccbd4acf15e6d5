"""The reverse-process step against its closed form, DDIM(eta = 1) against DDPM, and the sampler's
intermediate marginals with an oracle noise predictor."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from srcli.diffusion import NoiseSchedule, ddim_step, ddpm_step, reverse_process, timestep_grid
from srcli.options import SamplingOptions


def linear_eps(seed: int = 0):
    """A deterministic stand-in for the network: some fixed function of (x_t, t)."""
    w = torch.randn(3, 3, generator=torch.Generator().manual_seed(seed))

    def eps(x, t_index):
        return torch.einsum("ij,bjhw->bihw", w, x) * 0.3 + (t_index.float() / 50 - 0.5).reshape(-1, 1, 1, 1)

    return eps


def fixed_noise(shape, count: int = 200, seed: int = 1):
    draws = [torch.randn(shape, generator=torch.Generator().manual_seed(seed + k)) for k in range(count)]
    return lambda k, like: draws[k]


@pytest.mark.parametrize("steps", [50, 13, 7, 2])
def test_ddim_with_eta_1_is_ddpm_on_respaced_grids(steps):
    """DDIM's update with sigma = eta * sqrt(beta_tilde) and eta = 1 is the DDPM posterior step of the
    respaced schedule, for any grid."""
    s = NoiseSchedule.named("cosine", 50)
    x_T = torch.randn(2, 3, 5, 5, generator=torch.Generator().manual_seed(0))
    noise = fixed_noise(x_T.shape)
    ddpm = reverse_process(linear_eps(), s, x_T, 50, noise, SamplingOptions(steps=steps, sampler="ddpm"))
    ddim = reverse_process(linear_eps(), s, x_T, 50, noise, SamplingOptions(steps=steps, sampler="ddim", eta=1.0))
    torch.testing.assert_close(ddim, ddpm, atol=1e-5, rtol=1e-5)
    eta0 = reverse_process(linear_eps(), s, x_T, 50, noise, SamplingOptions(steps=steps, sampler="ddim", eta=0.0))
    assert (eta0 - ddpm).abs().max() > 1e-2  # eta matters: the comparison above is not vacuous


@pytest.mark.parametrize("t, t_prev", [(40, 39), (40, 27), (12, 1)])
def test_one_step_mean_and_variance_are_the_closed_form(t, t_prev):
    """One DDPM step from t to t' (a grid [t, t', ...]): with zero noise it returns the mean of
    q(x_t' | x_t, x0_hat), with unit noise mean + sigma; both from the betas, written out here."""
    s = NoiseSchedule.named("linear", 50)
    betas = s.betas.numpy()
    abar = np.concatenate([[1.0], np.cumprod(1 - betas)])
    a_t, a_p = abar[t], abar[t_prev]
    beta = 1 - a_t / a_p  # the respaced step's beta
    x_t = torch.randn(1, 3, 4, 4, generator=torch.Generator().manual_seed(2)) * 0.5
    e = torch.randn(1, 3, 4, 4, generator=torch.Generator().manual_seed(3))
    x0 = ((x_t.double() - math.sqrt(1 - a_t) * e.double()) / math.sqrt(a_t)).clamp(-1, 1)
    mean = math.sqrt(a_p) * beta / (1 - a_t) * x0 + math.sqrt(1 - beta) * (1 - a_p) / (1 - a_t) * x_t.double()
    sigma = math.sqrt((1 - a_p) / (1 - a_t) * beta)

    def one_step(noise_value: float) -> torch.Tensor:
        seen = []

        def eps(x, t_index):
            seen.append(int(t_index[0]) + 1)
            if len(seen) > 1:  # stop after the first step: hand back the state it produced
                raise StopIteration(x)
            return e

        # the steps of a full run whose respaced grid from t has t_prev second
        n = next(n for n in range(2, s.T + 1) if timestep_grid(t, SamplingOptions(steps=n).steps_from(s.T, t))[1:2] == [t_prev])
        try:
            reverse_process(eps, s, x_t, t, lambda k, like: torch.full_like(like, noise_value), SamplingOptions(steps=n))
        except StopIteration as stop:
            assert seen == [t, t_prev]
            return stop.value.double()
        raise AssertionError("the sampler stopped after one step")

    torch.testing.assert_close(one_step(0.0), mean, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(one_step(1.0) - one_step(0.0), torch.full_like(mean, sigma), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("sampler,steps", [("ddpm", None), ("ddpm", 10), ("ddim", 10)])
def test_oracle_sampler_keeps_the_forward_marginals(sampler, steps):
    """With a noise predictor that knows x0, every state the sampler visits must be distributed as
    q(x_t | x0) = N(sqrt(abar_t) x0, (1 - abar_t) I): a wrong posterior coefficient or variance
    shows in the standardised states (the final x0 alone would not show it: the last step returns
    the oracle's x0 whatever came before)."""
    s = NoiseSchedule.named("cosine", 100)
    x0 = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0)) * 1.6 - 0.8
    states: dict[int, torch.Tensor] = {}

    def oracle(x_t, t_index):
        t = int(t_index[0]) + 1
        states[t] = x_t.clone()
        a = float(s.abar[t])
        return (x_t - math.sqrt(a) * x0) / math.sqrt(1 - a)

    gen = torch.Generator().manual_seed(5)
    noise = lambda k, like: torch.randn(like.shape, generator=gen)  # noqa: E731
    out = reverse_process(oracle, s, noise(0, x0), 100, noise, SamplingOptions(steps=steps, sampler=sampler))
    torch.testing.assert_close(out, x0, atol=1e-4, rtol=1e-4)
    assert len(states) == (100 if steps is None else 10)
    for t, x_t in states.items():
        if t == 100:
            continue  # x_T is the start noise itself
        a = float(s.abar[t])
        z = (x_t - math.sqrt(a) * x0) / math.sqrt(1 - a)
        assert abs(float(z.mean())) < 0.05 and abs(float(z.std()) - 1) < 0.05, (t, float(z.mean()), float(z.std()))


@pytest.mark.parametrize("t, t_prev", [(50, 49), (50, 31), (9, 1), (3, 0)])
def test_the_step_functions_agree_with_each_other_and_the_schedule(t, t_prev):
    """``ddim_step`` with eta = 1 is ``ddpm_step`` (mean and sigma) on any respaced step, eta = 0 has
    no noise and another mean, and on the full grid ``ddpm_step`` is the schedule's own posterior
    q(x_{t-1} | x_t, x0) (Eq. 6-7)."""
    s = NoiseSchedule.named("cosine", 50)
    a_t, a_p = float(s.abar[t]), float(s.abar[t_prev])
    gen = torch.Generator().manual_seed(t)
    x_t, x0 = torch.randn(2, 3, 4, 4, generator=gen), torch.rand(2, 3, 4, 4, generator=gen) * 2 - 1
    mean, sigma = ddpm_step(x_t, x0, a_t, a_p)
    mean1, sigma1 = ddim_step(x_t, x0, a_t, a_p, eta=1.0)
    torch.testing.assert_close(mean1, mean, atol=1e-5, rtol=1e-5)
    assert sigma1 == pytest.approx(sigma, rel=1e-9)
    mean0, sigma0 = ddim_step(x_t, x0, a_t, a_p, eta=0.0)
    assert sigma0 == 0
    if t_prev > 0:
        assert (mean0 - mean).abs().max() > 1e-3
    else:  # the last step lands on x0_hat whatever eta is
        torch.testing.assert_close(mean, x0, atol=1e-5, rtol=1e-5)
    if t_prev == t - 1:
        post_mean, post_var = s.q_posterior(x0, x_t, t)
        torch.testing.assert_close(mean, post_mean, atol=1e-5, rtol=1e-5)
        assert sigma**2 == pytest.approx(float(post_var.flatten()[0]), rel=1e-5)
