"""Export a pipeline folder's text encoder, U-Net and VAE for ONNX Runtime or OpenVINO (layout.py).

Why our own exporter and not optimum's: `optimum-onnx` 0.1.0 (ORTStableDiffusionPipeline) pins
transformers<4.58 and fails to import with transformers 5 (`cannot import name 'CLIPFeatureExtractor'`);
`optimum-intel` 2.2.0 (OVStableDiffusionPipeline) pins transformers<5.6, torch 2.14 + torchvision, and
fails to import with transformers 5.24 (`cannot import name 'VisionRotaryEmbedding'`). Both were measured
here with diffusers 0.42.1 / transformers 5.24 (--no-deps installs). So the files are written by
`torch.onnx.export` in optimum's layout and with optimum's input/output names.

`torch.onnx.export(dynamo=False)` (the TorchScript exporter): 12 s for the tiny U-Net against 95 s for
the dynamo exporter, with the same 3e-6 largest difference, and it keeps height and width dynamic.
OpenVINO IR is converted from that ONNX file (`openvino.convert_model`) and saved in fp32
(`compress_to_fp16=False`: save_model halves the weights by default).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import shutil
import tempfile
import warnings
from pathlib import Path

import torch
from tqdm.auto import tqdm

from latentdiff.errors import UserError
from latentdiff.export.layout import (COMPONENTS, COPIED_FOLDERS, EXPORT_INFO, EXPORTER_VERSION, FORMATS,
                                      MODEL_FILES, exported_format, model_file)
from latentdiff.folder_kinds import MODEL_INDEX
from latentdiff.generation_defaults import EXPORT_WEIGHTS as WEIGHTS
from latentdiff.model_source import MODEL_INFO, ModelSource
from latentdiff.models.weights import no_loading_bars, stable_diffusion_pipeline_class

ONNX_OPSET = 18
DUMMY_BATCH = 2  # any batch works afterwards: the batch axis is dynamic


class _TextEncoder(torch.nn.Module):
    def __init__(self, text_encoder):
        super().__init__()
        self.text_encoder = text_encoder

    def forward(self, input_ids):  # (B, T) -> (B, T, D), (B, D)
        out = self.text_encoder(input_ids, return_dict=False)
        return out[0], out[1]


class _UNet(torch.nn.Module):
    def __init__(self, unet):
        super().__init__()
        self.unet = unet

    def forward(self, sample, timestep, encoder_hidden_states):  # (B, C, h, w), (), (B, T, D) -> (B, C, h, w)
        return self.unet(sample, timestep, encoder_hidden_states, return_dict=False)[0]


class _VaeDecoder(torch.nn.Module):
    def __init__(self, vae):
        super().__init__()
        self.vae = vae

    def forward(self, latent_sample):  # (B, C, h, w) -> (B, 3, H, W) in [-1, 1]
        return self.vae.decode(latent_sample, return_dict=False)[0]


class _VaeEncoder(torch.nn.Module):
    """AutoencoderKL.encode up to the Gaussian's parameters (mean and log-variance stacked on channels)."""

    def __init__(self, vae):
        super().__init__()
        self.vae = vae

    def forward(self, sample):  # (B, 3, H, W) -> (B, 2C, h, w)
        moments = self.vae.encoder(sample)
        return moments if self.vae.quant_conv is None else self.vae.quant_conv(moments)


def _onnx_specs(pipe) -> dict[str, tuple[torch.nn.Module, tuple, list[str], list[str], dict]]:
    """component -> (module, example inputs, input names, output names, dynamic axes)."""
    latent_side = pipe.unet.config.sample_size
    latent_side = latent_side if isinstance(latent_side, int) else latent_side[0]
    image_side = latent_side * pipe.vae_scale_factor
    tokens = pipe.tokenizer.model_max_length
    latent_channels = pipe.vae.config.latent_channels
    batch = {0: "batch_size"}
    latent_axes = {0: "batch_size", 2: "latent_height", 3: "latent_width"}
    image_axes = {0: "batch_size", 2: "height", 3: "width"}
    return {
        "text_encoder": (_TextEncoder(pipe.text_encoder), (torch.zeros(DUMMY_BATCH, tokens, dtype=torch.int64),),
                         ["input_ids"], ["last_hidden_state", "pooler_output"],
                         {"input_ids": batch, "last_hidden_state": batch, "pooler_output": batch}),
        "unet": (_UNet(pipe.unet),
                 (torch.randn(DUMMY_BATCH, pipe.unet.config.in_channels, latent_side, latent_side),
                  torch.tensor(999.0), torch.randn(DUMMY_BATCH, tokens, pipe.text_encoder.config.hidden_size)),
                 ["sample", "timestep", "encoder_hidden_states"], ["out_sample"],
                 {"sample": latent_axes, "encoder_hidden_states": batch, "out_sample": latent_axes}),
        "vae_decoder": (_VaeDecoder(pipe.vae), (torch.randn(DUMMY_BATCH, latent_channels, latent_side, latent_side),),
                        ["latent_sample"], ["sample"], {"latent_sample": latent_axes, "sample": image_axes}),
        "vae_encoder": (_VaeEncoder(pipe.vae), (torch.randn(DUMMY_BATCH, 3, image_side, image_side),),
                        ["sample"], ["latent_parameters"], {"sample": image_axes, "latent_parameters": latent_axes}),
    }


def export_pipeline(source: ModelSource, out_dir: str | Path, fmt: str, *, source_hash: str,
                    show_progress: bool = True, weights: str = "fp32") -> Path:
    """Write `source`'s export in format `fmt` to `out_dir` (replacing an earlier export there) and return it.
    Written into a sibling temp folder first and renamed, so an interrupted export leaves nothing half-done.
    `weights="fp16"` stores the weights in half precision (half the size; see WEIGHTS for what it costs)."""
    if fmt not in FORMATS:
        raise UserError(f"--format must be one of {', '.join(FORMATS)} (got '{fmt}').")
    if weights not in WEIGHTS:
        raise UserError(f"--weights must be one of {', '.join(WEIGHTS)} (got '{weights}').")
    out_dir = Path(out_dir).resolve()
    if out_dir.exists() and (not out_dir.is_dir() or (any(out_dir.iterdir()) and exported_format(out_dir) is None)):
        raise UserError(f"--out {out_dir} exists and is not an earlier export; pass a new or empty folder.")
    if fmt == "openvino":
        _require("openvino", "openvino")
    _require("onnx", "onnx")  # the TorchScript exporter writes through the onnx package

    with no_loading_bars():
        pipe = stable_diffusion_pipeline_class().from_pretrained(source.path, dtype=torch.float32, use_safetensors=True)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    # a private staging folder: two exports to one place never write into each other's files
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".partial", dir=out_dir.parent))
    staging.chmod(0o755)  # mkdtemp's 0700 would become the export's own mode
    try:
        specs = _onnx_specs(pipe)
        with tqdm(specs.items(), desc=f"exporting to {fmt}", unit="model", disable=not show_progress) as progress:
            for component, (module, args, inputs, outputs, axes) in progress:
                folder = staging / component
                folder.mkdir()
                onnx_path = folder / MODEL_FILES["onnx"]
                with _quiet_export(), torch.inference_mode(False), torch.no_grad():
                    torch.onnx.export(module.eval(), args, str(onnx_path), input_names=inputs, output_names=outputs,
                                      dynamic_axes=axes, opset_version=ONNX_OPSET, dynamo=False)
                if fmt == "openvino":
                    xml_path = model_file(staging, component, fmt)
                    _onnx_to_openvino(onnx_path, xml_path, weights == "fp16")
                    for intermediate in folder.iterdir():  # the ONNX file and any side files of its weights
                        if intermediate not in (xml_path, xml_path.with_suffix(".bin")):
                            intermediate.unlink()
                elif weights == "fp16":
                    _onnx_to_fp16(onnx_path)
                shutil.copy2(source.path / COMPONENTS[component] / "config.json", folder / "config.json")
        for name in COPIED_FOLDERS:
            shutil.copytree(source.path / name, staging / name)
        for name in (MODEL_INDEX, MODEL_INFO):
            if (source.path / name).is_file():
                shutil.copy2(source.path / name, staging / name)
        info = {"format": fmt, "source": str(source.path), "source_name": source.name, "source_hash": source_hash,
                "exporter_version": EXPORTER_VERSION, "torch": torch.__version__, "onnx_opset": ONNX_OPSET,
                "weights": weights}
        (staging / EXPORT_INFO).write_text(json.dumps(info, indent=2) + "\n")
        if out_dir.exists():
            shutil.rmtree(out_dir)
        staging.rename(out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out_dir


def _onnx_to_openvino(onnx_path: Path, xml_path: Path, fp16_weights: bool) -> None:
    import openvino as ov  # the `export` extra, checked by _require before any export starts

    # compress_to_fp16 stores weights in fp16 and decompresses them to fp32 when the model is compiled
    ov.save_model(ov.convert_model(str(onnx_path)), str(xml_path), compress_to_fp16=fp16_weights)


def _onnx_to_fp16(onnx_path: Path) -> None:
    """Rewrite an ONNX file with fp16 weights and operators, its inputs and outputs kept fp32
    (ONNX Runtime's own converter, which its transformer optimisations use)."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = convert_float_to_float16(onnx.load(str(onnx_path)), keep_io_types=True)  # loads external data too
    # a model over protobuf's 2 GB was written with its weights in side files; they hold fp32 data now stale
    side_files = [f for f in onnx_path.parent.iterdir() if f != onnx_path]
    for stale in side_files:
        stale.unlink()
    onnx.save(model, str(onnx_path), save_as_external_data=bool(side_files), all_tensors_to_one_file=True,
              location=onnx_path.name + "_data")


def _require(module: str, package: str) -> None:
    if importlib.util.find_spec(module) is None:
        raise UserError(f"Exporting needs the '{package}' package, which is not installed; run "
                        f"`pip install 'latentdiff[export]'` (or `pip install {package}`).")


@contextlib.contextmanager
def _quiet_export():
    """The TorchScript exporter warns about every Python branch it traces (TracerWarning) and about its own
    deprecation; the result is checked against PyTorch by the tests, so the warnings are noise here."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield
