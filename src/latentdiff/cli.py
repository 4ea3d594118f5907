"""`latentdiff <stage> ...`: dispatch only.

Each stage lives in `latentdiff.stages.<module>` and exposes `main(argv) -> int` over a `run(config)`
that tests call in process. Stages are imported lazily so `latentdiff --help` does not pay for
importing torch and diffusers.
"""

from __future__ import annotations

import importlib
import sys

from latentdiff import __version__

# command -> (module under latentdiff.stages, one-line summary): every command `latentdiff --help` lists.
STAGES: dict[str, tuple[str, str]] = {
    "prepare-data": ("prepare_data", "turn a built-in source or your captioned images into a prepared dataset"),
    "train-clip": ("train_clip", "train a CLIP text+image encoder contrastively (from a preset or --init)"),
    "train-vae": ("train_vae", "train a VAE (AutoencoderKL) whose latent scaling factor is measured on the data"),
    "align-text": ("align_text", "align a CLIP's text encoder across caption languages (for a multilingual U-Net)"),
    "train-unet": ("train_unet", "train the latent U-Net on a CLIP + VAE; writes a StableDiffusionPipeline folder"),
    "train": ("train", "train CLIP (aligned across caption languages), VAE and U-Net in order into one run folder (resumable)"),
    "export-checkpoint": ("export_checkpoint", "a pipeline folder from a train-unet run's saved checkpoint, while it runs or after it stopped"),
    "generate": ("generate", "generate images from text prompts with a pipeline folder, hub id or the bundled model"),
    "export": ("export", "export a pipeline for ONNX Runtime or OpenVINO (optimum's layout); generate --backend runs it"),
    "evaluate": ("evaluate", "measure a pipeline, CLIP or VAE folder on a dataset split: metrics.json + report.md"),
    "serve": ("serve", "serve a pipeline: web page, AUTOMATIC1111- and OpenAI-compatible APIs (127.0.0.1)"),
    "ps": ("ps", "list the keep-alive workers and servers running, with their model and memory"),
    "stop": ("stop", "stop keep-alive workers and servers (all, or by PID or model)"),
}

USAGE = "usage: latentdiff <stage> [options]   (latentdiff <stage> --help for a stage's options)"


def print_help() -> None:
    print(USAGE)
    print("\nA text-to-image latent diffusion toolkit: prepare data, train CLIP, VAE and U-Net, generate.\n")
    print("stages:")
    width = max(len(name) for name in STAGES)
    for name, (_, summary) in STAGES.items():
        print(f"  {name.ljust(width)}  {summary}")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print_help()
        return 0
    if argv[0] in ("-V", "--version"):
        print(f"latentdiff {__version__}")
        return 0
    stage, rest = argv[0], argv[1:]
    if stage not in STAGES:
        print(f"latentdiff: unknown stage '{stage}'; choose one of: {', '.join(STAGES)}.", file=sys.stderr)
        return 2
    module = importlib.import_module(f"latentdiff.stages.{STAGES[stage][0]}")
    return module.main(rest)


if __name__ == "__main__":
    raise SystemExit(main())
