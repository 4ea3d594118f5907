"""What the server's job queue holds: a request's checked settings (`JobParams`), a finished image
(`JobImage`), a `Job` and its states, and the `Engine` protocol the queue's worker calls. The queue itself is
`latentdiff.server.jobs`."""

from __future__ import annotations

import hashlib
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

from latentdiff import limits

QUEUED, RUNNING, DONE, FAILED, CANCELLED = "queued", "running", "done", "failed", "cancelled"
FINISHED_STATES = (DONE, FAILED, CANCELLED)


@dataclass(frozen=True)
class JobParams:
    """What one request asks for, already validated against `limits` and with a concrete seed."""

    prompt: str
    negative_prompt: str
    seed: int
    steps: int
    guidance: float
    scheduler: str
    width: int
    height: int
    num_images: int
    model: str = ""  # the name of the model the job was checked against (the server may hold several)
    init_image: bytes | None = field(default=None, repr=False)  # img2img: the sent picture's file bytes
    denoising_strength: float | None = None  # img2img only

    def batch_key(self) -> tuple:
        """Jobs with equal keys can share one denoising loop; prompts and seeds may differ. The negative
        prompt is part of the key because a GenerationRequest has one negative prompt for all images;
        img2img jobs share a loop only when they start from the same picture at the same strength."""
        picture = hashlib.sha256(self.init_image).hexdigest() if self.init_image is not None else None
        return (self.width, self.height, self.steps, self.scheduler, float(self.guidance), self.negative_prompt,
                self.model, picture, self.denoising_strength)

    def summary(self) -> dict[str, Any]:
        """JSON-able settings: the picture of an img2img job is left out (only whether there is one)."""
        settings = {k: v for k, v in self.__dict__.items() if k not in ("init_image", "denoising_strength")}
        if self.init_image is not None:
            settings.update(init_image=True, denoising_strength=self.denoising_strength)
        return settings

    def image_seeds(self) -> list[int]:
        # A1111's convention: the images of one request use seed, seed+1, ... (wrapping at uint32).
        return [limits.image_seed(self.seed, i) for i in range(self.num_images)]


@dataclass
class JobImage:
    png: bytes  # a PNG carrying the infotext in its `parameters` text chunk
    seed: int
    infotext: str


# on_step(step, total, previews) -> stop?: previews map a job's index in the batch to {index of the image
# in that job: PNG of it forming}; True stops the model call.
StepCallback = Callable[[int, int, dict[int, dict[int, bytes]]], bool]


class Engine(Protocol):
    """The model side, as the worker sees it (`latentdiff.server.engine.PipelineEngine`)."""

    def run(self, batch: list[JobParams], on_step: StepCallback) -> list[list[JobImage]]:
        """Generate every job's images in one model call. After each denoising step it calls
        `on_step(step, total, previews)`, previews mapping a job's index in `batch` to {index of the
        image in that job: PNG of it forming} for the images being denoised now; a True answer stops
        the call (then every job gets no images). Returns one list of images per job."""
        ...


@dataclass
class Job:
    params: JobParams
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    status: str = QUEUED
    created_at: float = field(default_factory=time.time)
    started_at: float | None = None
    finished_at: float | None = None
    step: int = 0
    total_steps: int = 0
    preview_png: bytes | None = None  # the newest preview of the job's first image being denoised
    previews: dict[int, bytes] = field(default_factory=dict)  # image index -> its newest preview
    images: list[JobImage] = field(default_factory=list)
    error: str | None = None
    error_status: int = 500  # the HTTP status the APIs answer a failed job with (504: past the time limit)
    batch_size: int = 0  # images in the model call this job ran in (> num_images when batched)
    seq: int = 0  # submission order, shared with worker tasks (JobQueue.run_on_worker)
    cancel_requested: bool = False
    version: int = 0  # bumped on every change; event streams wait for it to move
    _waiters: list = field(default_factory=list, repr=False)

    @property
    def finished(self) -> bool:
        return self.status in FINISHED_STATES

    def summary(self) -> dict[str, Any]:
        """JSON-able state, without image bytes (those are served by index)."""
        return {
            "id": self.id,
            "status": self.status,
            "step": self.step,
            "total_steps": self.total_steps,
            "params": self.params.summary(),
            "images": [{"index": i, "seed": im.seed, "infotext": im.infotext} for i, im in enumerate(self.images)],
            "error": self.error,
            "batch_size": self.batch_size,
            "created_at": self.created_at,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
        }
