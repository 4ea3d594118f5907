"""What one running server holds, shared by the page and the three API routers: the job queue (whose
worker owns the model), the request budget, the models clients may switch to.

Routers reach it with `get_state(request)`; `app.create_app` builds it. It lives apart from `app.py` so
the routers need not import the module that imports them.
"""

from __future__ import annotations

import dataclasses
import math
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from fastapi import Request

from latentdiff.server.budget import check_cost, check_side, default_max_cost
from latentdiff.server.errors import ApiError
from latentdiff.server.job_types import Job, JobParams
from latentdiff.server.jobs import JobQueue, QueueFull
from latentdiff.server.models import ServedModel, discover_models, find_model


@dataclass
class ServerState:
    queue: JobQueue  # its `engine` (a PipelineEngine) is the model: name, hash, defaults, checks
    max_request_cost: float = math.inf  # megapixel-steps (budget.py)
    # the models clients may switch to (models.py); the first is the one loaded at start
    models: list[ServedModel] = field(default_factory=list)
    # builds an engine for a pipeline folder; runs on the worker thread (None: switching is off)
    load_model: Callable[[Path, str], object] | None = None
    models_dir: str | None = None
    default_budget: bool = False  # max_request_cost follows the loaded model's native size (no --max-request-cost)
    _switch_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def engine(self):
        return self.queue.engine

    @property
    def current_model(self) -> ServedModel:
        """The model the worker holds now (entry of `models` with its name)."""
        name = self.engine.model_name
        return next((m for m in self.models if m.name == name), None) or ServedModel(name, self.engine.text_to_image.source.path)

    def refresh_models(self) -> None:
        """Look for pipeline folders in --models-dir again (A1111's refresh-checkpoints)."""
        start = self.models[0] if self.models else self.current_model  # it decides whether bundled ones are offered
        found = discover_models(start.path, start.name, self.models_dir)
        # the start model stays on offer even when another one is loaded now
        self.models = [*self.models[:1], *(m for m in found if m.path != self.models[0].path)] if self.models else found

    def switch_model(self, wanted: str) -> ServedModel:
        """Load the model called `wanted` (title, name or hash) on the worker, after the jobs already
        queued (they run on the model they were checked against). Blocks until it is loaded; call it
        off the event loop. 404 naming the choices when there is no such model."""
        model = find_model(self.models, wanted)
        if model is None:
            choices = ", ".join(f"'{m.title}'" for m in self.models)
            raise ApiError(404, f"sd_model_checkpoint: there is no model '{wanted}' on this server; choose one of: "
                                f"{choices} (GET /sdapi/v1/sd-models lists them).", "sd_model_checkpoint")
        with self._switch_lock:  # two switches at once would load twice
            if model.name == self.engine.model_name:
                return model
            if self.load_model is None:
                raise ApiError(409, "This server was started without model switching.", "sd_model_checkpoint")

            def load() -> None:
                # the new model is loaded before the old one is let go, so a failed load keeps serving
                self.queue.engine = self.load_model(model.path, model.name)
                if self.default_budget:
                    defaults = self.queue.engine.defaults
                    self.max_request_cost = default_max_cost(defaults.width, defaults.height)

            try:
                self.queue.run_on_worker(load)
            except QueueFull:
                raise ApiError(503, "The server is shutting down; no model can be loaded now.") from None
            except Exception as err:
                raise ApiError(500, f"Could not load the model '{model.name}' ({err}); the server keeps "
                                    f"'{self.engine.model_name}'.", "sd_model_checkpoint") from None
        return model

    def submit(self, params: JobParams, field_names: dict[str, str] | None = None) -> Job:
        """Check the settings against the model (422 naming the field) and the compute budget (413),
        then queue a job, or answer 429 with Retry-After when the queue is full. `field_names` maps
        latentdiff's names (`guidance`) to the calling API's (`cfg_scale`) for the error message."""
        params = dataclasses.replace(params, model=self.engine.model_name)  # the model it was checked against
        self.engine.check(params, field_names)
        if self.default_budget:
            check_side(params.width, params.height, self.engine.defaults.width, self.engine.defaults.height)
        check_cost(self.engine.cost(params), self.max_request_cost, field_names)
        try:
            return self.queue.submit(params)
        except QueueFull as full:
            raise ApiError(429, f"The queue is full ({self.queue.max_queue} jobs waiting); retry in "
                                f"{full.retry_after_s} s.", headers={"Retry-After": str(full.retry_after_s)}) from None


def get_state(request: Request) -> ServerState:
    return request.app.state.latentdiff
