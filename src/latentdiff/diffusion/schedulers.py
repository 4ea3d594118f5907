"""The scheduler registry: the samplers a user picks by name (`--scheduler euler-a`).

Every entry is a diffusers scheduler class plus the config overrides that turn it into the sampler
users know from AUTOMATIC1111 / k-diffusion. A scheduler is always built *from the pipeline's own
scheduler config* (`scheduler/scheduler_config.json`, written at training time), so the noise schedule
(betas, `num_train_timesteps`) and `prediction_type` (epsilon or v_prediction) the U-Net was trained
with carry over; only the sampling algorithm changes. That is also what diffusers recommends:
`pipe.scheduler = EulerAncestralDiscreteScheduler.from_config(pipe.scheduler.config)`.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from typing import Any, Mapping

from diffusers import (
    DDIMScheduler,
    DDPMScheduler,
    DPMSolverMultistepScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    HeunDiscreteScheduler,
    LMSDiscreteScheduler,
    UniPCMultistepScheduler,
)
from diffusers.schedulers.scheduling_utils import SchedulerMixin

from latentdiff.errors import UserError
from latentdiff.generation_defaults import DEFAULT_SCHEDULER, SCHEDULER_NAMES


@dataclass(frozen=True)
class SchedulerSpec:
    cls: type[SchedulerMixin]
    overrides: Mapping[str, Any] = field(default_factory=dict)
    # the sampler's name in AUTOMATIC1111's infotext (`Sampler: Euler a`)
    a1111_name: str = ""
    # Python modules the diffusers class needs beyond diffusers' own requirements
    requires: tuple[str, ...] = ()


# name users type -> how to build it. A plain dict: grep it, extend it.
SCHEDULERS: dict[str, SchedulerSpec] = {
    "ddpm": SchedulerSpec(DDPMScheduler, {}, "DDPM"),
    "ddim": SchedulerSpec(DDIMScheduler, {}, "DDIM"),
    "euler": SchedulerSpec(EulerDiscreteScheduler, {}, "Euler"),
    "euler-a": SchedulerSpec(EulerAncestralDiscreteScheduler, {}, "Euler a"),
    "heun": SchedulerSpec(HeunDiscreteScheduler, {}, "Heun"),
    # DPM-Solver++(2M), Lu et al. 2022: the multistep second-order solver on the data prediction.
    "dpmpp-2m": SchedulerSpec(
        DPMSolverMultistepScheduler, {"algorithm_type": "dpmsolver++", "solver_order": 2}, "DPM++ 2M"
    ),
    # the same with the Karras et al. 2022 (EDM, eq. 5) sigma spacing
    "dpmpp-2m-karras": SchedulerSpec(
        DPMSolverMultistepScheduler,
        {"algorithm_type": "dpmsolver++", "solver_order": 2, "use_karras_sigmas": True},
        "DPM++ 2M Karras",
    ),
    "unipc": SchedulerSpec(UniPCMultistepScheduler, {}, "UniPC"),
    # diffusers integrates the LMS coefficients with scipy
    "lms": SchedulerSpec(LMSDiscreteScheduler, {}, "LMS", requires=("scipy",)),
}
assert tuple(SCHEDULERS) == SCHEDULER_NAMES, "generation_defaults.SCHEDULER_NAMES lists the registry's names in order"
assert DEFAULT_SCHEDULER in SCHEDULERS, "generation_defaults.DEFAULT_SCHEDULER must name a registered scheduler"

# AUTOMATIC1111 >= 1.9 writes the sigma spacing separately (`Sampler: DPM++ 2M, Schedule type: Karras`);
# older versions (and we) fold it into the sampler name. Parsing accepts both.
_KARRAS_SUFFIX = " Karras"


def check_scheduler_name(name: str) -> SchedulerSpec:
    """The spec for `name`, or a UserError listing the known names."""
    if name not in SCHEDULERS:
        raise UserError(f"Unknown scheduler '{name}'; choose one of: {', '.join(SCHEDULERS)}.", "scheduler")
    spec = SCHEDULERS[name]
    missing = [module for module in spec.requires if importlib.util.find_spec(module) is None]
    if missing:
        raise UserError(
            f"The '{name}' scheduler needs the Python package {', '.join(missing)}; install it "
            f"(pip install {' '.join(missing)}) or pick another scheduler.", "scheduler"
        )
    return spec


def make_scheduler(name: str, base_config: Mapping[str, Any]) -> SchedulerMixin:
    """Build scheduler `name` from a pipeline's scheduler config (keeps betas and prediction_type)."""
    spec = check_scheduler_name(name)
    return spec.cls.from_config(dict(base_config), **dict(spec.overrides))


def a1111_sampler_name(name: str) -> str:
    """`euler-a` -> `Euler a`, the name AUTOMATIC1111's infotext uses."""
    return SCHEDULERS[name].a1111_name if name in SCHEDULERS else name


def scheduler_from_a1111(sampler: str, schedule_type: str | None = None) -> str | None:
    """`Euler a` -> `euler-a`; also `DPM++ 2M` with `Schedule type: Karras`. None when unknown."""
    if schedule_type and schedule_type.lower() == "karras" and not sampler.endswith(_KARRAS_SUFFIX):
        sampler = sampler + _KARRAS_SUFFIX
    for name, spec in SCHEDULERS.items():
        if spec.a1111_name.lower() == sampler.strip().lower():
            return name
    return None
