"""Inference backends: `torch` (diffusers' modules), `onnx` (ONNX Runtime), `openvino` (OpenVINO).

    pipe, source = load_runtime_pipeline("runs/shapes/pipeline", "onnx")   # exports once, then reuses

`--model` may be a pipeline folder (exported on first use into the cache, latentdiff.export.layout) or a
folder written by `latentdiff export`; either way a diffusers StableDiffusionPipeline comes back whose
U-Net, text encoder and VAE are runtime sessions (components.py), so schedulers, seeds and guidance are
diffusers' own and images stay within 1/255 of PyTorch's (tests/unit/test_export.py,
benchmarks/bench_generate.py).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import logging
import os
import shutil
from pathlib import Path

from filelock import FileLock  # one process exports a model at a time (POSIX and Windows; diffusers' own dependency)

from latentdiff.errors import UserError
from latentdiff.generation_defaults import BACKEND_ENV, BACKENDS

# The runtimes, the exporter and diffusers are imported inside the functions that use them: the pipeline
# imports this module at its top, and a torch-only run must not load onnxruntime, OpenVINO (the optional
# `export` extra) or the exporter's torch.onnx machinery.
log = logging.getLogger("latentdiff.backends")


def runtime_installed(backend: str) -> bool:
    from latentdiff.backends.sessions import RUNTIME_MODULES

    return backend == "torch" or importlib.util.find_spec(RUNTIME_MODULES[backend]) is not None


@dataclasses.dataclass(frozen=True)
class BackendChoice:
    name: str  # torch, onnx or openvino
    automatic: bool  # nobody asked for it (flag, $LATENTDIFF_BACKEND or an export's format): may fall back to torch


def pick_backend(model: str | None, requested: str | None, device: str | None = None) -> BackendChoice:
    """The backend to use: the requested one, else an exported folder's own format (the only one it runs
    on), else $LATENTDIFF_BACKEND, else onnx on the CPU when ONNX Runtime is installed (generation_defaults.BACKENDS says
    why), else torch."""
    from latentdiff.export.layout import exported_format
    from latentdiff.runtime import pick_device

    fmt = exported_format(Path(model).expanduser()) if model else None
    if requested not in (None, ""):
        if requested not in BACKENDS:
            raise UserError(f"--backend must be one of {', '.join(BACKENDS)} (got '{requested}').")
        if fmt is not None and requested != fmt:
            raise UserError(f"Model folder '{model}' is an {fmt} export, which --backend {requested} cannot run; "
                            f"pass --backend {fmt}, or the original pipeline folder.")
        return BackendChoice(requested, automatic=False)
    if fmt is not None:
        return BackendChoice(fmt, automatic=False)
    from_env = os.environ.get(BACKEND_ENV, "").strip()
    if from_env:
        if from_env not in BACKENDS:
            raise UserError(f"${BACKEND_ENV} must be one of {', '.join(BACKENDS)} (got '{from_env}'); fix or unset it.")
        return BackendChoice(from_env, automatic=False)
    on_cpu = pick_device(device).type == "cpu"
    return BackendChoice("onnx" if on_cpu and runtime_installed("onnx") else "torch", automatic=True)


def exported_folder(model: str | None, backend: str, *, show_progress: bool = True):
    """(export folder, ModelSource with the *source* model's name and hash, whether it came ready from the
    cache) for `model` in `backend`'s format; a pipeline folder is exported into the cache the first time and
    reused after. One process exports at a time (a lock beside the folder); the others wait and reuse it."""
    from latentdiff.export.exporter import export_pipeline
    from latentdiff.export.layout import EXPORTER_VERSION, cached_export_dir, read_export_info
    from latentdiff.hashing import model_hash, pipeline_hash
    from latentdiff.model_source import ModelSource, resolve_model

    if model and (info := read_export_info(Path(model).expanduser())) is not None:
        folder = Path(model).expanduser().resolve()
        return folder, ModelSource(folder, info.get("source_name") or folder.name, info.get("source_hash")), False
    source = resolve_model(model)
    source_hash = model_hash(source.path)  # A1111's model hash, what the infotext shows
    folder = cached_export_dir(pipeline_hash(source.path), backend)
    folder.parent.mkdir(parents=True, exist_ok=True)
    # Released on leaving the block, and by the OS if this process dies while exporting.
    with FileLock(folder.with_name(folder.name + ".lock")):
        info = read_export_info(folder)
        cached = info is not None and info.get("exporter_version") == EXPORTER_VERSION
        if not cached:
            log.warning("Exporting %s for %s once (reused next time from %s).", source.name, backend, folder)
            export_pipeline(source, folder, backend, source_hash=source_hash, show_progress=show_progress)
            _failure_marker(folder).unlink(missing_ok=True)
    return folder, dataclasses.replace(source, hash=source_hash), cached


def _failure_marker(cached_folder: Path) -> Path:
    return cached_folder.with_name(cached_folder.name + ".failed")


def _cached_folder(model: str | None, backend: str) -> Path:
    from latentdiff.export.layout import cached_export_dir
    from latentdiff.hashing import pipeline_hash
    from latentdiff.model_source import resolve_model

    return cached_export_dir(pipeline_hash(resolve_model(model).path), backend)


def _export_failed_before(model: str | None, backend: str) -> str | None:
    """Why an automatic export of `model` for `backend` failed before (by this exporter version), or None."""
    from latentdiff.export.layout import EXPORTER_VERSION

    try:
        marker = json.loads(_failure_marker(_cached_folder(model, backend)).read_text())
    except (OSError, ValueError):
        return None
    return marker.get("reason") if marker.get("exporter_version") == EXPORTER_VERSION else None


def _remember_export_failure(model: str | None, backend: str, reason: str) -> None:
    """So that the default does not try (and wait for) the same failing export at every call; an explicit
    `--backend` still tries, and a success removes the marker."""
    from latentdiff.export.layout import EXPORTER_VERSION

    folder = _cached_folder(model, backend)
    shutil.rmtree(folder, ignore_errors=True)  # a damaged export is not reused either
    folder.parent.mkdir(parents=True, exist_ok=True)
    _failure_marker(folder).write_text(json.dumps({"exporter_version": EXPORTER_VERSION, "reason": reason}) + "\n")


def load_for_choice(model: str | None, choice: BackendChoice):
    """(pipeline on `choice`'s runtime sessions, ModelSource); None when an automatic choice cannot run this
    model: the export failed now (warned, and remembered) or before (then not tried again), so the caller
    runs torch. A backend asked for by name raises its error instead."""
    from latentdiff.model_source import error_reason, resolve_model

    if choice.automatic:
        resolve_model(model)  # a missing model is the user's error on every backend: no fallback for it
        failed_before = _export_failed_before(model, choice.name)
        if failed_before:
            log.info("Running on torch: this model could not run on %s before (%s).", choice.name, failed_before)
            return None
    try:
        return load_runtime_pipeline(model, choice.name)
    except Exception as err:  # noqa: BLE001 - a model the exporter cannot handle must not stop the default
        if not choice.automatic:
            raise
        _remember_export_failure(model, choice.name, error_reason(err))
        log.warning("Could not run this model on %s (%s); running it on torch instead, now and next time "
                    "(--backend %s tries again).", choice.name, error_reason(err), choice.name)
        return None


def load_runtime_pipeline(model: str | None, backend: str):
    """(diffusers StableDiffusionPipeline running on `backend`'s sessions, ModelSource). A cached export that
    no longer loads (a damaged file) is made again once."""
    if not runtime_installed(backend):
        from latentdiff.backends.sessions import RUNTIME_MODULES

        package = RUNTIME_MODULES[backend]
        raise UserError(f"--backend {backend} needs the '{package}' package, which is not installed; run "
                        f"`pip install 'latentdiff[export]'` or use --backend torch.")
    folder, source, cached = exported_folder(model, backend)
    try:
        return build_pipeline(folder, backend), source
    except UserError:
        if not cached:
            raise
        log.warning("The cached %s export in %s does not load; exporting it again.", backend, folder)
        shutil.rmtree(folder, ignore_errors=True)
        folder, source, _ = exported_folder(model, backend)
        return build_pipeline(folder, backend), source


def build_pipeline(folder: Path, backend: str):
    """A StableDiffusionPipeline over the export in `folder`: configs, tokenizer and scheduler as diffusers
    would load them from the source folder, networks as runtime sessions."""
    import diffusers
    import transformers
    from diffusers.configuration_utils import FrozenDict

    from latentdiff.backends.components import RuntimeTextEncoder, RuntimeUNet, RuntimeVae
    from latentdiff.backends.sessions import SESSIONS
    from latentdiff.export.layout import model_file
    from latentdiff.models.weights import stable_diffusion_pipeline_class

    index = json.loads((folder / "model_index.json").read_text())
    session = SESSIONS[backend]

    def config(component: str) -> dict:
        return json.loads((folder / component / "config.json").read_text())

    def library_class(component: str):  # model_index.json: "tokenizer": ["transformers", "CLIPTokenizer"]
        library, name = index[component]
        return getattr({"transformers": transformers, "diffusers": diffusers}[library], name)

    try:
        unet = RuntimeUNet(session(model_file(folder, "unet", backend)), FrozenDict(config("unet")))
        text_encoder = RuntimeTextEncoder(session(model_file(folder, "text_encoder", backend)),
                                          transformers.AutoConfig.from_pretrained(folder / "text_encoder"))
        vae = RuntimeVae(session(model_file(folder, "vae_decoder", backend)),
                         session(model_file(folder, "vae_encoder", backend)), FrozenDict(config("vae_decoder")))
        tokenizer = library_class("tokenizer").from_pretrained(folder / "tokenizer")
        scheduler = library_class("scheduler").from_pretrained(folder / "scheduler")
    except Exception as err:  # noqa: BLE001 - each runtime has its own error classes (ONNX Runtime's InvalidProtobuf...)
        from latentdiff.model_source import error_reason

        raise UserError(f"Could not load the {backend} export in '{folder}' ({error_reason(err)}); export it again "
                        f"with `latentdiff export`.") from err
    pipe = stable_diffusion_pipeline_class()(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                   scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe
