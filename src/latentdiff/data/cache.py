"""On-disk caches of what the frozen VAE and text encoder make of a dataset split, computed once.

Training the U-Net never changes the VAE or the text encoder, so encoding every image and caption once
(instead of at every step of every epoch) removes most of the per-step cost of a small U-Net (see
`benchmarks/bench_train_unet.py`). One safetensors file per split holds:

    latent_mean, latent_std  (N, C, h, w) float32  the VAE posterior N(mean, std^2) of each image, unscaled
    caption_index            (N, K) int64          rows of `text_embeddings` for the image's captions, -1 = none
    text_embeddings          (M, L, D) float16     CLIP text encoder last hidden state of every distinct
                                                   caption, padded to the tokenizer's max length as the
                                                   pipeline does; row 0 is the empty prompt (caption dropout)

Why mean AND std: Stable Diffusion trains on `latent_dist.sample()`, a fresh draw per step; keeping the
posterior's std lets us draw z = mean + std * eps with the training generator, so the U-Net sees the same
distribution the decoder was trained to decode (and a little free augmentation), for 2x the disk of
the mean alone (4 KiB per 64x64 image at 4x16x16).
Why float16 embeddings: a split of 19,000 captions x 77 tokens x 256 dims is 1.5 GB in float32; the
embeddings are LayerNorm outputs (|x| in the tens at most) whose float16 rounding (relative 5e-4) is far
below what caption dropout and timestep noise already vary.

The file name carries a hash of everything that produced it (VAE weights + config, text encoder weights +
config, tokenizer, the dataset's manifest and the split's metadata, the image size, this format's
version), so a second run, or a later epoch, reuses it, and a changed VAE or dataset makes a new one.
Multi-process: the main process builds while the others wait (`main_process_first`), then all read it.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from latentdiff.data.prepared import MANIFEST_FILENAME, METADATA_FILENAME, ImageCaptionDataset, PreparedDataset
from latentdiff.errors import UserError

CACHE_FORMAT_VERSION = 1
EMPTY_PROMPT = ""
EMPTY_PROMPT_ROW = 0  # text_embeddings[0] is always the empty prompt
ENCODE_BATCH_SIZE = 32  # images / captions per forward pass while building
EMBEDDING_DTYPE = torch.float16
DEFAULT_CACHE_SUBDIR = ".latentdiff-cache"  # inside the dataset folder: the cache belongs to the data


@dataclass
class EncodedSplit:
    latent_mean: torch.Tensor  # (N, C, h, w) float32, unscaled VAE posterior mean
    latent_std: torch.Tensor  # (N, C, h, w) float32
    caption_index: torch.Tensor  # (N, K) int64, -1 padded
    text_embeddings: torch.Tensor  # (M, L, D) float16, row 0 = empty prompt
    path: Path
    built: bool  # False when it was read from an earlier run's file

    def __len__(self) -> int:
        return self.latent_mean.shape[0]


# ------------------------------------------------------------------------------------ keys


# Config entries that say where or with which library version a model was loaded, not what it computes:
# the same weights copied to another folder must hit the same cache.
_CONFIG_KEYS_IGNORED = frozenset({"_name_or_path", "_commit_hash", "transformers_version", "_diffusers_version",
                                  "_use_default_values"})


def _hash_module(digest: "hashlib._Hash", module: torch.nn.Module) -> None:
    config = module.config.to_dict() if hasattr(module.config, "to_dict") else dict(module.config)
    config = {k: v for k, v in config.items() if k not in _CONFIG_KEYS_IGNORED}
    digest.update(json.dumps(config, sort_keys=True, default=str).encode())
    for name, tensor in sorted(module.state_dict().items()):
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.view(-1).view(torch.uint8).numpy().tobytes())


def cache_key(vae, text_encoder, tokenizer, dataset: PreparedDataset, split: str) -> str:
    """A hex digest of everything the cached tensors depend on."""
    digest = hashlib.sha256(f"latentdiff-cache-v{CACHE_FORMAT_VERSION}:{split}:{dataset.image_size}".encode())
    _hash_module(digest, vae)
    _hash_module(digest, text_encoder)
    digest.update(tokenizer.backend_tokenizer.to_str().encode())
    digest.update(f"max_length={tokenizer.model_max_length}".encode())
    digest.update((dataset.root / MANIFEST_FILENAME).read_bytes())
    metadata = dataset.root / split / METADATA_FILENAME
    digest.update(metadata.read_bytes() if metadata.exists() else b"")
    return digest.hexdigest()


# ------------------------------------------------------------------------------------ encoding


@torch.no_grad()
def encode_prompts(text_encoder, tokenizer, prompts: list[str]) -> torch.Tensor:
    """(len(prompts), L, D) last hidden states, tokenized exactly as StableDiffusionPipeline.encode_prompt
    does (padded to model_max_length, truncated, no attention mask), so training sees what generation sees."""
    device = next(text_encoder.parameters()).device
    tokens = tokenizer(prompts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                       return_tensors="pt")
    return text_encoder(tokens.input_ids.to(device))[0]


@torch.no_grad()
def encode_images(vae, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, 3, H, W) in [-1, 1] -> posterior (mean, std), each (B, C, H/f, W/f), unscaled."""
    device = next(vae.parameters()).device
    posterior = vae.encode(pixel_values.to(device)).latent_dist
    return posterior.mean, posterior.std


def _build(vae, text_encoder, tokenizer, dataset: PreparedDataset, split: str, desc: str) -> dict[str, torch.Tensor]:
    images = ImageCaptionDataset(dataset, split)
    captions_per_image = [record.captions for record in images.records]
    distinct = [EMPTY_PROMPT] + sorted({c for caps in captions_per_image for c in caps} - {EMPTY_PROMPT})
    row_of = {caption: row for row, caption in enumerate(distinct)}
    width = max(len(caps) for caps in captions_per_image)
    caption_index = torch.full((len(images), width), -1, dtype=torch.int64)
    for i, caps in enumerate(captions_per_image):
        caption_index[i, :len(caps)] = torch.tensor([row_of[c] for c in caps], dtype=torch.int64)

    total = len(images) + len(distinct)
    means, stds, embeddings = [], [], []
    with tqdm(total=total, desc=desc, unit="item", dynamic_ncols=True) as bar:
        for start in range(0, len(images), ENCODE_BATCH_SIZE):
            batch = torch.stack([images[i]["pixel_values"] for i in range(start, min(start + ENCODE_BATCH_SIZE, len(images)))])
            mean, std = encode_images(vae, batch)
            means.append(mean.float().cpu())
            stds.append(std.float().cpu())
            bar.update(len(batch))
        for start in range(0, len(distinct), ENCODE_BATCH_SIZE):
            chunk = distinct[start:start + ENCODE_BATCH_SIZE]
            embeddings.append(encode_prompts(text_encoder, tokenizer, chunk).to("cpu", EMBEDDING_DTYPE))
            bar.update(len(chunk))
    return {"latent_mean": torch.cat(means).contiguous(), "latent_std": torch.cat(stds).contiguous(),
            "caption_index": caption_index, "text_embeddings": torch.cat(embeddings).contiguous()}


def cache_path(cache_dir: Path, split: str, key: str) -> Path:
    return cache_dir / f"{split}-{key[:24]}.safetensors"


def load_or_build(vae, text_encoder, tokenizer, dataset: PreparedDataset, split: str,
                  cache_dir: str | Path | None = None) -> EncodedSplit:
    """The encoded split: read from `cache_dir` when an identical one was built before, else built (by the
    main process; others wait for it) and written atomically (temporary file, then rename)."""
    from safetensors.torch import load_file, save_file

    from latentdiff.runtime import process_state

    cache_dir = Path(cache_dir) if cache_dir else dataset.root / DEFAULT_CACHE_SUBDIR
    key = cache_key(vae, text_encoder, tokenizer, dataset, split)
    path = cache_path(cache_dir, split, key)
    built = False
    with process_state().main_process_first():
        if not path.exists():
            tensors = _build(vae, text_encoder, tokenizer, dataset, split, desc=f"caching {split} latents + text")
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            try:
                cache_dir.mkdir(parents=True, exist_ok=True)
                save_file(tensors, str(tmp), metadata={"key": key, "split": split, "dataset": str(dataset.root),
                                                       "format_version": str(CACHE_FORMAT_VERSION)})
                os.replace(tmp, path)
            except OSError as err:
                tmp.unlink(missing_ok=True)
                raise UserError(f"Could not write the latent cache to {cache_dir} ({err.strerror or err}); pass "
                                f"--cache-dir a writable folder with free space.") from None
            built = True
    tensors = load_file(str(path))
    return EncodedSplit(latent_mean=tensors["latent_mean"], latent_std=tensors["latent_std"],
                        caption_index=tensors["caption_index"], text_embeddings=tensors["text_embeddings"],
                        path=path, built=built)
