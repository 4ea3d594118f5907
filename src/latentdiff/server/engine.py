"""The model side of the server: a thin adapter from a batch of jobs to `TextToImage.generate`.

Everything about generation (validation, prompt encoding, seeds per image, schedulers, infotext) is
latentdiff.pipeline's; this file only
- turns several compatible jobs into one `GenerationRequest` whose images keep their own seeds,
- checks a job against the loaded model before it is queued (sizes the VAE needs, steps the schedule has),
- maps the pipeline's progress callback to per-job previews and a stop signal,
- encodes each image as a PNG with the infotext chunk.
Only the queue's worker thread calls `run`.
"""

from __future__ import annotations

import io

from PIL import Image

from latentdiff.errors import UserError
from latentdiff.generation import GenerationRequest, save_png
from latentdiff.generation_defaults import DEFAULT_GENERATION_STEPS, DEFAULT_SCHEDULER
from latentdiff.pipeline import TextToImage
from latentdiff.server.budget import RequestCost
from latentdiff.server.errors import ApiError
from latentdiff.server.job_types import JobImage, JobParams, StepCallback
from latentdiff.server.preview import fit_latent_to_rgb, latents_to_png
from latentdiff.server.schemas import ModelDefaults



class _Stop(Exception):
    """Raised from the progress callback to leave the denoising loop when every job was cancelled."""


def png_bytes(image: Image.Image, infotext: str) -> bytes:
    """The PNG `latentdiff generate` writes (infotext in the `parameters` chunk), in memory."""
    return save_png(image, infotext, io.BytesIO()).getvalue()


class PipelineEngine:
    def __init__(self, text_to_image: TextToImage):
        self.text_to_image = text_to_image
        vae = text_to_image.pipe.vae
        self._preview_matrix = fit_latent_to_rgb(vae, float(vae.config.scaling_factor))

    @classmethod
    def load(cls, model: str | None, device: str | None = None, backend: str | None = None,
             threads: int | None = None) -> "PipelineEngine":
        return cls(TextToImage.load(model, device, backend, threads))

    @property
    def model_name(self) -> str:
        return self.text_to_image.model_name

    @property
    def model_hash(self) -> str:
        return self.text_to_image.model_hash

    @property
    def min_size(self) -> int:
        return self.text_to_image.min_size  # smaller images cannot be made by this model (pipeline.TextToImage.min_size)

    @property
    def defaults(self) -> ModelDefaults:
        size = self.text_to_image.default_size
        return ModelDefaults(width=size, height=size, steps=DEFAULT_GENERATION_STEPS,
                             guidance=self.text_to_image.default_guidance,
                             scheduler=DEFAULT_SCHEDULER)

    def check(self, params: JobParams, field_names: dict[str, str] | None = None) -> None:
        """The pipeline's own validation of these settings for this model (size multiple of the VAE
        factor, steps within the training schedule), as a 422 naming the request's field."""
        try:
            self.text_to_image.check_request(self._request([params]))
        except UserError as err:
            name = (field_names or {}).get(err.field, err.field)
            raise ApiError(422, f"{name}: {err}" if name else str(err), name) from None

    def cost(self, params: JobParams) -> RequestCost:
        """What `params` costs the worker (budget.py), counting U-Net calls as the pipeline makes them."""
        guided = params.guidance > 1  # diffusers' do_classifier_free_guidance: a doubled U-Net batch
        calls = self.text_to_image.num_denoising_steps(params.scheduler, params.steps, params.denoising_strength) * (2 if guided else 1)
        return RequestCost(params.width, params.height, calls, params.num_images)

    def _request(self, batch: list[JobParams]) -> GenerationRequest:
        head = batch[0]
        prompts = [p.prompt for p in batch for _ in range(p.num_images)]
        seeds = [s for p in batch for s in p.image_seeds()]
        img2img = {}
        if head.init_image is not None:  # batch_key: every job of the batch has the same picture and strength
            with Image.open(io.BytesIO(head.init_image)) as picture:
                img2img = {"init_image": picture.convert("RGB"), "strength": head.denoising_strength}
        return GenerationRequest(prompts=prompts, negative_prompt=head.negative_prompt, num_images=1,
                                 seed=min(seeds), steps=head.steps, guidance=head.guidance,
                                 scheduler=head.scheduler, width=head.width, height=head.height,
                                 image_seeds=seeds, **img2img)

    def run(self, batch: list[JobParams], on_step: StepCallback) -> list[list[JobImage]]:
        request = self._request(batch)
        num_images = len(request.image_seeds)
        batch_size = min(num_images, self.text_to_image.auto_batch_size(request.width, request.height, request.guidance))
        first_image = [sum(p.num_images for p in batch[:j]) for j in range(len(batch))]

        def progress(step: int, total: int, latents, chunk_start: int) -> None:
            # latents (b, C, h, w) are images chunk_start .. chunk_start + b - 1 of the request: preview
            # every image of every job that is among them.
            previews: dict[int, dict[int, bytes]] = {}
            for j, params in enumerate(batch):
                for k in range(params.num_images):
                    row = first_image[j] + k - chunk_start
                    if 0 <= row < latents.shape[0]:
                        previews.setdefault(j, {})[k] = latents_to_png(latents, row, self._preview_matrix)
            if on_step(step, total, previews):
                raise _Stop()

        try:
            images = self.text_to_image.generate(request, progress, batch_size=batch_size)
        except _Stop:
            return [[] for _ in batch]
        results, start = [], 0
        for params in batch:
            mine = images[start:start + params.num_images]
            results.append([JobImage(png_bytes(im.image, im.infotext), im.seed, im.infotext) for im in mine])
            start += params.num_images
        return results
