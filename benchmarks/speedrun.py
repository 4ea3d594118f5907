"""The speedrun: train the whole chain from nothing for a fixed wall-clock budget, then measure it.

    OMP_NUM_THREADS=1 python benchmarks/speedrun.py --name NAME --data EMOJI_DATA --budget-min 30 \
        [--clip-share 0.1 --vae-share 0.25] [--clip "--preset small ..."] [--vae "..."] [--unet "..."]

Like nanoGPT's speedrun, a recipe is judged by what it reaches in a fixed time on this machine: a change
to the default recipe must beat the last record of docs/speedrun.md at equal budget. The budget covers
the three training stages (setup, latent/text caches and export included); each stage trains with
`--max-minutes` (the loop times its first steps and fixes the step count so the LR schedule ends on
time). CLIP gets `clip_share` of the budget, the VAE `vae_share` of it plus what CLIP left, the U-Net
whatever is left. `--clip/--vae/--unet` add a stage's own flags (e.g. `--unet "--prediction-type
v_prediction --zero-terminal-snr"`), so every ablation is one command.

Measured afterwards, with fixed seeds (outside the budget):
- VAE: PSNR, SSIM, mean CIEDE2000 colour error (all pixels, saturated pixels) on the test split, and the
  prompt fidelity of its reconstructions of the same concepts: the ceiling a U-Net in its latent space can reach;
- emoji: prompt fidelity on TRAINING concepts (the first --num-concepts training images, each asked by its
  name in en, fr, es, de, zh, ja; a hit when the concept's own image is among the k nearest of all
  training images, EfficientNet-Lite0 features) and on held-out TEST concepts (English, ranked among the
  test images); shapes: attribute accuracy (colour, shape, count, position) on the test split through
  `latentdiff evaluate`;
- wall time and samples/s per stage, parameter counts.
Writes runs/speedrun/NAME/speedrun.json and benchmarks/results/speedrun/NAME.json, and prints the row for
docs/speedrun.md.

    python benchmarks/speedrun.py --name NAME --data EMOJI_DATA --measure PIPELINE --guidance 2 \
        [--splits train_spread --num-concepts 150] [--guidance-rescale 0.7] [--guidance-interval 500,999]

measures a finished pipeline only: `--splits` picks which emoji measurements to make (a larger sample of one
costs minutes, not the other two), `--guidance-rescale` sets diffusers' `guidance_rescale` on every image,
`--guidance-interval T_LOW,T_HIGH` guides only at those timesteps (`eval_guidance_interval.py`).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import time
from pathlib import Path

from eval_guidance_interval import guide_in_interval_every_call
from eval_guidance_rescale import rescale_every_call
from multilingual_agreement import LANGUAGES, concepts, score_languages
from results_file import write_results

REPO = Path(__file__).resolve().parent.parent
RESULTS_DIR = Path(__file__).resolve().parent / "results" / "speedrun"
SEED = 0
MEASURE_STEPS = 20  # denoising steps of the measurement
# The emoji measurements: name -> (dataset split, languages asked, spread over the split?). "train": the first
# training emoji (mostly flags: comparable with the earlier rows); "train_spread": as many spread over the split;
# "test": the held-out emoji, in English.
EMOJI_MEASUREMENTS = {"train": ("train", LANGUAGES, False), "train_spread": ("train", LANGUAGES, True),
                      "test": ("test", ("en",), False)}
MEASURE_CONCEPTS = 50  # concepts (images) generated per language
MIN_STAGE_MINUTES = 0.5
ALIGNED_CLIP = "clip-aligned"  # the text encoder aligned across languages, beside the CLIP it starts from


def commit() -> str:
    try:
        return subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def run_stage(module, argv: list[str], command: str | None = None) -> float:
    """Run a stage's main(argv) in process; returns its wall seconds. A failing stage stops the speedrun.
    `command` is what the log shows it as (default: the latentdiff command of a latentdiff stage module)."""
    started = time.perf_counter()
    command = command or f"latentdiff {module.__name__.rsplit('.', 1)[-1].replace('_', '-')}"
    print(f"$ {command} {shlex.join(argv)}", flush=True)
    status = module.main(argv)
    if status:
        raise SystemExit(f"the stage failed with status {status}")
    return time.perf_counter() - started


def samples_per_second(out: Path) -> float | None:
    """The loop's last logged train/samples_per_s, from the stage's TensorBoard log."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    logs = out / "logs"
    if not logs.is_dir():
        return None
    events = EventAccumulator(str(logs))
    events.Reload()
    if "train/samples_per_s" not in events.Tags().get("scalars", []):
        return None
    return round(events.Scalars("train/samples_per_s")[-1].value, 2)


def align_text(args, work: Path) -> float:
    """`latentdiff align-text` on the CLIP just trained (docs/speedrun/text-encoder.md, "One emoji, one condition");
    returns its wall seconds. A finished alignment is skipped (by the stage itself), so a rerun resumes after it."""
    from latentdiff.stages import align_text as align_text_stage

    argv = ["--clip", str(work / "clip"), "--data", args.data, "--out", str(work / ALIGNED_CLIP),
            "--seed", str(SEED)] + shlex.split(args.align_text)
    return run_stage(align_text_stage, argv)


def train_chain(args, work: Path) -> dict:
    from latentdiff.checkpoint import COMPLETE_MARKER
    from latentdiff.stages import train_clip, train_unet, train_vae

    budget_s = args.budget_min * 60
    started = time.perf_counter()

    def minutes_until(budget_fraction: float) -> float:
        """Minutes from now until `budget_fraction` of the budget has passed (at least MIN_STAGE_MINUTES)."""
        return max(MIN_STAGE_MINUTES, (budget_fraction * budget_s - (time.perf_counter() - started)) / 60)

    common = ["--data", args.data, "--seed", str(SEED), "--max-steps", "1000000"]
    stages = {}
    clip_minutes = minutes_until(args.clip_share)
    stages["clip"] = {"seconds": run_stage(train_clip, common + ["--out", str(work / "clip"), "--max-minutes",
                                           f"{clip_minutes:.3f}", "--validate-every", "0"] + shlex.split(args.clip))}
    clip_dir = work / "clip"
    if args.align_text is not None:  # inside the budget: the VAE gets what the alignment leaves
        stages["align_text"] = {"seconds": round(align_text(args, work), 1)}
        clip_dir = work / ALIGNED_CLIP
    vae_minutes = minutes_until(args.clip_share + args.vae_share)
    stages["vae"] = {"seconds": run_stage(train_vae, common + ["--out", str(work / "vae"), "--max-minutes",
                                          f"{vae_minutes:.3f}", "--validate-every", "0"] + shlex.split(args.vae))}
    # The U-Net stage spends time outside the loop (caches, final validation grid, export): keep a margin.
    unet_minutes = max(MIN_STAGE_MINUTES, minutes_until(1.0) - args.unet_overhead_min)
    stages["unet"] = {"seconds": run_stage(train_unet, common + [
        "--out", str(work / "pipeline"), "--clip", str(clip_dir), "--vae", str(work / "vae"),
        "--max-minutes", f"{unet_minutes:.3f}", "--validate-every", "0", "--num-validation-prompts", "4"]
        + shlex.split(args.unet))}
    for name, folder in (("clip", "clip"), ("vae", "vae"), ("unet", "pipeline")):
        marker = work / folder / COMPLETE_MARKER
        state = json.loads(marker.read_text()) if marker.is_file() else {}
        stages[name].update({"steps": state.get("step"), "samples_per_s": samples_per_second(work / folder),
                             "seconds": round(stages[name]["seconds"], 1)})
    return {"stages": stages, "train_seconds": round(time.perf_counter() - started, 1)}


def parameter_counts(work: Path, pipeline: Path) -> dict:
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPModel

    count = lambda model: sum(p.numel() for p in model.parameters())  # noqa: E731
    clip = work / "clip" if (work / "clip").is_dir() else pipeline / "clip"  # the bundled model keeps it inside
    return {"clip": count(CLIPModel.from_pretrained(clip)) if clip.is_dir() else None,
            "vae": count(AutoencoderKL.from_pretrained(pipeline, subfolder="vae")),
            "unet": count(UNet2DConditionModel.from_pretrained(pipeline, subfolder="unet"))}


def measure_vae(pipeline: Path, dataset) -> dict:
    from diffusers import AutoencoderKL

    from latentdiff.evaluation.samples import load_real, to_tensor
    from latentdiff.evaluation.vae_metrics import reconstruct, reconstruction_metrics

    originals = to_tensor(load_real(dataset.require_split("test")).images)  # (N, 3, H, W) in [0, 1]
    reconstructions = reconstruct(AutoencoderKL.from_pretrained(pipeline, subfolder="vae").eval(), originals)
    return {k: round(v, 4) for k, v in reconstruction_metrics(reconstructions, originals).items()}


def real_features(features, dataset, split: str, records):
    """Features of every real image of `split`, cached beside the dataset (the same for every run on it)."""
    import torch

    from latentdiff.evaluation.samples import load_real, to_tensor

    metadata = dataset.root / split / "metadata.jsonl"
    cache = dataset.root / ".latentdiff-cache" / f"speedrun-lite0-{split}-{metadata.stat().st_mtime_ns}.pt"
    if cache.is_file():
        return torch.load(cache)
    computed = features(to_tensor(load_real(records).images, dataset.image_size))  # (N, D)
    cache.parent.mkdir(parents=True, exist_ok=True)
    torch.save(computed, cache)
    return computed


def measure_emoji(args, pipeline_dir: Path, dataset) -> dict:
    from latentdiff.evaluation.features import Lite0Features
    from latentdiff.pipeline import TextToImage

    pipeline = TextToImage.load(str(pipeline_dir), "cpu", "torch")  # the records were measured on torch
    features = Lite0Features()
    result = {}
    for key in args.splits:
        split, languages, spread = EMOJI_MEASUREMENTS[key]
        records = dataset.require_split(split)
        chosen = concepts(records, languages, args.num_concepts, spread=spread)
        rows, chance = score_languages(pipeline, features, chosen, languages,
                                       real_features(features, dataset, split, records), records,
                                       dataset.image_size, seed=SEED, steps=args.steps, guidance=args.guidance,
                                       batch_size=args.eval_batch_size)
        result[key] = {"languages": {k: {name: v[name] for name in ("top1", "top5", "top1_group", "top5_group")}
                                     for k, v in rows.items()},
                         "num_concepts": len(chosen), "num_real_images": len(records), **chance,
                         "vae_ceiling": vae_ceiling(pipeline_dir, dataset, features, chosen, records, split)}
    return result


def vae_ceiling(pipeline_dir: Path, dataset, features, chosen, records, split: str) -> dict:
    """Prompt fidelity of the VAE's reconstructions of the chosen concepts' own images: the most a generator
    in this latent space can score (a perfect U-Net gives back the real latents, which decode to these)."""
    from diffusers import AutoencoderKL

    from latentdiff.evaluation.prompt_fidelity import prompt_fidelity
    from latentdiff.evaluation.samples import load_real, to_tensor
    from latentdiff.evaluation.vae_metrics import reconstruct

    vae = AutoencoderKL.from_pretrained(pipeline_dir, subfolder="vae").eval()
    originals = to_tensor(load_real([record for record, _ in chosen]).images)  # (N, 3, H, W) in [0, 1]
    scores = prompt_fidelity(features(reconstruct(vae, originals)), real_features(features, dataset, split, records),
                             [names["en"] for _, names in chosen], [record.captions for record in records])
    return {"top1": scores["top1"], "top5": scores["top5"]}


def measure_shapes(args, pipeline: Path, work: Path) -> dict:
    from latentdiff.stages import evaluate

    out = work / "evaluation"
    evaluate.main(["--model", str(pipeline), "--data", args.data, "--split", "test", "--out", str(out),
                   "--num-samples", str(args.num_concepts), "--steps", str(args.steps), "--guidance", str(args.guidance),
                   "--backend", "torch"])
    metrics = json.loads((out / "metrics.json").read_text())
    return {"attributes": metrics["generation"]["attributes"], "prompt_fidelity": metrics["generation"]["prompt_fidelity"],
            "vae_ceiling": metrics["vae"].get("attributes", {}).get("accuracy")}  # the reconstructions' attributes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", required=True, help="the recipe's name: the row in docs/speedrun.md")
    parser.add_argument("--data", required=True, help="a prepared dataset (emoji with --languages all, or shapes)")
    parser.add_argument("--budget-min", type=float, default=30.0, help="wall-clock minutes for the three stages")
    parser.add_argument("--clip-share", type=float, default=0.1, help="fraction of the budget for CLIP")
    parser.add_argument("--vae-share", type=float, default=0.25, help="fraction of the budget for the VAE")
    parser.add_argument("--unet-overhead-min", type=float, default=3.5,
                        help="minutes the U-Net stage spends outside its loop (caches, validation, export)")
    parser.add_argument("--clip", default="--preset small", help="extra train-clip flags")
    parser.add_argument("--vae", default="--preset small", help="extra train-vae flags")
    parser.add_argument("--unet", default="--preset small", help="extra train-unet flags")
    parser.add_argument("--align-text", default=None, metavar="FLAGS",
                        help="align the text encoder across caption languages after CLIP, with these "
                             "`latentdiff align-text` flags (e.g. '--epochs 10'); off unless given")
    parser.add_argument("--num-concepts", type=int, default=MEASURE_CONCEPTS, help="concepts (images) generated per language")
    parser.add_argument("--steps", type=int, default=MEASURE_STEPS, help="denoising steps of the measurement")
    parser.add_argument("--guidance", type=float, default=None,
                        help="guidance scale of the measurement (default: the model's own, from its "
                             "latentdiff_model.json, else 7.5, the scale of every earlier record)")
    parser.add_argument("--guidance-rescale", type=float, default=0.0, metavar="PHI",
                        help="diffusers' guidance_rescale for every measured image (Lin et al. 2024; 0: off, "
                             "as latentdiff generates)")
    parser.add_argument("--guidance-interval", default=None, metavar="T_LOW,T_HIGH",
                        help="apply --guidance only at timesteps in [T_LOW, T_HIGH] of 0-999, --guidance-outside "
                             "elsewhere (Kynkaanniemi et al. 2024; default: every step, as latentdiff generates)")
    parser.add_argument("--guidance-outside", type=float, default=1.0,
                        help="the guidance scale outside --guidance-interval (1: none)")
    parser.add_argument("--splits", default=",".join(EMOJI_MEASUREMENTS),
                        help=f"the emoji measurements to make, comma-separated, of {','.join(EMOJI_MEASUREMENTS)} "
                             "(e.g. train_spread alone with a larger --num-concepts)")
    parser.add_argument("--eval-batch-size", type=int, default=25)
    parser.add_argument("--work", default=None, help="default: runs/speedrun/NAME (rerun to resume)")
    parser.add_argument("--out", default=None, metavar="FILE",
                        help="the results file (default: benchmarks/results/speedrun/NAME.json)")
    parser.add_argument("--measure", default=None, metavar="PIPELINE",
                        help="only measure this pipeline folder (e.g. src/latentdiff/default_model), train nothing")
    args = parser.parse_args()
    args.splits = list(dict.fromkeys(split.strip() for split in args.splits.split(",") if split.strip()))
    if not args.splits or set(args.splits) - set(EMOJI_MEASUREMENTS):
        parser.error(f"--splits {','.join(args.splits)}: choose from {','.join(EMOJI_MEASUREMENTS)}")
    from latentdiff.folder_kinds import is_pipeline_folder

    if args.measure and not is_pipeline_folder(args.measure):  # e.g. a train-unet run still training
        parser.error(f"--measure {args.measure}: not a pipeline folder (no model_index.json); pass a finished "
                     "`latentdiff train-unet --out` folder or a bundled model's folder")
    if args.guidance_rescale:  # after the cheap checks: it imports diffusers
        rescale_every_call(args.guidance_rescale)
    interval = None
    if args.guidance_interval:
        try:
            interval = [float(value) for value in args.guidance_interval.split(",")]
        except ValueError:
            interval = []
        if len(interval) != 2 or not 0 <= interval[0] <= interval[1]:
            parser.error(f"--guidance-interval {args.guidance_interval}: give two timesteps T_LOW,T_HIGH with "
                         "0 <= T_LOW <= T_HIGH, e.g. 500,999")
        guide_in_interval_every_call(interval[0], interval[1], args.guidance_outside)

    from latentdiff.data.prepared import open_prepared
    from latentdiff.model_source import guidance_for

    dataset = open_prepared(args.data)
    work = Path(args.work or REPO / "runs" / "speedrun" / args.name)
    work.mkdir(parents=True, exist_ok=True)
    payload = {"name": args.name, "commit": commit(), "budget_min": args.budget_min,
               "recipe": {"clip_share": args.clip_share, "vae_share": args.vae_share, "clip": args.clip,
                          "align_text": args.align_text,
                          "vae": args.vae, "unet": args.unet},
               "data": str(Path(args.data).resolve()), "source": dataset.manifest.get("source"),
               "threads": os.environ.get("OMP_NUM_THREADS", "all"),
               "machine": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
               "load_average_start": os.getloadavg()[0],
               "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    if args.measure:
        pipeline = Path(args.measure)
        payload["recipe"] = {"measured": str(pipeline.resolve())}
    else:
        pipeline = work / "pipeline"
        payload.update(train_chain(args, work))
        payload["load_average_end_of_training"] = os.getloadavg()[0]
    if args.guidance is None:
        args.guidance = guidance_for(pipeline)
    payload["parameters"] = parameter_counts(work, pipeline)
    payload["protocol"] = {"steps": args.steps, "guidance": args.guidance, "guidance_rescale": args.guidance_rescale,
                           "guidance_interval": interval, "guidance_outside": args.guidance_outside if interval else None,
                           "splits": args.splits, "scheduler": "dpmpp-2m", "seed": SEED,
                           "num_concepts": args.num_concepts, "features": "EfficientNet-Lite0"}
    payload["vae"] = measure_vae(pipeline, dataset)
    if payload["source"] == "shapes":
        payload["shapes"] = measure_shapes(args, pipeline, work)
    else:
        payload["emoji"] = measure_emoji(args, pipeline, dataset)
    (work / "speedrun.json").write_text(json.dumps(payload, indent=2) + "\n")
    write_results(payload, Path(args.out) if args.out else RESULTS_DIR / f"{args.name}.json")
    print(json.dumps({k: payload[k] for k in ("name", "train_seconds", "vae") if k in payload}, indent=1))
    for split, row in payload.get("emoji", {}).items():
        shown = "  ".join(f"{lang} {v['top5']:.2f}/{v['top1']:.2f}" for lang, v in row["languages"].items())
        print(f"{split} top-5/top-1: {shown}  (chance top-5 {row['chance_top5']:.3f})")
        grouped = "  ".join(f"{lang} {v['top5_group']:.2f}" for lang, v in row["languages"].items())
        print(f"{split} top-5 on the concept's group (skin tones as one): {grouped}  (chance {row['chance_top5_group']:.3f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
