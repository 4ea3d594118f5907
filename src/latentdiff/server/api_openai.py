"""OpenAI's image generation endpoint, `POST /v1/images/generations`, and its model list, `GET /v1/models`, so the OpenAI SDKs (with
`base_url=http://127.0.0.1:7860/v1`) and tools built on them can use a latentdiff model.

Response: `{"created": unix_seconds, "data": [{"b64_json": ...} | {"url": ...}, ...]}`; errors are
`{"error": {"message", "type", "param", "code"}}` (see errors.py). `url` points at this server's
`/api/jobs/{id}/images/{i}`, which keeps the image while the job is in the recent history.
"""

from __future__ import annotations

import base64

from fastapi import APIRouter, Request

from latentdiff.server.state import get_state
from latentdiff.server.error_schema import GUARDS, error_responses
from latentdiff.server.errors import ApiError
from latentdiff.server.job_types import CANCELLED, FAILED
from latentdiff.server.schemas import ImagesGenerationRequest

router = APIRouter(prefix="/v1", tags=["OpenAI-compatible"], responses=error_responses(*GUARDS, openai=True))

# latentdiff's setting names -> this API's, for error messages from the pipeline's own checks
OPENAI_FIELDS = {"width": "size", "height": "size", "num_images": "n"}


@router.post("/images/generations", responses=error_responses(400, 409, 429, 500, 504, openai=True))
async def images_generations(body: ImagesGenerationRequest, request: Request) -> dict:
    state = get_state(request)
    job = state.submit(body.to_params(state.engine.defaults), OPENAI_FIELDS)
    await state.queue.wait_finished(job)
    if job.status == FAILED:
        raise ApiError(job.error_status, job.error or "generation failed")
    if job.status == CANCELLED:
        raise ApiError(409, f"The job {job.id} was cancelled (interrupted) before it finished.")
    if body.response_format == "url":
        base = str(request.base_url).rstrip("/")
        data = [{"url": f"{base}/api/jobs/{job.id}/images/{i}", "revised_prompt": body.prompt}
                for i in range(len(job.images))]
    else:
        data = [{"b64_json": base64.b64encode(im.png).decode("ascii"), "revised_prompt": body.prompt}
                for im in job.images]
    return {"created": int(job.created_at), "data": data}


def _model_object(model) -> dict:
    # `created`: when the pipeline folder was written (OpenAI: when the model was made), unix seconds
    return {"id": model.name, "object": "model", "created": int((model.path / "model_index.json").stat().st_mtime),
            "owned_by": "latentdiff"}


@router.get("/models")
def list_models(request: Request) -> dict:
    """The models this server offers (the openai client's `models.list()`); `id` is the model's name."""
    return {"object": "list", "data": [_model_object(model) for model in get_state(request).models]}


@router.get("/models/{model_id:path}", responses=error_responses(404, openai=True))
def retrieve_model(model_id: str, request: Request) -> dict:
    model = next((m for m in get_state(request).models if m.name == model_id), None)
    if model is None:
        raise ApiError(404, f"There is no model '{model_id}' on this server; GET /v1/models lists them.", "model")
    return _model_object(model)
