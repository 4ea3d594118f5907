"""Named limits: the one place for every bound a generation (CLI or server) and a server request is
checked against, and the serving defaults. No heavy imports: the CLI's config and the server read it.

A server request past any of them is refused with a 4xx naming the field, before it reaches the queue,
so one client cannot make the model allocate an unbounded batch or hold the worker for an hour.
"""

from __future__ import annotations

import secrets

from latentdiff.errors import UserError

# Image sides in pixels. The VAE downsamples by 2**k and the U-Net by 2**m more, so diffusers'
# StableDiffusionPipeline requires sides divisible by 8 (a VAE may need a larger multiple: pipeline.py).
MIN_IMAGE_SIDE = 8
IMAGE_SIDE_MULTIPLE = 8
MAX_IMAGE_SIDE = 4096  # `generate` on the user's own machine
MAX_REQUEST_IMAGE_SIDE = 1024  # a server request: keeps one 8-image batch within a GPU
# Under the default budget a server request's sides are at most this many times the model's native side: the
# budget counts U-Net work, which grows with the pixels, but attention memory grows with their square (one
# 1024x1024 request to a 64 px model reached 19.5 GB). --max-request-cost lifts it.
DEFAULT_MAX_SIDE_FACTOR = 4
MAX_NUM_IMAGES = 10_000  # images of one `generate` call

# Seeds live in AUTOMATIC1111's uint32 range (torch.Generator takes any int64), so every seed printed or
# written in a PNG can be typed back into either tool; image i of a request gets image_seed(seed, i).
MAX_SEED = 2**32 - 1

MAX_STEPS = 150  # denoising steps per image; A1111's UI slider stops at 150 too
MAX_GUIDANCE = 50.0  # classifier-free guidance scale
MAX_IMAGES_PER_REQUEST = 16  # batch_size * n_iter (A1111) or n (OpenAI)
MAX_PROMPT_CHARS = 4000  # prompt and negative prompt each; the tokenizer truncates far earlier

MAX_BODY_BYTES = 256 * 1024  # a txt2img request is < 2 KiB; this only stops abuse
# img2img and png-info carry a picture as base64: a 1024 px PNG is up to ~4 MiB, ~5.3 MiB in base64
IMAGE_BODY_PATHS = ("/sdapi/v1/img2img", "/sdapi/v1/png-info")
MAX_IMAGE_BODY_BYTES = 16 * 2**20
MAX_INIT_IMAGE_PIXELS = 4096 * 4096  # a sent picture is decoded before it is resized; bigger is refused
BODY_READ_TIMEOUT_S = 30.0  # a body must arrive within this (256 KiB at >= 9 KB/s); else 408 and close

# The compute one request may ask for, in megapixel-steps: width * height * U-Net evaluations per image
# (steps, ~2x for second-order samplers like Heun, 2x again with guidance > 1) * images / 1e6. The
# default scales with the model: 16 images of 50 guided steps at its native size (419 for a 512 px
# Stable Diffusion model, 6.6 for a 64 px one), so what a model is made for always fits and a request
# at 8x the native side, or 16 images of 150 guided Heun steps (6x the budget), does not.
DEFAULT_BUDGET_IMAGES = MAX_IMAGES_PER_REQUEST
DEFAULT_BUDGET_STEPS = 50
DEFAULT_BUDGET_UNET_CALLS_PER_STEP = 2  # the guided batch: conditional + unconditional
DEFAULT_MAX_JOB_SECONDS = 600.0  # a running batch is stopped after this (checked after every step)

DEFAULT_MAX_QUEUE = 64  # jobs waiting at once (running ones excluded); more -> 429
DEFAULT_MAX_BATCH_IMAGES = 8  # images the worker puts in one call to the model
FINISHED_JOBS_KEPT = 256  # finished jobs (with their PNGs) kept in memory for polling and download
FINISHED_IMAGE_BYTES_KEPT = 512 * 2**20  # ... and at most this many bytes of their PNGs (oldest go first)
MAX_EVENT_STREAM_SECONDS = 3600  # an SSE stream closes after this long even if its job never ends


def resolve_seed(seed: int | None) -> int:
    """The seed a request runs with: None or -1 draws one (A1111's "random"), else it must be a uint32."""
    if seed is None or seed == -1:
        return secrets.randbelow(MAX_SEED + 1)
    if not 0 <= seed <= MAX_SEED:
        raise UserError(f"--seed must be between 0 and {MAX_SEED}, or -1 for a random one (got {seed}).", "seed")
    return seed


def image_seed(seed: int, index: int) -> int:
    """The seed of the `index`-th image of a request seeded `seed` (wraps past MAX_SEED, as uint32 does)."""
    return (seed + index) % (MAX_SEED + 1)


def check_threads(requested: int | None) -> int | None:
    """`--threads` as given, refused below 1."""
    if requested is not None and requested < 1:
        raise UserError(f"--threads must be at least 1 (got {requested}); leave it out to use the free cores.",
                        field="threads")
    return requested
