"""DiffusionTask: the U-Net stage's part of the one training loop (see `latentdiff.training.task`).

It owns the frozen VAE, the text encoder (frozen, or trained with the U-Net under --train-text-encoder:
`latentdiff.models.text_conditioned_unet`), the latent/text caches, the noising (diffusers' DDPMScheduler),
the objective (`latentdiff.losses.diffusion`), validation (loss at fixed timesteps and seeds, plus a grid
of sample images) and the export of a complete `StableDiffusionPipeline` folder.

Per step (cached path): for each image draw one of its captions, replace it by the empty prompt with
probability `caption_dropout` (classifier-free guidance, Ho & Salimans 2022), draw z ~ N(mean, std^2) from
the cached VAE posterior and scale it by the VAE's `scaling_factor`, then noise it at a uniform timestep.
The no-cache path (`--no-cache`) does the same from pixels and caption strings, encoding every step.
With --train-text-encoder the cached path keeps the latents but encodes the drawn captions' token ids every
step through the trained encoder (the cached text embeddings are the frozen encoder's).
A dataset in the webdataset layout gets the per-shard cache (`latentdiff.data.shard_cache`), read lazily.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from diffusers.utils import make_image_grid

from latentdiff.config import UnetTrainConfig
from latentdiff.data.cache import (
    EMPTY_PROMPT,
    EMPTY_PROMPT_ROW,
    EncodedSplit,
    encode_latents,
    encode_prompts,
    index_captions,
    load_or_build,
    pipeline_token_ids,
)
from latentdiff.data.prepared import ImageCaptionDataset, PreparedDataset
from latentdiff.data.shard_cache import ShardedCache, is_sharded, load_or_build_sharded
from latentdiff.diffusion.training_schedule import pipeline_scheduler, training_scheduler
from latentdiff.errors import UserError
from latentdiff.generation_defaults import DEFAULT_GUIDANCE
from latentdiff.losses.diffusion import (
    diffusion_loss,
    diffusion_target,
    min_snr_weights,
    perturb_noise,
    sample_noise,
    sample_timesteps,
)
from latentdiff.model_source import write_model_name
from latentdiff.models.text_conditioned_unet import UNetWithTextEncoder, unet_of
from latentdiff.runtime import cpu_generator

# Validation loss: every validation image is noised at each of these timesteps with noise from a fixed
# seed, so two validations (and two runs) measure the same thing and their numbers can be compared.
VALIDATION_TIMESTEPS = (100, 300, 500, 700, 900)
VALIDATION_SEED = 1234
SAMPLE_SEED = 0  # image i of the validation grid uses seed SAMPLE_SEED + i
SAMPLES_DIR = "samples"
VALIDATION_METRICS_FILE = "validation_metrics.jsonl"


class _Indices(torch.utils.data.Dataset):
    """Items of the cached path: just the image index; `collate` gathers the cached tensors."""

    def __init__(self, size: int):
        self.size = size

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {"index": index}


def _freeze(module: torch.nn.Module) -> torch.nn.Module:
    module.requires_grad_(False)
    return module.eval()


class DiffusionTask:
    name = "unet"

    def __init__(self, cfg: UnetTrainConfig, dataset: PreparedDataset, unet, vae, text_encoder, tokenizer):
        self.cfg, self.dataset = cfg, dataset
        self.unet = unet
        self.vae, self.tokenizer = _freeze(vae), tokenizer
        self.text_encoder = text_encoder if cfg.train_text_encoder else _freeze(text_encoder)
        if cfg.train_text_encoder and cfg.cache and is_sharded(dataset):
            raise UserError("--train-text-encoder encodes each step's captions, and the per-shard cache of a webdataset "
                            "keeps them only as the frozen encoder's states; add --no-cache.")
        self.noise_scheduler = training_scheduler(cfg.prediction_type, cfg.zero_terminal_snr)
        self.scaling_factor = float(vae.config.scaling_factor)
        self.cache: EncodedSplit | None = None
        self.shard_cache: ShardedCache | None = None
        self._empty_embedding: torch.Tensor | None = None  # (L, D) of the sharded cache, on the training device
        if cfg.cache and is_sharded(dataset):
            self.shard_cache = load_or_build_sharded(vae, text_encoder, tokenizer, dataset, "train", cfg.cache_dir or None)
        elif cfg.cache:
            self.cache = load_or_build(vae, text_encoder, tokenizer, dataset, "train", cfg.cache_dir or None)
        self._embedding_table: torch.Tensor | None = None  # cache.text_embeddings on the training device
        self._caption_token_ids: torch.Tensor | None = None  # (M, L) ids of the cache's caption rows (trained encoder)
        if cfg.train_text_encoder and self.cache is not None:
            self._caption_token_ids = self._cached_caption_token_ids()
        self._validation: dict[str, Any] | None = None

    # ------------------------------------------------------------------ data

    def trainable_module(self) -> torch.nn.Module:
        if self.cfg.train_text_encoder:
            return UNetWithTextEncoder(self.unet, self.text_encoder, self.cfg.text_encoder_lr or None)
        return self.unet

    def _cached_caption_token_ids(self) -> torch.Tensor:
        """(M, L) token ids of the cache's caption rows, in the cache's row order (`index_captions` of the split)."""
        captions, caption_index = index_captions([r.captions for r in ImageCaptionDataset(self.dataset, "train").records])
        if not torch.equal(caption_index, self.cache.caption_index):
            raise UserError(f"The latent cache {self.cache.path} does not match the dataset's captions; delete it and rerun.")
        return pipeline_token_ids(self.tokenizer, captions)

    def train_dataset(self) -> torch.utils.data.Dataset:
        if self.shard_cache is not None:
            return self.shard_cache
        if self.cache is not None:
            return _Indices(len(self.cache))
        return ImageCaptionDataset(self.dataset, "train")

    def collate(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        if self.shard_cache is not None:
            return self.shard_cache.collate(items)
        index = torch.tensor([item["index"] for item in items], dtype=torch.int64)
        if self.cache is not None:
            return {"latent_mean": self.cache.latent_mean[index],  # (B, C, h, w)
                    "latent_std": self.cache.latent_std[index],  # (B, C, h, w)
                    "caption_index": self.cache.caption_index[index]}  # (B, K), -1 padded
        return {"pixel_values": torch.stack([item["pixel_values"] for item in items]),  # (B, 3, H, W)
                "captions": [item["captions"] for item in items], "index": index}

    # ------------------------------------------------------------------ loss

    def _to(self, device: torch.device) -> None:
        """Frozen parts follow the U-Net's device (batch tensors already are on it)."""
        if next(self.vae.parameters()).device != device:
            self.vae.to(device)
            self.text_encoder.to(device)
        if (self.cache is not None and self._caption_token_ids is None
                and (self._embedding_table is None or self._embedding_table.device != device)):
            self._embedding_table = self.cache.text_embeddings.to(device)
        if self.shard_cache is not None and (self._empty_embedding is None or self._empty_embedding.device != device):
            self._empty_embedding = self.shard_cache.empty_prompt_embedding().to(device)

    def _draw_captions(self, num_captions: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """One caption per image, uniformly among its own (B,) counts, and the dropout mask (B,) bool."""
        u = torch.rand(num_captions.shape, generator=generator, device=generator.device)
        choice = torch.minimum((u * num_captions).long(), num_captions - 1)
        dropped = torch.rand(num_captions.shape, generator=generator, device=generator.device) < self.cfg.caption_dropout
        return choice, dropped

    def _inputs(self, batch: dict[str, Any], generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Scaled latents (B, C, h, w) and the text condition for one step: the frozen encoder's hidden states
        (B, L, D), or with --train-text-encoder the token ids (B, L) that the trained one encodes in the model."""
        if self.cache is not None:
            caption_index = batch["caption_index"].cpu()  # (B, K)
            choice, dropped = self._draw_captions((caption_index >= 0).sum(dim=1), generator)
            rows = caption_index.gather(1, choice[:, None]).squeeze(1)
            rows[dropped] = EMPTY_PROMPT_ROW
            if self._caption_token_ids is not None:
                condition = self._caption_token_ids[rows].to(batch["latent_mean"].device)  # (B, L) token ids
            else:
                condition = self._embedding_table[rows.to(self._embedding_table.device)].float()  # (B, L, D)
            mean, std = batch["latent_mean"], batch["latent_std"]
        elif self.shard_cache is not None:
            choice, dropped = self._draw_captions(batch["num_captions"].cpu(), generator)
            per_image = batch["caption_embeddings"]  # (B, K, L, D)
            condition = per_image[torch.arange(per_image.shape[0], device=per_image.device), choice.to(per_image.device)]
            condition[dropped.to(per_image.device)] = self._empty_embedding  # (B, L, D)
            condition = condition.float()
            mean, std = batch["latent_mean"], batch["latent_std"]
        else:
            captions = batch["captions"]
            choice, dropped = self._draw_captions(torch.tensor([len(c) for c in captions]), generator)
            prompts = [EMPTY_PROMPT if drop else caps[int(j)] for caps, j, drop in zip(captions, choice, dropped)]
            if self.cfg.train_text_encoder:
                condition = pipeline_token_ids(self.tokenizer, prompts).to(batch["pixel_values"].device)  # (B, L)
            else:
                condition = encode_prompts(self.text_encoder, self.tokenizer, prompts).float()
            mean, std = encode_latents(self.vae, batch["pixel_values"])
        eps = torch.randn(mean.shape, generator=generator, device=generator.device).to(mean.device)
        latents = (mean + std * eps) * self.scaling_factor  # a posterior sample, as latent_dist.sample()
        return latents, condition

    def loss(self, model, batch: dict[str, Any], generator: torch.Generator) -> tuple[torch.Tensor, dict[str, float]]:
        device = next(model.parameters()).device
        self._to(device)
        latents, condition = self._inputs(batch, generator)
        noise = sample_noise(latents, generator, self.cfg.noise_offset)  # (B, C, h, w)
        timesteps = sample_timesteps(latents.shape[0], self.noise_scheduler, generator, device, self.cfg.timestep_sampling,
                                     self.cfg.logit_mean, self.cfg.logit_std)  # (B,)
        noisy = self.noise_scheduler.add_noise(latents, perturb_noise(noise, generator, self.cfg.input_perturbation),
                                               timesteps)
        target = diffusion_target(self.noise_scheduler, latents, noise, timesteps)  # the unperturbed noise's target
        if self.cfg.train_text_encoder:  # through the (possibly DDP-wrapped) UNetWithTextEncoder: it encodes the ids
            prediction = model(noisy, timesteps, condition)
        else:
            prediction = model(noisy, timesteps, encoder_hidden_states=condition).sample
        weights = min_snr_weights(self.noise_scheduler, timesteps, self.cfg.snr_gamma) if self.cfg.snr_gamma > 0 else None
        return diffusion_loss(prediction, target, weights), {}

    # ------------------------------------------------------------------ validation

    def _validation_split(self) -> tuple[str, list]:
        records = self.dataset.records("validation")
        return ("validation", records) if records else ("train", self.dataset.records("train"))

    def _validation_inputs(self, device: torch.device) -> dict[str, Any]:
        """Posterior means (deterministic) and first-caption embeddings of the validation images, encoded
        once; noise and timesteps fixed by VALIDATION_SEED and VALIDATION_TIMESTEPS."""
        if self._validation is None:
            split, records = self._validation_split()
            limit = self.cfg.validation_images or len(records)
            images = ImageCaptionDataset(self.dataset, split)
            count = min(limit, len(images))
            pixels = torch.stack([images[i]["pixel_values"] for i in range(count)])
            latents = torch.cat([encode_latents(self.vae, pixels[s:s + 32])[0] for s in range(0, count, 32)])
            prompts = [records[i].captions[0] for i in range(count)]
            embeddings = None  # a trained text encoder changes between validations: encoded at each one instead
            if not self.cfg.train_text_encoder:
                embeddings = torch.cat([encode_prompts(self.text_encoder, self.tokenizer, prompts[s:s + 32])
                                        for s in range(0, count, 32)]).float().cpu()
            generator = cpu_generator(VALIDATION_SEED)
            noise = torch.randn((len(VALIDATION_TIMESTEPS),) + tuple(latents.shape), generator=generator)
            self._validation = {"split": split, "latents": latents.float().cpu() * self.scaling_factor,
                                "token_ids": pipeline_token_ids(self.tokenizer, prompts), "embeddings": embeddings,
                                "noise": noise}
        return self._validation

    @torch.no_grad()
    def validation_loss(self, model) -> dict[str, float]:
        device = next(model.parameters()).device
        self._to(device)
        inputs = self._validation_inputs(device)
        latents, unet = inputs["latents"].to(device), unet_of(model)
        if isinstance(model, UNetWithTextEncoder):
            ids = inputs["token_ids"].to(device)
            embeddings = torch.cat([model.encode(ids[s:s + 32]) for s in range(0, ids.shape[0], 32)]).float()
        else:
            embeddings = inputs["embeddings"].to(device)
        metrics, losses = {}, []
        for k, t in enumerate(VALIDATION_TIMESTEPS):
            timesteps = torch.full((latents.shape[0],), t, dtype=torch.int64, device=device)
            noise = inputs["noise"][k].to(device)
            noisy = self.noise_scheduler.add_noise(latents, noise, timesteps)
            target = diffusion_target(self.noise_scheduler, latents, noise, timesteps)
            prediction = torch.cat([unet(noisy[s:s + 32], timesteps[s:s + 32], encoder_hidden_states=embeddings[s:s + 32]).sample
                                    for s in range(0, latents.shape[0], 32)])
            loss = float(diffusion_loss(prediction, target))
            metrics[f"loss_t{t}"] = loss
            losses.append(loss)
        prefix = "" if inputs["split"] == "validation" else "train_subset_"  # say so when no validation split exists
        return {f"{prefix}{k}": v for k, v in {"loss": sum(losses) / len(losses), **metrics}.items()}

    def validation_prompts(self) -> list[str]:
        if self.cfg.validation_prompts:
            return list(self.cfg.validation_prompts)
        _, records = self._validation_split()
        return [r.captions[0] for r in records[:self.cfg.num_validation_prompts]]

    def sample_grid(self, model, step: int, out_dir: Path):
        """Generate one image per validation prompt through the pipeline that will be exported; the grid
        (a PIL image, or None without prompts) is saved as samples/step_*.png and returned."""
        prompts = self.validation_prompts()
        if not prompts:
            return None
        pipe = self.pipeline(model)
        pipe.set_progress_bar_config(disable=True)
        size = self.dataset.image_size
        generators = [cpu_generator(SAMPLE_SEED + i) for i in range(len(prompts))]
        images = pipe(prompts, num_inference_steps=self.cfg.sample_steps, guidance_scale=DEFAULT_GUIDANCE,
                      height=size, width=size, generator=generators).images
        columns = min(len(images), 4)
        rows = (len(images) + columns - 1) // columns
        images += [images[0].copy().point(lambda _: 255)] * (rows * columns - len(images))  # white padding cells
        folder = out_dir / SAMPLES_DIR
        folder.mkdir(parents=True, exist_ok=True)
        grid = make_image_grid(images, rows=rows, cols=columns)
        grid.save(folder / f"step_{step:07d}.png")
        (folder / f"step_{step:07d}.txt").write_text("\n".join(prompts) + "\n", encoding="utf-8")
        return grid

    def validate(self, model, step: int, out_dir: Path) -> dict[str, float]:
        out_dir = Path(out_dir)
        metrics = self.validation_loss(model)
        grid = self.sample_grid(model, step, out_dir)
        with open(out_dir / VALIDATION_METRICS_FILE, "a", encoding="utf-8") as f:
            f.write(json.dumps({"step": step, **metrics}, sort_keys=True) + "\n")
        return metrics if grid is None else {**metrics, "samples": grid}  # the loop shows the grid in TensorBoard

    # ------------------------------------------------------------------ export

    def pipeline(self, model):
        """A StableDiffusionPipeline assembled in memory around `model` (no copy of the weights): its U-Net, and
        its text encoder when it trains one."""
        from latentdiff.models.weights import stable_diffusion_pipeline_class

        text_encoder = model.text_encoder if isinstance(model, UNetWithTextEncoder) else self.text_encoder
        return stable_diffusion_pipeline_class()(vae=self.vae, text_encoder=text_encoder, tokenizer=self.tokenizer,
                                       unet=unet_of(model), scheduler=pipeline_scheduler(self.noise_scheduler),
                                       safety_checker=None, feature_extractor=None, requires_safety_checker=False)

    def export(self, model, out_dir: Path) -> None:
        """The pipeline folder: model_index.json, unet/ (EMA weights when EMA is on: the loop copies them
        in before calling this), vae/, text_encoder/ (trained, and averaged, with --train-text-encoder), tokenizer/,
        scheduler/ (with the training's prediction_type), all weights in safetensors."""
        self.pipeline(model).save_pretrained(out_dir, safe_serialization=True)
        write_model_name(out_dir)  # 'shapes' for runs/shapes/pipeline, not 'pipeline' for every run
