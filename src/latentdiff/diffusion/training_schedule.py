"""The forward (noising) process used to train the U-Net, and the scheduler saved with the pipeline.

Both are diffusers schedulers built from one set of numbers, so the betas the U-Net learns are the betas
every sampler of `latentdiff.diffusion.schedulers` later reads from `scheduler/scheduler_config.json`.
The numbers are Stable Diffusion 1.x/2.x's (1000 steps, "scaled_linear" betas from 0.00085 to 0.012),
so an --init U-Net from a Stable Diffusion folder keeps the schedule it was trained on.

Zero terminal SNR (Lin et al. 2024, "Common Diffusion Noise Schedules and Sample Steps are Flawed"): SD's
betas leave SNR(T) ~ 0.0047 at the last step, so training never shows the U-Net pure noise, yet sampling
starts from it; the model then keeps the low-frequency content (mean colour, layout) of the noise, which is
why every prompt came out as a similar brown square. `rescale_betas_zero_snr` (their Algorithm 1) makes
SNR(T) = 0; it needs v-prediction (epsilon carries no information at SNR 0), and sampling must start at
t = T, hence `timestep_spacing="trailing"` (their Sec. 3.3) in the saved scheduler config, which every
sampler built from it by `latentdiff.diffusion.schedulers` inherits.
"""

from __future__ import annotations

from diffusers import DDIMScheduler, DDPMScheduler

PREDICTION_TYPES = ("epsilon", "v_prediction")
NUM_TRAIN_TIMESTEPS = 1000
BETA_SCHEDULE = "scaled_linear"
BETA_START = 0.00085
BETA_END = 0.012


def training_scheduler(prediction_type: str, zero_terminal_snr: bool = False) -> DDPMScheduler:
    """The DDPM forward process (Ho et al. 2020): `add_noise` gives x_t = sqrt(a_t) x_0 + sqrt(1-a_t) eps
    and `get_velocity` the v target (Salimans & Ho 2022); with `zero_terminal_snr`, x_T is pure noise."""
    if prediction_type not in PREDICTION_TYPES:
        raise ValueError(f"prediction_type must be one of {PREDICTION_TYPES}, not {prediction_type!r}")
    if zero_terminal_snr and prediction_type != "v_prediction":
        raise ValueError("zero terminal SNR needs prediction_type='v_prediction' (Lin et al. 2024, Sec. 3.2)")
    extra = {"rescale_betas_zero_snr": True, "timestep_spacing": "trailing"} if zero_terminal_snr else {}
    return DDPMScheduler(num_train_timesteps=NUM_TRAIN_TIMESTEPS, beta_schedule=BETA_SCHEDULE, beta_start=BETA_START,
                         beta_end=BETA_END, prediction_type=prediction_type, clip_sample=False, **extra)


def pipeline_scheduler(train_scheduler: DDPMScheduler) -> DDIMScheduler:
    """The scheduler written into the exported pipeline: DDIM (Song et al. 2021) over the training betas and
    prediction_type, so `StableDiffusionPipeline.from_pretrained(dir)()` gives good images in 20-50 steps
    with no other argument. `steps_offset=1, set_alpha_to_one=False` are Stable Diffusion's settings."""
    return DDIMScheduler.from_config(train_scheduler.config, clip_sample=False, set_alpha_to_one=False, steps_offset=1)
