"""Schedule identities and sampler invariants (Algorithms 1 and 2)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from conftest import tiny_model
from srcli.diffusion import (
    NoiseSchedule,
    cosine_betas,
    reverse_process,
    sample,
    timestep_grid,
    training_loss,
)
from srcli.diffusion import start_step
from srcli.engine import Conditioned, seeded_noise, super_resolve


@pytest.fixture
def schedule():
    return NoiseSchedule.named("cosine", 100)


def test_cosine_schedule_matches_its_definition(schedule):
    t = np.arange(101) / 100
    f = np.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2
    # the last beta is clipped at 0.999 (f(T) is ~0), every other step follows the formula
    np.testing.assert_allclose(schedule.abar.numpy()[:-1], (f / f[0])[:-1], rtol=1e-9, atol=1e-12)
    assert float(schedule.betas.max()) == pytest.approx(0.999)
    assert np.all(np.diff(cosine_betas(100)) > 0)  # noise grows monotonically


@pytest.mark.parametrize("name", ["cosine", "linear"])
def test_schedule_identities(name):
    s = NoiseSchedule.named(name, 50)
    # abar is the running product of alphas
    np.testing.assert_allclose(s.alphas_cumprod.numpy(), np.cumprod(1 - s.betas.numpy()), rtol=1e-12)
    assert s.abar[0] == 1.0 and bool((s.abar[1:] < s.abar[:-1]).all())
    # posterior: beta_tilde = (1 - abar_{t-1}) / (1 - abar_t) * beta_t; coefficients of Eq. 7
    abar, abar_prev, beta = s.alphas_cumprod, s.alphas_cumprod_prev, s.betas
    torch.testing.assert_close(s.posterior_variance, (1 - abar_prev) / (1 - abar) * beta)
    torch.testing.assert_close(s.posterior_mean_coef1, abar_prev.sqrt() * beta / (1 - abar))
    torch.testing.assert_close(s.posterior_mean_coef2, (1 - beta).sqrt() * (1 - abar_prev) / (1 - abar))
    # the posterior mean of the true x0 given x_t is consistent: at t = 1 it returns x0 exactly
    x0 = torch.rand(2, 3, 4, 4) * 2 - 1
    noise = torch.randn_like(x0)
    x1 = s.q_sample(x0, 1, noise)
    mean, var = s.q_posterior(x0, x1, 1)
    torch.testing.assert_close(mean, x0)
    assert float(var.max()) == 0.0


def test_q_sample_and_predict_x0_are_inverse(schedule):
    x0 = torch.rand(3, 3, 5, 5) * 2 - 1
    noise = torch.randn_like(x0)
    t = torch.tensor([1, 50, 90])  # at t = T, sqrt(abar) ~ 5e-4 amplifies float32 rounding
    x_t = schedule.q_sample(x0, t, noise)
    torch.testing.assert_close(schedule.predict_x0(x_t, t, noise), x0, atol=1e-4, rtol=1e-4)


def test_timestep_grid():
    assert timestep_grid(100, 100) == list(range(100, 0, -1))
    assert timestep_grid(100, 4) == [100, 67, 34, 1]
    assert timestep_grid(10, 50) == list(range(10, 0, -1))
    assert timestep_grid(7, 1) == [7]
    assert timestep_grid(0, 5) == []


def test_full_ddpm_is_algorithm_2(schedule):
    """With all T steps the respaced DDPM loop equals the textbook posterior-mean loop of Alg. 2."""
    torch.manual_seed(0)
    w = torch.randn(3, 3)

    def eps(x, t_index):  # any deterministic function of (x, t)
        return torch.einsum("ij,bjhw->bihw", w, x) * 0.1 + (t_index.float() / 100).reshape(-1, 1, 1, 1)

    x_T = torch.randn(1, 3, 4, 4)
    zs = [torch.randn(1, 3, 4, 4) for _ in range(101)]
    noise = lambda k, like: zs[k]  # noqa: E731
    ours = reverse_process(eps, schedule, x_T, 100, noise)
    x = x_T
    for k, t in enumerate(range(100, 0, -1)):
        e = eps(x, torch.tensor([t - 1]))
        x0 = schedule.predict_x0(x, t, e).clamp(-1, 1)
        mean, var = schedule.q_posterior(x0, x, t)
        x = mean + (var.sqrt() * zs[k + 1] if t > 1 else 0)
    torch.testing.assert_close(ours, x, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("steps,sampler", [(None, "ddpm"), (5, "ddpm"), (5, "ddim")])
def test_super_resolve_deterministic_under_seed(steps, sampler):
    model = tiny_model()
    s = NoiseSchedule.named("cosine", model.config.timesteps)
    x_lr = torch.rand(1, 3, 8, 8) * 2 - 1
    with torch.no_grad():
        a = super_resolve(model, s, x_lr, (16, 16), seeded_noise([3]), steps=steps, sampler=sampler)
        b = super_resolve(model, s, x_lr, (16, 16), seeded_noise([3]), steps=steps, sampler=sampler)
        c = super_resolve(model, s, x_lr, (16, 16), seeded_noise([4]), steps=steps, sampler=sampler)
    assert a.shape == (1, 3, 16, 16) and torch.equal(a, b)
    assert not torch.equal(a, c)
    assert float(a.min()) >= -1 and float(a.max()) <= 1


def test_batch_element_depends_only_on_its_seed():
    model = tiny_model()
    s = NoiseSchedule.named("cosine", model.config.timesteps)
    x_lr = torch.rand(1, 3, 8, 8) * 2 - 1
    with torch.no_grad():
        alone = super_resolve(model, s, x_lr, (16, 16), seeded_noise([7]), steps=4)
        batch = super_resolve(model, s, x_lr.expand(3, -1, -1, -1), (16, 16), seeded_noise([5, 7, 9]), steps=4)
    torch.testing.assert_close(batch[1:2], alone, atol=1e-5, rtol=1e-5)


def test_strength_start(schedule):
    assert start_step(schedule, 1.0) == 100
    assert start_step(schedule, 0.4) == 40
    assert start_step(schedule, 0.001) == 1
    with pytest.raises(ValueError):
        start_step(schedule, 0.0)
    with pytest.raises(ValueError):
        start_step(schedule, 1.5)


def test_reverse_process_rejects_t_out_of_range(schedule):
    with pytest.raises(ValueError, match="t must be in"):
        reverse_process(lambda x, t: x, schedule, torch.zeros(1, 3, 2, 2), 101, seeded_noise([0]))
    with pytest.raises(ValueError, match="t must be in"):
        reverse_process(lambda x, t: x, schedule, torch.zeros(1, 3, 2, 2), -1, seeded_noise([0]))


def test_training_loss_is_l1_of_noise_and_trains():
    """Alg. 1: a model that predicts the true noise has zero loss; a few Adam steps reduce it."""
    torch.manual_seed(0)
    model = tiny_model()
    s = NoiseSchedule.named("cosine", model.config.timesteps)
    x_lr = torch.rand(4, 3, 8, 8) * 2 - 1
    hr = torch.nn.functional.interpolate(x_lr, size=(16, 16), mode="nearest")
    with torch.no_grad():
        cond = Conditioned(model, x_lr, (16, 16))
    x_r = cond.to_residual(hr)
    gen = torch.Generator().manual_seed(0)
    opt = torch.optim.Adam(model.denoise_fn.parameters(), lr=3e-3)
    eps_fn = lambda x, t: model.denoise_fn(x, t, cond.cond_hr, cond.scale)  # noqa: E731
    losses = []
    for _ in range(30):
        loss = training_loss(eps_fn, s, x_r, gen)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss))
    assert np.mean(losses[-5:]) < np.mean(losses[:5])
    # exact noise prediction -> zero loss
    gen_a, gen_b = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    torch.randint(1, s.T + 1, (4,), generator=gen_b)  # the draws training_loss makes, in its order
    true_noise = torch.randn(x_r.shape, generator=gen_b)
    perfect = lambda x, t_idx: true_noise  # noqa: E731
    assert float(training_loss(perfect, s, x_r, gen_a)) == 0.0


def test_training_loss_draws_every_step_and_noises_by_eq_4():
    """t ~ U{1..T}: the network sees the 0-based indices 0..T-1, both ends included, and x_t is
    Eq. 4 of the drawn t (a predictor returning x_t's own noise component has zero loss)."""
    s = NoiseSchedule.named("cosine", 10)
    x_r = torch.rand(64, 3, 2, 2) * 2 - 1
    seen = []

    def probe(x_t, t_index):
        seen.extend(t_index.tolist())
        a = s.abar[t_index + 1].float().reshape(-1, 1, 1, 1)
        return (x_t - a.sqrt() * x_r) / (1 - a).sqrt()

    gen = torch.Generator().manual_seed(0)
    losses = [float(training_loss(probe, s, x_r, gen)) for _ in range(5)]
    assert set(seen) == set(range(10))
    assert max(losses) < 1e-5
