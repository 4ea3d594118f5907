"""The part of AUTOMATIC1111's web UI API (`/sdapi/v1`, modules/api/api.py) that txt2img clients use.

Response shapes follow A1111's pydantic models (modules/api/models.py): `TextToImageResponse`
(`images` base64 PNGs, `parameters` = the request with its defaults, `info` = a JSON *string* like
`Processed.js()`), `ProgressResponse`, `SamplerItem`, `SDModelItem`. The PNGs carry the same infotext
chunk as `latentdiff generate` writes (the engine makes them through latentdiff.infotext).
"""

from __future__ import annotations

import base64
import io
import json
import time
from typing import Any

from fastapi import APIRouter, Body, Request
from PIL import Image

from latentdiff import __version__
from latentdiff.diffusion.schedulers import SCHEDULERS
from latentdiff.server.state import get_state
from latentdiff.server.job_types import CANCELLED, FAILED
from latentdiff.server.error_schema import GUARDS, error_responses
from latentdiff.server.errors import ApiError
from latentdiff.infotext import parse_infotext_fields
from latentdiff.server.models import ServedModel
from latentdiff.server.schemas import Img2ImgRequest, PngInfoRequest, Txt2ImgRequest, decode_picture, usable_schedulers

router = APIRouter(prefix="/sdapi/v1", tags=["AUTOMATIC1111-compatible"], responses=error_responses(*GUARDS))

# latentdiff's setting names -> this API's, for error messages from the pipeline's own checks
A1111_FIELDS = {"guidance": "cfg_scale", "scheduler": "sampler_name", "num_images": "batch_size",
                "strength": "denoising_strength"}


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


@router.post("/txt2img", responses=error_responses(400, 409, 422, 429, 500, 504))
async def txt2img(body: Txt2ImgRequest, request: Request) -> dict:
    return await _generate(body, request)


@router.post("/img2img", responses=error_responses(400, 409, 413, 422, 429, 500, 504))
async def img2img(body: Img2ImgRequest, request: Request) -> dict:
    """txt2img from a picture (`init_images[0]`, resized to width x height) noised by `denoising_strength`,
    on diffusers' StableDiffusionImg2ImgPipeline over the loaded model; the same checks and budget."""
    return await _generate(body, request)


async def _generate(body: Txt2ImgRequest, request: Request) -> dict:
    state = get_state(request)
    params = body.to_params(state.engine.defaults)
    job = state.submit(params, A1111_FIELDS)
    params = job.params
    await state.queue.wait_finished(job)
    if job.status == FAILED:
        raise ApiError(job.error_status, job.error or "generation failed")
    images = job.images
    seeds = [im.seed for im in images] or params.image_seeds()
    parameters = body.model_dump(exclude={"init_images"})  # A1111 does not echo the pictures back either
    parameters.update(seed=params.seed, steps=params.steps, cfg_scale=params.guidance, width=params.width,
                      height=params.height, sampler_name=SCHEDULERS[params.scheduler].a1111_name)
    info = {
        "prompt": params.prompt,
        "all_prompts": [params.prompt] * len(seeds),
        "negative_prompt": params.negative_prompt,
        "all_negative_prompts": [params.negative_prompt] * len(seeds),
        "seed": params.seed,
        "all_seeds": seeds,
        "subseed": -1,
        "all_subseeds": [-1] * len(seeds),
        "subseed_strength": 0,
        "width": params.width,
        "height": params.height,
        "sampler_name": SCHEDULERS[params.scheduler].a1111_name,
        "cfg_scale": params.guidance,
        "steps": params.steps,
        "batch_size": body.batch_size,
        "n_iter": body.n_iter,
        "restore_faces": False,
        "sd_model_name": state.engine.model_name,
        "sd_model_hash": state.engine.model_hash,
        "seed_resize_from_w": -1,
        "seed_resize_from_h": -1,
        "denoising_strength": params.denoising_strength,
        "extra_generation_params": {},
        "index_of_first_image": 0,
        "infotexts": [im.infotext for im in images],
        "styles": [],
        "job_timestamp": time.strftime("%Y%m%d%H%M%S", time.localtime(job.created_at)),
        "clip_skip": 1,
        "is_using_inpainting_conditioning": False,
        "version": f"latentdiff {__version__}",
        "job_id": job.id,
        "interrupted": job.status == CANCELLED,
    }
    return {
        "images": [_b64(im.png) for im in images] if body.send_images else [],
        "parameters": parameters,
        "info": json.dumps(info),
    }


@router.get("/progress", responses=error_responses(422))
def progress(request: Request, skip_current_image: bool = False) -> dict:
    """A1111's ProgressResponse for the batch running now (`progress` 0..1 over its steps)."""
    snap = get_state(request).queue.snapshot()
    running = bool(snap["running"])
    step, total = snap["step"], snap["total_steps"]
    fraction = step / total if running and total else 0.0
    eta = 0.0
    if running and fraction > 0 and snap["started_at"]:
        elapsed = time.time() - snap["started_at"]
        eta = elapsed / fraction - elapsed
    current = snap["preview_png"] if running and not skip_current_image else None
    return {
        "progress": fraction,
        "eta_relative": eta,
        "state": {
            "skipped": False,
            "interrupted": snap["interrupted"],
            "job": snap["running"][0] if running else "",
            "job_count": len(snap["running"]) + snap["waiting"],
            "job_timestamp": time.strftime("%Y%m%d%H%M%S", time.localtime(snap["started_at"])) if running else "0",
            "job_no": 0,
            "sampling_step": step if running else 0,
            "sampling_steps": total if running else 0,
        },
        "current_image": _b64(current) if current else None,
        "textinfo": f"{snap['waiting']} waiting" if snap["waiting"] else None,
    }


@router.post("/interrupt")
def interrupt(request: Request) -> dict:
    """Stop the batch running now (its jobs end `cancelled`); waiting jobs still run."""
    get_state(request).queue.interrupt()
    return {}


@router.get("/samplers")
def samplers() -> list[dict]:
    return [{"name": a1111_name, "aliases": [name], "options": dict(SCHEDULERS[name].overrides)}
            for name, a1111_name in usable_schedulers().items()]


def _model_item(model: ServedModel) -> dict:
    # `filename` is the model's name, not its path: the API does not reveal the server's file system
    return {"title": model.title, "model_name": model.name, "hash": model.short_hash, "sha256": model.sha256,
            "filename": model.name, "config": None}


@router.get("/sd-models")
def sd_models(request: Request) -> list[dict]:
    """The loaded model and every other one this server offers (`serve --models-dir`)."""
    return [_model_item(model) for model in get_state(request).models]


@router.post("/refresh-checkpoints")
def refresh_checkpoints(request: Request) -> None:
    """Look for new pipeline folders in --models-dir (A1111's button next to the model picker)."""
    get_state(request).refresh_models()


@router.get("/options")
def options(request: Request) -> dict:
    """The options clients read; of these only `sd_model_checkpoint` can be changed (POST)."""
    state = get_state(request)
    defaults = state.engine.defaults
    current = state.current_model
    return {
        "sd_model_checkpoint": current.title,
        "sd_checkpoint_hash": current.sha256,
        "samples_format": "png",
        "enable_pnginfo": True,
        "save_images_add_number": False,
        "CLIP_stop_at_last_layers": 1,
        "eta_noise_seed_delta": 0,
        "sd_vae": "Automatic",
        "latentdiff_defaults": {"width": defaults.width, "height": defaults.height, "steps": defaults.steps,
                                "cfg_scale": defaults.guidance,
                                "sampler_name": SCHEDULERS[defaults.scheduler].a1111_name},
    }


@router.post("/options", responses=error_responses(400, 404, 409, 422, 500, 503))
def set_options(request: Request, body: dict[str, Any] = Body(..., examples=[{"sd_model_checkpoint": "shapes"}])) -> None:
    """`sd_model_checkpoint` (a title, name or hash from /sd-models) loads that model, after the jobs
    already queued, and answers once it is loaded (as A1111 does). Other options are fixed and ignored.
    A plain function: FastAPI runs it in a thread, so the wait does not block the server."""
    wanted = body.get("sd_model_checkpoint")
    if wanted is not None:
        if not isinstance(wanted, str):
            raise ApiError(422, "sd_model_checkpoint: give a model's title or name as text.", "sd_model_checkpoint")
        get_state(request).switch_model(wanted)


@router.post("/png-info", responses=error_responses(400, 413, 422))
def png_info(body: PngInfoRequest) -> dict:
    """The generation parameters in a PNG (A1111's PNGInfoResponse): `info` the infotext, `items` every
    other text chunk, `parameters` the infotext read into fields."""
    with Image.open(io.BytesIO(decode_picture(body.image, "image"))) as picture:
        chunks = {k: v for k, v in picture.info.items() if isinstance(k, str) and isinstance(v, str)}
    info = chunks.pop("parameters", "")
    return {"info": info, "items": chunks, "parameters": parse_infotext_fields(info) if info else {}}
