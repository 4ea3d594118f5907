"""The generation pipeline that `generate`, `evaluate` and `serve` share.

    pipe = TextToImage.load("runs/shapes/pipeline")            # folder, hub id, or None (bundled)
    results = pipe.generate(GenerationRequest(["a red circle"], num_images=4, seed=1))
    results[0].image, results[0].seed, results[0].infotext      # PIL image, 1, A1111 infotext

The numbered steps of `generate`:
  1. check the request before any long work (sizes, steps, scheduler; a random seed if none);
  2. encode each distinct prompt once (warn when one is longer than the tokenizer's limit) and the
     negative prompt once (cached across calls: the empty prompt is the common case);
  3. for each batch, run diffusers' own `StableDiffusionPipeline.__call__` (its denoising loop, its
     classifier-free guidance) with one CPU generator per image, seeded S+i, so image i is the same
     whatever the batch size or device, and the same as diffusers gives for that generator;
  4. wrap each image with its seed and its infotext.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import functools
import logging
import math
import threading
from typing import Callable, Iterator

import torch
from PIL import Image
from tqdm.auto import tqdm

from latentdiff import limits
from latentdiff.backends import load_for_choice, pick_backend
from latentdiff.diffusion.schedulers import check_scheduler_name, make_scheduler
from latentdiff.errors import UserError
from latentdiff.hashing import model_hash
from latentdiff.generation import DEFAULT_STRENGTH, GeneratedImage, GenerationRequest
from latentdiff.infotext import Infotext
from latentdiff.memory import empty_cache, estimate_bytes_per_image, free_memory_bytes
from latentdiff.models.smallest_size import smallest_image_side
from latentdiff.model_source import ModelSource, error_reason, guidance_for, resolve_model
from latentdiff.models.weights import no_loading_bars, stable_diffusion_pipeline_class
from latentdiff.runtime import cpu_generator, pick_device, pick_dtype, use_threads

log = logging.getLogger("latentdiff.generate")

# diffusers' StableDiffusionPipeline.check_inputs refuses sizes that are not multiples of 8; the VAE
# needs multiples of its own downsampling factor. A size must satisfy both.
DIFFUSERS_SIZE_MULTIPLE = limits.IMAGE_SIDE_MULTIPLE
MAX_AUTO_BATCH = 16  # more images per U-Net call than this no longer speeds anything up
MEMORY_BUDGET_FRACTION = 0.5  # share of the free memory one batch may take

# progress_callback(step, total_steps, latents, first_image): step counts 1..total over all batches; latents
# is the current batch's (B, C, H/f, W/f) tensor, for a cheap latent -> RGB preview; its row 0 is image
# `first_image` of the request (prompt-major order), whatever batch size an out-of-memory retry fell back to.
ProgressCallback = Callable[[int, int, torch.Tensor, int], None]


@contextlib.contextmanager
def progress_bar(desc: str) -> Iterator[ProgressCallback]:
    """A tqdm bar over every denoising step of one `generate` call, as its progress_callback."""
    with tqdm(total=None, desc=desc, unit="step") as bar:
        def on_step(step: int, total: int, latents: torch.Tensor, first_image: int) -> None:
            bar.total = total
            bar.update(step - bar.n)

        yield on_step


class TextToImage:
    """A loaded pipeline. Not re-entrant: one `generate` runs at a time (a lock serialises callers)."""

    def __init__(self, pipe, source: ModelSource, device: torch.device, backend: str = "torch"):
        self.pipe = pipe  # diffusers StableDiffusionPipeline (on runtime sessions for onnx / openvino)
        self.source = source
        self.device = device
        self.backend = backend
        self.model_hash = source.hash or model_hash(source.path)
        self.base_scheduler_config = dict(pipe.scheduler.config)  # the training schedule + prediction_type
        self._img2img = None  # diffusers' StableDiffusionImg2ImgPipeline over the same modules, made when first used
        self._negative_cache: dict[str, torch.Tensor] = {}  # negative prompt -> (1, T, D)
        self._schedulers: dict = {}  # scheduler name -> an unused instance that fresh_scheduler copies
        self._lock = threading.Lock()

    # ---------------------------------------------------------------- loading

    @classmethod
    def load(cls, model: str | None = None, device: str | None = None, backend: str | None = None,
             threads: int | None = None) -> "TextToImage":
        """`backend`: torch, onnx or openvino (None: latentdiff.backends.pick_backend chooses; an automatic
        choice that cannot load falls back to torch). `threads`: CPU threads for this thread's torch and the
        runtime sessions (None: leave the process's setting; the commands pass runtime.pick_num_threads')."""
        if threads is not None:
            use_threads(threads)
        StableDiffusionPipeline = stable_diffusion_pipeline_class()

        choice = pick_backend(model, backend, device)
        if choice.name != "torch":
            if device and torch.device(device).type != "cpu":
                raise UserError(f"--backend {choice.name} runs on the CPU; drop --device {device} or use --backend torch.")
            with no_loading_bars():
                loaded = load_for_choice(model, choice)
            if loaded is not None:
                return cls(*loaded, torch.device("cpu"), choice.name)
        source = resolve_model(model)
        torch_device = pick_device(device)
        try:
            with no_loading_bars():
                pipe = StableDiffusionPipeline.from_pretrained(
                    source.path, dtype=pick_dtype(torch_device), use_safetensors=True
                )
        except (OSError, ValueError, KeyError, RuntimeError) as err:
            raise UserError(f"Could not load the pipeline in '{source.path}' ({error_reason(err)}); re-export it with "
                            f"`latentdiff train-unet`.") from err
        pipe.set_progress_bar_config(disable=True)  # we show one bar over all batches instead
        # No channels-last or torch.compile: on the 2-core CPU neither sped up generation measurably
        # (benchmarks/bench_generate.py --ablation), and plain weights keep the pixels identical to diffusers'.
        pipe.to(torch_device)
        return cls(pipe, source, torch_device)

    @property
    def model_name(self) -> str:
        return self.source.name

    @property
    def vae_scale_factor(self) -> int:
        return int(self.pipe.vae_scale_factor)

    @property
    def size_multiple(self) -> int:
        return math.lcm(DIFFUSERS_SIZE_MULTIPLE, self.vae_scale_factor)

    @functools.cached_property
    def min_size(self) -> int:
        """The smallest side (pixels) one image can have: below it a U-Net level shrinks to 1x1 with a
        single value per GroupNorm group, which torch refuses (see models/smallest_size.py)."""
        return smallest_image_side(self.pipe.unet.config, self.pipe.vae.config, self.vae_scale_factor,
                                   self.size_multiple)

    @property
    def default_size(self) -> int:
        sample_size = self.pipe.unet.config.sample_size
        sample_size = sample_size if isinstance(sample_size, int) else sample_size[0]
        return int(sample_size) * self.vae_scale_factor

    @functools.cached_property
    def default_guidance(self) -> float:
        """The guidance scale of a request that names none: the model's own (`model_source.guidance_for`; the
        bundled models draw best well below 7.5), else DEFAULT_GUIDANCE, as in diffusers."""
        return guidance_for(self.source.path)

    @property
    def max_prompt_tokens(self) -> int:
        return int(self.pipe.tokenizer.model_max_length)

    @property
    def max_steps(self) -> int:
        return int(self.base_scheduler_config.get("num_train_timesteps", 1000))

    # ---------------------------------------------------------------- step 1: check the request

    def check_request(self, request: GenerationRequest) -> GenerationRequest:
        """A copy with seed and size filled in, or a UserError naming the first problem."""
        if not request.prompts:
            raise UserError("No prompt given; pass at least one prompt, e.g. `latentdiff generate \"a red circle\"`.",
                            "prompt")
        if not all(isinstance(p, str) for p in request.prompts):
            raise UserError("Prompts must be text.", "prompt")
        if not 1 <= request.num_images <= limits.MAX_NUM_IMAGES:
            raise UserError(f"--num-images must be between 1 and {limits.MAX_NUM_IMAGES} (got {request.num_images}).",
                            "num_images")
        if not 1 <= request.steps <= self.max_steps:
            raise UserError(f"--steps must be between 1 and {self.max_steps}, the model's training timesteps "
                            f"(got {request.steps}); 20-50 is typical.", "steps")
        guidance = self.default_guidance if request.guidance is None else request.guidance
        if not math.isfinite(guidance) or guidance < 0:
            raise UserError(f"--guidance must be a number >= 0 (got {guidance}); {self.default_guidance:g} is "
                            f"this model's default, <= 1 turns guidance off.", "guidance")
        check_scheduler_name(request.scheduler)
        width = self.default_size if request.width is None else request.width
        height = self.default_size if request.height is None else request.height
        multiple = self.size_multiple
        for flag, value in (("--width", width), ("--height", height)):
            if value <= 0 or value % multiple or value > limits.MAX_IMAGE_SIDE:
                nearest = min(limits.MAX_IMAGE_SIDE, max(self.min_size, round(value / multiple) * multiple))
                raise UserError(f"{flag} must be a positive multiple of {multiple} up to {limits.MAX_IMAGE_SIDE} pixels "
                                f"(the VAE downsamples by {self.vae_scale_factor} and diffusers needs multiples of "
                                f"{DIFFUSERS_SIZE_MULTIPLE}), got {value}; try {nearest}.", flag[2:])
            if value < self.min_size:
                raise UserError(f"{flag} must be at least {self.min_size} pixels for this model (got {value}): "
                                f"smaller, its U-Net shrinks the latent to a single value per normalisation group; "
                                f"try {flag} {self.min_size}.", flag[2:])
        if request.init_image is not None:
            if not (math.isfinite(request.strength) and 0 < request.strength <= 1):
                raise UserError(f"--strength must be above 0 and at most 1 (got {request.strength}); "
                                f"{DEFAULT_STRENGTH} is typical, 1 ignores the init image's content.", "strength")
            if int(request.steps * request.strength) < 1:  # diffusers' img2img runs int(steps * strength) steps
                raise UserError(f"--strength {request.strength:g} of --steps {request.steps} leaves no denoising step; "
                                f"use at least {math.ceil(1 / request.strength)} steps or a higher --strength.",
                                "strength")
        seed = limits.resolve_seed(request.seed)
        return dataclasses.replace(request, prompts=list(request.prompts), seed=seed, width=width, height=height,
                                   guidance=guidance)

    # ---------------------------------------------------------------- step 2: text

    def encode_prompts(self, prompts: list[str]) -> torch.Tensor:
        """(N, T, D) text-encoder states for `prompts`, with a warning for each one cut to the limit."""
        for prompt in prompts:
            self._warn_if_truncated(prompt)
        embeds, _ = self.pipe.encode_prompt(prompts, self.device, 1, False)  # its own truncation notice is filtered
        return embeds

    def negative_embedding(self, negative_prompt: str) -> torch.Tensor:
        """(1, T, D), computed once per distinct negative prompt (usually the empty one)."""
        if negative_prompt not in self._negative_cache:
            self._negative_cache[negative_prompt] = self.encode_prompts([negative_prompt])
        return self._negative_cache[negative_prompt]

    def _warn_if_truncated(self, prompt: str) -> None:
        tokenizer = self.pipe.tokenizer
        ids = tokenizer(prompt, truncation=False, verbose=False).input_ids  # with <start> and <end>
        limit = self.max_prompt_tokens
        if len(ids) > limit:
            kept = tokenizer.decode(ids[1:limit - 1]).strip()
            log.warning("Prompt '%s' is %d tokens, more than this model's limit of %d, so it was truncated to '%s'.",
                        _shorten(prompt), len(ids), limit, kept)

    # ---------------------------------------------------------------- step 3: denoise

    def auto_batch_size(self, width: int, height: int, guidance: float) -> int:
        """How many images to denoise at once: what fits in half the free memory, at most MAX_AUTO_BATCH."""
        per_image = estimate_bytes_per_image(self.pipe.unet.config, height // self.vae_scale_factor,
                                             width // self.vae_scale_factor, guidance > 1)
        budget = MEMORY_BUDGET_FRACTION * free_memory_bytes(self.device)
        return max(1, min(MAX_AUTO_BATCH, int(budget // max(per_image, 1))))

    def num_denoising_steps(self, scheduler: str, steps: int, strength: float | None = None) -> int:
        """U-Net calls per batch: `steps`, or about twice that for second-order samplers (Heun); with an
        img2img `strength`, the tail of the schedule diffusers' img2img runs (its `get_timesteps`)."""
        probe = self.fresh_scheduler(scheduler)
        probe.set_timesteps(steps, device="cpu")
        if strength is None:
            return len(probe.timesteps)
        t_start = max(steps - min(int(steps * strength), steps), 0)
        return len(probe.timesteps[t_start * probe.order:])

    def fresh_scheduler(self, name: str):
        """A new scheduler `name` over the pipeline's training schedule: a copy of one built once per name,
        because diffusers' `from_config` inspects signatures (about 5 ms a call, 2-6% of a 64x64 image on ONNX
        Runtime) and a scheduler keeps per-run state (step index, multistep history), so none is reused."""
        if name not in self._schedulers:
            self._schedulers[name] = make_scheduler(name, self.base_scheduler_config)
        return copy.deepcopy(self._schedulers[name])

    @property
    def img2img(self):
        """diffusers' own StableDiffusionImg2ImgPipeline on this pipeline's modules (no copy of the weights)."""
        if self._img2img is None:
            from diffusers import StableDiffusionImg2ImgPipeline  # already imported quietly by load()

            components = {**self.pipe.components, "requires_safety_checker": False}
            self._img2img = StableDiffusionImg2ImgPipeline(**components)
            self._img2img.set_progress_bar_config(disable=True)
        return self._img2img

    def generate(self, request: GenerationRequest, progress_callback: ProgressCallback | None = None,
                 batch_size: int | None = None) -> list[GeneratedImage]:
        request = self.check_request(request)
        if batch_size is not None and batch_size < 1:
            raise UserError(f"--batch-size must be at least 1 (got {batch_size}).")
        with self._lock:
            return self._generate(request, progress_callback, batch_size)

    def _generate(self, request: GenerationRequest, progress_callback: ProgressCallback | None,
                  batch_size: int | None) -> list[GeneratedImage]:
        jobs = request.prompts_and_seeds()
        guided = request.guidance > 1  # diffusers' do_classifier_free_guidance
        batch_size = batch_size or self.auto_batch_size(request.width, request.height, request.guidance)
        distinct = list(dict.fromkeys(request.prompts))
        with torch.inference_mode():
            embeds = self.encode_prompts(distinct)  # (P, T, D)
            by_prompt = {prompt: embeds[i:i + 1] for i, prompt in enumerate(distinct)}
            negative = self.negative_embedding(request.negative_prompt) if guided else None
        strength = request.strength if request.init_image is not None else None
        steps_per_batch = self.num_denoising_steps(request.scheduler, request.steps, strength)
        results: list[GeneratedImage] = []
        start = 0
        while start < len(jobs):
            chunk = jobs[start:start + batch_size]
            total = steps_per_batch * (start // batch_size + math.ceil((len(jobs) - start) / batch_size))
            try:
                images = self._denoise(request, chunk, by_prompt, negative, progress_callback,
                                       done=steps_per_batch * (start // batch_size), total=total, first_image=start)
            except torch.OutOfMemoryError:
                if batch_size == 1:
                    raise UserError(f"Out of memory even for one {request.width}x{request.height} image on "
                                    f"{self.device}; use a smaller --width/--height or another --device.") from None
                batch_size = max(1, batch_size // 2)  # try again with half as many images at once
                log.warning("Out of memory; retrying with --batch-size %d.", batch_size)
                empty_cache(self.device)
                continue
            for (prompt, seed), image in zip(chunk, images):
                info = Infotext(prompt=prompt, negative_prompt=request.negative_prompt, steps=request.steps,
                                scheduler=request.scheduler, guidance=request.guidance, seed=seed,
                                width=request.width, height=request.height, model_hash=self.model_hash,
                                model_name=self.model_name, denoising_strength=strength, backend=self.backend)
                results.append(GeneratedImage(image=image, seed=seed, prompt=prompt, info=info))
            start += len(chunk)
        return results

    def _denoise(self, request: GenerationRequest, chunk: list[tuple[str, int]], by_prompt: dict[str, torch.Tensor],
                 negative: torch.Tensor | None, progress_callback: ProgressCallback | None, *, done: int,
                 total: int, first_image: int) -> list[Image.Image]:
        prompt_embeds = torch.cat([by_prompt[prompt] for prompt, _ in chunk])  # (B, T, D)
        negative_embeds = negative.expand(len(chunk), -1, -1) if negative is not None else None  # (B, T, D)
        # one CPU generator per image: its initial noise (and an ancestral sampler's noise) depends only on
        # its own seed, not on the batch it lands in or the device
        generators = [cpu_generator(seed) for _, seed in chunk]
        # a fresh scheduler per batch: schedulers keep per-run state (step index, multistep history)
        scheduler = self.fresh_scheduler(request.scheduler)
        self.pipe.scheduler = scheduler
        pipe, image_args = self.pipe, {"height": request.height, "width": request.width}
        if request.init_image is not None:
            pipe = self.img2img
            pipe.scheduler = scheduler
            # A1111's "just resize": the output has the asked size, so the picture is scaled to it
            init = request.init_image.convert("RGB").resize((request.width, request.height), Image.Resampling.LANCZOS)
            image_args = {"image": [init] * len(chunk), "strength": request.strength}

        def on_step_end(pipe, step_index: int, timestep, tensors: dict) -> dict:
            progress_callback(done + step_index + 1, total, tensors["latents"], first_image)
            return {}

        with torch.inference_mode():
            output = pipe(
                prompt_embeds=prompt_embeds,
                negative_prompt_embeds=negative_embeds,
                num_inference_steps=request.steps,
                guidance_scale=request.guidance,
                **image_args,
                generator=generators,
                output_type="pil",
                callback_on_step_end=on_step_end if progress_callback else None,
            )
        return list(output.images)


class _DropTruncationNotices(logging.Filter):
    """We warn about truncated prompts ourselves (naming the prompt); this drops diffusers' own copy and the
    tokenizer's "sequence length is longer than the maximum" notice. A filter, installed once, instead of
    raising the loggers' levels around each call: `Logger.setLevel` clears every logger's cache (2.4 ms a call)."""

    PREFIXES = ("The following part of your input was truncated", "Token indices sequence length is longer")

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.PREFIXES)


for _name in ("diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion", "transformers.tokenization_utils_base"):
    logging.getLogger(_name).addFilter(_DropTruncationNotices())


def _shorten(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[:limit - 3] + "..."
