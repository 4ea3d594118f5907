"""Loading pretrained components safely, the same way for the U-Net, the VAE and CLIP.

Unpickling can run arbitrary code, so a folder whose only weights are pickles (`.bin`, `.ckpt`, ...) is
refused unless the user explicitly allows it (`--allow-pickle`); safetensors load as usual.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from diffusers.utils import logging as diffusers_logging
from transformers.utils import logging as transformers_logging

from latentdiff.errors import UserError
from latentdiff.folder_kinds import diffusers_class

PICKLE_SUFFIXES = (".bin", ".ckpt", ".pt", ".pth", ".pkl")


def pickle_only_files(folder: Path) -> list[str]:
    """The pickled weight files of `folder` when it has no safetensors weights at all; else []."""
    if not folder.is_dir() or any(folder.glob("*.safetensors")):
        return []
    return sorted(p.name for p in folder.iterdir() if p.is_file() and p.suffix in PICKLE_SUFFIXES)


def refuse_pickle_only(folder: Path, allow_pickle: bool) -> None:
    pickles = [] if allow_pickle else pickle_only_files(folder)
    if pickles:
        raise UserError(f"{folder} holds only pickled weights ({', '.join(pickles)}), which can run code when loaded; "
                        f"convert them to safetensors, or pass --allow-pickle if you trust where they came from.")


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def find_component_folder(root: Path, subfolder: str, class_name: str) -> Path | None:
    """`root` itself when its config.json names `class_name`, `root/subfolder` when `root` is a pipeline
    folder holding the component there; None otherwise."""
    return next((folder for folder in (root, root / subfolder) if diffusers_class(folder) == class_name), None)


def load_diffusers_component(model_cls, init: str, *, subfolder: str, allow_pickle: bool = False):
    """A diffusers model (`UNet2DConditionModel`, `AutoencoderKL`) from a local component folder, a local
    pipeline folder (its `subfolder`), or a hub id of either kind of repository."""
    class_name = model_cls.__name__
    use_safetensors = None if allow_pickle else True  # True: diffusers will not fall back to pickles
    local = Path(init).expanduser()
    if local.exists():
        folder = find_component_folder(local, subfolder, class_name) if local.is_dir() else None
        if folder is None:
            raise UserError(f"{local} is neither a {class_name} folder nor a pipeline folder with a '{subfolder}/' "
                            f"subfolder; pass --init a folder written by latentdiff or by diffusers' save_pretrained.")
        refuse_pickle_only(folder, allow_pickle)
        try:
            return model_cls.from_pretrained(folder, use_safetensors=use_safetensors)
        except (OSError, ValueError) as err:  # missing or mismatched weight files
            raise UserError(f"Could not load the {class_name} in {folder} ({_first_line(err)}); pass --init a "
                            f"complete folder (config.json + safetensors weights).") from None
    errors = []
    for hub_subfolder in (None, subfolder):
        try:
            return model_cls.from_pretrained(init, subfolder=hub_subfolder, use_safetensors=use_safetensors)
        except (OSError, ValueError) as err:  # diffusers raises EnvironmentError (OSError) for missing files
            errors.append(_first_line(err))
    raise UserError(f"Could not load a {class_name} from '{init}' ({errors[-1]}); pass --init an existing folder or a "
                    f"hub id of a {class_name} or pipeline repository (add --allow-pickle only for trusted pickled weights).")


@contextlib.contextmanager
def no_loading_bars():
    """Loading a small model takes a second; diffusers' and transformers' per-component and per-tensor bars are
    noise. Warnings (such as transformers' report of weights missing from a checkpoint) still print."""
    diffusers_on = diffusers_logging.is_progress_bar_enabled()
    transformers_on = transformers_logging.is_progress_bar_enabled()
    diffusers_logging.disable_progress_bar()
    transformers_logging.disable_progress_bar()
    try:
        yield
    finally:
        if diffusers_on:
            diffusers_logging.enable_progress_bar()
        if transformers_on:
            transformers_logging.enable_progress_bar()


def stable_diffusion_pipeline_class():
    """diffusers' `StableDiffusionPipeline`, imported with transformers' warnings off: importing it makes
    transformers warn that an image processor falls back to PIL without torchvision (latentdiff needs none, and
    a user told to install it would get a CUDA torch beside the CPU one)."""
    transformers_verbosity = transformers_logging.get_verbosity()
    transformers_logging.set_verbosity_error()  # its errors still print
    try:
        from diffusers import StableDiffusionPipeline
    finally:
        transformers_logging.set_verbosity(transformers_verbosity)
    return StableDiffusionPipeline
