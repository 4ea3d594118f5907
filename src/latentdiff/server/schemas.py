"""Request bodies of every API, validated by pydantic against `limits`, and their translation to a job.

Each API keeps its own field names (A1111's `cfg_scale`, OpenAI's `size: "WxH"`, the page's
`guidance`) but all of them end as one `JobParams`; the model defaults (size, steps, guidance,
scheduler) fill whatever a request leaves out, so every API gives the same image for the same settings.
"""

from __future__ import annotations

import base64
import binascii
import io
import re
import secrets
import dataclasses
from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field
from PIL import Image, UnidentifiedImageError

from latentdiff.diffusion.schedulers import SCHEDULERS, check_scheduler_name, scheduler_from_a1111
from latentdiff.errors import UserError
from latentdiff import limits
from latentdiff.server.errors import ApiError
from latentdiff.server.job_types import JobParams

Side = Annotated[int, Field(ge=limits.MIN_IMAGE_SIDE, le=limits.MAX_REQUEST_IMAGE_SIDE, multiple_of=limits.IMAGE_SIDE_MULTIPLE)]
Steps = Annotated[int, Field(ge=1, le=limits.MAX_STEPS)]
Guidance = Annotated[float, Field(ge=0.0, le=limits.MAX_GUIDANCE, allow_inf_nan=False)]
Seed = Annotated[int, Field(ge=-1, le=limits.MAX_SEED, description="-1 picks a random seed")]
Prompt = Annotated[str, Field(max_length=limits.MAX_PROMPT_CHARS)]
ImageCount = Annotated[int, Field(ge=1, le=limits.MAX_IMAGES_PER_REQUEST)]


@dataclass(frozen=True)
class ModelDefaults:
    """What the served model uses when a request leaves a setting out."""

    width: int
    height: int
    steps: int
    guidance: float
    scheduler: str


def usable_schedulers() -> dict[str, str]:
    """latentdiff name -> A1111 name of every scheduler whose Python requirements are installed
    (LMS needs scipy), the ones the APIs list."""
    usable = {}
    for name, spec in SCHEDULERS.items():
        try:
            check_scheduler_name(name)
        except UserError:
            continue
        usable[name] = spec.a1111_name
    return usable


def resolve_scheduler(name: str | None, default: str, field: str) -> str:
    """A latentdiff scheduler name from either spelling (`euler-a` or A1111's `Euler a`)."""
    if name is None or name == "":
        return default
    if name in SCHEDULERS:
        return name
    found = scheduler_from_a1111(name)
    if found is None:
        choices = ", ".join(f"'{spec.a1111_name}'" for spec in SCHEDULERS.values())
        raise ApiError(422, f"{field}: unknown sampler '{name}'; choose one of: {choices} "
                            f"(or latentdiff's names: {', '.join(SCHEDULERS)}).", field)
    return found


def resolve_seed(seed: int) -> int:
    return secrets.randbelow(limits.MAX_SEED + 1) if seed == -1 else seed


def check_total_images(count: int, field: str) -> None:
    if count > limits.MAX_IMAGES_PER_REQUEST:
        raise ApiError(422, f"{field}: {count} images asked for; at most {limits.MAX_IMAGES_PER_REQUEST} per "
                            f"request.", field)


# ---------------------------------------------------------------------------------------- the page's API
class GenerateRequest(BaseModel):
    """latentdiff's own request (the web page uses it); field names match `latentdiff generate`'s flags."""

    model_config = ConfigDict(extra="forbid")  # a typo in a field name is an error, not a silent default

    prompt: Prompt = Field(description="what to draw")
    negative_prompt: Prompt = ""
    steps: Steps | None = Field(None, description="denoising steps (default: the model's)")
    guidance: Guidance | None = Field(None, description="classifier-free guidance scale")
    seed: Seed = -1
    scheduler: str | None = Field(None, description="a latentdiff or A1111 sampler name", max_length=64)
    width: Side | None = None
    height: Side | None = None
    num_images: ImageCount = 1

    def to_params(self, d: ModelDefaults) -> JobParams:
        return JobParams(
            prompt=self.prompt, negative_prompt=self.negative_prompt, seed=resolve_seed(self.seed),
            steps=self.steps or d.steps, guidance=d.guidance if self.guidance is None else self.guidance,
            scheduler=resolve_scheduler(self.scheduler, d.scheduler, "scheduler"),
            width=self.width or d.width, height=self.height or d.height, num_images=self.num_images,
        )


# ---------------------------------------------------------------------------------------- AUTOMATIC1111
class Txt2ImgRequest(BaseModel):
    """AUTOMATIC1111's `StableDiffusionProcessingTxt2Img` body, the fields a text-to-image client sets.

    A1111 accepts dozens more (restore_faces, styles, override_settings, scripts...); clients send them
    with their defaults, so unknown fields are ignored rather than refused.
    """

    model_config = ConfigDict(extra="ignore")

    prompt: Prompt = ""
    negative_prompt: Prompt = ""
    seed: Seed = -1
    steps: Steps | None = None
    cfg_scale: Guidance | None = None
    width: Side | None = None
    height: Side | None = None
    batch_size: ImageCount = 1
    n_iter: ImageCount = 1
    sampler_name: str | None = Field(None, max_length=64)
    sampler_index: str | None = Field(None, max_length=64, description="older clients' name for sampler_name")
    send_images: bool = True

    def to_params(self, d: ModelDefaults) -> JobParams:
        check_total_images(self.batch_size * self.n_iter, "batch_size")
        field = "sampler_name" if self.sampler_name else "sampler_index"
        return JobParams(
            prompt=self.prompt, negative_prompt=self.negative_prompt, seed=resolve_seed(self.seed),
            steps=self.steps or d.steps, guidance=d.guidance if self.cfg_scale is None else self.cfg_scale,
            scheduler=resolve_scheduler(self.sampler_name or self.sampler_index, d.scheduler, field),
            width=self.width or d.width, height=self.height or d.height,
            num_images=self.batch_size * self.n_iter,
        )


_DATA_URL = re.compile(r"^data:[\w/+.-]*(;[\w=-]+)*;base64,")


def decode_picture(text: str, field: str) -> bytes:
    """The file bytes of a base64 picture (plain or a `data:image/png;base64,` URL, as webuiapi sends),
    checked to be an image Pillow reads and not past limits.MAX_INIT_IMAGE_PIXELS; else 422 naming `field`."""
    try:
        data = base64.b64decode(_DATA_URL.sub("", text.strip(), count=1), validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(422, f"{field}: not base64; send the picture's PNG or JPEG bytes in base64.", field) from None
    try:
        with Image.open(io.BytesIO(data)) as picture:
            width, height = picture.size
            if width * height > limits.MAX_INIT_IMAGE_PIXELS:
                raise ApiError(422, f"{field}: the picture is {width}x{height} pixels, over the limit of "
                                    f"{limits.MAX_INIT_IMAGE_PIXELS} pixels; send a smaller one.", field)
            picture.load()
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError, ValueError, SyntaxError, EOFError):
        # Pillow's parsers raise ValueError or SyntaxError on damaged headers (a PPM size "1Z", a short IHDR)
        raise ApiError(422, f"{field}: not a picture Pillow can read; send a PNG or JPEG in base64.", field) from None
    return data


class Img2ImgRequest(Txt2ImgRequest):
    """AUTOMATIC1111's `StableDiffusionProcessingImg2Img` body: txt2img's fields plus the picture to start
    from and how far it is noised. Masks, resize modes and scripts are not supported and ignored; the
    picture is resized to width x height (A1111's resize_mode 0, "Just resize")."""

    init_images: list[Annotated[str, Field(max_length=limits.MAX_IMAGE_BODY_BYTES)]] = Field(
        min_length=1, max_length=1, description="one base64 picture (PNG, JPEG...), optionally a data: URL")
    denoising_strength: Annotated[float, Field(gt=0.0, le=1.0, allow_inf_nan=False)] = Field(
        0.75, description="how far the picture is noised: near 0 keeps it, 1 ignores its content")

    def to_params(self, d: ModelDefaults) -> JobParams:
        return dataclasses.replace(super().to_params(d), init_image=decode_picture(self.init_images[0], "init_images"),
                                   denoising_strength=self.denoising_strength)


class PngInfoRequest(BaseModel):
    image: Annotated[str, Field(max_length=limits.MAX_IMAGE_BODY_BYTES, description="a base64 PNG")]


# ---------------------------------------------------------------------------------------- OpenAI
_SIZE = re.compile(r"^(\d{1,5})x(\d{1,5})$")


class ImagesGenerationRequest(BaseModel):
    """OpenAI's `POST /v1/images/generations` body. `model`, `quality`, `style`, `user`... are accepted
    and ignored (there is one model); `size` is any `WxH` within the limits, or `auto`."""

    model_config = ConfigDict(extra="ignore")

    prompt: Annotated[str, Field(min_length=1, max_length=limits.MAX_PROMPT_CHARS)]
    n: ImageCount = 1
    size: str | None = Field(None, max_length=16, description="'WxH' in pixels, e.g. '64x64', or 'auto'")
    response_format: Literal["b64_json", "url"] = "b64_json"
    model: str | None = Field(None, max_length=256)

    def to_params(self, d: ModelDefaults) -> JobParams:
        width, height = d.width, d.height
        if self.size not in (None, "", "auto"):
            match = _SIZE.match(self.size)
            if not match:
                raise ApiError(400, f"size: '{self.size}' is not 'WxH' (e.g. '{d.width}x{d.height}').", "size")
            width, height = int(match.group(1)), int(match.group(2))
            for side in (width, height):
                if not (limits.MIN_IMAGE_SIDE <= side <= limits.MAX_REQUEST_IMAGE_SIDE) or side % limits.IMAGE_SIDE_MULTIPLE:
                    raise ApiError(400, f"size: each side must be a multiple of {limits.IMAGE_SIDE_MULTIPLE} "
                                        f"between {limits.MIN_IMAGE_SIDE} and {limits.MAX_REQUEST_IMAGE_SIDE}; got "
                                        f"'{self.size}'.", "size")
        return JobParams(prompt=self.prompt, negative_prompt="", seed=resolve_seed(-1), steps=d.steps,
                         guidance=d.guidance, scheduler=d.scheduler, width=width, height=height, num_images=self.n)
