"""`latentdiff export [MODEL] --format onnx|openvino --out DIR`: a pipeline for ONNX Runtime or OpenVINO.

Writes the text encoder, U-Net, VAE decoder and encoder in optimum's layout (latentdiff.export.layout),
then, unless --skip-check, generates one image with the export and with PyTorch (same seed, 4 steps) and
prints their largest pixel difference, so a user sees at once that the export draws what the model draws.
`latentdiff generate --model DIR` (or `--backend onnx` on the pipeline folder) runs it.
"""

from __future__ import annotations

import json
from pathlib import Path

from latentdiff.config import ExportConfig
from latentdiff.errors import UserError
from latentdiff.options import run_stage

CHECK_STEPS = 4
CHECK_PROMPT = "a red circle"


def run(cfg: ExportConfig) -> Path:
    from latentdiff.backends import runtime_installed
    from latentdiff.backends.sessions import RUNTIME_MODULES
    from latentdiff.export.exporter import export_pipeline
    from latentdiff.export.layout import EXPORT_INFO
    from latentdiff.hashing import model_hash
    from latentdiff.model_source import resolve_model

    if not cfg.out:
        raise UserError("Pass --out DIR, the folder for the export (e.g. --out exports/shapes-onnx).")
    if not runtime_installed(cfg.format):
        raise UserError(f"--format {cfg.format} needs the '{RUNTIME_MODULES[cfg.format]}' package, which is not "
                        f"installed; run `pip install 'latentdiff[export]'`.")
    source = resolve_model(cfg.model)
    out_dir = export_pipeline(source, cfg.out, cfg.format, source_hash=model_hash(source.path), weights=cfg.weights)
    if not cfg.skip_check:
        difference = check_export(source.path, out_dir, cfg.format)
        info_file = out_dir / EXPORT_INFO
        info = json.loads(info_file.read_text())
        info["check"] = {"prompt": CHECK_PROMPT, "steps": CHECK_STEPS, "seed": 0,
                         "max_pixel_difference_of_255": difference}
        info_file.write_text(json.dumps(info, indent=2) + "\n")
        print(f"check: one image from the {cfg.format} export differs from PyTorch's by at most {difference}/255.")
    print(f"Exported {source.name} for {cfg.format} to {out_dir}; run it with "
          f"`latentdiff generate \"a prompt\" --model {out_dir}`.")
    print(out_dir)
    return out_dir


def check_export(pipeline_dir: Path, export_dir: Path, fmt: str) -> int:
    """Largest difference (0..255) between one image of the export and PyTorch's, same seed and settings."""
    import numpy as np

    from latentdiff.pipeline import GenerationRequest, TextToImage

    request = GenerationRequest([CHECK_PROMPT], seed=0, steps=CHECK_STEPS)
    images = [TextToImage.load(str(folder), "cpu", backend).generate(request)[0].image
              for folder, backend in ((pipeline_dir, "torch"), (export_dir, fmt))]
    return int(np.abs(np.asarray(images[0], np.int16) - np.asarray(images[1], np.int16)).max())


def main(argv: list[str] | None = None) -> int:
    return run_stage(run, ExportConfig, argv, "latentdiff export",
                     "Export a pipeline's text encoder, U-Net and VAE for ONNX Runtime or OpenVINO, in the layout "
                     "optimum's ORT/OVStableDiffusionPipeline use; `latentdiff generate --model DIR` runs it.")
