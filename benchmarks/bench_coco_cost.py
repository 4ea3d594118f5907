"""What one training sample costs each stage with the `base` presets (the COCO recipe, runs/coco.sh):
FLOPs of forward + backward counted by `torch.utils.flop_counter.FlopCounterMode`, and the wall time of
one forward + backward at batch 1 (CLIP: 2) measured here (CPU, fp32); then GPU-hours for COCO DERIVED from the FLOPs
at a stated peak and MFU (not measured on a GPU).

    nice -n 15 OMP_NUM_THREADS=1 python benchmarks/bench_coco_cost.py [--stages clip vae unet] [--mfu 0.4]

Inputs per sample, as the recipe trains them: CLIP base (224 px image, 77 tokens), VAE base on 256 px
images (encode + decode + loss), U-Net base on 4x32x32 latents (256 px through the f=8 VAE) with 77 text
tokens of width 512 (the U-Net alone: the latents and text embeddings come from the cache).
FlopCounterMode counts matrix products and convolutions (2 FLOPs per multiply-add), which is how MFU is
defined; norms and activations are left out. Writes benchmarks/results/coco_cost.json.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results_file import write_results  # noqa: E402

COCO_TRAIN_IMAGES = 118_287  # captions_train2017.json
H100_BF16_DENSE_TFLOPS = 989.0  # H100 SXM5, dense bf16 tensor-core peak (NVIDIA datasheet; 1979 is with sparsity)


def clip_step():
    from latentdiff.presets import CLIP_PRESETS
    from latentdiff.losses.contrastive import clip_contrastive_loss
    from latentdiff.models.clip import build_clip
    from latentdiff.models.tokenizer import train_clip_tokenizer

    preset = CLIP_PRESETS["base"]
    words = [f"w{i}" for i in range(2000)]
    tokenizer = train_clip_tokenizer([" ".join(words[i:i + 12]) for i in range(0, 2000, 3)], max(4000, 600), preset.max_text_tokens)
    model = build_clip(preset, tokenizer).train()
    # batch 2: a contrastive loss needs a negative; FLOPs are reported per sample
    pixels = torch.randn(2, 3, preset.image_size, preset.image_size)
    ids = torch.randint(0, len(tokenizer), (2, preset.max_text_tokens))

    def loss():
        out = model(pixel_values=pixels, input_ids=ids)
        return clip_contrastive_loss(out.image_embeds, out.text_embeds, model.logit_scale)

    return model, loss, 2


def vae_step():
    from latentdiff.presets import VAE_PRESETS
    from latentdiff.models.vae import vae_from_preset

    preset = VAE_PRESETS["base"]
    model = vae_from_preset(preset).train()
    pixels = torch.randn(1, 3, preset.image_size, preset.image_size)

    def loss():
        posterior = model.encode(pixels).latent_dist
        recon = model.decode(posterior.sample()).sample
        return (recon - pixels).abs().mean() + 1e-6 * posterior.kl().mean()

    return model, loss, 1


def unet_step():
    from latentdiff.config import CLIP_PRESETS, UNET_PRESETS
    from latentdiff.models.unet import unet_from_preset

    clip = CLIP_PRESETS["base"]
    model = unet_from_preset(UNET_PRESETS["base"], latent_channels=4, sample_size=32,
                             cross_attention_dim=clip.text_width).train()
    latents, text = torch.randn(1, 4, 32, 32), torch.randn(1, clip.max_text_tokens, clip.text_width)
    timesteps = torch.tensor([500])

    def loss():
        return model(latents, timesteps, encoder_hidden_states=text).sample.pow(2).mean()

    return model, loss, 1


STAGES = {"clip": clip_step, "vae": vae_step, "unet": unet_step}


def measure(stage: str) -> dict:
    torch.manual_seed(0)
    model, loss_fn, batch = STAGES[stage]()
    params = sum(p.numel() for p in model.parameters())
    with FlopCounterMode(display=False) as counter:
        loss_fn().backward()
    flops = counter.get_total_flops() / batch
    model.zero_grad(set_to_none=True)
    # One timed forward + backward after the counted one (which also warmed up the allocator). No optimizer
    # step: AdamW's state for the 860M-parameter U-Net (7 GB in fp32) does not fit beside other jobs here,
    # and its cost is per step, not per sample.
    started = time.perf_counter()
    loss_fn().backward()
    step_s = time.perf_counter() - started
    return {"params_m": round(params / 1e6, 2), "train_gflops_per_sample": round(flops / 1e9, 1),
            "cpu_fwd_bwd_s": round(step_s, 2), "batch": batch}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stages", nargs="+", default=list(STAGES), choices=list(STAGES))
    parser.add_argument("--mfu", type=float, default=0.4, help="model FLOPs utilisation assumed for the derivation")
    parser.add_argument("--epochs", type=float, nargs=3, default=[30, 10, 100], metavar=("CLIP", "VAE", "UNET"),
                        help="epochs of COCO each stage trains in the derived cost")
    args = parser.parse_args()
    epochs = dict(zip(STAGES, args.epochs))
    rows = {}
    for stage in args.stages:
        row = measure(stage)
        samples = epochs[stage] * COCO_TRAIN_IMAGES
        seconds = row["train_gflops_per_sample"] * 1e9 * samples / (H100_BF16_DENSE_TFLOPS * 1e12 * args.mfu)
        row.update(epochs=epochs[stage], samples=int(samples), derived_h100_hours=round(seconds / 3600, 1))
        rows[stage] = row
        print(stage, row, flush=True)
    total = round(sum(r["derived_h100_hours"] for r in rows.values()), 1)
    load = os.getloadavg()[0]
    print(f"derived total: {total} H100-hours at {args.mfu:.0%} MFU (load average {load:.2f})")
    write_results({"benchmark": "coco_cost", "stages": rows, "derived_total_h100_hours": total, "mfu": args.mfu,
                   "h100_bf16_dense_tflops": H100_BF16_DENSE_TFLOPS, "coco_train_images": COCO_TRAIN_IMAGES,
                   "torch_threads": torch.get_num_threads(), "load_average_1m": round(load, 2),
                   "note": "FLOPs counted (FlopCounterMode, fwd+bwd, per sample); CPU step times measured here in "
                           "fp32; GPU-hours DERIVED = FLOPs x samples / (peak x MFU), not measured"},
                  Path(__file__).resolve().parent / "results" / "coco_cost.json")


if __name__ == "__main__":
    main()
