"""The diffusion objective: what the U-Net predicts (the target), how each timestep is weighted, and the
noise it is trained to remove. The noising itself is diffusers' (`DDPMScheduler.add_noise`/`get_velocity`).

- epsilon: predict the added noise (Ho et al. 2020).
- v_prediction: predict v = sqrt(a_t) eps - sqrt(1-a_t) x_0 (Salimans & Ho 2022), as Stable Diffusion 2.
- min-SNR-gamma (Hang et al. 2023, "Efficient Diffusion Training via Min-SNR Weighting Strategy", eq. 8):
  weight each timestep's MSE by min(SNR(t), gamma) / SNR(t) for epsilon targets and
  min(SNR(t), gamma) / (SNR(t) + 1) for v targets, so easy low-noise steps stop dominating the gradient.
- timestep sampling: uniform (DDPM), or logit-normal (Esser et al. 2024, "Scaling Rectified Flow
  Transformers", sec. 3.1), which spends more steps where its mean puts them.
- noise offset (Guttenberg 2023, "Diffusion with offset noise"): add offset * N(0, 1) per (sample, channel)
  to the noise, so the model can learn to change an image's mean brightness.
"""

from __future__ import annotations

import torch
from diffusers import DDPMScheduler
from diffusers.training_utils import compute_density_for_timestep_sampling, compute_snr


def sample_noise(latents: torch.Tensor, generator: torch.Generator, noise_offset: float = 0.0) -> torch.Tensor:
    """N(0, I) noise shaped like `latents` (B, C, h, w), plus the per-channel offset when asked. Drawn on
    the generator's device (CPU) then moved, so a seed gives the same noise on every device."""
    noise = torch.randn(latents.shape, generator=generator, device=generator.device, dtype=torch.float32)
    if noise_offset > 0:
        offset = torch.randn((latents.shape[0], latents.shape[1], 1, 1), generator=generator, device=generator.device)
        noise = noise + noise_offset * offset  # (B, C, 1, 1) broadcast over h, w
    return noise.to(latents.device, latents.dtype)


def perturb_noise(noise: torch.Tensor, generator: torch.Generator, input_perturbation: float) -> torch.Tensor:
    """The noise the U-Net's input is made with under input perturbation (Ning et al. 2023, as diffusers'
    train_text_to_image.py): noise + gamma * fresh N(0, I), (B, C, h, w); the target keeps `noise`, so the U-Net
    learns to undo inputs a little off the forward process, as the sampler's own inputs are. `noise` itself
    when gamma is 0 (no draw, so runs without it keep their random stream)."""
    if input_perturbation <= 0:
        return noise
    extra = torch.randn(noise.shape, generator=generator, device=generator.device, dtype=torch.float32)
    return noise + input_perturbation * extra.to(noise.device, noise.dtype)


def sample_timesteps(batch_size: int, scheduler: DDPMScheduler, generator: torch.Generator,
                     device: torch.device, sampling: str = "uniform", logit_mean: float = 0.0,
                     logit_std: float = 1.0) -> torch.Tensor:
    """Integer timesteps in [0, num_train_timesteps), (B,): uniform, or logit-normal as in SD3 (diffusers'
    density, the fraction u in (0, 1) mapped to the index floor(u * T), as its SD3 training script does)."""
    num_timesteps = scheduler.config.num_train_timesteps
    if sampling == "uniform":
        t = torch.randint(0, num_timesteps, (batch_size,), generator=generator, device=generator.device)
    else:
        u = compute_density_for_timestep_sampling(sampling, batch_size, logit_mean=logit_mean, logit_std=logit_std,
                                                  device=generator.device, generator=generator)  # (B,) in (0, 1)
        t = (u * num_timesteps).long().clamp(max=num_timesteps - 1)  # a float32 sigmoid can round to 1.0
    return t.to(device)


def diffusion_target(scheduler: DDPMScheduler, latents: torch.Tensor, noise: torch.Tensor,
                     timesteps: torch.Tensor) -> torch.Tensor:
    """What the U-Net must output for x_t = add_noise(latents, noise, t): the noise, or the velocity."""
    prediction_type = scheduler.config.prediction_type
    if prediction_type == "epsilon":
        return noise
    if prediction_type == "v_prediction":
        return scheduler.get_velocity(latents, noise, timesteps)
    raise ValueError(f"unsupported prediction_type {prediction_type!r}")


def min_snr_weights(scheduler: DDPMScheduler, timesteps: torch.Tensor, gamma: float) -> torch.Tensor:
    """Per-sample loss weights (B,) of min-SNR-gamma (Hang et al. 2023), for the scheduler's target."""
    snr = compute_snr(scheduler, timesteps)  # (B,) alpha_t^2 / sigma_t^2
    clipped = torch.clamp(snr, max=gamma)
    # The paper weights the x_0-space error by min(SNR, gamma). For the same x_0 error, an eps error is
    # SNR times larger and a v error (SNR + 1) times larger, hence the two divisors (as in diffusers'
    # train_text_to_image.py).
    if scheduler.config.prediction_type == "v_prediction":
        return clipped / (snr + 1)
    return clipped / snr


def diffusion_loss(prediction: torch.Tensor, target: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Mean squared error per sample over (C, h, w), optionally weighted per sample (B,), then averaged."""
    per_sample = (prediction.float() - target.float()).pow(2).mean(dim=tuple(range(1, prediction.ndim)))  # (B,)
    if weights is not None:
        per_sample = per_sample * weights.to(per_sample.dtype)
    return per_sample.mean()
