"""The part of AUTOMATIC1111's web UI API (`/sdapi/v1`, modules/api/api.py) that txt2img clients use.

Response shapes follow A1111's pydantic models (modules/api/models.py): `TextToImageResponse`
(`images` base64 PNGs, `parameters` = the request with its defaults, `info` = a JSON *string* like
`Processed.js()`), `ProgressResponse`, `SamplerItem`, `SDModelItem`. The PNGs carry the same infotext
chunk as `latentdiff generate` writes (the engine makes them through latentdiff.infotext).
"""

from __future__ import annotations

import base64
import json
import time

from fastapi import APIRouter, Request

from latentdiff import __version__
from latentdiff.diffusion.schedulers import SCHEDULERS
from latentdiff.server.app import get_state
from latentdiff.server.jobs import CANCELLED, FAILED
from latentdiff.server.error_schema import GUARDS, error_responses
from latentdiff.server.errors import ApiError
from latentdiff.server.schemas import Txt2ImgRequest, usable_schedulers

router = APIRouter(prefix="/sdapi/v1", tags=["AUTOMATIC1111-compatible"], responses=error_responses(*GUARDS))

# latentdiff's setting names -> this API's, for error messages from the pipeline's own checks
A1111_FIELDS = {"guidance": "cfg_scale", "scheduler": "sampler_name", "num_images": "batch_size"}


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


@router.post("/txt2img", responses=error_responses(400, 422, 429, 500, 504))
async def txt2img(body: Txt2ImgRequest, request: Request) -> dict:
    state = get_state(request)
    params = body.to_params(state.engine.defaults)
    job = state.submit(params, A1111_FIELDS)
    await state.queue.wait_finished(job)
    if job.status == FAILED:
        raise ApiError(job.error_status, job.error or "generation failed")
    images = job.images
    seeds = [im.seed for im in images] or params.image_seeds()
    parameters = body.model_dump()
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
        "denoising_strength": None,
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


def _model_item(request: Request) -> dict:
    engine = get_state(request).engine
    name, short_hash = engine.model_name, engine.model_hash
    # `filename` is the model's name, not its path: the API does not reveal the server's file system
    return {"title": f"{name} [{short_hash}]" if short_hash else name, "model_name": name,
            "hash": short_hash or None, "sha256": None, "filename": name, "config": None}


@router.get("/sd-models")
def sd_models(request: Request) -> list[dict]:
    return [_model_item(request)]


@router.get("/options")
def options(request: Request) -> dict:
    """The options clients read. They are fixed while the server runs (one model, PNG with infotext)."""
    defaults = get_state(request).engine.defaults
    return {
        "sd_model_checkpoint": _model_item(request)["title"],
        "sd_checkpoint_hash": None,
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
