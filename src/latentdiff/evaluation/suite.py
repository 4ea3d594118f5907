"""What `latentdiff evaluate` measures for each kind of model, as plain dicts of numbers.

- a pipeline: its generations (fd_lite0 with its noise floor, prompt fidelity, CLIP score, attributes,
  optionally FID), optionally over a guidance sweep; plus its VAE's reconstructions;
- a CLIP folder: retrieval both ways and the CLIP score of the real pairs;
- a VAE folder: PSNR, SSIM and fd_lite0 of reconstructions.
Every distance is given with the same distance between two disjoint halves of the real images (the noise
floor: what a perfect model would score at that number of images), and `*_half` distances are measured
at that same size so the two can be compared directly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from PIL import Image

from latentdiff.evaluation.attributes import attribute_accuracy, is_shapes_dataset
from latentdiff.evaluation.clip_score import clip_retrieval, clip_score, encode_images, encode_texts
from latentdiff.evaluation.frechet import frechet_distance, split_halves
from latentdiff.evaluation.prompt_fidelity import prompt_fidelity
from latentdiff.evaluation.samples import RealSet, generate_for_captions, to_tensor
from latentdiff.evaluation.vae_metrics import reconstruct, reconstruction_metrics


@dataclass
class Clip:
    """A CLIP folder loaded for scoring (model, tokenizer, image processor) and where it came from."""

    model: Any
    tokenizer: Any
    processor: Any
    path: str
    matches_text_encoder: bool | None = None  # None: not checked (no pipeline)


@dataclass
class RealReference:
    """The real side of every comparison, computed once: images, their features, the floor."""

    real: RealSet
    features: torch.Tensor  # (N, 1280) float64
    noise_floor: float  # fd_lite0 between the two halves of the real images
    halves: tuple[list[int], list[int]] = field(default_factory=lambda: ([], []))


def real_reference(real: RealSet, extractor) -> RealReference:
    features = extractor(to_tensor(real.images))
    first, second = split_halves(len(real.images))
    return RealReference(real, features, frechet_distance(features[first], features[second]), (first, second))


def fidelity(generated_features: torch.Tensor, ref: RealReference) -> dict[str, Any]:
    """fd_lite0 over all images, and at half size against the other half of the real images."""
    first, second = ref.halves
    return {
        "fd_lite0": frechet_distance(generated_features, ref.features),
        "fd_lite0_half": frechet_distance(generated_features[first], ref.features[second]),
        "noise_floor": ref.noise_floor,
        "num_images": int(ref.features.shape[0]),
        "num_images_half": len(first),
    }


def clip_scores(clip: Clip, images: list[Image.Image], captions: list[str]) -> dict[str, float]:
    return clip_score(encode_images(clip.model, clip.processor, images),
                      encode_texts(clip.model, clip.tokenizer, captions))


def _arrays(images: list[Image.Image]) -> list[np.ndarray]:
    return [np.asarray(image.convert("RGB"), dtype=np.uint8) for image in images]


def evaluate_generations(text_to_image, ref: RealReference, extractor, *, seed: int, steps: int, guidance: float,
                         scheduler: str, batch_size: int, clip: Clip | None) -> tuple[dict[str, Any], list]:
    """Generate one image per caption at `guidance` and measure them; returns (metrics, GeneratedImages)."""
    real = ref.real
    results = generate_for_captions(text_to_image, real.captions, seed=seed, steps=steps, guidance=guidance,
                                    scheduler=scheduler, batch_size=batch_size, desc=f"generating (guidance {guidance:g})")
    images = [result.image for result in results]
    features = extractor(to_tensor(images))  # (N, 1280)
    metrics: dict[str, Any] = {"guidance": guidance, "fidelity": fidelity(features, ref),
                               "prompt_fidelity": prompt_fidelity(features, ref.features, real.captions, real.all_captions)}
    if clip is not None:
        metrics["clip_score"] = clip_scores(clip, images, real.captions)
    if is_shapes_dataset(real.attributes):
        metrics["attributes"] = attribute_accuracy(_arrays(images), real.attributes, real.captions)
    return metrics, results


def evaluate_real_against_captions(ref: RealReference, clip: Clip | None) -> dict[str, Any]:
    """The same scores for the real images themselves: the ceiling the generated ones are read against."""
    real = ref.real
    metrics: dict[str, Any] = {"prompt_fidelity": prompt_fidelity(ref.features, ref.features, real.captions,
                                                                  real.all_captions)}
    if clip is not None:
        metrics["clip_score"] = clip_scores(clip, real.images, real.captions)
    if is_shapes_dataset(real.attributes):
        metrics["attributes"] = attribute_accuracy(_arrays(real.images), real.attributes, real.captions)
    return metrics


def evaluate_vae(vae, ref: RealReference, extractor) -> tuple[dict[str, Any], list[Image.Image]]:
    """PSNR, SSIM and colour error (CIEDE2000) of each image against its reconstruction (means), and
    fd_lite0 of the reconstructions. On `shapes` data also the attribute accuracy of the reconstructions: the
    most a U-Net generating in this latent space can score (a crop-trained decoder once capped shape at 0.65)."""
    originals = to_tensor(ref.real.images)  # (N, 3, H, W) in [0, 1]
    reconstructions = reconstruct(vae, originals)
    metrics = {**reconstruction_metrics(reconstructions, originals), "fidelity": fidelity(extractor(reconstructions), ref)}
    arrays = (reconstructions.permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)  # (N, H, W, 3)
    if is_shapes_dataset(ref.real.attributes):
        metrics["attributes"] = attribute_accuracy(list(arrays), ref.real.attributes, ref.real.captions)
    return metrics, [Image.fromarray(a) for a in arrays]


def evaluate_clip(clip: Clip, real: RealSet) -> dict[str, Any]:
    return {"retrieval": clip_retrieval(clip.model, clip.tokenizer, clip.processor, real.images, real.all_captions),
            "clip_score_real": clip_scores(clip, real.images, real.captions),
            "num_images": len(real.images), "num_captions": sum(len(c) for c in real.all_captions)}


def sweep_row(metrics: dict[str, Any]) -> dict[str, Any]:
    """The numbers of one guidance scale that the trade-off plot and table show."""
    row = {"guidance": metrics["guidance"], "fd_lite0": metrics["fidelity"]["fd_lite0"],
           "fd_lite0_half": metrics["fidelity"]["fd_lite0_half"],
           "prompt_fidelity_top1": metrics["prompt_fidelity"]["top1"],
           "prompt_fidelity_top5": metrics["prompt_fidelity"]["top5"],
           "prompt_fidelity_chance_top1": metrics["prompt_fidelity"]["chance_top1"],
           "prompt_fidelity_chance_top5": metrics["prompt_fidelity"]["chance_top5"]}
    if "clip_score" in metrics:
        row["clip_score"] = metrics["clip_score"]["score"]
        row["clip_mean_cosine"] = metrics["clip_score"]["mean_cosine"]
    if "attributes" in metrics:
        row["attributes_overall"] = metrics["attributes"]["accuracy"].get("overall")
    return row
