"""The diffusion objective: targets for each prediction type, min-SNR-gamma weights, noise offset, input
perturbation, timestep sampling."""

from __future__ import annotations

import pytest
import torch

from latentdiff.diffusion.training_schedule import pipeline_scheduler, training_scheduler
from latentdiff.losses.diffusion import (diffusion_loss, diffusion_target, min_snr_weights, perturb_noise, sample_noise,
                                        sample_timesteps)


def _batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    latents = torch.randn(4, 4, 8, 8, generator=g)
    noise = torch.randn(4, 4, 8, 8, generator=g)
    timesteps = torch.tensor([0, 250, 600, 999])
    return latents, noise, timesteps


def test_epsilon_target_is_the_noise():
    sched = training_scheduler("epsilon")
    latents, noise, t = _batch()
    assert torch.equal(diffusion_target(sched, latents, noise, t), noise)


def test_v_target_is_alpha_eps_minus_sigma_x0():
    sched = training_scheduler("v_prediction")
    latents, noise, t = _batch()
    a = sched.alphas_cumprod[t].view(-1, 1, 1, 1)
    expected = a.sqrt() * noise - (1 - a).sqrt() * latents  # Salimans & Ho 2022, eq. for v
    torch.testing.assert_close(diffusion_target(sched, latents, noise, t), expected)
    # at the noisiest step sqrt(a) ~ 0.07, so v is dominated by -x0
    last = diffusion_target(sched, latents, noise, t)[3]
    assert torch.nn.functional.cosine_similarity(last.flatten(), -latents[3].flatten(), dim=0) > 0.99


def test_min_snr_weights_clip_only_the_easy_steps():
    gamma = 5.0
    eps = training_scheduler("epsilon")
    t = torch.tensor([0, 50, 500, 999])
    snr = eps.alphas_cumprod[t] / (1 - eps.alphas_cumprod[t])
    w = min_snr_weights(eps, t, gamma)
    assert snr[0] > gamma and snr[-1] < gamma  # the test spans both regimes
    torch.testing.assert_close(w[0], gamma / snr[0])  # low noise: down-weighted to gamma / SNR
    assert w[0] < 0.01
    torch.testing.assert_close(w[-1], torch.tensor(1.0))  # high noise (SNR < gamma): untouched
    assert torch.all(w[:-1] <= 1) and torch.all(torch.diff(w) >= 0)  # monotone in t


def test_min_snr_weights_for_v_prediction():
    gamma = 5.0
    v = training_scheduler("v_prediction")
    t = torch.tensor([0, 999])
    snr = v.alphas_cumprod[t] / (1 - v.alphas_cumprod[t])
    w = min_snr_weights(v, t, gamma)
    torch.testing.assert_close(w, torch.minimum(snr, torch.tensor(gamma)) / (snr + 1))
    assert w[0] < 0.01 and w[1] < 1


def test_weighted_loss_uses_the_weights():
    pred, target = torch.zeros(2, 4, 8, 8), torch.ones(2, 4, 8, 8)
    pred[1] = 3.0  # sample 1 error 4 per element
    assert float(diffusion_loss(pred, target)) == pytest.approx(2.5)
    assert float(diffusion_loss(pred, target, torch.tensor([1.0, 0.0]))) == pytest.approx(0.5)


def test_noise_offset_shifts_whole_channels_and_is_seeded():
    latents = torch.zeros(256, 4, 8, 8)
    plain = sample_noise(latents, torch.Generator().manual_seed(0))
    again = sample_noise(latents, torch.Generator().manual_seed(0))
    offset = sample_noise(latents, torch.Generator().manual_seed(0), noise_offset=0.5)
    assert torch.equal(plain, again)
    # per-(sample, channel) means: ~N(0, 1/64) without offset, ~N(0, 1/64 + 0.25) with it
    assert plain.mean(dim=(2, 3)).std() < 0.2
    assert offset.mean(dim=(2, 3)).std() > 0.4


def test_input_perturbation_moves_the_input_noise_by_its_std_and_is_off_at_zero():
    _, noise, _ = _batch()
    g = torch.Generator().manual_seed(1)
    assert perturb_noise(noise, g, 0.0) is noise
    assert torch.equal(torch.randn(3, generator=g), torch.randn(3, generator=torch.Generator().manual_seed(1)))  # no draw
    perturbed = perturb_noise(noise, torch.Generator().manual_seed(1), 0.1)
    assert float((perturbed - noise).std()) == pytest.approx(0.1, rel=0.15)


def test_uniform_timesteps_are_the_draws_of_earlier_runs():
    """The default draws exactly what it always drew, so older runs resume and reproduce unchanged."""
    scheduler = training_scheduler("v_prediction")
    drawn = sample_timesteps(64, scheduler, torch.Generator().manual_seed(5), torch.device("cpu"))
    assert torch.equal(drawn, torch.randint(0, 1000, (64,), generator=torch.Generator().manual_seed(5)))


def test_logit_normal_timesteps_lean_where_the_mean_puts_them():
    scheduler = training_scheduler("v_prediction")

    def draw(mean, seed=0):
        return sample_timesteps(4096, scheduler, torch.Generator().manual_seed(seed), torch.device("cpu"),
                                "logit_normal", logit_mean=mean, logit_std=1.0)

    centred, high = draw(0.0), draw(1.0)
    assert centred.dtype == torch.int64 and 0 <= int(centred.min()) and int(high.max()) <= 999
    assert torch.equal(high, draw(1.0))  # seeded
    # sigmoid(N(0, 1)) has median 1/2; sigmoid(N(1, 1)) has median sigmoid(1) = 0.73
    assert abs(float(centred.float().median()) - 500) < 30
    assert abs(float(high.float().median()) - 731) < 30
    assert float((high >= 900).float().mean()) > 2 * float((centred >= 900).float().mean())


def test_pipeline_scheduler_keeps_betas_and_prediction_type():
    train = training_scheduler("v_prediction")
    sampler = pipeline_scheduler(train)
    assert sampler.config.prediction_type == "v_prediction"
    torch.testing.assert_close(sampler.alphas_cumprod, train.alphas_cumprod)
    with pytest.raises(ValueError):
        training_scheduler("sample")
