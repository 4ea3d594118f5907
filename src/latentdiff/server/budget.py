"""The compute budget of one request: what it costs the worker, and the 413 past the server's limit.

Cost is in megapixel-steps: width * height * U-Net evaluations per image * images / 1e6. U-Net
evaluations count what the worker really runs: the sampler's timesteps for the asked steps (Heun, a
second-order sampler, evaluates twice per step but once at the last: 2 * steps - 1), doubled when
guidance > 1 (classifier-free guidance runs the conditional and unconditional batch together).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from latentdiff import limits
from latentdiff.server.errors import ApiError

MEGA = 1e6


@dataclass(frozen=True)
class RequestCost:
    width: int
    height: int
    unet_calls_per_image: int
    images: int

    @property
    def per_image(self) -> float:
        """Megapixel-steps of one image."""
        return self.width * self.height * self.unet_calls_per_image / MEGA

    @property
    def total(self) -> float:
        return self.per_image * self.images


def default_max_cost(native_width: int, native_height: int) -> float:
    """The default budget (limits.py): 16 images of 50 guided steps at the model's native size."""
    return RequestCost(native_width, native_height, limits.DEFAULT_BUDGET_STEPS
                       * limits.DEFAULT_BUDGET_UNET_CALLS_PER_STEP, limits.DEFAULT_BUDGET_IMAGES).total


def check_cost(cost: RequestCost, max_cost: float, field_names: dict[str, str] | None = None) -> None:
    """413 with one sentence naming the limit and what to ask for instead, when `cost` is over it."""
    if cost.total <= max_cost:
        return
    images_field = (field_names or {}).get("num_images", "num_images")
    fits = math.floor(max_cost / cost.per_image)
    if fits >= 1:
        advice = f"ask for at most {fits} images ({images_field}), or fewer steps or a smaller size"
    else:
        advice = "ask for fewer steps or a smaller size"
    raise ApiError(413, f"This request costs {cost.total:.1f} megapixel-steps ({cost.width}x{cost.height} pixels x "
                        f"{cost.unet_calls_per_image} U-Net evaluations per image x {cost.images} images), over this "
                        f"server's limit of {max_cost:.1f} (--max-request-cost); {advice}.", images_field)


def largest_size(native_width: int, native_height: int) -> tuple[int, int]:
    """(width, height) past which the default budget refuses a request: limits.DEFAULT_MAX_SIDE_FACTOR times the
    model's native sides (a bound on memory, which the megapixel-step cost does not see), within the server's cap."""
    return (min(limits.MAX_REQUEST_IMAGE_SIDE, native_width * limits.DEFAULT_MAX_SIDE_FACTOR),
            min(limits.MAX_REQUEST_IMAGE_SIDE, native_height * limits.DEFAULT_MAX_SIDE_FACTOR))


def check_side(width: int, height: int, native_width: int, native_height: int) -> None:
    """413 when a side is past `largest_size` of the model."""
    largest = largest_size(native_width, native_height)
    if width <= largest[0] and height <= largest[1]:
        return
    raise ApiError(413, f"{width}x{height} is past this server's largest size, {largest[0]}x{largest[1]} "
                        f"({limits.DEFAULT_MAX_SIDE_FACTOR} times the model's native {native_width}x{native_height}: "
                        f"memory grows with the square of the pixels); ask for a smaller size, or start the server "
                        f"with --max-request-cost to lift this.", "width")
