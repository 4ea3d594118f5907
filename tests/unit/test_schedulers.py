"""The scheduler registry: every name builds, keeps the model's schedule, and makes an image."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch
from diffusers import DDPMScheduler

from latentdiff.diffusion.schedulers import SCHEDULERS, a1111_sampler_name, make_scheduler, scheduler_from_a1111
from latentdiff.errors import UserError


@pytest.mark.parametrize("name", list(SCHEDULERS))
def test_builds_from_the_training_config_and_keeps_it(name):
    base = DDPMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                         prediction_type="v_prediction", clip_sample=False).config
    scheduler = make_scheduler(name, base)
    assert scheduler.config.prediction_type == "v_prediction"
    # the noise schedule the U-Net was trained with, to the last digit: only the sampling algorithm changes
    trained = DDPMScheduler.from_config(base)
    assert torch.equal(scheduler.alphas_cumprod, trained.alphas_cumprod)
    scheduler.set_timesteps(10)
    assert len(scheduler.timesteps) >= 10


def test_karras_variant_really_differs():
    base = DDPMScheduler(beta_schedule="scaled_linear").config
    plain, karras = make_scheduler("dpmpp-2m", base), make_scheduler("dpmpp-2m-karras", base)
    plain.set_timesteps(10)
    karras.set_timesteps(10)
    assert not np.array_equal(plain.timesteps.numpy(), karras.timesteps.numpy())


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(UserError) as err:
        make_scheduler("euler_ancestral", DDPMScheduler().config)
    message = str(err.value)
    assert "euler_ancestral" in message and all(name in message for name in SCHEDULERS)


def test_lms_without_scipy_says_what_to_install(monkeypatch):
    # scipy is a dependency, but an install without it (pip --no-deps) must still get one sentence
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "scipy" else real_find_spec(name, *a))
    with pytest.raises(UserError, match="pip install scipy"):
        make_scheduler("lms", DDPMScheduler().config)


@pytest.mark.parametrize("name", list(SCHEDULERS))
def test_a1111_names_round_trip(name):
    assert scheduler_from_a1111(a1111_sampler_name(name)) == name


# `Sampler:` values as AUTOMATIC1111 writes them in its infotext (the names of its sampler list), also with
# >= 1.9's separate `Schedule type:`: what an image made there carries. A sampler we lack maps to None.
A1111_SAMPLERS = [("Euler a", None, "euler-a"), ("Euler", None, "euler"), ("LMS", None, "lms"), ("Heun", None, "heun"),
                  ("DPM++ 2M", None, "dpmpp-2m"), ("DPM++ 2M Karras", None, "dpmpp-2m-karras"),
                  ("DPM++ 2M", "Karras", "dpmpp-2m-karras"), ("DDIM", None, "ddim"), ("UniPC", None, "unipc"),
                  ("DPM++ SDE", None, None)]


@pytest.mark.parametrize("sampler, schedule_type, name", A1111_SAMPLERS)
def test_a1111_infotext_samplers_map_to_ours(sampler, schedule_type, name):
    assert scheduler_from_a1111(sampler, schedule_type) == name


# latents[0, :, -1, -1] after the last step of `test_every_scheduler_...` below, produced once by printing
# them with latentdiff's src at commit b8fa141 (torch 2.13 CPU, diffusers 0.42); the tiny pipeline is random
# but seeded (seed 0).
# ddim = euler: DDIM is Euler's method on the probability-flow ODE (Karras et al. 2022, sec. 3); ddpm and
# euler-a, the ancestral pair, agree the same way here.
FINAL_LATENTS = {
    "ddpm": [-1.409, -4.1779, -3.2943, -0.3212],
    "ddim": [1.5402, -3.7389, -3.543, -0.1469],
    "euler": [1.5402, -3.7389, -3.543, -0.1469],
    "euler-a": [-1.409, -4.1779, -3.2943, -0.3212],
    "heun": [1.6217, -3.5907, -3.2879, -0.154],
    "dpmpp-2m": [2.2165, -4.9574, -4.5765, -0.2277],
    "dpmpp-2m-karras": [7.3944, -17.9147, -17.117, -0.91],
    "unipc": [2.2245, -4.9379, -4.5283, -0.2196],
    "lms": [1.5562, -3.7143, -3.4988, -0.1472],
}


@pytest.fixture(scope="module")
def tiny_pipeline(tiny_pipeline_dir):
    from latentdiff.pipeline import TextToImage

    return TextToImage.load(str(tiny_pipeline_dir), "cpu")


@pytest.mark.parametrize("name", list(SCHEDULERS))
def test_every_scheduler_makes_an_image_of_the_requested_size(tiny_pipeline, name):
    from latentdiff.pipeline import GenerationRequest

    request = GenerationRequest(["a red circle"], seed=0, steps=3, scheduler=name, width=48, height=32)
    latents = []
    (result,) = tiny_pipeline.generate(request, progress_callback=lambda step, total, x, first: latents.append(x.clone()))
    assert result.image.size == (48, 32) and result.image.mode == "RGB"
    assert result.info.scheduler == name
    # the final latents (1, 4, 8, 12), as diffusers' tests pin a slice: a sampler built with other settings
    # (spacing, order, algorithm, Karras sigmas) moves them far past the tolerance
    assert latents[-1].shape == (1, 4, 8, 12)
    torch.testing.assert_close(latents[-1][0, :, -1, -1], torch.tensor(FINAL_LATENTS[name]), atol=1e-3, rtol=1e-3)
