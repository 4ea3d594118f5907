"""latentdiff's own job API, used by the page at `/`: submit, follow (SSE), cancel, fetch images.

    POST /api/jobs                 -> 202 {id, status, queue_position, ...}
    GET  /api/jobs/{id}            -> the job's state, parameters and image list
    GET  /api/jobs/{id}/events     -> text/event-stream: `progress` events (with a preview of each image
                                      being denoised), then one `done`, `failed` or `cancelled` event
    GET  /api/history              -> the finished jobs the server still keeps, newest first (the page
                                      shows them after a reload)
    POST /api/jobs/{id}/cancel     -> the job's state
    GET  /api/jobs/{id}/images/{i} -> image/png with the infotext chunk (`?download=1`: as attachment)
    GET  /api/info                 -> model, defaults, samplers, limits, queue counters
"""

from __future__ import annotations

import base64
import json
import time
from dataclasses import asdict

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from latentdiff import limits
from latentdiff.server.budget import largest_size
from latentdiff.server.state import get_state
from latentdiff.server.error_schema import GUARDS, error_responses
from latentdiff.server.errors import ApiError
from latentdiff.server.job_types import DONE, Job
from latentdiff.server.schemas import GenerateRequest, usable_schedulers

router = APIRouter(prefix="/api", tags=["latentdiff"], responses=error_responses(*GUARDS))
JOB_ERRORS = error_responses(404, 422)  # no such job; a malformed path or query

KEEPALIVE_S = 15.0  # an SSE comment this often keeps proxies from closing an idle stream
HISTORY_DEFAULT_JOBS = 50  # jobs /api/history lists unless asked for more (at most FINISHED_JOBS_KEPT)


def _job_or_404(request: Request, job_id: str) -> Job:
    job = get_state(request).queue.get(job_id)
    if job is None:
        raise ApiError(404, f"No job '{job_id[:64]}': it never existed or was dropped from the history of the "
                            f"last {limits.FINISHED_JOBS_KEPT} finished jobs.", "job_id")
    return job


def seconds_left(job: Job, now_s: float) -> float | None:
    """Time left for a running job, from its pace so far (each step costs about the same); None until
    the first step is done, 0 once finished."""
    if job.finished:
        return 0.0
    if job.started_at is None or job.step < 1 or not job.total_steps:
        return None
    elapsed_s = max(now_s - job.started_at, 0.0)
    return elapsed_s / job.step * max(job.total_steps - job.step, 0)


def job_view(request: Request, job: Job) -> dict:
    view = job.summary()
    view["queue_position"] = get_state(request).queue.queue_position(job)
    view["seconds_left"] = seconds_left(job, time.time())
    for image in view["images"]:
        image["url"] = f"/api/jobs/{job.id}/images/{image['index']}"
    view["events_url"] = f"/api/jobs/{job.id}/events"
    return view


@router.get("/info")
def info(request: Request) -> dict:
    state = get_state(request)
    snapshot = state.queue.snapshot()
    snapshot.pop("preview_png", None)
    return {
        "model": {"name": state.engine.model_name, "hash": state.engine.model_hash},
        "defaults": asdict(state.engine.defaults),
        "schedulers": [{"name": name, "a1111_name": a1111_name} for name, a1111_name in usable_schedulers().items()],
        "limits": {
            "min_image_side": max(limits.MIN_IMAGE_SIDE, state.engine.min_size),
            "max_image_side": max(largest_size(state.engine.defaults.width, state.engine.defaults.height))
            if state.default_budget else limits.MAX_REQUEST_IMAGE_SIDE,
            "image_side_multiple": limits.IMAGE_SIDE_MULTIPLE, "max_steps": limits.MAX_STEPS,
            "max_guidance": limits.MAX_GUIDANCE, "max_images_per_request": limits.MAX_IMAGES_PER_REQUEST,
            "max_prompt_chars": limits.MAX_PROMPT_CHARS, "max_seed": limits.MAX_SEED,
        },
        "queue": snapshot,
    }


@router.get("/history", responses=error_responses(422))
def history(request: Request, limit: int = Query(HISTORY_DEFAULT_JOBS, ge=1, le=limits.FINISHED_JOBS_KEPT)) -> dict:
    """Finished jobs with images, newest first; each job's images stay in seed order (seed, seed+1, ...)."""
    jobs = [job for job in get_state(request).queue.history() if job.status == DONE and job.images]
    return {"jobs": [job_view(request, job) for job in jobs[:limit]]}


@router.post("/jobs", status_code=202, responses=error_responses(400, 422, 429))
def submit(body: GenerateRequest, request: Request) -> JSONResponse:
    state = get_state(request)
    job = state.submit(body.to_params(state.engine.defaults))
    return JSONResponse(job_view(request, job), status_code=202, headers={"Location": f"/api/jobs/{job.id}"})


@router.get("/jobs/{job_id}", responses=JOB_ERRORS)
def get_job(job_id: str, request: Request) -> dict:
    return job_view(request, _job_or_404(request, job_id))


@router.post("/jobs/{job_id}/cancel", responses=JOB_ERRORS)
def cancel(job_id: str, request: Request) -> dict:
    _job_or_404(request, job_id)
    job = get_state(request).queue.cancel(job_id)
    return job_view(request, job)


@router.get("/jobs/{job_id}/images/{index}", response_class=Response,
            responses={200: {"content": {"image/png": {}}, "description": "the PNG, with its infotext chunk"},
                       **JOB_ERRORS})
def image(job_id: str, index: int, request: Request, download: bool = False) -> Response:
    job = _job_or_404(request, job_id)
    if not 0 <= index < len(job.images):
        raise ApiError(404, f"index: job '{job.id}' has {len(job.images)} images; there is no image {index}.", "index")
    picture = job.images[index]
    headers = {"Cache-Control": "private, max-age=3600"}
    if download:
        headers["Content-Disposition"] = f'attachment; filename="latentdiff-{picture.seed}.png"'
    return Response(picture.png, media_type="image/png", headers=headers)


def _data_url(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


def _event(request: Request, job: Job) -> str:
    name = job.status if job.finished else "progress"
    payload = job_view(request, job)
    if job.preview_png is not None and not job.finished:
        payload["preview"] = _data_url(job.preview_png)
        # one entry per image of the job: its newest preview, or None while it waits for its chunk
        payload["previews"] = [_data_url(job.previews[i]) if i in job.previews else None
                               for i in range(job.params.num_images)]
    return f"event: {name}\ndata: {json.dumps(payload)}\n\n"


@router.get("/jobs/{job_id}/events", response_class=StreamingResponse,
            responses={200: {"content": {"text/event-stream": {}}, "description": "server-sent events"}, **JOB_ERRORS})
async def events(job_id: str, request: Request) -> StreamingResponse:
    job = _job_or_404(request, job_id)
    queue = get_state(request).queue

    async def stream():
        seen = -1
        deadline = time.monotonic() + limits.MAX_EVENT_STREAM_SECONDS
        while time.monotonic() < deadline:
            version = job.version
            if version != seen:
                seen = version
                yield _event(request, job)
                if job.finished:
                    return
            elif await request.is_disconnected():
                return
            else:
                yield ": keepalive\n\n"
            await queue.wait_changed(job, seen, timeout_s=KEEPALIVE_S)

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
