"""Classifier-free guidance applied in a limited interval of timesteps (Kynkäänniemi et al. 2024, "Applying
Guidance in a Limited Interval Improves Sample and Distribution Quality in Diffusion Models"), set on every
text-to-image call of the process, to measure whether the training emoji are drawn closer when the prompt is
pushed only where the drawing's layout forms (high noise) and left alone where detail is added. latentdiff has no
such option; this asks the question before adding one.

    python benchmarks/speedrun.py --measure PIPELINE --guidance 3 --guidance-interval 500,999 [--guidance-outside 1]

Inside [T_LOW, T_HIGH] (timesteps of the 1000-step training schedule, inclusive) the scale is `--guidance`,
outside it `--guidance-outside`. diffusers' pipeline reads its scale every step (`_guidance_scale`), so a
`callback_on_step_end` sets the next step's, as diffusers' documented dynamic-guidance callback does. A scale of
1 would also switch off the batched unconditional pass mid-loop (`do_classifier_free_guidance`) while the prompt
embeddings stay doubled, so "off" is a scale a hair above 1: the same prediction as no guidance.
"""

from __future__ import annotations

import functools

GUIDANCE_OFF = 1.0 + 1e-6  # > 1 keeps diffusers' doubled batch; the guided prediction equals the conditional one


def guidance_at(timestep: float, inside: float, outside: float, t_low: float, t_high: float) -> float:
    scale = inside if t_low <= timestep <= t_high else outside
    return max(scale, GUIDANCE_OFF)


def guide_in_interval_every_call(t_low: float, t_high: float, outside: float) -> None:
    """Make every text-to-image call of this process guide with its own scale only for timesteps in
    [t_low, t_high], and with `outside` elsewhere."""
    from diffusers import StableDiffusionPipeline

    original = StableDiffusionPipeline.__call__

    @functools.wraps(original)
    def interval_guided(self, *args, **kwargs):
        inside = kwargs["guidance_scale"]
        given_callback = kwargs.get("callback_on_step_end")
        # the first step's timestep: the pipeline sets the same schedule again (text-to-image: no strength)
        self.scheduler.set_timesteps(kwargs.get("num_inference_steps", 50))
        first_timestep = float(self.scheduler.timesteps[0])
        kwargs["guidance_scale"] = guidance_at(first_timestep, inside, outside, t_low, t_high)

        def set_next_scale(pipe, step_index: int, timestep, tensors: dict) -> dict:
            result = given_callback(pipe, step_index, timestep, tensors) if given_callback else {}
            timesteps = pipe.scheduler.timesteps
            if step_index + 1 < len(timesteps):
                pipe._guidance_scale = guidance_at(float(timesteps[step_index + 1]), inside, outside, t_low, t_high)
            return result

        kwargs["callback_on_step_end"] = set_next_scale
        return original(self, *args, **kwargs)

    StableDiffusionPipeline.__call__ = interval_guided  # every backend runs diffusers' own loop (pipeline.py)
