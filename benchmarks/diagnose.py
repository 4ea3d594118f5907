"""Diagnose a pipeline by stage (docs/DESIGN.md §8): is the text used, does the VAE keep colours, where
does the U-Net lose the structure of a real image?

    python benchmarks/diagnose.py --model PIPELINE --data EMOJI_DATA [--prompt "red apple"] [--out DIR]

1. Text-conditioning gain: denoising loss (the pipeline's own target: epsilon or v) of --num-images
   training images with their own caption, with another image's caption and with the empty prompt, at
   timesteps 50..950, the same noise for all three. A U-Net that uses the text has a clearly lower loss
   with the true caption.
2. VAE colours: PSNR and mean CIEDE2000 (all / saturated pixels) of the training image named --prompt.
3. img2img from that real image with its own caption at rising strength (diffusers'
   StableDiffusionImg2ImgPipeline over the same components): a grid DIR/img2img.png, one column per strength,
   and the pixel error to the real image per strength.
4. With --swap-prompt: how much each word reaches the U-Net. For each --swaps pair (a word of the prompt and
   another), the largest change over tokens of the text encoder's output, relative to its size, after each
   of its layers (through the final layer norm, as diffusers' clip_skip reads them). A word whose change
   fades towards the last layer is a word the U-Net barely receives (a small CLIP trained on shapes kept
   colour words at ~1.5 but position words at ~0.1; train-unet --clip-skip is the remedy).
Prints a table and writes DIR/diagnosis.json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

TIMESTEPS = (50, 150, 250, 350, 450, 550, 650, 750, 850, 950)
STRENGTHS = (0.3, 0.5, 0.7, 0.85, 0.95, 1.0)
SEED = 0


@torch.no_grad()
def conditioning_gain(pipe, dataset, num_images: int) -> list[dict]:
    """Loss per timestep with the true caption, a shuffled one and the empty prompt."""
    from latentdiff.data.cache import encode_latents, encode_prompts
    from latentdiff.data.prepared import ImageCaptionDataset
    from latentdiff.losses.diffusion import diffusion_loss, diffusion_target

    images = ImageCaptionDataset(dataset, "train")
    records = dataset.records("train")
    count = min(num_images, len(images))
    pixels = torch.stack([images[i]["pixel_values"] for i in range(count)])  # (N, 3, H, W) in [-1, 1]
    latents = encode_latents(pipe.vae, pixels)[0] * pipe.vae.config.scaling_factor  # posterior means (N, C, h, w)
    captions = [records[i].captions[0] for i in range(count)]
    shuffled = captions[1:] + captions[:1]  # another image's caption for each image

    # tokenized as training and generation do: (N, L, D) last hidden states
    conditions = {name: encode_prompts(pipe.text_encoder, pipe.tokenizer, prompts)
                  for name, prompts in (("true", captions), ("other", shuffled), ("empty", [""] * count))}
    scheduler = pipe.scheduler
    generator = torch.Generator().manual_seed(SEED)
    rows = []
    for t in TIMESTEPS:
        noise = torch.randn(latents.shape, generator=generator)
        timesteps = torch.full((count,), t, dtype=torch.int64)
        noisy = scheduler.add_noise(latents, noise, timesteps)
        target = diffusion_target(scheduler, latents, noise, timesteps)
        row = {"t": t}
        for name, embeddings in conditions.items():
            prediction = torch.cat([pipe.unet(noisy[s:s + 32], timesteps[s:s + 32],
                                              encoder_hidden_states=embeddings[s:s + 32]).sample
                                    for s in range(0, count, 32)])
            row[name] = float(diffusion_loss(prediction, target))
        row["gain_vs_other"] = 1 - row["true"] / row["other"]
        rows.append(row)
    return rows


@torch.no_grad()
def word_separation(text_encoder, tokenizer, prompt: str, swaps: list[tuple[str, str]]) -> list[dict]:
    """Per swap (word, other): after each layer k (0: the embeddings), max over tokens of |h - h'| / |h|."""
    from latentdiff.models.clip import text_tower

    tower = text_tower(text_encoder)
    rows = []
    for word, other in swaps:
        if f" {word} " not in f" {prompt} ":
            raise SystemExit(f"--swaps: {word!r} is not a word of --swap-prompt {prompt!r}")
        swapped = f" {prompt} ".replace(f" {word} ", f" {other} ", 1).strip()
        ids = tokenizer([prompt, swapped], padding="max_length", max_length=tokenizer.model_max_length,
                        truncation=True, return_tensors="pt").input_ids
        # (layers + 1) x (2, L, D); transformers returns none at all for a text encoder cut to 0 layers
        # (`train-unet --clip-skip` of every layer), whose only state is the embeddings'
        states = text_encoder(ids, output_hidden_states=True).hidden_states or (tower.embeddings(ids),)
        change = []
        for hidden in states:
            normed = tower.final_layer_norm(hidden)
            change.append(float(((normed[0] - normed[1]).norm(dim=-1) / normed[0].norm(dim=-1)).max()))
        rows.append({"word": word, "other": other, "relative_change_by_layer": change})
    return rows


def find_record(dataset, prompt: str):
    for split in ("train", "validation", "test"):
        for record in dataset.records(split):
            if prompt in record.captions:
                return split, record
    raise SystemExit(f"no image of the dataset has the caption {prompt!r}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="a pipeline folder")
    parser.add_argument("--data", required=True, help="the prepared dataset it was trained on")
    parser.add_argument("--prompt", default="red apple", help="a caption of a real image of the dataset")
    parser.add_argument("--num-images", type=int, default=128, help="training images of the conditioning test")
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--out", default=None, help="default: MODEL/../diagnosis-NAME")
    parser.add_argument("--swap-prompt", default=None, help='e.g. "a red circle on the left" (step 4; default: skipped)')
    parser.add_argument("--swaps", default="red:blue,circle:square,left:right",
                        help="WORD:OTHER pairs of step 4, comma-separated")
    args = parser.parse_args()

    from diffusers import StableDiffusionImg2ImgPipeline, StableDiffusionPipeline
    from diffusers.utils import make_image_grid
    from PIL import Image

    from latentdiff.data.prepared import open_prepared
    from latentdiff.diffusion.schedulers import make_scheduler
    from latentdiff.evaluation.samples import to_tensor
    from latentdiff.evaluation.vae_metrics import colour_error, psnr, reconstruct

    model = Path(args.model)
    out = Path(args.out or model.parent / f"diagnosis-{model.name}")
    out.mkdir(parents=True, exist_ok=True)
    dataset = open_prepared(args.data)
    pipe = StableDiffusionPipeline.from_pretrained(model, torch_dtype=torch.float32, safety_checker=None,
                                                   requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    result = {"model": str(model.resolve()), "prediction_type": pipe.scheduler.config.prediction_type}

    result["conditioning"] = conditioning_gain(pipe, dataset, args.num_images)
    print("t     true    other   empty   gain vs other caption")
    for row in result["conditioning"]:
        print(f"{row['t']:<5} {row['true']:.4f}  {row['other']:.4f}  {row['empty']:.4f}  {row['gain_vs_other']:+.1%}")

    if args.swap_prompt:
        if not all(pair.count(":") == 1 for pair in args.swaps.split(",")):
            raise SystemExit(f"--swaps takes WORD:OTHER pairs separated by commas (got {args.swaps!r}), e.g. left:right,red:blue")
        swaps = [tuple(pair.split(":")) for pair in args.swaps.split(",")]
        result["word_separation"] = word_separation(pipe.text_encoder, pipe.tokenizer, args.swap_prompt, swaps)
        print(f"text encoder output change when one word of {args.swap_prompt!r} is swapped, after layer 0 (embeddings) .. last")
        for row in result["word_separation"]:
            print(f"{row['word']:>10} -> {row['other']:<10} " + " ".join(f"{v:.3f}" for v in row["relative_change_by_layer"]))

    split, record = find_record(dataset, args.prompt)
    with Image.open(record.path) as image:
        real = image.convert("RGB")
    original = to_tensor([real])  # (1, 3, H, W) in [0, 1]
    reconstruction = reconstruct(pipe.vae, original)
    result["vae"] = {"image": record.path.name, "split": split, "psnr_db": float(psnr(reconstruction, original)),
                     **colour_error(reconstruction, original)}
    print(f"VAE on '{args.prompt}' ({split}): {result['vae']['psnr_db']:.2f} dB, "
          f"ΔE2000 {result['vae']['delta_e2000']:.2f} (saturated {result['vae']['delta_e2000_saturated']:.2f})")

    img2img = StableDiffusionImg2ImgPipeline(**pipe.components)
    img2img.scheduler = make_scheduler("ddim", pipe.scheduler.config)
    img2img.set_progress_bar_config(disable=True)
    columns = [real, Image.fromarray((reconstruction[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))]
    result["img2img"] = []
    for strength in STRENGTHS:
        generated = img2img(args.prompt, image=real, strength=strength, num_inference_steps=args.steps,
                            guidance_scale=7.5, generator=torch.Generator().manual_seed(SEED)).images[0]
        error = float((to_tensor([generated]) - original).abs().mean())
        result["img2img"].append({"strength": strength, "mean_abs_error": error})
        columns.append(generated)
        print(f"img2img strength {strength:.2f}: mean |generated - real| = {error:.3f}")
    grid = make_image_grid(columns, rows=1, cols=len(columns))
    grid.save(out / "img2img.png")
    (out / "diagnosis.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out / 'img2img.png'} (real, VAE reconstruction, then strengths {', '.join(map(str, STRENGTHS))}) "
          f"and {out / 'diagnosis.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
