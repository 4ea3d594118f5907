"""VaeTask: an AutoencoderKL trained with reconstruction + KL inside the one training loop.

Validation: PSNR and SSIM (`latentdiff.evaluation.vae_metrics`, the numbers `evaluate` reports) of the
validation images' reconstructions (decoded from the posterior mean, so deterministic), and a grid PNG
with the originals on top and their reconstructions below.
Export: the latents' scaling factor is measured on training images (Rombach et al. 2022, Sec. 4.3.2: the
KL-regularised latents are rescaled by 1/std estimated on a batch of training data; the LDM code's
`scale_by_std` computes `1 / z.flatten().std()`); diffusers keeps it as the VAE config's
`scaling_factor`, which is set before `save_pretrained` (safetensors).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from latentdiff.checkpoint import write_json_atomic
from latentdiff.config import VAE_COLOUR_CELL_SIZE as DEFAULT_COLOUR_CELL_SIZE
from latentdiff.data.prepared import ImageCaptionDataset, PreparedDataset
from latentdiff.evaluation.vae_metrics import reconstruct, reconstruction_metrics
from latentdiff.losses.vae import vae_loss
from latentdiff.models.vae import VaeForTraining

METRICS_FILENAME = "validation_metrics.json"
VALIDATION_DIRNAME = "validation"
EVAL_BATCH_SIZE = 32  # images encoded at once during validation and scaling-factor measurement
GRID_IMAGES = 8  # columns of the reconstruction grid
SCALING_SEED = 0  # the latents whose std is measured are sampled with this seed: same data, same factor


def reconstruction_grid(originals: torch.Tensor, reconstructions: torch.Tensor):
    """A PIL image: originals (B, 3, H, W) in [0, 1] in the top row, their reconstructions below."""
    rows = [torch.cat(list(images), dim=2) for images in (originals, reconstructions)]  # (3, H, B*W) each
    grid = torch.cat(rows, dim=1)  # (3, 2H, B*W)
    return Image.fromarray((grid * 255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy())


def _batches(dataset: ImageCaptionDataset, count: int, batch_size: int):
    """(B, 3, H, W) tensors of the first `count` items of `dataset`, in order."""
    for start in range(0, count, batch_size):
        yield torch.stack([dataset[i]["pixel_values"] for i in range(start, min(count, start + batch_size))])


@torch.no_grad()
def measure_scaling_factor(vae, dataset: ImageCaptionDataset, max_images: int) -> float:
    """1 / std of the latents z ~ q(z|x) of up to `max_images` training images (LDM's estimate: the
    std of all latent values pooled, `1 / z.flatten().std()`), so that the diffusion model sees latents
    of about unit variance."""
    count = len(dataset) if max_images <= 0 else min(max_images, len(dataset))
    generator = torch.Generator("cpu").manual_seed(SCALING_SEED)
    device = next(vae.parameters()).device
    latents = []
    for pixels in _batches(dataset, count, EVAL_BATCH_SIZE):
        posterior = vae.encode(pixels.to(device)).latent_dist
        latents.append(posterior.sample(generator=generator).flatten().cpu())  # B*C*(H/f)*(W/f) values
    std = float(torch.cat(latents).double().std())
    if not math.isfinite(std) or std <= 0:
        raise RuntimeError(f"the latents' standard deviation is {std}; the VAE did not train properly")
    return 1.0 / std


def random_crops(pixels: torch.Tensor, size: int, generator: torch.Generator) -> torch.Tensor:
    """(B, 3, H, W) -> (B, 3, size, size): one uniformly placed crop per image, drawn from `generator`."""
    height, width = pixels.shape[-2:]
    if size >= min(height, width):
        return pixels
    tops = torch.randint(0, height - size + 1, (pixels.shape[0],), generator=generator).tolist()
    lefts = torch.randint(0, width - size + 1, (pixels.shape[0],), generator=generator).tolist()
    return torch.stack([image[:, top:top + size, left:left + size] for image, top, left in zip(pixels, tops, lefts)])


class VaeTask:
    name = "vae"

    def __init__(self, vae, dataset: PreparedDataset, *, reconstruction_loss: str, kl_weight: float,
                 scaling_images: int, validation_images: int, crop_size: int = 0, colour_weight: float = 0.0,
                 colour_space: str = "rgb", colour_cell_size: int = DEFAULT_COLOUR_CELL_SIZE,
                 decoder_only: bool = False):
        self.module = VaeForTraining(vae)
        self.train_split = ImageCaptionDataset(dataset, "train")
        self.validation_split = ImageCaptionDataset(dataset, "validation")
        self.reconstruction_loss, self.kl_weight = reconstruction_loss, kl_weight
        self.scaling_images, self.validation_images = scaling_images, validation_images
        self.crop_size, self.colour_weight, self.decoder_only = crop_size, colour_weight, decoder_only
        self.colour_space, self.colour_cell_size = colour_space, colour_cell_size
        if decoder_only:
            # The encoder and its quant_conv stay as they are, so the latents (and the scaling factor a U-Net
            # was trained with) do not move; the loop's optimizer only takes parameters that need grads.
            vae.encoder.requires_grad_(False)
            if getattr(vae, "quant_conv", None) is not None:
                vae.quant_conv.requires_grad_(False)

    # ------------------------------------------------------------------ TrainingTask

    def trainable_module(self) -> torch.nn.Module:
        return self.module

    def train_dataset(self) -> torch.utils.data.Dataset:
        return self.train_split

    def collate(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        return {"pixel_values": torch.stack([item["pixel_values"] for item in items])}  # (B, 3, H, W)

    def loss(self, model: torch.nn.Module, batch: dict[str, Any], generator: torch.Generator) -> tuple[torch.Tensor, dict[str, float]]:
        pixels = batch["pixel_values"]  # (B, 3, H, W)
        if self.crop_size:
            pixels = random_crops(pixels, self.crop_size, generator)  # (B, 3, crop, crop)
        decoded, posterior = model(pixels, generator)
        return vae_loss(decoded, pixels, posterior, kl_weight=self.kl_weight, reconstruction=self.reconstruction_loss,
                        colour_weight=self.colour_weight, colour_space=self.colour_space,
                        colour_cell_size=self.colour_cell_size)

    @torch.no_grad()
    def validate(self, model: torch.nn.Module, step: int, out_dir: Path) -> dict[str, Any]:
        count = len(self.validation_split)
        if self.validation_images > 0:
            count = min(count, self.validation_images)
        originals = (torch.cat(list(_batches(self.validation_split, count, EVAL_BATCH_SIZE))) + 1) / 2  # (N, 3, H, W) in [0, 1]
        # Decoded from the posterior mean (no sampling), so the same weights always score the same.
        reconstructions = reconstruct(model.vae, originals, batch_size=EVAL_BATCH_SIZE)  # (N, 3, H, W) in [0, 1]
        metrics = {**reconstruction_metrics(reconstructions, originals), "num_images": float(count)}
        folder = Path(out_dir) / VALIDATION_DIRNAME
        folder.mkdir(parents=True, exist_ok=True)
        grid = reconstruction_grid(originals[:GRID_IMAGES], reconstructions[:GRID_IMAGES])
        grid.save(folder / f"reconstructions-step{step:06d}.png")
        write_json_atomic(Path(out_dir) / METRICS_FILENAME, {"step": step, **metrics})
        return {**metrics, "reconstructions": grid}  # the loop shows the grid in TensorBoard

    @torch.no_grad()
    def export(self, model: torch.nn.Module, out_dir: Path) -> None:
        vae = model.vae
        if not self.decoder_only:  # a fixed encoder keeps the factor the U-Net was trained with
            scaling_factor = measure_scaling_factor(vae, self.train_split, self.scaling_images)
            vae.register_to_config(scaling_factor=scaling_factor)
        scaling_factor = vae.config.scaling_factor
        vae.save_pretrained(out_dir, safe_serialization=True)
        how = ("kept: the encoder was not trained" if self.decoder_only else
               f"1 / std of the latents of {min(len(self.train_split), self.scaling_images or len(self.train_split))} "
               f"training images")
        print(f"[vae] scaling_factor = {scaling_factor:.5f} ({how}); saved to {Path(out_dir) / 'config.json'}", flush=True)
