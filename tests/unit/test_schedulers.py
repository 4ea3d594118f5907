"""The scheduler registry: every name builds, keeps the model's schedule, and makes an image."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
from diffusers import DDPMScheduler

from latentdiff.diffusion.schedulers import SCHEDULERS, a1111_sampler_name, make_scheduler, scheduler_from_a1111
from latentdiff.errors import UserError


@pytest.mark.parametrize("name", list(SCHEDULERS))
def test_builds_from_the_training_config_and_keeps_it(name):
    base = DDPMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                         prediction_type="v_prediction", clip_sample=False).config
    scheduler = make_scheduler(name, base)
    assert isinstance(scheduler, SCHEDULERS[name].cls)
    assert scheduler.config.prediction_type == "v_prediction"
    assert scheduler.config.beta_schedule == "scaled_linear" and scheduler.config.beta_end == 0.012
    for key, value in SCHEDULERS[name].overrides.items():
        assert scheduler.config[key] == value
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
    assert a1111_sampler_name("euler-a") == "Euler a"


@pytest.fixture(scope="module")
def tiny_pipeline(tiny_pipeline_dir):
    from latentdiff.pipeline import TextToImage

    return TextToImage.load(str(tiny_pipeline_dir), "cpu")


@pytest.mark.parametrize("name", list(SCHEDULERS))
def test_every_scheduler_makes_an_image_of_the_requested_size(tiny_pipeline, name):
    from latentdiff.pipeline import GenerationRequest

    request = GenerationRequest(["a red circle"], seed=0, steps=2, scheduler=name, width=48, height=32)
    (result,) = tiny_pipeline.generate(request)
    assert result.image.size == (48, 32) and result.image.mode == "RGB"
    pixels = np.asarray(result.image)
    assert pixels.std() > 0  # not a blank image
    assert result.info.scheduler == name
